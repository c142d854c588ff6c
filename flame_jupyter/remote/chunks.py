"""The executor end of a map's chunk: several items of one map run as one Flame task.

The chunk call's one argument is a list of :data:`~.wire.ChunkItem`; each item runs on its own:
an item's exception is caught and encoded (the same failure text a failed call carries), its
printed output, progress and displays are kept as its own records, and the call returns one
:class:`~.wire.ItemOutcome` per item, in order. Only a cancel (or an exit) stops the whole chunk.
"""

from __future__ import annotations

import pickle
import time
from collections.abc import Callable
from typing import Any

from .channel import _encoded_failure
from .runtime import _rt
from .wire import CHUNK_FORMAT, ChunkItem, ItemOutcome, Record, encode_outcome, encode_record


class _ItemRecorder:
    """Stands in for the call's channel while one item runs: its records are the item's own."""

    def __init__(self) -> None:
        self.records: list[tuple[Any, ...]] = []

    def add(self, record: Record) -> None:
        last = self.records[-1] if self.records else None
        if last is not None and record[0] in ("stdout", "stderr") and last[0] == record[0]:
            self.records[-1] = (last[0], last[1] + record[1])  # one record per burst of writes
        else:
            self.records.append(encode_record(record))


def _resolved(value: Any) -> Any:
    """An ObjectRef argument of an item (another call's result, passed on) as its value."""
    if type(value).__name__ != "ObjectRef" or not type(value).__module__.startswith("flamepy"):
        return value
    from flamepy.core import get_object

    return get_object(value)


def run_chunk(
    call_one: Callable[[tuple[Any, ...], dict[str, Any]], Any], items: list[ChunkItem] | bytes, header: Any
) -> list[tuple[Any, ...]]:
    """Run each item with ``call_one(args, kwargs)``; one encoded outcome per item, in order."""
    if not isinstance(header, dict) or header.get("format") != CHUNK_FORMAT:
        raise RuntimeError(
            f"flame_jupyter: this executor runs map chunks of format {CHUNK_FORMAT}, the kernel sent "
            f"{header!r}: use the same flame_jupyter version on both ends"
        )
    if header.get("packed"):
        items = pickle.loads(items)  # type: ignore[arg-type]
    rt = _rt()
    channel = getattr(rt, "channel", None)
    out: list[tuple[Any, ...]] = []
    try:
        for args, kwargs in items:
            recorder = _ItemRecorder()
            rt.channel = recorder
            started = time.perf_counter()
            try:
                value = call_one(
                    tuple(_resolved(a) for a in args), {k: _resolved(v) for k, v in kwargs.items()}
                )
                outcome = ItemOutcome(True, value, recorder.records, time.perf_counter() - started)
            except Exception as exc:  # noqa: BLE001 - one item's failure is that item's outcome
                text = str(_encoded_failure(exc))
                outcome = ItemOutcome(False, text, recorder.records, time.perf_counter() - started)
            out.append(encode_outcome(outcome))
    finally:
        rt.channel = channel
    return out
