"""The live view of one ObjectFuture.

It shows the state and elapsed time, which service/task/session it is, a progress bar when the
task reports progress, the tail of its stdout/stderr, the result preview (rich repr) or the remote
error and traceback, and a Cancel button. One comm model per future; updates go through the
throttled :mod:`~flame_jupyter.widgets.pump`. Once the future is finished and its final state sent,
the widget unsubscribes and drops the future: it costs nothing more (no listener, no timer; the
elapsed clock ticks in the browser).

Example
-------
>>> f = scorer(3)          # doctest: +SKIP
>>> f                      # the cell's value: the live widget
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from collections.abc import Callable
from typing import Any

import traitlets as t

from flame_jupyter.display.future_static import snapshot_html, snapshot_text
from flame_jupyter.display.future_view import FUTURE_VIEW_KEYS, FutureView, future_view
from flame_jupyter.display.protocol import ViewedFuture
from flame_jupyter.display.states import DONE, QUEUED, TERMINAL_STATES
from flame_jupyter.widgets._base import FlameWidget
from flame_jupyter.widgets._traits import with_view_traits
from flame_jupyter.widgets.preview import fetch_preview
from flame_jupyter.widgets.pump import Pump, pump

log = logging.getLogger(__name__)

SETTLE_GRACE = 3.0  # seconds a finished future is still watched for late output / a remote preview

SNAPSHOT_KEYS = FUTURE_VIEW_KEYS  # the synced fields: FutureView's, in its order


class FutureWidget(with_view_traits(FlameWidget, FutureView, {"state": QUEUED})):  # type: ignore[misc]
    """Live view of an :class:`~flame_jupyter.futures.ObjectFuture` (one comm model).

    Its synced traits are :class:`~flame_jupyter.display.future_view.FutureView`'s fields.
    """

    _kind = t.Unicode("future").tag(sync=True)

    def __init__(self, future: ViewedFuture, *, pump: Pump | None = None, **kwargs: Any) -> None:
        self._pump = pump or _default_pump()
        self._future: ViewedFuture | None = future
        self._out_seen = 0
        self._out_total = 0
        self._fetched: dict[str, Any] | None = None
        self._fetching = False
        self._detached = False
        self._terminal_at: float | None = None
        self._settled_callbacks: list[Callable[[FutureWidget], None]] = []
        self._dirty = self._dirty_urgent = False
        self._sent_state = QUEUED
        # Listen first: a shown future is kept current by the tracker, so the snapshot below reads
        # what is known instead of asking Flame (two round trips) in the cell's thread.
        future.add_listener(self._on_future)
        snap = self._view(future)
        super().__init__(**snap, **kwargs)
        self._sent_state = snap["state"]
        self._pump.request(self, urgent=True)  # catch a change between the snapshot and now

    # -- life ---------------------------------------------------------------------------------------
    @property
    def future(self) -> ViewedFuture | None:
        """The future while it is watched; None once finished and settled."""
        return self._future

    @property
    def watching(self) -> bool:
        """True while the widget listens to its future (False once finished: no cost left)."""
        return not self._detached

    def _on_future(self, future: ViewedFuture) -> None:
        # Any thread, on every change: mark dirty (state changes first). Already dirty: nothing
        # to do, not even a lock (thousands of output/progress events a second stay cheap).
        urgent = future.known_state != self._sent_state
        if self._dirty_urgent or (self._dirty and not urgent):
            return
        self._dirty = True
        self._dirty_urgent = urgent
        self._pump.request(self, urgent=urgent)

    def _view(self, future: ViewedFuture) -> FutureView:
        output = future.output
        n = len(output)
        if n > self._out_seen:
            self._out_total += sum(len(str(text)) for _, text in output[self._out_seen : n])
            self._out_seen = n
        return future_view(future, result=self._fetched, output_total=self._out_total)

    def flush(self) -> None:
        """Send the future's current state (the pump calls this; one message at most)."""
        future = self._future
        if future is None or self.comm is None:
            return
        self._dirty = self._dirty_urgent = False  # cleared before reading: later changes mark again
        snap = self._view(future)
        with self.hold_sync():
            for key, value in snap.items():
                setattr(self, key, value)
        self._sent_state = snap["state"]
        if snap["state"] in TERMINAL_STATES:
            self._settle(future)

    def _settle(self, future: ViewedFuture) -> None:
        """Finished: fetch a small result's preview (in the background), then stop watching.

        The last output records and a large result's remote preview can arrive just *after* the
        future finished (the tracker reads the call's stream once more), so the widget keeps
        listening until the stream is closed (``future.streams_closed``;
        a future without a call channel has nothing more to say) or ``SETTLE_GRACE`` seconds passed,
        and until its own preview fetch is over. Then it unsubscribes and drops the future.
        """
        now = time.monotonic()
        if self._terminal_at is None:
            self._terminal_at = now
            if not self._stream_closed(future):
                self._pump.request(self, delay=SETTLE_GRACE)
        if (
            future.known_state == DONE
            and not future.preview
            and not self._fetching
            and self._fetched is None
            and not future.result_loaded
        ):
            self._fetching = True
            self._pump.submit(self._fetch, future)
        if self._fetching:
            return
        if self._stream_closed(future) or now - self._terminal_at >= SETTLE_GRACE:
            self._detach()

    @staticmethod
    def _stream_closed(future: ViewedFuture) -> bool:
        return bool(future.streams_closed)  # True too for a call without a stream

    def _fetch(self, future: ViewedFuture) -> None:
        try:
            fetched = fetch_preview(future)
        except Exception as e:  # noqa: BLE001 - fetch_preview does not raise; belt and braces
            fetched = {"result": {}, "result_info": f"result not previewed ({type(e).__name__})"}
        self._fetched = fetched
        self._fetching = False
        self._pump.request(self, urgent=True)

    def _detach(self) -> None:
        future, self._future = self._future, None
        self._detached = True
        if future is not None:
            future.remove_listener(self._on_future)
        self._pump.forget(self)
        callbacks, self._settled_callbacks = self._settled_callbacks, []
        for fn in callbacks:
            try:
                fn(self)
            except Exception:  # noqa: BLE001 - a display update must not break the pump
                log.exception("flame_jupyter: settled callback failed")

    def on_settled(self, fn: Callable[[FutureWidget], None]) -> None:
        """Call ``fn(widget)`` once the future finished and its final state was sent."""
        if self._detached and self._terminal_at is not None:
            fn(self)
        else:
            self._settled_callbacks.append(fn)

    def reattach(self, future: ViewedFuture) -> None:
        """Watch ``future`` again (it is displayed again); settles again once up to date."""
        self._future = future
        self._detached = False
        self._terminal_at = None
        future.add_listener(self._on_future)
        self._pump.request(self, urgent=True)

    def close(self) -> None:
        self._detach()
        super().close()

    # -- buttons ------------------------------------------------------------------------------------
    def handle_action(self, kind: str, content: dict[str, Any]) -> None:
        if kind == "cancel":
            future = self._future
            if future is not None and not future.done():
                future.cancel()
            self._pump.request(self, urgent=True)

    # -- fallbacks ----------------------------------------------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        """The state last sent to the front end."""
        return {key: getattr(self, key) for key in SNAPSHOT_KEYS}

    def text_fallback(self) -> str:
        return snapshot_text(self.snapshot())

    def html_fallback(self) -> str:
        return snapshot_html(self.snapshot())


def _default_pump() -> Pump:
    return pump()


_widgets: weakref.WeakKeyDictionary[Any, FutureWidget] = weakref.WeakKeyDictionary()
_widgets_lock = threading.Lock()


def widget_for(future: ViewedFuture) -> FutureWidget:
    """The (one) widget of a future; displaying a future twice shows two views of one model."""
    with _widgets_lock:
        widget = _widgets.get(future)
        if widget is None or widget.comm is None:
            widget = FutureWidget(future)
            _widgets[future] = widget
        elif not widget.watching:
            widget.reattach(future)  # shown again: pick up anything that arrived since
        return widget
