"""``%flame_service --list`` / ``--close-all`` in a real kernel (issue 19): the list names the
``%%flame`` sessions beside the services, and ``--close-all`` closes all of it, checked against the
runtime's session list (flamepy ``list_sessions``, through its frontend) and the status panel."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import flamepy
import pytest

from tests.kernel_helpers import KernelSession
from tests.polling import wait_for

LISTED = "[(r['name'], r['session_id'], r['closed']) for r in panel_status.kernel_status()['services']]"


@pytest.fixture
def kernel(tmp_path: Path, runtime: Any) -> Iterator[KernelSession]:
    env = {"HOME": str(tmp_path), **runtime.client_env()}
    with KernelSession(cwd=tmp_path, extra_env=env) as k:
        r = k.run("%load_ext flame_jupyter")
        assert r.stdout.startswith("flame_jupyter: Flame cluster at"), r.stdout
        yield k


def ok(k: KernelSession, code: str, timeout: float = 120) -> str:
    r = k.execute(code, timeout=timeout)
    assert r.status == "ok", r.error_text() + r.stderr
    return r.stdout


def open_sessions(app: str) -> set[str]:
    return {
        s.id for s in flamepy.list_sessions() if s.application == app and s.state == flamepy.SessionState.OPEN
    }


def test_close_all_closes_sessions_too_and_the_panel_drops_them(kernel: KernelSession) -> None:
    app = f"closeall-{uuid.uuid4().hex[:6]}"
    ok(kernel, f"%config FlameMagics.app = {app!r}")
    ok(kernel, "%%flame --session train\nw = 41")
    ok(kernel, "%%flame --session evaluate\nv = 2")
    ok(kernel, "%%flame\n1 + 1")
    ok(kernel, "%flame_service sq = lambda x: x * x")
    assert kernel.value("sq(3).get(timeout=60)") == 9
    assert len(open_sessions(app)) == 4  # the service, two named sessions, the plain cells' session

    listing = ok(kernel, "%flame_service --list")
    for name in ("sq", "%%flame --session train", "%%flame --session evaluate"):
        assert name in listing, listing

    ok(kernel, "from flame_jupyter.display import panel_status\npanel_status.CLOSED_SHOWN_SECONDS = 0.5")
    shown = kernel.value(LISTED)
    ids = {sid for name, sid, closed in shown if not closed}
    assert ids == open_sessions(app), (shown, open_sessions(app))

    out = ok(kernel, "%flame_service --close-all")
    for name in ("sq", "%%flame --session train", "%%flame --session evaluate"):
        assert name in out, out
    assert "removed the notebook variable sq" in out, out
    assert open_sessions(app) == set()  # closed when the magic returns, not later
    wait_for(lambda: not ({sid for _, sid, _ in kernel.value(LISTED)} & ids), 30, "the panel to drop them")
    assert "no services" in ok(kernel, "%flame_service --list")

    # a closed session is gone for good: the same name starts afresh, on a new Flame session
    ok(kernel, "%%flame --session train\n'w' in dir()")
    assert kernel.value("_.get(timeout=60)") is False
    assert len(open_sessions(app)) == 1 and not (open_sessions(app) & ids)
