"""Real browser (JupyterLab on 127.0.0.1, headless Chromium): a ``svc.map(...)`` group widget.

The notebook (written by this test) serves a function that sleeps 20 ms per item and shows
``svc.map(range(400))`` with ``g.show()``. Asserted from the DOM: the group widget is visible and
its done count moves (read twice, the second larger, while the map still runs), then it shows
400 of 400 done. After saving from Lab, the saved output's text/html fallback shows the final
counts. Screenshots go to ``test-artifacts/browser/map-1-live.png`` and ``map-2-done.png``.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import nbformat
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from jupyter_lab_server import LabServer  # noqa: E402

pytestmark = pytest.mark.browser

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "test-artifacts" / "browser"
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
WAIT = 240.0  # generous: Run All starts the embedded runtime first, on a loaded 2-core machine
N = 400
NOTEBOOK = "map.ipynb"
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
ARGS = [
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
CELLS = [
    "%load_ext flame_jupyter",
    "import time\n\n\ndef slow(x):\n    time.sleep(0.02)\n    return x * x",
    "%flame_service svc = slow",
    f"g = svc.map(range({N}))\n_ = g.show()",
]

sync_api = pytest.importorskip("playwright.sync_api")
if not Path(CHROMIUM).exists():
    pytest.skip(f"no Chromium at {CHROMIUM}", allow_module_level=True)

# The visible map widget, read in the page: its state, done/total, bar width and texts.
READ_JS = """
() => {
  const el = [...document.querySelectorAll(".fj-map")].find((e) => e.getClientRects().length > 0);
  if (!el) return null;
  const prog = el.querySelector(".fj-progress");
  return {
    state: el.dataset.state || "",
    done: Number(prog?.dataset.done ?? -1),
    total: Number(prog?.dataset.total ?? -1),
    width: el.querySelector(".fj-progress-bar")?.style.width || "",
    counts: el.querySelector(".fj-map-counts")?.textContent || "",
    rate: el.querySelector(".fj-map-rate")?.textContent || "",
    ptext: el.querySelector(".fj-progress-text")?.textContent || "",
  };
}
"""


def wait_for(what: str, fn: Any, timeout: float = WAIT, every: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = fn()
        if last:
            return last
        time.sleep(every)
    raise AssertionError(f"timed out waiting for {what} (last: {last!r})")


@pytest.fixture(scope="module")
def lab() -> Any:
    work = Path(tempfile.mkdtemp(prefix="fj-browser-map-"))
    (work / "root").mkdir(parents=True)
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in CELLS])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, work / "root" / NOTEBOOK)
    server = LabServer(work)
    server.start()
    try:
        yield server
    finally:
        server.stop()
        leftovers = server.alive_descendants()
        if not leftovers:
            shutil.rmtree(work, ignore_errors=True)
        assert not leftovers, f"processes left behind: {leftovers}"


def saved_map_html(path: Path) -> str:
    """The text/html of the saved map cell's widget output ("" if not there yet)."""
    try:
        nb = nbformat.read(path, as_version=4)
    except Exception:  # noqa: BLE001 - a save in progress
        return ""
    outputs = [o for o in nb.cells[-1].get("outputs", []) if WIDGET_VIEW in o.get("data", {})]
    return outputs[-1]["data"].get("text/html", "") if outputs else ""


def test_map_group_widget_in_jupyterlab(lab: LabServer) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    url = lab.url(f"lab/tree/{NOTEBOOK}?reset")
    assert urlparse(url).hostname == "127.0.0.1"
    profile = Path(tempfile.mkdtemp(prefix="fj-chromium-"))
    requests: list[str] = []
    try:
        with sync_api.sync_playwright() as p:
            ctx = p.chromium.launch_persistent_context(
                str(profile),
                executable_path=CHROMIUM,
                headless=True,
                viewport={"width": 1280, "height": 800},
                args=ARGS,
            )
            try:
                page = ctx.pages[0] if ctx.pages else ctx.new_page()
                page.on("request", lambda r: requests.append(r.url))
                page.goto(url, wait_until="load", timeout=WAIT * 1000)
                page.wait_for_selector(".jp-Notebook .jp-CodeCell", timeout=WAIT * 1000)

                def kernel_ready() -> bool:
                    idle = page.query_selector('.jp-Notebook-ExecutionIndicator[data-status="idle"]')
                    kname = page.query_selector(".jp-Toolbar .jp-KernelName")
                    text = (kname.text_content() or "").strip() if kname else ""
                    return bool(idle) and bool(text) and "No Kernel" not in text

                wait_for("kernel ready", kernel_ready)
                page.get_by_role("menuitem", name="Run", exact=True).click()
                page.get_by_role("menuitem", name=re.compile("^Run All Cells")).click()

                try:
                    first = wait_for(
                        "the map widget, running, with a total",
                        lambda: (
                            (r := page.evaluate(READ_JS))
                            and r["state"] == "running"
                            and r["total"] == N
                            and r
                        ),
                        every=0.05,
                    )
                    second = wait_for(
                        "the done count to grow while the map runs",
                        lambda: (
                            (r := page.evaluate(READ_JS))
                            and (r["state"] != "running" or r["done"] > first["done"])
                            and r
                        ),
                        every=0.05,
                    )
                except AssertionError:
                    page.screenshot(path=str(ARTIFACTS / "map-failed.png"))
                    raise
                page.screenshot(path=str(ARTIFACTS / "map-1-live.png"))
                assert second["state"] == "running", (first, second)  # moved before the map ended
                assert 0 <= first["done"] < second["done"] < N, (first, second)
                assert f"of {N}" in second["counts"] and "items/s" in second["rate"], second
                assert second["width"].endswith("%") and second["width"] != "100%", second

                done = wait_for(
                    f"{N} of {N} done",
                    lambda: (r := page.evaluate(READ_JS)) and r["state"] == "done" and r["done"] == N and r,
                )
                page.screenshot(path=str(ARTIFACTS / "map-2-done.png"))
                assert done["total"] == N and done["width"] == "100%", done
                assert done["ptext"] == f"{N}/{N}", done
                assert done["counts"].strip().startswith(f"{N} done · 0 failed · 0 running · 0 queued"), done
                assert done["counts"].strip().endswith(f"of {N}"), done
                assert "items/s" in done["rate"] and "ETA" not in done["rate"], done
                assert not page.evaluate("document.body.innerText.includes('Error displaying widget')")

                saved = lab.root / NOTEBOOK
                html = ""
                for _ in range(20):  # save from Lab (the notebook model holds the updated output)
                    page.keyboard.press("Control+s")
                    until = time.monotonic() + 3
                    while time.monotonic() < until and f"done <b>{N}</b>" not in (
                        html := saved_map_html(saved)
                    ):
                        time.sleep(0.2)
                    if f"done <b>{N}</b>" in html:
                        break
            finally:
                ctx.close()
    finally:
        shutil.rmtree(profile, ignore_errors=True)
    assert f"done <b>{N}</b>" in html and f"of <b>{N}</b>" in html, html
    assert "failed <b>0</b>" in html and "running <b>0</b>" in html and "queued <b>0</b>" in html, html
    assert "finished · " in html and "width:100.0%" in html, html
    assert all(urlparse(u).hostname in ("127.0.0.1", None) for u in requests if u.startswith("http")), (
        requests
    )
