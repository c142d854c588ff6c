"""Real browser: JupyterLab (and Notebook 7) on 127.0.0.1, headless Debian Chromium, Playwright.

Runs ``notebooks/widgets_simulated.ipynb`` (real ObjectFutures on a real embedded Flame runtime,
driven by background threads) and ``notebooks/widgets_sdk.ipynb`` (real notebook functions served
with ``flame_jupyter.Runner``), and asserts from the DOM, using a MutationObserver history recorded
in the page (independent of how often the test polls):

* a future goes running -> done live, with its result shown;
* its progress bar moves through intermediate values;
* streamed output appears while it still runs;
* a failing task shows its exception type, message and remote traceback;
* the Cancel button cancels a long task;
* the status panel's counts match; a failure expands to its error; Close session closes the real
  Flame session and its instance goes away;
* (Lab, SDK notebook) after a page reload the views come back from the kernel in their final state.

Screenshots and the recorded history go to ``test-artifacts/browser/``.
Run: ``pytest -m browser tests/browser`` (needs ``/usr/bin/chromium`` and the ``browser`` extra).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from jupyter_lab_server import LabServer  # noqa: E402
from scenarios import FINAL_TOTALS, NOTEBOOKS, SCENARIOS  # noqa: E402

pytestmark = pytest.mark.browser

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
ARTIFACTS = REPO / "test-artifacts" / "browser"
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")


# Headless Chromium that can reach nothing but 127.0.0.1.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
]


def _chromium(p: Any, profile: Path, height: int) -> Any:
    return p.chromium.launch_persistent_context(
        str(profile),
        executable_path=CHROMIUM,
        headless=True,
        viewport={"width": 1280, "height": height},
        args=CHROMIUM_ARGS,
    )


WAIT = 120.0  # generous: a loaded 2-core machine

sync_api = pytest.importorskip("playwright.sync_api")
if not Path(CHROMIUM).exists():
    pytest.skip(f"no Chromium at {CHROMIUM}", allow_module_level=True)

# Records every change of every future view and of the panel, in the page.
OBSERVER_JS = """
() => {
  const vis = (e) => !!e && e.getClientRects().length > 0;
  const txt = (root, sel) => { const e = root.querySelector(sel); return e && vis(e) ? e.textContent : ""; };
  window.__fjHistory = [];
  window.__fjLast = {};
  const t0 = performance.now();
  const snap = () => {
    for (const el of document.querySelectorAll(".fj-future")) {
      if (!vis(el)) continue;
      const bar = el.querySelector(".fj-progress-bar");
      const rec = {
        label: txt(el, ".fj-label"),
        state: el.dataset.state || "",
        width: bar && vis(bar) ? bar.style.width : "",
        ptext: txt(el, ".fj-progress-text"),
        output: txt(el, ".fj-output"),
        result: txt(el, ".fj-result-body"),
        result_table: !!el.querySelector(".fj-result-body table"),
        result_info: txt(el, ".fj-result-info"),
        etype: txt(el, ".fj-error-type"),
        emsg: txt(el, ".fj-error-message"),
        tb: txt(el, ".fj-traceback-text"),
      };
      const key = JSON.stringify(rec);
      if (window.__fjLast[rec.label] !== key) {
        window.__fjLast[rec.label] = key;
        window.__fjHistory.push({ t: Math.round(performance.now() - t0), ...rec });
      }
    }
  };
  new MutationObserver(snap).observe(document.body, { subtree: true, childList: true, characterData: true, attributes: true });
  snap();
}
"""

FUTURES_JS = """
() => [...document.querySelectorAll(".fj-future")].filter((e) => e.getClientRects().length > 0).map((el) => ({
  label: el.querySelector(".fj-label")?.textContent || "",
  state: el.dataset.state || "",
}))
"""

PANEL_JS = """
() => {
  const panel = [...document.querySelectorAll(".fj-panel")].find((e) => e.getClientRects().length > 0);
  if (!panel) return null;
  const rows = [...panel.querySelectorAll("tr.fj-service")].map((tr) => {
    const counts = {};
    for (const td of tr.querySelectorAll("td.fj-count[data-state]")) counts[td.dataset.state] = Number(td.textContent);
    return { name: tr.querySelector(".fj-service-name")?.firstChild?.textContent || "", session: tr.dataset.session,
             closed: tr.dataset.closed === "true", counts, flame: tr.querySelector(".fj-flame-counts")?.textContent || "" };
  });
  const totals = {};
  for (const t of panel.querySelectorAll(".fj-total")) totals[t.dataset.state] = Number(t.textContent.replace(/[^0-9]/g, ""));
  const failures = [...panel.querySelectorAll(".fj-failure")].map((d) => ({ open: d.open, summary: d.querySelector("summary").textContent,
      tb: d.open ? d.querySelector(".fj-traceback-text").textContent : "" }));
  const instances = [...panel.querySelectorAll("tr.fj-instance")].map((tr) => ({ state: tr.dataset.state,
      session: tr.querySelector("td:last-child")?.textContent || "" }));
  return { rows, totals, failures, instances, runtime: panel.querySelector(".fj-runtime")?.textContent || "",
           noInstances: !!panel.querySelector(".fj-no-instances") };
}
"""


def wait_for(what: str, fn: Any, timeout: float = WAIT, interval: float = 0.1) -> Any:
    """Poll ``fn`` until truthy (bounded); fail naming ``what``."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = fn()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what} (last: {last!r})")


