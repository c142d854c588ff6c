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
