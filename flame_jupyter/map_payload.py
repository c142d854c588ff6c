"""A map chunk's argument, made in the kernel: plain values pickled, notebook objects left to capture."""

from __future__ import annotations

import pickle
from typing import Any

from flame_jupyter.capture.env import is_passthrough


def payload_of(batch: list[tuple[tuple[Any, ...], dict[str, Any]]]) -> tuple[Any, bool]:
    """The chunk's argument: plain values pickled to bytes (no capture engine needed, ~100x
    cheaper), else the list itself (the service's ``prepare_call`` encodes notebook objects)."""
    items = [(tuple(_as_ref(a) for a in args), kwargs) for args, kwargs in batch]
    if all(_plain(a) for args, kwargs in items for a in (*args, *kwargs.values())):
        try:
            return pickle.dumps(items, protocol=5), True
        except Exception:  # noqa: BLE001 - let the capture engine try (and explain)
            pass
    return items, False


def _plain(value: Any, depth: int = 0) -> bool:
    """``value`` holds no notebook object: passthrough values, in builtin containers (3 deep)."""
    if is_passthrough(value):
        return True
    t = type(value)
    if depth >= 3 or t not in (tuple, list, dict, set, frozenset):
        return False
    if t is dict:
        return all(_plain(k, depth + 1) and _plain(v, depth + 1) for k, v in value.items())
    return all(_plain(v, depth + 1) for v in value)


def _as_ref(value: Any) -> Any:
    """A future passed as an item argument travels as its ObjectRef (as flamepy does for calls)."""
    from flamepy.runner.runner import ObjectFuture

    return value.ref() if isinstance(value, ObjectFuture) else value