def width_pct(width: str) -> float | None:
    m = re.match(r"([0-9.]+)%", width or "")
    return float(m.group(1)) if m else None


@pytest.fixture(scope="module")
def lab() -> Any:
    work = Path(tempfile.mkdtemp(prefix="fj-browser-"))
    copies = {f"{name}.ipynb": NOTEBOOKS / f"{name}.ipynb" for name in SCENARIOS}
    copies.update({f"{name}_nb7.ipynb": NOTEBOOKS / f"{name}.ipynb" for name in SCENARIOS})  # own kernels
    server = LabServer(work, copies)
    server.start()
    try:
        yield server
    finally:
        server.stop()
        leftovers = server.alive_descendants()
        if not leftovers:
            shutil.rmtree(work, ignore_errors=True)
        assert not leftovers, f"processes left behind: {leftovers}"


def run_ui(lab: LabServer, ui: str, name: str) -> None:
    scenario = SCENARIOS[name]
    labels = scenario["labels"]
    tag = f"{ui}-{name}"
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = f"{name}.ipynb" if ui == "lab" else f"{name}_nb7.ipynb"
    url = lab.url(f"lab/tree/{path}?reset") if ui == "lab" else lab.url(f"notebooks/{path}")
    assert urlparse(url).hostname == "127.0.0.1"
    profile = Path(tempfile.mkdtemp(prefix="fj-chromium-"))
    requests: list[str] = []
    page_errors: list[str] = []
    console: list[str] = []
    history: list[dict[str, Any]] = []
    reloaded: list[dict[str, Any]] = []
    try:
        with sync_api.sync_playwright() as p:
            ctx = _chromium(p, profile, height=1000)
            try:
                page = ctx.pages[0] if ctx.pages else ctx.new_page()
                page.on("request", lambda r: requests.append(r.url))
                page.on("pageerror", lambda e: page_errors.append(str(e)))
                page.on("console", lambda m: console.append(f"{m.type}: {m.text}"))
                page.goto(url, wait_until="load", timeout=WAIT * 1000)
                page.wait_for_selector(".jp-Notebook .jp-CodeCell", timeout=WAIT * 1000)

                def kernel_ready() -> bool:
                    idle = page.query_selector('.jp-Notebook-ExecutionIndicator[data-status="idle"]')
                    kname = page.query_selector(".jp-Toolbar .jp-KernelName")
                    text = (kname.text_content() or "").strip() if kname else ""
                    return bool(idle) and bool(text) and "No Kernel" not in text

                def future(label: str) -> dict[str, Any] | None:
                    return next((f for f in page.evaluate(FUTURES_JS) if f["label"] == label), None)

                def view(label: str) -> Any:
                    return page.locator(".fj-future", has=page.locator(".fj-label", has_text=label)).first

                def panel() -> dict[str, Any]:
                    return page.evaluate(PANEL_JS) or {}

                wait_for("kernel ready", kernel_ready)
                page.evaluate(OBSERVER_JS)
                page.get_by_role("menuitem", name="Run", exact=True).click()
                page.get_by_role("menuitem", name=re.compile("^Run All Cells")).click()
                lab.record_descendants()

                wait_for(
                    "the long task running", lambda: (future(labels["long"]) or {}).get("state") == "running"
                )
                lab.record_descendants()
                wait_for(
                    "the main task's progress",
                    lambda: any(
                        h["label"] == labels["main"] and h["state"] == "running" and h["width"]
                        for h in page.evaluate("window.__fjHistory")
                    ),
                )
                view(labels["main"]).scroll_into_view_if_needed(timeout=WAIT * 1000)
                page.screenshot(path=str(ARTIFACTS / f"{tag}-1-running.png"))

                wait_for("main done", lambda: (future(labels["main"]) or {}).get("state") == "done")
                wait_for("fail failed", lambda: (future(labels["fail"]) or {}).get("state") == "failed")
                wait_for("table done", lambda: (future(labels["table"]) or {}).get("state") == "done")
                wait_for(
                    "result previews",
                    lambda: page.evaluate(
                        """() => [...document.querySelectorAll('.fj-future[data-state="done"] .fj-result-body')]
                           .filter((e) => e.getClientRects().length > 0 && e.textContent.trim()).length >= 2"""
                    ),
                )
                # Button clicks are comm messages: the kernel handles them between cells.
                wait_for("kernel idle after Run All", kernel_ready)
                cancel = view(labels["long"]).locator(".fj-cancel")
                cancel.scroll_into_view_if_needed(timeout=WAIT * 1000)
                cancel.click()
                wait_for(
                    "long task cancelled", lambda: (future(labels["long"]) or {}).get("state") == "cancelled"
                )

                # The panel: counts per service and totals match what ran.
                def counts_match() -> dict[str, Any] | None:
                    pn = panel()
                    rows = {r["name"]: r for r in pn.get("rows", [])}
                    ok = pn.get("totals") == FINAL_TOTALS and all(
                        rows.get(svc, {}).get("counts") == c for svc, c in scenario["services"].items()
                    )
                    return pn if ok else None

                pn = wait_for("panel counts", counts_match)
                closing = next(r for r in pn["rows"] if r["name"] == scenario["close"])
                panel_el = page.locator(".fj-panel").first
                panel_el.scroll_into_view_if_needed(timeout=WAIT * 1000)
                page.locator(".fj-panel .fj-failure summary").first.click()
                pn = wait_for(
                    "failure expanded",
                    lambda: (lambda x: x if x.get("failures") and x["failures"][0]["open"] else None)(
                        panel()
                    ),
                )
                assert "ValueError" in pn["failures"][0]["summary"], pn
                assert "boom: bad input 7" in pn["failures"][0]["tb"], pn
                assert "embedded Flame runtime" in pn["runtime"], pn
                wait_for(
                    "the closing session's instance in the panel",
                    lambda: any(
                        i["session"] == closing["session"] and i["state"] == "bound"
                        for i in panel().get("instances", [])
                    ),
                )
                page.screenshot(path=str(ARTIFACTS / f"{tag}-2-final.png"))
                for key in ("main", "fail", "table", "long"):
                    v = view(labels[key])
                    v.scroll_into_view_if_needed(timeout=WAIT * 1000)
                    v.screenshot(path=str(ARTIFACTS / f"{tag}-future-{key}.png"))
                panel_el.scroll_into_view_if_needed(timeout=WAIT * 1000)
                panel_el.screenshot(path=str(ARTIFACTS / f"{tag}-3-panel.png"))

                # Close the real Flame session (two clicks: arm, then confirm).
                row_sel = f'.fj-panel tr.fj-service[data-session="{closing["session"]}"] .fj-close-session'
                page.locator(row_sel).click()
                page.locator(row_sel).click()
                wait_for(
                    "session closed in the panel",
                    lambda: any(
                        r["session"] == closing["session"] and r["closed"] for r in panel().get("rows", [])
                    ),
                )
                wait_for(
                    "its instance released",
                    lambda: not any(i["session"] == closing["session"] for i in panel().get("instances", [])),
                )
                panel_el.screenshot(path=str(ARTIFACTS / f"{tag}-4-panel-closed.png"))
                history = page.evaluate("window.__fjHistory")
                widget_errors = page.evaluate("document.body.innerText.includes('Error displaying widget')")

                if ui == "lab" and name == "widgets_sdk":
                    # Reload: the views come back from the kernel's models, in their final state.
                    page.keyboard.press("Control+s")  # the outputs (widget views) must be on disk
                    wait_for(
                        "notebook saved",
                        lambda: page.query_selector(".lm-TabBar-tab.jp-mod-current.jp-mod-dirty") is None,
                    )
                    page.goto(lab.url(f"lab/tree/{path}"), wait_until="load", timeout=WAIT * 1000)
                    page.wait_for_selector(".jp-Notebook .jp-CodeCell", timeout=WAIT * 1000)
                    wanted = {
                        labels["main"]: "done",
                        labels["fail"]: "failed",
                        labels["table"]: "done",
                        labels["long"]: "cancelled",
                    }
                    reloaded = wait_for(
                        "views restored after reload",
                        lambda: (lambda fs: fs if {f["label"]: f["state"] for f in fs} == wanted else None)(
                            page.evaluate(FUTURES_JS)
                        ),
                    )
                    assert wait_for(
                        "restored result",
                        lambda: view(labels["main"]).locator(".fj-result-body").text_content().strip() == "9",
                    )
                    view(labels["main"]).scroll_into_view_if_needed(timeout=WAIT * 1000)
                    page.screenshot(path=str(ARTIFACTS / f"{tag}-5-reloaded.png"))
            finally:
                ctx.close()
    finally:
        shutil.rmtree(profile, ignore_errors=True)
        (ARTIFACTS / f"{tag}-history.json").write_text(
            json.dumps(
                {
                    "history": history,
                    "reloaded": reloaded,
                    "page_errors": page_errors,
                    "console": console[-200:],
                },
                indent=1,
            )
        )
        lab.shutdown_kernels(path)

    # -- assertions from the recorded live history -----------------------------------------------------
    def of(label: str) -> list[dict[str, Any]]:
        return [h for h in history if h["label"] == label]

    main = of(labels["main"])
    states = [h["state"] for h in main]
    assert "running" in states and "done" in states, states
    assert states.index("running") < states.index("done") and states[-1] == "done", states
    done = [h for h in main if h["state"] == "done"]
    assert any(h["result"].strip() == "9" and h["result_info"].startswith("int") for h in done), done[-1]
    widths = [w for w in (width_pct(h["width"]) for h in main if h["state"] == "running") if w is not None]
    intermediate = sorted({w for w in widths if 0 < w < 100})
    assert len(intermediate) >= 3, widths
    assert widths == sorted(widths), widths  # the bar only moves forward
    streamed = [h for h in main if h["state"] == "running" and "processed batch" in h["output"]]
    assert streamed, "no output seen while the task ran"
    assert "processed batch 10" in done[-1]["output"]

    fail = of(labels["fail"])[-1]
    assert fail["state"] == "failed"
    assert fail["etype"] == "ValueError" and fail["emsg"] == "boom: bad input 7", fail
    assert scenario["traceback"] in fail["tb"], fail

    table = of(labels["table"])[-1]
    assert table["state"] == "done" and table["result_table"], table
    assert table["result_info"].startswith("DataFrame"), table

    long = of(labels["long"])
    assert [h["state"] for h in long][-1] == "cancelled", long[-1]
    assert long[-1]["etype"] == "Cancelled", long[-1]

    assert not widget_errors
    hosts = {urlparse(u).hostname for u in requests if urlparse(u).scheme in ("http", "https", "ws", "wss")}
    assert hosts <= {"127.0.0.1"}, hosts
    flame_errors = [e for e in page_errors if "fj-" in e or "flame" in e.lower() or "anywidget" in e.lower()]
    assert not flame_errors, flame_errors


