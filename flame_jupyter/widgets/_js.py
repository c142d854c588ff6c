"""The front-end code of flame_jupyter's widgets, inline (no JS build step).

Two pieces:

* ``STUB_ESM`` is every widget's anywidget ``_esm`` (about 1.5 KB). It loads the shared library
  once per page and delegates ``render`` to it.
* ``LIB_JS`` is the library (views for futures and the status panel, plus their CSS). It travels
  once: in the ``_lib`` state of the first widget of the kernel and of the panel (so saved widget
  state renders without a kernel), or, when a view needs it and no model carried it, in answer to
  a ``{"kind": "lib"}`` message. 2,000 futures therefore cost 2,000 small models, not 2,000 copies
  of the code (in the comm traffic, in the browser, and in a notebook's saved widget state).
"""

from __future__ import annotations

import hashlib

LIB_JS = r"""
const TERMINAL = new Set(["done", "failed", "cancelled"]);
const ANSI = /\x1b\[[0-9;]*[A-Za-z]/g;
const CSS = `
.fj-future, .fj-panel { font-family: var(--jp-ui-font-family, system-ui, sans-serif);
  font-size: var(--jp-ui-font-size1, 13px); color: var(--jp-ui-font-color1, #222);
  border: 1px solid var(--jp-border-color2, #ddd); border-radius: 4px; padding: 6px 8px;
  background: var(--jp-layout-color1, #fff); max-width: 100%; box-sizing: border-box; }
.fj-head { display: flex; align-items: center; gap: 8px; flex-wrap: wrap; }
.fj-state { font-weight: 600; text-transform: uppercase; font-size: 11px; padding: 1px 6px;
  border-radius: 3px; color: #fff; background: #888; letter-spacing: .03em; }
.fj-state[data-state="queued"] { background: #8a8f98; }
.fj-state[data-state="running"] { background: var(--jp-brand-color1, #1976d2); }
.fj-state[data-state="done"] { background: var(--jp-success-color1, #388e3c); }
.fj-state[data-state="failed"] { background: var(--jp-error-color1, #d32f2f); }
.fj-state[data-state="cancelled"] { background: var(--jp-warn-color1, #f57c00); }
.fj-label { font-weight: 600; }
.fj-elapsed { font-variant-numeric: tabular-nums; color: var(--jp-ui-font-color2, #555); }
.fj-where { color: var(--jp-ui-font-color2, #666); font-size: 11px; }
.fj-cancel, .fj-panel button { margin-left: auto; font-size: 12px; padding: 1px 8px; cursor: pointer;
  border: 1px solid var(--jp-border-color1, #bbb); border-radius: 3px;
  background: var(--jp-layout-color2, #f3f3f3); color: var(--jp-ui-font-color1, #222); }
.fj-panel button { margin-left: 4px; white-space: nowrap; }
.fj-future button:disabled, .fj-panel button:disabled { opacity: .45; cursor: default; }
.fj-panel td.fj-actions, .fj-panel td.fj-service-name { white-space: nowrap; }
.fj-panel .fj-flame-counts { white-space: normal; }
.fj-panel td.fj-session { min-width: 15em; }
.fj-html.jp-RenderedHTMLCommon { padding-right: 0; }
.fj-html.jp-RenderedHTMLCommon table { margin-left: 0; margin-right: 0; }
.fj-panel { overflow-x: auto; }
.fj-panel td.fj-actions button { display: block; margin: 2px 0; width: 100%; }
.fj-panel table { max-width: 100%; }
.fj-cancel[hidden] { display: none; }
.fj-progress { display: flex; align-items: center; gap: 8px; margin-top: 5px; }
.fj-progress[hidden], .fj-output[hidden], .fj-result[hidden], .fj-error[hidden], .fj-displays[hidden] { display: none; }
.fj-progress-track { flex: 1; height: 8px; background: var(--jp-layout-color3, #e4e4e4); border-radius: 4px;
  overflow: hidden; max-width: 420px; }
.fj-progress-bar { height: 100%; width: 0; background: var(--jp-brand-color1, #1976d2); transition: width .2s; }
.fj-future[data-state="done"] .fj-progress-bar { background: var(--jp-success-color1, #388e3c); }
.fj-progress-text { font-size: 11px; color: var(--jp-ui-font-color2, #555); font-variant-numeric: tabular-nums; }
.fj-output, .fj-traceback-text, .fj-plain { font-family: var(--jp-code-font-family, monospace);
  font-size: var(--jp-code-font-size, 12px); white-space: pre-wrap; word-break: break-word; margin: 5px 0 0;
  padding: 4px 6px; background: var(--jp-layout-color2, #f7f7f7); border-radius: 3px; }
.fj-output { max-height: 14em; overflow: auto; }
.fj-stderr { color: var(--jp-error-color1, #c62828); }
.fj-dropped { color: var(--jp-ui-font-color3, #999); font-style: italic; }
.fj-result { margin-top: 5px; }
.fj-result-info { font-size: 11px; color: var(--jp-ui-font-color2, #555); }
.fj-result-body { max-height: 28em; overflow: auto; }
.fj-result-body img, .fj-display img { max-width: 100%; }
.fj-error { margin-top: 5px; }
.fj-error-head { color: var(--jp-error-color1, #c62828); font-weight: 600; }
.fj-traceback-text { max-height: 20em; overflow: auto; }
.fj-panel table { border-collapse: collapse; margin-top: 4px; }
.fj-panel th, .fj-panel td { padding: 2px 8px; text-align: left; border-bottom: 1px solid var(--jp-border-color2, #eee); }
.fj-panel td.fj-count { text-align: right; font-variant-numeric: tabular-nums; }
.fj-panel h4 { margin: 8px 0 2px; font-size: 12px; }
.fj-panel .fj-muted { color: var(--jp-ui-font-color2, #777); font-size: 11px; }
.fj-total { margin-right: 8px; }
.fj-failure summary { cursor: pointer; }
.fj-failure .fj-error-type { color: var(--jp-error-color1, #c62828); font-weight: 600; }
`;

function ensureCss() {
  if (document.getElementById("fj-style-%HASH%")) return;
  const style = document.createElement("style");
  style.id = "fj-style-%HASH%";
  style.textContent = CSS;
  document.head.append(style);
}

function h(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined && text !== null) e.textContent = String(text);
  return e;
}

function seconds(s, live) {
  if (!(s >= 0)) return "";
  if (s < 60) return (live ? Math.floor(s) : s.toFixed(1)) + " s";
  const m = Math.floor(s / 60), r = Math.floor(s % 60);
  if (m < 60) return m + " min " + r + " s";
  return Math.floor(m / 60) + " h " + (m % 60) + " min";
}

function num(x) {
  return Number.isInteger(x) ? String(x) : (Math.round(x * 100) / 100).toString();
}

function renderBundle(box, bundle) {
  box.replaceChildren();
  if (!bundle) return;
  if (bundle["text/html"]) {
    const d = h("div", "fj-html jp-RenderedHTMLCommon");  // JupyterLab / Notebook 7 table styles
    d.innerHTML = bundle["text/html"];
    box.append(d);
    return;
  }
  for (const m of ["image/png", "image/jpeg", "image/gif"]) {
    if (bundle[m]) {
      const img = h("img", "fj-img");
      img.src = "data:" + m + ";base64," + bundle[m];
      box.append(img);
      return;
    }
  }
  if (bundle["image/svg+xml"]) {
    const d = h("div", "fj-svg");
    d.innerHTML = bundle["image/svg+xml"];
    box.append(d);
    return;
  }
  if (bundle["text/plain"] !== undefined) box.append(h("pre", "fj-plain", String(bundle["text/plain"]).replace(ANSI, "")));
}

// One timer for every live view on the page: elapsed times tick here, not in the kernel.
const clocks = new Set();
let clockTimer = null;
function watchClock(fn, on) {
  if (on) clocks.add(fn); else clocks.delete(fn);
  if (clocks.size && clockTimer === null) clockTimer = setInterval(() => clocks.forEach((f) => f()), 1000);
  if (!clocks.size && clockTimer !== null) { clearInterval(clockTimer); clockTimer = null; }
}

function renderFuture(model, el) {
  const root = h("div", "fj-future");
  const head = h("div", "fj-head");
  const badge = h("span", "fj-state");
  const label = h("span", "fj-label");
  const elapsed = h("span", "fj-elapsed");
  const where = h("span", "fj-where");
  const cancel = h("button", "fj-cancel", "Cancel");
  cancel.type = "button";
  cancel.title = "Cancel this task on Flame";
  head.append(badge, label, elapsed, where, cancel);
  const prog = h("div", "fj-progress");
  const track = h("div", "fj-progress-track");
  const bar = h("div", "fj-progress-bar");
  bar.setAttribute("role", "progressbar");
  track.append(bar);
  const ptext = h("span", "fj-progress-text");
  prog.append(track, ptext);
  const out = h("pre", "fj-output");
  const displays = h("div", "fj-displays");
  const result = h("div", "fj-result");
  const rinfo = h("div", "fj-result-info");
  const rbody = h("div", "fj-result-body");
  result.append(rinfo, rbody);
  const error = h("div", "fj-error");
  const ehead = h("div", "fj-error-head");
  const etype = h("span", "fj-error-type");
  const emsg = h("span", "fj-error-message");
  ehead.append(etype, h("span", null, ": "), emsg);
  const tb = h("details", "fj-traceback");
  tb.open = true;
  const tbText = h("pre", "fj-traceback-text");
  tb.append(h("summary", null, "Remote traceback"), tbText);
  error.append(ehead, tb);
  root.append(head, prog, out, displays, result, error);
  el.append(root);

  let base = 0, baseAt = performance.now(), live = false;
  const last = {};
  const changed = (k) => { const v = model.get(k); if (last[k] === v) return false; last[k] = v; return true; };
  const tick = () => {
    const s = model.get("state");
    const e = live ? base + (performance.now() - baseAt) / 1000 : base;
    elapsed.textContent = seconds(e, live);
    elapsed.title = s === "queued" ? "waiting for an executor" : "since submission";
  };

  function update() {
    const s = model.get("state") || "queued";
    const terminal = TERMINAL.has(s);
    root.dataset.state = s;
    badge.dataset.state = s;
    badge.textContent = s;
    const newElapsed = changed("elapsed");
    const newState = changed("state");
    if (newElapsed || newState) { base = model.get("elapsed") || 0; baseAt = performance.now(); }
    if (live !== !terminal) { live = !terminal; watchClock(tick, live); }
    tick();
    label.textContent = model.get("label") || model.get("service") || "call";
    const parts = [];
    if (model.get("service") && model.get("service") !== model.get("label")) parts.push(model.get("service"));
    if (model.get("app")) parts.push("app " + model.get("app"));
    if (model.get("task_id")) parts.push("task " + model.get("task_id"));
    if (model.get("session_id")) parts.push("session " + model.get("session_id"));
    where.textContent = parts.join(" · ");
    cancel.hidden = terminal;
    if (!terminal && model.get("cancel_requested")) { cancel.disabled = true; cancel.textContent = "Cancelling…"; }

    const p = model.get("progress") || [];
    prog.hidden = p.length < 2;
    if (p.length >= 2) {
      const [done, total, msg] = p;
      const pct = total > 0 ? Math.max(0, Math.min(100, (100 * done) / total)) : 0;
      bar.style.width = pct + "%";
      bar.setAttribute("aria-valuenow", String(done));
      bar.setAttribute("aria-valuemax", String(total));
      prog.dataset.done = String(done);
      prog.dataset.total = String(total);
      ptext.textContent = num(done) + "/" + num(total) + (msg ? " " + msg : "");
    }

    if (changed("output") || changed("output_dropped")) {
      const chunks = model.get("output") || [];
      const dropped = model.get("output_dropped") || 0;
      const atEnd = out.scrollHeight - out.scrollTop - out.clientHeight < 8;
      out.replaceChildren();
      if (dropped > 0) out.append(h("span", "fj-dropped", "… " + dropped + " earlier characters\n"));
      for (const [stream, text] of chunks) {
        out.append(stream === "stderr" ? h("span", "fj-stderr", text.replace(ANSI, "")) : document.createTextNode(text.replace(ANSI, "")));
      }
      out.hidden = chunks.length === 0;
      if (atEnd) out.scrollTop = out.scrollHeight;
    }

    if (changed("displays")) {
      const ds = model.get("displays") || [];
      displays.replaceChildren();
      for (const b of ds) { const d = h("div", "fj-display"); renderBundle(d, b); displays.append(d); }
      displays.hidden = ds.length === 0;
    }

    if (changed("result") || changed("result_info")) {
      const r = model.get("result") || {};
      renderBundle(rbody, Object.keys(r).length ? r : null);
      rinfo.textContent = model.get("result_info") || "";
    }
    result.hidden = !(s === "done" && (Object.keys(model.get("result") || {}).length || model.get("result_info")));

    etype.textContent = model.get("error_type") || "";
    emsg.textContent = model.get("error_message") || "";
    const t = (model.get("error_traceback") || "").replace(ANSI, "");
    tbText.textContent = t;
    tb.hidden = !t;
    error.hidden = !(s === "failed" || s === "cancelled") || !(model.get("error_type") || model.get("error_message"));
  }

  let pending = false;
  const schedule = () => { if (!pending) { pending = true; queueMicrotask(() => { pending = false; update(); }); } };
  model.on("change", schedule);
  cancel.addEventListener("click", () => {
    cancel.disabled = true;
    cancel.textContent = "Cancelling…";
    model.send({ kind: "cancel" });
  });
  update();
  return () => { model.off("change", schedule); watchClock(tick, false); };
}

const STATES = ["queued", "running", "done", "failed", "cancelled"];

function renderPanel(model, el) {
  const root = h("div", "fj-panel");
  const head = h("div", "fj-head");
  const title = h("span", "fj-label", "Flame");
  const runtime = h("span", "fj-where fj-runtime");
  const totals = h("span", "fj-totals");
  const refresh = h("button", "fj-refresh", "Refresh");
  refresh.type = "button";
  refresh.addEventListener("click", () => model.send({ kind: "refresh" }));
  head.append(title, runtime, totals, refresh);
  const body = h("div", "fj-panel-body");
  root.append(head, body);
  el.append(root);
  const opened = new Set();
  const armed = new Map();

  function button(cls, text, msg, disabled) {
    const b = h("button", cls, text);
    b.type = "button";
    b.disabled = !!disabled;
    b.addEventListener("click", () => { b.disabled = true; model.send(msg); });
    return b;
  }

  function update() {
    runtime.textContent = model.get("runtime") || "";
    const tot = model.get("totals") || {};
    totals.replaceChildren();
    for (const s of STATES) {
      const t = h("span", "fj-total");
      t.dataset.state = s;
      t.append(h("span", "fj-state", s), document.createTextNode(" " + (tot[s] || 0)));
      t.querySelector(".fj-state").dataset.state = s;
      totals.append(t);
    }
    body.replaceChildren();
    const err = model.get("flame_error");
    if (err) body.append(h("div", "fj-muted fj-flame-error", err));

    const services = model.get("services") || [];
    body.append(h("h4", null, "Sessions and services"));
    if (!services.length) body.append(h("div", "fj-muted", "Nothing has run on Flame from this kernel yet."));
    else {
      const table = h("table", "fj-services");
      const hr = h("tr");
      for (const c of ["service", "session", ...STATES, "rate", ""]) hr.append(h("th", null, c));
      table.append(hr);
      for (const s of services) {
        const tr = h("tr", "fj-service");
        tr.dataset.session = s.session_id || "";
        tr.dataset.closed = s.closed ? "true" : "false";
        const name = h("td", "fj-service-name", s.name || "");
        if (s.kind) name.append(h("span", "fj-muted", " " + s.kind));
        const sess = h("td", "fj-session", (s.session_id || "") + (s.closed ? " (closed)" : ""));
        if (s.flame) sess.append(h("div", "fj-muted fj-flame-counts", "on Flame: " + s.flame));
        tr.append(name, sess);
        for (const st of STATES) {
          const td = h("td", "fj-count", (s.counts || {})[st] || 0);
          td.dataset.state = st;
          tr.append(td);
        }
        const rate = h("td", "fj-count fj-throughput", s.throughput ? s.throughput.toFixed(2) + "/s" : "0/s");
        rate.title = "tasks finished per second over the last 10 s";
        tr.append(rate);
        const actions = h("td", "fj-actions");
        const liveCount = ((s.counts || {}).queued || 0) + ((s.counts || {}).running || 0);
        if (s.session_id && !s.closed) {
          actions.append(button("fj-cancel-tasks", "Cancel tasks", { kind: "cancel_tasks", session_id: s.session_id }, liveCount === 0));
          const isArmed = (armed.get(s.session_id) || 0) > performance.now();
          const close = h("button", "fj-close-session", isArmed ? "Confirm close" : "Close session");
          close.type = "button";
          close.title = "Close the Flame session: its unfinished tasks are cancelled";
          close.addEventListener("click", () => {
            if ((armed.get(s.session_id) || 0) > performance.now()) {
              armed.delete(s.session_id);
              close.disabled = true;
              close.textContent = "Closing…";
              model.send({ kind: "close_session", session_id: s.session_id });
            } else {
              armed.set(s.session_id, performance.now() + 4000);
              close.textContent = "Confirm close";
              setTimeout(() => { if (close.isConnected && !close.disabled) close.textContent = "Close session"; }, 4000);
            }
          });
          actions.append(close);
        }
        tr.append(actions);
        table.append(tr);
      }
      body.append(table);
    }

    const failures = model.get("failures") || [];
    if (failures.length) {
      body.append(h("h4", null, "Recent failures"));
      const box = h("div", "fj-failures");
      for (const f of failures) {
        const d = h("details", "fj-failure");
        d.dataset.id = f.id;
        d.open = opened.has(f.id);
        d.addEventListener("toggle", () => { if (d.open) opened.add(f.id); else opened.delete(f.id); });
        const sum = h("summary");
        sum.append(h("span", "fj-failure-label", (f.label || f.service || "call") + " "), h("span", "fj-error-type", f.error_type || "Error"), h("span", "fj-error-message", ": " + (f.message || "")));
        if (f.when) sum.append(h("span", "fj-muted", " · " + f.when));
        d.append(sum, h("pre", "fj-traceback-text", (f.traceback || f.message || "").replace(ANSI, "")));
        box.append(d);
      }
      body.append(box);
    }

    const instances = model.get("instances") || [];
    if (model.get("show_instances")) {
      body.append(h("h4", null, "Embedded runtime instances"));
      if (!instances.length) body.append(h("div", "fj-muted fj-no-instances", "No instances running."));
      else {
        const table = h("table", "fj-instances");
        const hr = h("tr");
        for (const c of ["instance", "state", "session"]) hr.append(h("th", null, c));
        table.append(hr);
        for (const i of instances) {
          const tr = h("tr", "fj-instance");
          tr.dataset.state = i.state || "";
          tr.append(h("td", null, i.id || ""), h("td", "fj-instance-state", i.state || ""), h("td", null, i.session_id || ""));
          table.append(tr);
        }
        body.append(table);
      }
    }
  }

  let pending = false;
  const schedule = () => { if (!pending) { pending = true; queueMicrotask(() => { pending = false; update(); }); } };
  model.on("change", schedule);
  update();
  return () => model.off("change", schedule);
}

export function render({ model, el }) {
  ensureCss();
  return model.get("_kind") === "panel" ? renderPanel(model, el) : renderFuture(model, el);
}
"""

