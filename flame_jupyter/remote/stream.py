"""A call's printed output and records on the executor: buffered, then patched onto its stream.

Consecutive writes to one stream are kept as parts and become one record (at most
``RECORD_CHARS``) when something else is added or at the next flush, so a million short writes
cost a million list appends, not a million records. A flush sends the records in patches of
about ``PATCH_BYTES`` (each patch is one message; the cache and gRPC limit their size).
"""

from __future__ import annotations

import threading
from typing import Any

from .wire import Output, Record, encode_record

RECORD_CHARS = 1 << 20  # a burst of writes becomes records of at most this many characters
PATCH_BYTES = 4 << 20  # one patch of the stream carries about this much at most


class OutputBuffer:
    """Records not yet sent, and the burst of writes not yet made a record."""

    def __init__(self) -> None:
        self.records: list[Any] = []
        self.lock = threading.Lock()
        self._burst: list[str] = []  # writes to one stream not yet made a record
        self._burst_kind = ""
        self._burst_size = 0

    def add(self, record: Record) -> None:
        """Queue ``record`` for the next flush (as the plain tuple that travels)."""
        if record[0] in ("stdout", "stderr"):
            self.add_text(record[0], record[1])  # type: ignore[arg-type]
            return
        with self.lock:
            self._close_burst()
            self.records.append(encode_record(record))

    def add_text(self, kind: str, text: str) -> None:
        """Queue a write to ``stdout``/``stderr`` (merged with the writes before it)."""
        with self.lock:
            if kind != self._burst_kind:
                self._close_burst()
                self._burst_kind = kind
            self._burst.append(text)
            self._burst_size += len(text)
            if self._burst_size >= RECORD_CHARS:
                self._close_burst(keep_tail=True)

    def _close_burst(self, keep_tail: bool = False) -> None:
        """The pending writes as records of ``RECORD_CHARS`` (under ``lock``); with ``keep_tail``,
        what does not fill a last whole record stays pending."""
        if not self._burst:
            return
        kind, text = self._burst_kind, "".join(self._burst)
        whole = len(text) - len(text) % RECORD_CHARS if keep_tail else len(text)
        for i in range(0, whole, RECORD_CHARS):
            self.records.append(encode_record(Output(kind, text[i : min(i + RECORD_CHARS, whole)])))  # type: ignore[arg-type]
        rest = text[whole:]
        self._burst, self._burst_size = ([rest] if rest else []), len(rest)
        self._burst_kind = kind if rest else ""

    def take(self) -> list[Any]:
        """Every record added so far (pending writes included), leaving none."""
        with self.lock:
            self._close_burst()
            records, self.records = self.records, []
        return records


def create_stream(endpoint: str, key: str, header: Any) -> Any:
    """Create (or replace) the stream object with its header; its ObjectRef."""
    from flamepy.core import ObjectRef, update_object

    return update_object(ObjectRef(endpoint=endpoint, key=key, version=0), header)


def send_records(ref: Any, records: list[Any]) -> Any:
    """Patch ``records`` onto the stream ``ref``, about ``PATCH_BYTES`` a patch; the new ref."""
    from flamepy.core import patch_object

    batch: list[Any] = []
    size = 0
    for record in records:
        n = len(record[1]) if isinstance(record[1], str) else 256
        if batch and size + n > PATCH_BYTES:
            ref = patch_object(ref, batch)
            batch, size = [], 0
        batch.append(record)
        size += n
    if batch:
        ref = patch_object(ref, batch)
    return ref
