"""A result preview for a finished future that carries none: fetched in the background, bounded.

The remote side normally sends a small rich repr with the result (``future.preview``). When it did
not, the widget asks this module on a worker thread (never the kernel's main thread). It first
streams the object from the cache counting bytes and gives up past ``FETCH_LIMIT`` (so a huge
result is never downloaded for a preview); a small result is then fetched with ``future.get()``
(cached on the future, so the user's own ``get()`` is free) and rendered with IPython's formatters.
"""

from __future__ import annotations

from typing import Any

from flame_jupyter.display.bundles import human_size, rich_bundle
from flame_jupyter.display.future_view import describe
from flame_jupyter.display.protocol import ViewedFuture

FETCH_LIMIT = 1 << 20  # bytes: results larger than this are not fetched for a preview


def probe_size(ref: Any, limit: int) -> int | None:
    """Bytes of the cached object if at most ``limit``; -1 if larger; None if it cannot be measured."""
    try:
        import pyarrow.flight as flight

        from flame_jupyter._flamepy import flight_client

        client = flight_client(ref.endpoint)
        reader = client.do_get(flight.Ticket(f"{ref.key}:0".encode()))
    except Exception:  # noqa: BLE001 - unknown size: do not fetch
        return None
    total = 0
    try:
        while True:
            try:
                chunk = reader.read_chunk()
            except StopIteration:
                break
            if chunk.data is not None:
                total += chunk.data.nbytes
            if chunk.app_metadata is not None:
                total += chunk.app_metadata.size
            if total > limit:
                try:
                    reader.cancel()
                except Exception:  # noqa: BLE001
                    pass
                return -1
    except Exception:  # noqa: BLE001
        return None
    return total


def fetch_preview(future: ViewedFuture, limit: int | None = None) -> dict[str, Any]:
    """``{"result": bundle, "result_info": str}`` for a done future (never raises)."""
    limit = FETCH_LIMIT if limit is None else limit
    if getattr(future, "result_inline", False):  # already here: nothing to probe or download
        return _preview_of(future, inline_size(future))
    try:
        ref = future.ref()
    except Exception as e:  # noqa: BLE001
        return {"result": {}, "result_info": f"result not previewed ({type(e).__name__})"}
    size = probe_size(ref, limit)
    if size is None:
        return {
            "result": {},
            "result_info": "result ready in the object cache (not previewed; .get() fetches it)",
        }
    if size < 0:
        return {
            "result": {},
            "result_info": f"result larger than {human_size(limit)}: not previewed (.get() fetches it)",
        }
    return _preview_of(future, size)


def _preview_of(future: ViewedFuture, size: int | None) -> dict[str, Any]:
    try:
        value = future.get()
    except Exception as e:  # noqa: BLE001
        return {"result": {}, "result_info": f"result could not be loaded here: {type(e).__name__}: {e}"}
    info = describe(value) if value is None or size is None else f"{describe(value)} · {human_size(size)}"
    return {"result": rich_bundle(value), "result_info": info}


def inline_size(future: ViewedFuture) -> int | None:
    """The pickled size of a result that came back inline (None if it cannot be pickled here)."""
    import pickle

    try:
        return len(pickle.dumps(future.get(), protocol=5))
    except Exception:  # noqa: BLE001 - a value only dill/cloudpickle can pickle: no size shown
        return None
