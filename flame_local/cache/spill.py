"""Objects the cache moved out of memory: one file per payload part under the runtime home (0600),
read back memory-mapped (no copy).

Files are named by a counter, never by key: keys may hold any character Flame accepts.
"""

from __future__ import annotations

import itertools
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

__all__ = ["SpillDir", "SpilledObject"]


@dataclass(frozen=True, eq=False)
class SpilledObject:
    """Where a spilled object's base and deltas are, and what the store needs without reading them."""

    key: str
    version: int
    size: int
    native: bool
    base: Path
    deltas: tuple[tuple[int, Path], ...] = ()

    @property
    def current_version(self) -> int:
        return max((v for v, _ in self.deltas), default=self.version)

    @property
    def files(self) -> list[Path]:
        return [self.base, *(p for _, p in self.deltas)]


class SpillDir:
    """A private directory of spill files with a byte budget."""

    def __init__(self, path: Path, budget: int) -> None:
        self.path = path
        self.budget = budget
        self.used = 0
        self._seq = itertools.count(1)
        self._ready = False

    def _open(self) -> None:
        if not self._ready:
            shutil.rmtree(self.path, ignore_errors=True)  # a previous runtime's files are unreadable
            self.path.mkdir(parents=True, exist_ok=True, mode=0o700)
            os.chmod(self.path, 0o700)
            self._ready = True

    def room(self, size: int) -> bool:
        """Whether ``size`` more bytes fit the budget and the disk (keeping 1 GiB free)."""
        if self.used + size > self.budget:
            return False
        self._open()
        return shutil.disk_usage(self.path).free - size > 1 << 30

    def _file(self, data: pa.Buffer | None = None, table: pa.Table | None = None) -> Path:
        path = self.path / f"{next(self._seq)}.{'arrow' if table is not None else 'bin'}"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            if table is not None:
                with pa.ipc.new_file(f, table.schema) as writer:
                    writer.write_table(table)
            else:
                assert data is not None
                f.write(memoryview(data))
        return path

    def write(
        self,
        key: str,
        version: int,
        size: int,
        data: pa.Buffer | None,
        table: pa.Table | None,
        deltas: list[tuple[int, pa.Buffer]],
    ) -> SpilledObject:
        self._open()
        base = self._file(data=data, table=table)
        parts = tuple((v, self._file(data=d)) for v, d in deltas)
        self.used += size
        return SpilledObject(key, version, size, table is not None, base, parts)

    @staticmethod
    def read_buffer(path: Path) -> pa.Buffer:
        with pa.memory_map(str(path)) as mm:
            return mm.read_buffer()

    @staticmethod
    def read_table(path: Path) -> pa.Table:
        with pa.memory_map(str(path)) as mm:
            return pa.ipc.open_file(mm).read_all()

    def remove(self, obj: SpilledObject) -> None:
        for path in obj.files:
            try:
                path.unlink()
            except FileNotFoundError:
                pass
        self.used -= obj.size

    def close(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)
        self.used = 0
        self._ready = False
