// The views of flame_jupyter's widgets (futures and the status panel), one ES module.
// flame_jupyter/widgets/_js.py fills in the slots (the slash-star-percent comments) once, from the Python side:
//   S: the state names (flame_jupyter.remote.wire.State), STATES in order, TERMINAL;
//   F: the fields of a future's view (display.future_view.FutureView), F[name] === name;
//   P: the fields of the panel's view (display.panel_view.PanelView);
//   CSS: lib.css; the HASH slots (between percent signs): a hash of this code.
// Read model fields only through F and P (never a quoted name): tests/unit/flame_jupyter/
// test_display_parity.py checks every name against the Python view models.
const S = /*%STATE_NAMES%*/;
const STATES = /*%STATES%*/;
const TERMINAL = new Set(/*%TERMINAL%*/);
const F = /*%FUTURE_FIELDS%*/;
const P = /*%PANEL_FIELDS%*/;
const M = /*%MAP_FIELDS%*/;
const ANSI = /\x1b\[[0-9;]*[A-Za-z]/g;
const CSS = /*%CSS%*/;

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

// What a terminal shows: each line is what follows its last carriage return (tqdm redraws one line).
function term(text) {
  const s = String(text).replace(ANSI, "");
  if (s.indexOf("\r") < 0) return s;
  return s.replace(/\r\n/g, "\n").split("\n").map((line) => {
    const parts = line.split("\r");
    for (let i = parts.length - 1; i >= 0; i--) if (parts[i]) return parts[i];
    return "";
  }).join("\n");
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
  const waiting = h("span", "fj-waiting fj-muted");
  const cancel = h("button", "fj-cancel", "Cancel");
  cancel.type = "button";
  cancel.title = "Cancel this task on Flame";
  head.append(badge, label, elapsed, waiting, where, cancel);
  const prog = h("div", "fj-progress");
  const track = h("div", "fj-progress-track");
  const bar = h("div", "fj-progress-bar");
  bar.setAttribute("role", "progressbar");
  track.append(bar);
  const ptext = h("span", "fj-progress-text");
  prog.append(track, ptext);
  const out = h("pre", "fj-output");
  const displays = h("div", "fj-displays");
  const echo = h("div", "fj-muted fj-echoed", "output: in this cell");
  const result = h("div", "fj-result");
  const rinfo = h("div", "fj-result-info");
  const rbound = h("div", "fj-result-bound");
  const rbody = h("div", "fj-result-body");
  result.append(rinfo, rbound, rbody);
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
  root.append(head, prog, echo, out, displays, result, error);
  el.append(root);

  let base = 0, baseAt = performance.now(), live = false;
  const last = {};
  const changed = (k) => { const v = model.get(k); if (last[k] === v) return false; last[k] = v; return true; };
  const tick = () => {
    const s = model.get(F.state);
    const e = live ? base + (performance.now() - baseAt) / 1000 : base;
    elapsed.textContent = seconds(e, live);
    elapsed.title = s === S.QUEUED ? model.get(F.waiting) || "waiting for an executor" : "since submission";
  };

  function update() {
    const s = model.get(F.state) || S.QUEUED;
    const terminal = TERMINAL.has(s);
    root.dataset.state = s;
    badge.dataset.state = s;
    badge.textContent = s;
    const newElapsed = changed(F.elapsed);
    const newState = changed(F.state);
    if (newElapsed || newState) { base = model.get(F.elapsed) || 0; baseAt = performance.now(); }
    if (live !== !terminal) { live = !terminal; watchClock(tick, live); }
    tick();
    label.textContent = model.get(F.label) || model.get(F.service) || "call";
    const parts = [];
    if (model.get(F.service) && model.get(F.service) !== model.get(F.label)) parts.push(model.get(F.service));
    if (model.get(F.app)) parts.push("app " + model.get(F.app));
    if (model.get(F.task_id)) parts.push("task " + model.get(F.task_id));
    if (model.get(F.session_id)) parts.push("session " + model.get(F.session_id));
    where.textContent = parts.join(" · ");
    waiting.textContent = s === S.QUEUED ? model.get(F.waiting) || "" : "";
    waiting.hidden = !waiting.textContent;
    cancel.hidden = terminal;
    if (!terminal && model.get(F.cancel_requested)) { cancel.disabled = true; cancel.textContent = "Cancelling…"; }

    const p = model.get(F.progress) || [];
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

    if (changed(F.output) || changed(F.output_dropped)) {
      const chunks = model.get(F.output) || [];
      const dropped = model.get(F.output_dropped) || 0;
      const atEnd = out.scrollHeight - out.scrollTop - out.clientHeight < 8;
      out.replaceChildren();
      if (dropped > 0) out.append(h("span", "fj-dropped", "… " + dropped + " earlier characters\n"));
      for (const [stream, text] of chunks) {
        out.append(stream === "stderr" ? h("span", "fj-stderr", term(text)) : document.createTextNode(term(text)));
      }
      out.hidden = chunks.length === 0;
      if (atEnd) out.scrollTop = out.scrollHeight;
    }

    if (changed(F.displays)) {
      const ds = model.get(F.displays) || [];
      displays.replaceChildren();
      for (const b of ds) { const d = h("div", "fj-display"); renderBundle(d, b); displays.append(d); }
      displays.hidden = ds.length === 0;
    }

    if (changed(F.result) || changed(F.result_info)) {
      const r = model.get(F.result) || {};
      renderBundle(rbody, Object.keys(r).length ? r : null);
      rinfo.textContent = model.get(F.result_info) || "";
    }
    echo.hidden = !model.get(F.echoed);
    const names = model.get(F.bound) || [];
    rbound.textContent = names.length ? "bound in the notebook (-o): " + names.join(", ") : "";
    rbound.hidden = names.length === 0;
    result.hidden = !(s === S.DONE && (Object.keys(model.get(F.result) || {}).length || model.get(F.result_info)));

    etype.textContent = model.get(F.error_type) || "";
    emsg.textContent = model.get(F.error_message) || "";
    const t = (model.get(F.error_traceback) || "").replace(ANSI, "");
    tbText.textContent = t;
    tb.hidden = !t;
    error.hidden = !(s === S.FAILED || s === S.CANCELLED) || !(model.get(F.error_type) || model.get(F.error_message));
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
    runtime.textContent = model.get(P.runtime) || "";
    const tot = model.get(P.totals) || {};
    totals.replaceChildren();
    for (const s of STATES) {
      const t = h("span", "fj-total");
      t.dataset.state = s;
      t.append(h("span", "fj-state", s), document.createTextNode(" " + (tot[s] || 0)));
      t.querySelector(".fj-state").dataset.state = s;
      totals.append(t);
    }
    body.replaceChildren();
    const err = model.get(P.flame_error);
    if (err) body.append(h("div", "fj-muted fj-flame-error", err));

    const services = model.get(P.services) || [];
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
        const liveCount = ((s.counts || {})[S.QUEUED] || 0) + ((s.counts || {})[S.RUNNING] || 0);
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

    const failures = model.get(P.failures) || [];
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

    const instances = model.get(P.instances) || [];
    if (model.get(P.show_instances)) {
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

// -- a map's group (display.map_view.MapView, fields read through M) ---------------------------
function renderMap(model, el) {
  const root = h("div", "fj-future fj-map");
  const head = h("div", "fj-head");
  const label = h("span", "fj-label");
  const counts = h("span", "fj-map-counts");
  const rate = h("span", "fj-where fj-map-rate");
  const cancel = h("button", "fj-cancel", "Cancel all");
  cancel.type = "button";
  cancel.title = "Cancel every item of this map not finished yet";
  head.append(label, counts, rate, cancel);
  const prog = h("div", "fj-progress");
  const track = h("div", "fj-progress-track");
  const bar = h("div", "fj-progress-bar");
  bar.setAttribute("role", "progressbar");
  track.append(bar);
  const ptext = h("span", "fj-progress-text");
  prog.append(track, ptext);
  const failures = h("div", "fj-failures");
  root.append(head, prog, failures);
  el.append(root);

  function update() {
    const total = model.get(M.total);
    const done = model.get(M.done) || 0, failed = model.get(M.failed) || 0, cancelled = model.get(M.cancelled) || 0;
    const finished = model.get(M.finished);
    root.dataset.state = finished ? (failed ? S.FAILED : cancelled ? S.CANCELLED : S.DONE) : S.RUNNING;
    label.textContent = model.get(M.label) || model.get(M.service) || "map";
    const of = total >= 0 ? String(total) : "?";
    counts.textContent = " " + done + " done · " + failed + " failed · " + (model.get(M.running) || 0) + " running · " +
      (model.get(M.queued) || 0) + " queued" + (cancelled ? " · " + cancelled + " cancelled" : "") + " of " + of;
    const eta = model.get(M.eta);
    rate.textContent = num(model.get(M.throughput) || 0) + " items/s · " + seconds(model.get(M.elapsed) || 0, false) +
      (!finished && eta !== null && eta !== undefined ? " · ETA " + seconds(eta, true) : "");
    const pct = total > 0 ? Math.min(100, (100 * (done + failed + cancelled)) / total) : 0;
    bar.style.width = pct + "%";
    bar.setAttribute("aria-valuenow", String(done + failed + cancelled));
    bar.setAttribute("aria-valuemax", String(total));
    prog.dataset.done = String(done);
    prog.dataset.total = String(total);
    ptext.textContent = (done + failed + cancelled) + "/" + of;
    cancel.hidden = !!finished;
    failures.replaceChildren();
    for (const f of model.get(M.failures) || []) {
      const d = h("details", "fj-failure");
      const sum = h("summary");
      sum.append(h("span", "fj-failure-label", "item " + f.index + " "), h("span", "fj-error-type", f.error_type || "Error"), h("span", "fj-error-message", ": " + (f.message || "")));
      d.append(sum, h("pre", "fj-traceback-text", (f.traceback || f.message || "").replace(ANSI, "")));
      failures.append(d);
    }
  }

  let pending = false;
  const schedule = () => { if (!pending) { pending = true; queueMicrotask(() => { pending = false; update(); }); } };
  model.on("change", schedule);
  cancel.addEventListener("click", () => { cancel.disabled = true; cancel.textContent = "Cancelling…"; model.send({ kind: "cancel" }); });
  update();
  return () => model.off("change", schedule);
}

export function render({ model, el }) {
  ensureCss();
  const kind = model.get("_kind");
  if (kind === "map") return renderMap(model, el);
  return kind === "panel" ? renderPanel(model, el) : renderFuture(model, el);
}