LIB_HASH = hashlib.sha256(LIB_JS.encode()).hexdigest()[:12]
LIB_JS = LIB_JS.replace("%HASH%", LIB_HASH)

STUB_ESM = r"""
const KEY = "__flame_jupyter_widgets_%HASH%";
function slot() {
  let s = globalThis[KEY];
  if (!s) {
    let resolve;
    const promise = new Promise((r) => { resolve = r; });
    s = globalThis[KEY] = { promise, resolve, started: false, lib: null };
  }
  return s;
}
async function load(code) {
  const s = slot();
  if (s.started || !code) return;
  s.started = true;
  const url = URL.createObjectURL(new Blob([code], { type: "text/javascript" }));
  try {
    s.lib = await import(/* webpackIgnore: true */ url);
    s.resolve(s.lib);
  } catch (e) {
    s.started = false;
    console.error("flame_jupyter: the widget code failed to load", e);
  } finally {
    URL.revokeObjectURL(url);
  }
}
function ask(model) {
  const s = slot();
  if (s.started) return;
  const code = model.get("_lib");
  if (code) { load(code); return; }
  const onMsg = (msg) => {
    if (msg && msg.kind === "lib") { model.off("msg:custom", onMsg); load(msg.code); }
  };
  model.on("msg:custom", onMsg);
  try {
    model.send({ kind: "lib" });
  } catch (e) {
    // no kernel (a static page): wait for a model that carries the code
  }
}
export default {
  initialize({ model }) {
    const code = model.get("_lib");
    if (code) load(code);
  },
  async render({ model, el }) {
    const s = slot();
    let lib = s.lib;
    if (!lib) {
      el.textContent = "Loading the Flame widget…";
      ask(model);
      const slow = setTimeout(() => {
        el.textContent = "Loading the Flame widget… (the kernel answers once the running cell ends)";
      }, 10000);
      try { lib = await s.promise; } finally { clearTimeout(slow); }
      el.textContent = "";
    }
    return lib.render({ model, el });
  },
};
""".replace("%HASH%", LIB_HASH)
