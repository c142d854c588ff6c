"""A large result's cache object goes once nobody can read it again.

A large result's parts (``remote/large.py``) are an object of their own in the cache, kept until
the Runner closes. Once its future has fetched them and is collected, nothing in the kernel can
reach them again unless the future was shared: its ``ref()`` taken (a call's argument, by
flamepy) or the future pickled into a call (``service_ref``). Unshared, the object is deleted
(on a background thread, one ``DELETE`` per object), so the memory or the file it holds is free
for the next one: a loop of large results does not pile them up. The value itself stays valid
(a fetched copy, or a private mapping of a file that stays mapped after it is deleted).
"""

from __future__ import annotations

import queue
import threading
import weakref
from typing import Any

_SHARED = "_flame_shared"
_RELEASE = "_flame_release"

_queue: queue.SimpleQueue[tuple[str, str]] = queue.SimpleQueue()
_thread: list[threading.Thread] = []
_lock = threading.Lock()


def mark_shared(future: Any) -> None:
    """``future``'s result may be read elsewhere: never delete its objects."""
    future.__dict__[_SHARED] = True
    release = future.__dict__.pop(_RELEASE, None)
    if release is not None:
        release.detach()


def release_when_collected(future: Any, objects: list[tuple[str, str]]) -> None:
    """Delete ``objects`` (``(endpoint, key)``) once ``future`` is collected, if still unshared."""
    if not objects or future.__dict__.get(_SHARED):
        return
    release = weakref.finalize(future, _enqueue, tuple(objects))
    release.atexit = False  # the Runner's close deletes everything at exit anyway
    future.__dict__[_RELEASE] = release


def _enqueue(objects: tuple[tuple[str, str], ...]) -> None:
    for item in objects:
        _queue.put(item)
    with _lock:
        if not _thread:
            thread = threading.Thread(target=_drain, name="flame-jupyter-release", daemon=True)
            _thread.append(thread)
            thread.start()


def _drain() -> None:
    import pyarrow.flight as flight

    from flame_jupyter._flamepy import flight_client

    while True:
        endpoint, key = _queue.get()
        try:
            list(flight_client(endpoint).do_action(flight.Action("DELETE", key.encode())))
        except Exception:  # noqa: BLE001 - gone already (the session closed): nothing to free
            pass
