"""The client end of a call's channel: read its streamed records, ask it to stop.

The executor end is :func:`flame_jupyter.remote.channel.guarded`; the records are declared in
:mod:`flame_jupyter.remote.wire`. Both ends only use the object cache:
the executor appends records to ``stream`` (created on the first record, then patched), the
client creates ``cancel`` to ask for a stop. Keys live under the service's
``<app>/<session>`` prefix, so flamepy's Runner cleanup removes them with everything else.
"""

from __future__ import annotations

import itertools
import os
import threading
import time
import uuid
from typing import TYPE_CHECKING, Any

from flame_jupyter.remote import wire
from flame_jupyter.remote.wire import CALL_KWARG

if TYPE_CHECKING:
    from flame_jupyter.future_state import FutureState


_PROCESS_ID = uuid.uuid4().hex[:16]
_counter = itertools.count(1)


def _new_process_id() -> None:  # a forked child must not repeat its parent's ids
    global _PROCESS_ID, _counter
    _PROCESS_ID, _counter = uuid.uuid4().hex[:16], itertools.count(1)


os.register_at_fork(after_in_child=_new_process_id)


def _cache_storage() -> str:
    """The embedded runtime's object cache storage dir, if this process started it ("" if not)."""
    from flame_jupyter.connection import current

    conn = current()
    runtime = conn.runtime if conn is not None else None
    return getattr(runtime, "cache_storage", "") if runtime is not None else ""


def cancel_request(grace: float | None = None) -> wire.CancelRequest:
    """The value of a cancel object (``grace``: see :class:`~flame_jupyter.remote.wire.CancelRequest`)."""
    value: wire.CancelRequest = {"cancel": True}
    if grace is not None:
        value["grace"] = float(grace)
    return value


class CallChannel:
    """One call's stream and cancel keys, and what has been read of the stream so far."""

    def __init__(self, app: str, session_id: str, cache_endpoint: str) -> None:
        self.id = f"{_PROCESS_ID}{next(_counter):x}"  # unique without a urandom call per call
        prefix = f"{app}/{session_id}"
        self.stream_key = f"{prefix}/fj-{self.id}-out"
        self.cancel_key = f"{prefix}/fj-{self.id}-cancel"
        self.cache_endpoint = cache_endpoint
        self.seen = 0  # records read so far
        self.version = 0  # the stream's version as of the last read
        self._lock = threading.Lock()
        self.cancel_sent_at: float | None = None

    def kwarg(self) -> dict[str, Any]:
        """The value of the ``__flame_call__`` keyword argument for this call."""
        info: wire.CallInfo = {
            "id": self.id,
            "stream": self.stream_key,
            "cancel": self.cancel_key,
            "submitted": time.time(),
        }
        storage = _cache_storage()
        if storage:
            info["storage"] = storage
        return {CALL_KWARG: info}

    def request_cancel(self, grace: float | None = None) -> None:
        """Create the cancel object; the executor interrupts the call when it sees it (and
        abandons code stuck in C after ``grace`` seconds, default its own 3 s)."""
        from flamepy.core import ObjectRef, update_object

        if self.cancel_sent_at is not None:
            return
        self.cancel_sent_at = time.time()
        value = cancel_request(grace)
        update_object(ObjectRef(endpoint=self.cache_endpoint, key=self.cancel_key, version=0), value)

    def poll(self) -> list[Any]:
        """New records since the last poll ([] when the call has written none yet).

        Each read asks only for the patches past the version last read, and keeps nothing:
        the records live in the object cache and, once applied, in the future's bounded output.
        """
        from flame_jupyter import _flamepy

        with self._lock:
            try:
                got = _flamepy.read_since(self.cache_endpoint, self.stream_key, self.version)
            except Exception:  # noqa: BLE001 - not written yet (not found) or not reachable now
                return []
            if got is None:  # nothing new
                return []
            version, patches, full = got
            records = [r for batch in patches for r in (batch or [])]
            if full:  # the whole stream came back: skip what was read before
                records = records[self.seen :]
            self.seen += len(records)
            self.version = max(self.version, version)
            return records


def apply_records(fs: FutureState, records: list[Any]) -> None:
    """Feed streamed records into a call's state (output, progress, displays, preview)."""
    for raw in records:
        rec = wire.decode_record(raw)
        if isinstance(rec, wire.Output):
            fs.running()
            fs.add_output(rec.kind, rec.text)
        elif isinstance(rec, wire.Progress):
            fs.running()
            fs.set_progress(rec.done, rec.total if rec.total is not None else 0.0, rec.message)
        elif isinstance(rec, wire.Display):
            fs.add_display(rec.bundle)
        elif isinstance(rec, wire.Preview):
            fs.set_preview(dict(rec.bundle, **{"application/x-flame-size": rec.size}))


def drain(fs: FutureState, *, only_if_observed: bool = False) -> None:
    """Once the call finished, read its last streamed records now (the executor flushed them
    before it finished).

    With ``only_if_observed``, the read happens only when someone shows the future (a listener:
    widget, cell echo) or it already streamed something; otherwise it is left to the first
    access of ``output``/``displays``/``progress``/``preview``, which reads it then. A call that
    printed nothing and is never looked at costs no extra round trip.
    """
    if fs.streams_closed or not fs.state.terminal:
        return
    call = fs.call
    if only_if_observed and not (getattr(call, "seen", 0) or fs.has_viewer()):
        return
    poll = getattr(call, "poll", None)  # calls without a stream have nothing to read
    if poll is not None:
        apply_records(fs, poll())
    fs.close_streams()
