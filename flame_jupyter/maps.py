"""``svc.map(...)``: one function over many inputs, as chunks of Flame tasks, watched as one group.

Example
-------
>>> group = svc.map(range(10_000))          # doctest: +SKIP
>>> group                                  # one live widget: done / failed / running of N, ETA
>>> group.get()[:3]                        # doctest: +SKIP
[0, 1, 4]

The inputs are pulled lazily by one driver thread per map, a chunk at a time (sizes:
:mod:`flame_jupyter.map_chunking`), and each chunk is one ordinary call of the service
(``Service.submit`` with :data:`~flame_jupyter.remote.wire.CHUNK_KWARG`), so capture, offload,
output channel, cancel and failure decoding are the ones every call has. The executor runs each
item on its own (:mod:`flame_jupyter.remote.chunks`); the kernel keeps results per chunk and
feeds the counts only through :class:`~flame_jupyter.map_state.MapState`.
"""

from __future__ import annotations

import itertools
import queue
import threading
import time
from collections.abc import Iterable, Iterator
from typing import Any

from flame_jupyter import map_chunking as rule
from flame_jupyter.errors import CancelledError, FlameJupyterError
from flame_jupyter.failures import decode_failure
from flame_jupyter.map_items import ItemFuture
from flame_jupyter.map_payload import payload_of
from flame_jupyter.map_state import MapState, register
from flame_jupyter.remote.wire import CHUNK_FORMAT, CHUNK_KWARG, ChunkHeader, decode_outcome

POLL = 0.25  # seconds between the driver's looks at its oldest queued chunks


def _total(iterables: tuple[Iterable[Any], ...]) -> int | None:
    try:
        return min(len(it) for it in iterables)  # type: ignore[arg-type]
    except TypeError:
        return None


class _Chunk:
    """One chunk of items: their futures, the call's future once submitted, its end."""

    __slots__ = ("start", "items", "future", "running", "lock", "ended")

    def __init__(self, start: int) -> None:
        self.start = start
        self.items: list[ItemFuture] = []
        self.future: Any = None
        self.running = False
        self.lock = threading.Lock()
        self.ended = threading.Event()  # every item of the chunk finished