def test_jupyterlab_simulated(lab: LabServer) -> None:
    run_ui(lab, "lab", "widgets_simulated")


def test_jupyterlab_sdk(lab: LabServer) -> None:
    run_ui(lab, "lab", "widgets_sdk")


def test_notebook7_sdk(lab: LabServer) -> None:
    run_ui(lab, "nb7", "widgets_sdk")


CODE_ON_REQUEST = """from concurrent.futures import Future

from flamepy.runner.runner import ObjectFuture as FlamepyFuture

from flame_jupyter.future_state import state_of
from flame_jupyter.futures import ObjectFuture
from flame_jupyter.widgets import _base

_base._take_lib()  # test only: no model of this kernel carries the view code, views must ask for it
f = ObjectFuture(FlamepyFuture(Future()), label="needs the code", session_id="s1", service="svc")
state_of(f).running()
state_of(f).set_progress(2, 4, "half way")
f"""


def test_jupyterlab_view_code_on_request(lab: LabServer) -> None:
    """A view whose page has no view code yet and whose model carries none asks the kernel for it."""
    import nbformat

    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(CODE_ON_REQUEST)])
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3 (ipykernel)",
        "language": "python",
    }
    nbformat.write(nb, lab.root / "code_on_request.ipynb")
    profile = Path(tempfile.mkdtemp(prefix="fj-chromium-"))
    try:
        with sync_api.sync_playwright() as p:
            ctx = _chromium(p, profile, height=800)
            try:
                page = ctx.pages[0] if ctx.pages else ctx.new_page()
                page.goto(
                    lab.url("lab/tree/code_on_request.ipynb?reset"), wait_until="load", timeout=WAIT * 1000
                )
                page.wait_for_selector(".jp-Notebook .jp-CodeCell", timeout=WAIT * 1000)

                def kernel_ready() -> bool:
                    idle = page.query_selector('.jp-Notebook-ExecutionIndicator[data-status="idle"]')
                    kname = page.query_selector(".jp-Toolbar .jp-KernelName")
                    text = (kname.text_content() or "").strip() if kname else ""
                    return bool(idle) and bool(text) and "No Kernel" not in text

                wait_for("kernel ready", kernel_ready)
                page.get_by_role("menuitem", name="Run", exact=True).click()
                page.get_by_role("menuitem", name=re.compile("^Run All Cells")).click()
                state = wait_for(
                    "the view rendered with code from the kernel",
                    lambda: page.evaluate(
                        """() => { const el = [...document.querySelectorAll('.fj-future')].find((e) => e.getClientRects().length);
                                   return el && el.querySelector('.fj-progress-bar').style.width === '50%' ? el.dataset.state : null; }"""
                    ),
                )
                assert state == "running"
                page.screenshot(path=str(ARTIFACTS / "lab-code-on-request.png"))
            finally:
                ctx.close()
    finally:
        shutil.rmtree(profile, ignore_errors=True)
        lab.shutdown_kernels("code_on_request.ipynb")
