"""The executor end of coalesced calls: several queued calls of one service method as one task.

Each item runs exactly as it would alone (:func:`.channel.guarded` with the item's own channel:
its output streams live, its cancel key is watched, a cancel before its start skips it); its
failure is caught and encoded as the item's outcome, so one call's exception never touches the
others. The task returns one :class:`~.wire.ItemOutcome` per item, in order.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from .channel import CANCEL_CHECK_AFTER, RemoteFailure, guarded
from .chunks import _resolved
from .wire import BATCH_FORMAT, ItemOutcome, encode_outcome, is_batch


def guarded_call(
    call: Any, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any], env: Any
) -> Any:
    """:func:`.channel.guarded` for one call, or for each call of a batch."""
    if not is_batch(call):
        return guarded(call, fn, args, kwargs, env)
    if call.get("format") != BATCH_FORMAT:
        raise RuntimeError(
            f"flame_jupyter: this executor runs call batches of format {BATCH_FORMAT}, the kernel sent "
            f"{call.get('format')!r}: use the same flame_jupyter version on both ends"
        )
    out: list[tuple[Any, ...]] = []
    cancels = _BatchCancels(call.get("cancel"))
    for item_args, item_kwargs, item_env, item_call in call["batch"]:
        started = time.perf_counter()
        try:
            value = guarded(
                cancels.checked(item_call),
                fn,
                tuple(_resolved(a) for a in item_args),
                {k: _resolved(v) for k, v in item_kwargs.items()},
                item_env,
            )
            outcome = ItemOutcome(True, value, [], time.perf_counter() - started)
        except RemoteFailure as exc:  # the item's failure, encoded by guarded: its outcome
            outcome = ItemOutcome(False, str(exc), [], time.perf_counter() - started)
        out.append(encode_outcome(outcome))
    return out


class _BatchCancels:
    """One cache read per :data:`~.channel.CANCEL_CHECK_AFTER` for the whole batch, not one per item.

    The kernel creates the batch's cancel key after an item's own: while it is absent, no item
    that starts now was cancelled, so the item skips its own before-start read (its ``submitted``
    time is set to now); once it exists, every item checks its own key as a lone call does.
    """

    def __init__(self, key: str | None) -> None:
        self._key = key
        self._checked_at = -1.0
        self._any = key is None

    def checked(self, item_call: Any) -> Any:
        if self._any or not isinstance(item_call, dict):
            return item_call
        now = time.monotonic()
        if now - self._checked_at >= CANCEL_CHECK_AFTER:
            self._any = _exists(self._key)
            self._checked_at = time.monotonic()
        return item_call if self._any else dict(item_call, submitted=time.time())


_ENDPOINT: list[str] = []  # the cache endpoint of this executor, looked up once


def _exists(key: Any) -> bool:
    from flamepy.core import ObjectRef, get_object

    try:
        if not _ENDPOINT:
            from flamepy.core.types import FlameContext

            _ENDPOINT.append(FlameContext().cache.endpoint)
        get_object(ObjectRef(endpoint=_ENDPOINT[0], key=key, version=0))
        return True
    except Exception:  # noqa: BLE001 - not found (the usual case) or unreachable
        return False
