"""The status panel widget (one per kernel; see :func:`flame_jupyter.panel`).

It listens to the registry (a change only marks it dirty in the pump), refreshes at most every
``refresh_interval`` seconds while something runs (throughput and counts move), asks Flame for
session counts and embedded-runtime instances at most every ``poll_interval`` seconds on a worker
thread, and goes quiet once nothing has run for a while: no timers, no polling when idle.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import traitlets as t

from flame_jupyter.display.flame_sessions import flame_status
from flame_jupyter.display.panel_static import status_html, status_text
from flame_jupyter.display.panel_status import kernel_status, merge_status
from flame_jupyter.display.panel_view import PANEL_VIEW_KEYS, PanelView
from flame_jupyter.registry import Registry, registry
from flame_jupyter.widgets._base import FlameWidget
from flame_jupyter.widgets._traits import with_view_traits
from flame_jupyter.widgets.pump import Pump, pump

PANEL_KEYS = PANEL_VIEW_KEYS  # the synced fields: PanelView's, in its order


class PanelWidget(with_view_traits(FlameWidget, PanelView)):  # type: ignore[misc]
    """Live status of this kernel's Flame work, with Cancel tasks / Close session buttons.

    Its synced traits are :class:`~flame_jupyter.display.panel_view.PanelView`'s fields.
    """

    _kind = t.Unicode("panel").tag(sync=True)

    def __init__(
        self,
        *,
        reg: Registry | None = None,
        pump: Pump | None = None,
        refresh_interval: float = 1.0,
        poll_interval: float = 2.0,
        poll_flame: bool = True,
    ) -> None:
        self._registry = reg or registry
        self._pump = pump or _default_pump()
        self.refresh_interval = refresh_interval
        self.poll_interval = poll_interval
        self._poll_enabled = poll_flame
        self._flame: dict[str, Any] | None = None
        self._poll_lock = threading.Lock()
        self._polling = False
        self._last_poll = 0.0
        self._force_poll = poll_flame
        self._was_active = False
        self._last_flush = 0.0
        self._due = 0.0  # a delayed flush is already booked until then
        self.flushes = 0
        self.polls = 0
        data = merge_status(kernel_status(self._registry), None)
        super().__init__(carry_lib=True, **{k: data[k] for k in PANEL_KEYS})
        self._registry.subscribe(self._on_registry)
        self._pump.request(self, urgent=True)

    # -- updates --------------------------------------------------------------------------------------
    def _on_registry(self) -> None:
        # Any thread, under the registry's lock: only mark dirty.
        self._pump.request(self)

    def flush(self) -> None:
        """Send the current status (the pump calls this)."""
        if self.comm is None:
            return
        now = time.monotonic()
        wait = self.refresh_interval / 2 - (now - self._last_flush)
        if wait > 0 and not self._force_poll:  # at most two panel messages per refresh interval
            if self._due <= now:
                self._due = now + wait
                self._pump.request(self, delay=wait)
            return
        self._last_flush = now
        self.flushes += 1
        kernel = kernel_status(self._registry)
        data = merge_status(kernel, self._flame)
        with self.hold_sync():
            for key in PANEL_KEYS:
                setattr(self, key, data[key])
        active = kernel["live"] > 0 or kernel["throughput"] > 0
        if self._poll_enabled and (
            self._force_poll
            or (active and now - self._last_poll >= self.poll_interval)
            or (self._was_active and not active)  # one last look once everything finished
        ):
            self._start_poll([row["session_id"] for row in kernel["services"] if row["session_id"]])
        self._was_active = active
        if active and self._due <= now:
            self._due = now + self.refresh_interval
            self._pump.request(self, delay=self.refresh_interval)

    def _start_poll(self, session_ids: list[str]) -> None:
        with self._poll_lock:
            if self._polling:
                return
            self._polling = True
            self._force_poll = False
            self._last_poll = time.monotonic()
        self._pump.submit(self._poll, session_ids)

    def _poll(self, session_ids: list[str]) -> None:
        try:
            self._flame = flame_status(session_ids)
            self.polls += 1
        finally:
            with self._poll_lock:
                self._polling = False
            self._pump.request(self, urgent=True)

    # -- buttons ------------------------------------------------------------------------------------
    def handle_action(self, kind: str, content: dict[str, Any]) -> None:
        session_id = str(content.get("session_id") or "")
        if kind == "refresh":
            self._force_poll = self._poll_enabled
            self._pump.request(self, urgent=True)
        elif kind == "cancel_tasks" and session_id:
            self.cancel_tasks(session_id)
        elif kind == "close_session" and session_id:
            self._pump.submit(self.close_session, session_id)

    def cancel_tasks(self, session_id: str) -> int:
        """Cancel this kernel's unfinished futures of a session; returns how many were asked."""
        asked = 0
        for future in self._registry.live_futures():
            if future.session_id == session_id and not future.done():
                future.cancel()
                asked += 1
        self._force_poll = self._poll_enabled
        self._pump.request(self, urgent=True)
        return asked

    def close_session(self, session_id: str) -> None:
        """Cancel the session's unfinished futures, then close it (its service handle, else flamepy)."""
        self.cancel_tasks(session_id)
        info = self._registry.services.get(session_id)
        try:
            handle = getattr(info, "handle", None)
            if handle is not None and callable(getattr(handle, "close", None)):
                handle.close()
            else:
                import flamepy

                flamepy.close_session(session_id)
            if info is not None:
                self._registry.close_service(session_id)
        except Exception as e:  # noqa: BLE001 - report in the panel
            self._flame = dict(
                self._flame or {}, flame_error=f"closing {session_id} failed: {type(e).__name__}: {e}"
            )
        finally:
            self._force_poll = self._poll_enabled
            self._pump.request(self, urgent=True)

    def close(self) -> None:
        self._registry.unsubscribe(self._on_registry)
        self._pump.forget(self)
        super().close()

    # -- fallbacks ----------------------------------------------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        return {key: getattr(self, key) for key in PANEL_KEYS}

    def text_fallback(self) -> str:
        return status_text(self.snapshot())

    def html_fallback(self) -> str:
        return status_html(self.snapshot())


def _default_pump() -> Pump:
    return pump()
