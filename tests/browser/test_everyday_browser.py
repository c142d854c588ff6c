"""Real browser (JupyterLab on 127.0.0.1, headless Chromium): ``notebooks/06-everyday.ipynb``.

Asserted from the DOM, with a MutationObserver history recorded in the page: the blocking cell's
live widget is visible and its progress bar moves *before* the cell ends; the tqdm future's
output is one bar line; the plot made in ``%%flame`` is an ``<img>``. Screenshots go to
``test-artifacts/browser/everyday-*.png``.
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

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from jupyter_lab_server import LabServer  # noqa: E402

pytestmark = pytest.mark.browser

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "test-artifacts" / "browser"
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
WAIT = 240.0  # generous: Run All starts the embedded runtime first, on a loaded 2-core machine
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

sync_api = pytest.importorskip("playwright.sync_api")
if not Path(CHROMIUM).exists():
    pytest.skip(f"no Chromium at {CHROMIUM}", allow_module_level=True)

# Every change of a visible future view, and whether the training cell was still running then.
OBSERVER_JS = """
() => {
  const vis = (e) => !!e && e.getClientRects().length > 0;
  window.__fjHistory = [];
  const t0 = performance.now();
  let last = "";
  const snap = () => {
    const cells = [...document.querySelectorAll(".jp-CodeCell")];
    const training = cells.find((c) => (c.querySelector(".jp-InputArea")?.textContent || "").includes("--label training"));
    const prompt = training ? (training.querySelector(".jp-InputPrompt")?.textContent || "") : "";
    for (const el of document.querySelectorAll(".fj-future")) {
      if (!vis(el)) continue;
      const bar = el.querySelector(".fj-progress-bar");
      const rec = { label: el.querySelector(".fj-label")?.textContent || "", state: el.dataset.state || "",
                    width: bar && vis(bar) ? bar.style.width : "", prompt };
      const key = JSON.stringify(rec);
      if (key !== last) { last = key; window.__fjHistory.push({ t: Math.round(performance.now() - t0), ...rec }); }
    }
  };
  new MutationObserver(snap).observe(document.body, { subtree: true, childList: true, characterData: true, attributes: true });
}
"""


def wait_for(what: str, fn: Any, timeout: float = WAIT) -> Any:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = fn()
        if last:
            return last
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what} (last: {last!r})")


@pytest.fixture(scope="module")
def lab() -> Any:
    work = Path(tempfile.mkdtemp(prefix="fj-browser-everyday-"))
    server = LabServer(work, {"everyday.ipynb": REPO / "notebooks" / "06-everyday.ipynb"})
    server.start()
    try:
        yield server
    finally:
        server.stop()
        leftovers = server.alive_descendants()
        if not leftovers:
            shutil.rmtree(work, ignore_errors=True)
        assert not leftovers, f"processes left behind: {leftovers}"


def test_everyday_notebook_in_jupyterlab(lab: LabServer) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    url = lab.url("lab/tree/everyday.ipynb?reset")
    assert urlparse(url).hostname == "127.0.0.1"
    profile = Path(tempfile.mkdtemp(prefix="fj-chromium-"))
    requests: list[str] = []
    try:
        with sync_api.sync_playwright() as p:
            ctx = p.chromium.launch_persistent_context(
                str(profile),
                executable_path=CHROMIUM,
                headless=True,
                viewport={"width": 1280, "height": 1000},
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
                page.evaluate(OBSERVER_JS)
                page.get_by_role("menuitem", name="Run", exact=True).click()
                page.get_by_role("menuitem", name=re.compile("^Run All Cells")).click()

                def training_live() -> bool:
                    return any(
                        h["label"] == "training" and h["state"] == "running" and h["width"]
                        for h in page.evaluate("window.__fjHistory")
                    )

                try:
                    wait_for("the blocking cell's live widget with progress", training_live)
                except AssertionError:
                    page.screenshot(path=str(ARTIFACTS / "everyday-failed.png"))
                    raise
                live = page.locator(".fj-future", has=page.locator(".fj-label", has_text="training")).first
                live.scroll_into_view_if_needed(timeout=WAIT * 1000)
                page.screenshot(path=str(ARTIFACTS / "everyday-1-blocking-live.png"))

                def finished() -> bool:
                    prompts = [
                        e.text_content() or ""
                        for e in page.query_selector_all(".jp-CodeCell .jp-InputPrompt")
                    ]
                    busy = any("*" in t for t in prompts)
                    return kernel_ready() and not busy and "ValueError" in page.inner_text(".jp-Notebook")

                wait_for("Run All to reach the error cell", finished)
                history = page.evaluate("window.__fjHistory")
                running = [
                    h for h in history if h["label"] == "training" and h["state"] == "running" and h["width"]
                ]
                widths = {h["width"] for h in running}
                assert len(widths) >= 2, running  # moving
                assert all(h["prompt"].strip() == "[*]:" for h in running), running  # before the cell ended
                done = [h for h in history if h["label"] == "training" and h["state"] == "done"]
                assert done, history

                imgs = page.evaluate(
                    """() => [...document.querySelectorAll('.jp-OutputArea-output img')]
                       .filter((i) => i.getClientRects().length > 0 && i.src.startsWith('data:image/png')).length"""
                )
                assert imgs >= 1, imgs
                plot = page.locator(".jp-OutputArea-output img").first
                plot.scroll_into_view_if_needed(timeout=WAIT * 1000)
                page.screenshot(path=str(ARTIFACTS / "everyday-2-plot.png"))

                steps = page.locator(".fj-future", has=page.locator(".fj-label", has_text="steps")).first
                steps.scroll_into_view_if_needed(timeout=WAIT * 1000)
                wait_for("tqdm future done", lambda: steps.get_attribute("data-state") == "done")
                out = steps.locator(".fj-output").text_content() or ""
                bar_lines = [line for line in out.splitlines() if "steps:" in line]
                assert len(bar_lines) == 1 and "100%" in bar_lines[0], out  # one bar
                assert out.rstrip().endswith("all steps done"), out
                steps.screenshot(path=str(ARTIFACTS / "everyday-3-tqdm.png"))
                page.screenshot(path=str(ARTIFACTS / "everyday-4-final.png"), full_page=True)
                assert not page.evaluate("document.body.innerText.includes('Error displaying widget')")
            finally:
                ctx.close()
    finally:
        shutil.rmtree(profile, ignore_errors=True)
    assert all(urlparse(u).hostname in ("127.0.0.1", None) for u in requests if u.startswith("http")), (
        requests
    )
