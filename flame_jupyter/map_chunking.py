"""How many items of a map share one Flame task (a chunk), and how many chunks are in flight.

The rule (pure; :mod:`flame_jupyter.maps` applies it as results come in):

- a chunk should run about :data:`TARGET_CHUNK_SECONDS` (50-200 ms): long enough that the
  per-task overhead (a task message, a result object, ~ms) is amortised, short enough that the
  group's progress moves several times a second per instance;
- the first chunks are small (:data:`FIRST_CHUNK` items) so the per-item time is measured
  quickly; later chunks are sized from the measured per-item time (executor-side seconds);
- when the number of items is known, no chunk is larger than ``N / (MIN_CHUNKS_PER_SLOT * slots)``,
  so every instance slot gets at least :data:`MIN_CHUNKS_PER_SLOT` chunks and all stay busy;
- at most ``IN_FLIGHT_PER_SLOT * slots`` chunks are submitted and unfinished at once
  (backpressure: inputs are pulled only as fast as chunks finish).

``chunksize=`` set by the user fixes the size (the in-flight bound still applies).
"""

from __future__ import annotations

import math
import os

TARGET_CHUNK_SECONDS = 0.1
MIN_CHUNK_SECONDS = 0.05
MAX_CHUNK_SECONDS = 0.2
MIN_CHUNKS_PER_SLOT = 4
FIRST_CHUNK = 16
MAX_CHUNK = 10_000  # items per chunk when the number of items is unknown
IN_FLIGHT_PER_SLOT = 3


def instance_slots() -> int:
    """How many instances can run the map's chunks at once (the embedded runtime: one per core).

    ``FLAME_JUPYTER_MAP_SLOTS`` overrides it (e.g. a cluster with more executors than local cores).
    """
    env = os.environ.get("FLAME_JUPYTER_MAP_SLOTS", "").strip()
    if env.isdigit() and int(env) > 0:
        return int(env)
    return max(1, os.cpu_count() or 1)


def chunk_cap(total: int | None, slots: int) -> int:
    """The largest automatic chunk: at least ``MIN_CHUNKS_PER_SLOT`` chunks per slot when ``total`` is known."""
    if total is None:
        return MAX_CHUNK
    return max(1, min(MAX_CHUNK, math.ceil(total / (MIN_CHUNKS_PER_SLOT * max(1, slots)))))


def first_chunk_size(total: int | None, slots: int, chunksize: int | None = None) -> int:
    """The size of the first chunks (before anything was measured)."""
    if chunksize is not None:
        return max(1, int(chunksize))
    return min(FIRST_CHUNK, chunk_cap(total, slots))


def next_chunk_size(
    total: int | None, slots: int, seconds_per_item: float | None, chunksize: int | None = None
) -> int:
    """The size of the next chunk, from the per-item run time measured so far (None: not yet)."""
    if chunksize is not None:
        return max(1, int(chunksize))
    if seconds_per_item is None:
        return first_chunk_size(total, slots)
    ideal = TARGET_CHUNK_SECONDS / max(seconds_per_item, 1e-9)
    return max(1, min(chunk_cap(total, slots), int(ideal)))


def max_in_flight(slots: int, measured: bool = True) -> int:
    """How many chunks may be submitted and unfinished at once (one per slot until the first
    chunk was measured: the small first chunks are not queued up behind each other)."""
    if not measured:
        return max(1, slots)
    return max(2, IN_FLIGHT_PER_SLOT * max(1, slots))
