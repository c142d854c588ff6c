"""flame_jupyter's own objects that travel into remote code as small references.

A ``Service``, an ``ObjectFuture`` or a map is not refused by the capture (see
:func:`.errors.blocked_reason`) when a reducer is registered for its type: the capture's
pickler saves it as what the reducer returns (``flame_jupyter/service_ref.py`` registers them;
``flame_jupyter/remote/nested.py`` rebuilds them on the executor).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

Reducer = Callable[[Any], tuple[Any, ...]]

_REDUCERS: dict[type, Reducer] = {}
_BY_TYPE: dict[type, Reducer | None] = {}  # every type asked about so far (a pickler asks per object)


def register(cls: type, reducer: Reducer) -> None:
    """Let objects of ``cls`` (and its subclasses) travel as ``reducer(obj)`` (a ``__reduce__`` value)."""
    _REDUCERS[cls] = reducer
    _BY_TYPE.clear()


def reducer_for(obj: Any) -> Reducer | None:
    """The reducer registered for ``obj``'s type (or a base of it), if any."""
    t = type(obj)
    try:
        return _BY_TYPE[t]
    except KeyError:
        pass
    found = next((_REDUCERS[k] for k in t.__mro__ if k in _REDUCERS), None)
    if len(_BY_TYPE) < 4096:
        _BY_TYPE[t] = found
    return found


def reduce_override(obj: Any) -> Any:
    """A pickler's ``reducer_override``: a registered reducer's value, else ``NotImplemented``."""
    reducer = reducer_for(obj)
    return NotImplemented if reducer is None else reducer(obj)