class MapFuture:
    """The future of a whole map: results in input order, counts, one live view, cancel-all.

    ``len(group)`` is the number of items (for a generator input: once it is exhausted, so it
    waits for that); ``group[i]`` is item ``i``'s future (``.get()``, ``.ref()``);
    ``iter(group)`` yields results in input order (``ordered=True``) or as they finish.
    """

    def __init__(
        self,
        service: Any,
        method: str | None,
        iterables: tuple[Iterable[Any], ...],
        *,
        star: bool = False,
        chunksize: int | None = None,
        ordered: bool = True,
        return_exceptions: bool = False,
        slots: int | None = None,
    ) -> None:
        if not iterables:
            raise TypeError("map() needs at least one iterable")
        if chunksize is not None and int(chunksize) < 1:
            raise ValueError(f"chunksize must be >= 1, not {chunksize!r}")
        what = service.name if method is None else f"{service.name}.{method}"
        self.label = f"{what}.{'starmap' if star else 'map'}"
        self.service = service.name
        self.session_id = service.session_id
        self.ordered = ordered
        self.return_exceptions = return_exceptions
        self.chunksize = None if chunksize is None else int(chunksize)
        self.slots = slots or rule.instance_slots()
        total = _total(iterables)
        self._fs = MapState(total, self.label, self.service, self.session_id)
        self._fs.owner = self
        self._service = service
        self._method = method
        args: Iterator[Any] = iter(iterables[0]) if star else zip(*iterables, strict=False)
        self._args = ((tuple(a), {}) for a in args)
        self._items: list[ItemFuture] = []
        self._items_cond = threading.Condition()
        self._chunks: list[_Chunk] = []  # in flight, oldest first
        self._finished: queue.Queue[_Chunk] = queue.Queue()
        self._per_item: float | None = None
        self._input_done = total == 0
        self._completion_order: queue.Queue[ItemFuture | None] = queue.Queue()
        register(self._fs)
        self._thread = threading.Thread(target=self._drive, name=f"flame-jupyter-map-{what}", daemon=True)
        self._thread.start()

    # -- the driver ----------------------------------------------------------------------------------
    def _drive(self) -> None:
        fs = self._fs
        looked = time.monotonic()
        try:
            while True:
                while (
                    not fs.exhausted
                    and not fs.cancel_requested
                    and len(self._chunks) < rule.max_in_flight(self.slots, self._measured())
                ):
                    if not self._submit_next():
                        break
                if not self._chunks and (fs.exhausted or fs.cancel_requested or fs.error is not None):
                    break
                try:
                    chunk = self._finished.get(timeout=POLL)
                except queue.Empty:
                    chunk = None
                if chunk is None or time.monotonic() - looked >= POLL:  # running counts stay true
                    self._look_at_queued()
                    looked = time.monotonic()
                if chunk is not None:
                    self._chunks.remove(chunk)
                    self._collect(chunk)
        except BaseException as e:  # noqa: BLE001 - reported through the group's state
            fs.driver_failed(e)
            for chunk in list(self._chunks):
                chunk.future.cancel()
        finally:
            fs.end()
            with self._items_cond:
                self._items_cond.notify_all()
            self._completion_order.put(None)

    def _submit_next(self) -> bool:
        fs = self._fs
        size = rule.next_chunk_size(fs.total, self.slots, self._per_item, self.chunksize)
        try:
            batch = list(itertools.islice(self._args, size))
        except BaseException as e:  # noqa: BLE001 - the user's iterable failed
            fs.input_exhausted()
            fs.driver_failed(e)
            return False
        if not batch:
            self._input_done = True
            fs.input_exhausted()
            return False
        start = fs.pulled
        chunk = _Chunk(start)
        chunk.items = [ItemFuture(self, start + k, chunk) for k in range(len(batch))]
        with self._items_cond:
            self._items.extend(chunk.items)
            self._items_cond.notify_all()
        fs.pulled_items(len(batch))
        try:
            payload, packed = payload_of(batch)
            header: ChunkHeader = {"format": CHUNK_FORMAT, "start": start, "packed": packed}
            chunk.future = self._service.submit(
                self._method,
                (payload,),
                {CHUNK_KWARG: header},
                label=f"{self.label}[{start}:{start + len(batch)}]",
            )
        except BaseException as e:  # noqa: BLE001 - e.g. the service closed, an argument not capturable
            for item in chunk.items:
                item._finish(None, e, [])
            chunk.ended.set()
            fs.items_finished(False, 0, [(it.index, e) for it in chunk.items])
            fs.driver_failed(e)
            return False
        self._chunks.append(chunk)
        chunk.future.add_done_callback(lambda _f, c=chunk: self._finished.put(c))
        if len(batch) < size:
            self._input_done = True
            fs.input_exhausted()
        return True

    def _measured(self) -> bool:
        return self._per_item is not None or self.chunksize is not None

    def _look_at_queued(self) -> None:
        """Notice chunks that started running (the oldest few: Flame runs a session's tasks in order)."""
        for chunk in [c for c in self._chunks if not c.running][: self.slots + 1]:
            if chunk.future.state == "running":
                chunk.running = True
                self._fs.chunk_running(len(chunk.items))

    def _collect(self, chunk: _Chunk) -> None:
        """A chunk's call ended: each item's outcome into its future, the counts into the state."""
        fs = self._fs
        fut = chunk.future
        error = fut.error if fut.done() else None
        if error is None:
            try:
                outcomes = [decode_outcome(raw) for raw in fut.get()]
            except BaseException as e:  # noqa: BLE001 - a result that cannot be read fails its items
                error = e
            else:
                if len(outcomes) != len(chunk.items):
                    error = RuntimeError(
                        f"a map chunk returned {len(outcomes)} outcomes for {len(chunk.items)} items"
                    )
        if error is not None:
            for item in chunk.items:
                item._finish(None, error, [])
                self._completion_order.put(item)
            chunk.ended.set()
            if isinstance(error, CancelledError):
                fs.items_cancelled(chunk.running, len(chunk.items))
            else:
                fs.items_finished(chunk.running, 0, [(it.index, error) for it in chunk.items])
            return
        failed: list[tuple[int, BaseException]] = []
        seconds = 0.0
        for item, outcome in zip(chunk.items, outcomes, strict=True):
            seconds += outcome.seconds
            if outcome.ok:
                item._finish(outcome.value, None, outcome.records)
            else:
                err = decode_failure(_TextError(outcome.value))
                item._finish(None, err, outcome.records)
                failed.append((item.index, err))
            self._completion_order.put(item)
        chunk.ended.set()
        per_item = seconds / max(1, len(outcomes))
        self._per_item = per_item if self._per_item is None else (self._per_item + per_item) / 2
        fs.items_finished(chunk.running, len(outcomes) - len(failed), failed)

    # -- the user's face -----------------------------------------------------------------------------
    @property
    def counts(self) -> dict[str, Any]:
        """``{"total", "done", "failed", "cancelled", "running", "queued"}``; total None until known."""
        return self._fs.counts()

    @property
    def throughput(self) -> float:
        """Items finished per second."""
        return self._fs.throughput()

    @property
    def eta(self) -> float | None:
        """Seconds left at the current throughput (None: unknown)."""
        return self._fs.eta()

    @property
    def elapsed(self) -> float:
        return self._fs.elapsed()

    @property
    def failures(self) -> list[tuple[int, BaseException]]:
        """The first failed items ``(index, exception)``, by input index (a few)."""
        return list(self._fs.failures)

    def done(self) -> bool:
        return self._fs.ended

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until every item finished; True if they did in time."""
        return self._fs.wait(timeout)

    def cancel(self) -> bool:
        """Cancel every item not finished yet (running chunks stop; the rest is never sent)."""
        if self._fs.ended:
            return False
        self._fs.request_cancel()
        for chunk in list(self._chunks):
            chunk.future.cancel()
        return True

    def get(self, timeout: float | None = None) -> list[Any]:
        """All results in input order. Raises the first failure (by input index), unless
        ``return_exceptions=True`` was given: then exceptions are in place of their results."""
        if not self._fs.wait(timeout):
            raise TimeoutError(f"{self.label}: not finished within {timeout} s ({self._progress_text()})")
        if self._fs.error is not None and not self.return_exceptions:
            raise self._fs.error
        out = []
        for item in self._items:
            err = item.error
            if err is not None and not self.return_exceptions:
                raise err
            out.append(err if err is not None else item._value)
        if self._fs.cancel_requested and not self._input_done and not self.return_exceptions:
            raise CancelledError(f"{self.label} was cancelled before all its inputs were sent")
        return out

    result = get

    def __iter__(self) -> Iterator[Any]:
        if self.ordered:
            for i in itertools.count():
                item = self._item(i)
                if item is None:
                    return
                yield self._value_of(item)
        else:
            while True:
                item = self._completion_order.get()
                if item is None:
                    self._completion_order.put(None)
                    return
                yield self._value_of(item)

    def _value_of(self, item: ItemFuture) -> Any:
        item.wait()
        if item.error is not None:
            if self.return_exceptions:
                return item.error
            raise item.error
        return item._value

    def _item(self, index: int) -> ItemFuture | None:
        """Item ``index`` once pulled (waits for the driver), None past the end."""
        with self._items_cond:
            while index >= len(self._items) and not self._fs.exhausted and not self._fs.ended:
                self._items_cond.wait(POLL)
            return self._items[index] if index < len(self._items) else None

    def __len__(self) -> int:
        with self._items_cond:
            while not self._fs.exhausted and not self._fs.ended:
                self._items_cond.wait(POLL)
        return int(self._fs.total or 0)

    def __getitem__(self, index: int) -> ItemFuture:
        if index < 0:
            index += len(self)
        item = self._item(index) if index >= 0 else None
        if item is None:
            raise IndexError(f"{self.label} has no item {index}")
        return item

    def __await__(self) -> Any:
        import asyncio

        async def _wait() -> MapFuture:
            await asyncio.to_thread(self._fs.wait, None)
            return self

        return _wait().__await__()

    # -- listeners (views) ---------------------------------------------------------------------------
    def add_listener(self, fn: Any) -> None:
        self._fs.add_listener(fn)
        if self._fs.ended:
            fn(self)

    def remove_listener(self, fn: Any) -> None:
        self._fs.remove_listener(fn)

    # -- display -------------------------------------------------------------------------------------
    def _progress_text(self) -> str:
        c = self._fs.counts()
        total = "?" if c["total"] is None else c["total"]
        return f"{c['done']} done, {c['failed']} failed, {c['running']} running of {total}"

    def __repr__(self) -> str:
        return f"<MapFuture {self.label!r} {self._progress_text()} session={self.session_id}>"

    def show(self) -> Any:
        """Display the live view; the saved output shows the final counts once finished."""
        from flame_jupyter.map_display import show_map

        return show_map(self)

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, Any]:
        from flame_jupyter.map_display import map_mimebundle

        return map_mimebundle(self)


class _TextError(Exception):
    """An item's failure text, in the shape :func:`decode_failure` reads."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.message = text


def start_map(
    service: Any, method: str | None, iterables: tuple[Iterable[Any], ...], **kwargs: Any
) -> MapFuture:
    """What ``Service.map`` / ``starmap`` (and their method forms) call: ``svc.map(*iterables,
    chunksize=None, ordered=True, return_exceptions=False)``; ``svc.method.map(...)`` for a method."""
    if method is None and service.kind in ("class", "instance"):
        raise TypeError(
            f"service {service.name!r} serves a {service.kind}; map one of its methods: svc.<method>.map(...)"
        )
    if service.closed:
        raise FlameJupyterError(f"service {service.name!r} is closed")
    return MapFuture(service, method, iterables, **kwargs)
