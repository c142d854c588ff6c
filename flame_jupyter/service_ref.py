"""What a Service, an ObjectFuture or a map becomes in remote code: a small reference.

Registered with the capture (:mod:`flame_jupyter.capture.references`), so notebook code that
uses one (a global, an argument, a ``%%flame`` cell) can be sent; the formats are
:class:`~flame_jupyter.remote.wire.ServiceRef`, ``FutureRef`` and ``ValuesRef``, and
:mod:`flame_jupyter.remote.nested` rebuilds them as working clients on the executor.

- a service: app, session, kind, methods, payload id, endpoints, the capture threshold, and the
  notebook globals its code uses now (a service reached again while its own globals are being
  captured -- a recursive service -- travels without them: its calls send the globals the
  executor's namespace of that service has);
- a future: its task (watched there) and, once known, its result's ObjectRef;
- a map item, or a whole map: waits until it finished (the results are in the notebook), then
  travels as an ObjectRef of its value(s).
"""

from __future__ import annotations

import threading
from typing import Any

from flame_jupyter.capture.references import register
from flame_jupyter.connection import current
from flame_jupyter.futures import ObjectFuture
from flame_jupyter.map_items import ItemFuture
from flame_jupyter.maps import MapFuture
from flame_jupyter.remote.channel import RemoteAPI
from flame_jupyter.remote.wire import NESTED_FORMAT, FlameEndpoints, FutureRef, ServiceRef, ValuesRef
from flame_jupyter.result_release import mark_shared

_capturing = threading.local()  # session ids whose globals are being captured right now


def _endpoints(cache_endpoint: str | None = None) -> FlameEndpoints:
    conn = current()
    if conn is None:
        raise RuntimeError(
            "cannot send a service into remote code: this process is not connected to Flame "
            "(call flame_jupyter.connect() or %load_ext flame_jupyter first)"
        )
    return {"endpoint": conn.endpoint, "cache_endpoint": cache_endpoint or conn.cache_endpoint}


def service_reference(svc: Any) -> ServiceRef:
    """The reference a :class:`~flame_jupyter.runner.Service` travels as."""
    if svc.closed:
        raise RuntimeError(f"service {svc.name!r} is closed")
    captured = svc._captured
    stack: set[str] = _capturing.__dict__.setdefault("sessions", set())
    env = None
    if not captured.snapshot and svc.session_id not in stack:
        stack.add(svc.session_id)
        try:
            env = captured.env()
        finally:
            stack.discard(svc.session_id)
    return {
        "format": NESTED_FORMAT,
        "app": svc.app,
        "session": svc.session_id,
        "name": svc.name,
        "kind": svc.kind,
        "methods": list(svc.methods),
        "payload": captured.state["id"],
        "threshold": captured.state.get("threshold"),
        "env": env,
        **_endpoints(svc._runner.cache_endpoint),
    }


def _reduce_service(svc: Any) -> tuple[Any, ...]:
    return (RemoteAPI("service_ref"), (service_reference(svc),))


def register_service(cls: type) -> None:
    """Let services (``cls``: :class:`~flame_jupyter.runner.Service`) travel as references."""
    register(cls, _reduce_service)


def _reduce_future(fut: ObjectFuture) -> tuple[Any, ...]:
    mark_shared(fut)  # the executor reads its result (large parts included)
    ref = None
    if fut.done() and fut.error is None:
        ref = fut.ref().encode()
    call = fut._fs.call
    state: FutureRef = {
        "format": NESTED_FORMAT,
        "label": fut.label,
        "session": fut.session_id or None,
        "task": None if fut.coalesced else fut.task_id,  # a batch's task holds many results
        "ref": ref,
        "cancel": getattr(call, "cancel_key", None),
        **_endpoints(),
    }
    if state["task"] is None and ref is None:  # no task to follow: wait for the result here
        state["ref"] = fut.ref().encode()
    return (RemoteAPI("future_ref"), (state,))


def _reduce_item(item: ItemFuture) -> tuple[Any, ...]:
    state: FutureRef = {
        "format": NESTED_FORMAT,
        "label": item.label,
        "session": None,
        "task": None,
        "ref": item.ref().encode(),
        "cancel": None,
        **_endpoints(),
    }
    return (RemoteAPI("future_ref"), (state,))


def _reduce_map(group: MapFuture) -> tuple[Any, ...]:
    from flamepy.core import put_object

    values = group.get()
    runner = group._service._runner
    ref = put_object(getattr(runner, "_shared_prefix", f"{runner.name}/shared"), values)
    state: ValuesRef = {
        "format": NESTED_FORMAT,
        "label": group.label,
        "ref": ref.encode(),
        "count": len(values),
        **_endpoints(),
    }
    return (RemoteAPI("values_ref"), (state,))


register(ObjectFuture, _reduce_future)
register(ItemFuture, _reduce_item)
register(MapFuture, _reduce_map)
