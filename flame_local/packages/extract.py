"""Stage 2, extract: unpack tar/zip archives after validating *every* member first.

No absolute paths, no ``..``, no links leaving the target, no devices: nothing is ever written
outside the target directory.
"""

from __future__ import annotations

import os
import posixpath
import shutil
import stat
import tarfile
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from flame_local.packages.errors import PackageError

__all__ = ["archive_kind", "extract"]

_CHUNK = 1 << 20
_SYMLINK_BUDGET = 40


_TAR_SUFFIXES = (
    (".tar.gz", "r:gz"),
    (".tgz", "r:gz"),
    (".tar.bz2", "r:bz2"),
    (".tbz2", "r:bz2"),
    (".tar.xz", "r:xz"),
    (".txz", "r:xz"),
    (".tar", "r:"),
)


def archive_kind(name: str) -> str | None:
    """``"zip"``, a ``tarfile`` read mode (``"r:gz"``, ...) or ``None`` for a plain (non-archive) file."""
    lower = name.lower()
    if lower.endswith(".zip"):
        return "zip"
    for suffix, mode in _TAR_SUFFIXES:
        if lower.endswith(suffix):
            return mode
    return None


@dataclass
class _Entry:
    raw: str
    parts: tuple[str, ...]
    kind: str  # "dir" | "file" | "symlink" | "hardlink"
    link: str = ""
    executable: bool = False
    mtime: float | None = None
    source: Any = None


def extract(archive: Path, target: Path) -> None:
    """Unpack ``archive`` into ``target`` (created if missing); a non-archive file is copied as-is.

    All members are validated before anything is written; any absolute path, ``..`` component, link
    resolving outside ``target``, device or FIFO raises ``PackageError(stage="extract")`` naming it.
    Files are written ``0o600`` (``0o700`` if executable), directories ``0o700``.
    """
    archive, target = Path(archive), Path(target)
    if not archive.is_file():
        raise PackageError("extract", f"package file not found: {archive}")
    kind = archive_kind(archive.name)
    try:
        target.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise PackageError("extract", f"cannot create {target}: {exc}") from None
    root = Path(os.path.realpath(target))
    if kind is None:
        dest = root / archive.name
        try:
            shutil.copyfile(archive, dest)
            os.chmod(dest, 0o700 if os.stat(archive).st_mode & 0o100 else 0o600)
        except OSError as exc:
            raise PackageError("extract", f"cannot copy {archive.name}: {exc}") from None
        return
    if kind == "zip":
        _extract_zip(archive, root)
    else:
        _extract_tar(archive, root, kind)


def _extract_tar(archive: Path, root: Path, mode: str) -> None:
    label = archive.name
    try:
        with tarfile.open(archive, mode) as tar:  # type: ignore[call-overload]
            entries = [_tar_entry(m) for m in tar.getmembers()]
            _validate(entries)

            def opener(e: _Entry) -> IO[bytes]:
                stream = tar.extractfile(e.source)
                if stream is None:
                    raise PackageError("extract", f"member {e.raw!r} has no data")
                return stream

            _write(entries, root, opener)
    except PackageError:
        raise
    except (tarfile.TarError, EOFError, OSError, ValueError, KeyError) as exc:
        raise PackageError("extract", f"cannot read archive {label!r}: {exc}") from None


def _tar_entry(m: tarfile.TarInfo) -> _Entry:
    if m.ischr() or m.isblk() or m.isfifo():
        raise PackageError("extract", f"member {m.name!r} is a device or FIFO")
    parts = _member_parts(m.name)
    if m.isdir():
        return _Entry(m.name, parts, "dir", source=m)
    if m.issym():
        return _Entry(m.name, parts, "symlink", link=m.linkname, source=m)
    if m.islnk():
        return _Entry(
            m.name,
            parts,
            "hardlink",
            link=m.linkname,
            executable=bool(m.mode & 0o100),
            mtime=m.mtime,
            source=m,
        )
    if m.isreg():
        return _Entry(m.name, parts, "file", executable=bool(m.mode & 0o100), mtime=m.mtime, source=m)
    raise PackageError("extract", f"member {m.name!r} has an unsupported type {m.type!r}")


def _extract_zip(archive: Path, root: Path) -> None:
    label = archive.name
    try:
        with zipfile.ZipFile(archive) as zf:
            entries = []
            for info in zf.infolist():
                entries.append(_zip_entry(zf, info))
            _validate(entries)
            _write(entries, root, lambda e: zf.open(e.source))
    except PackageError:
        raise
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError, ValueError, KeyError) as exc:
        raise PackageError("extract", f"cannot read archive {label!r}: {exc}") from None


def _zip_entry(zf: zipfile.ZipFile, info: zipfile.ZipInfo) -> _Entry:
    name = info.filename.replace("\\", "/")
    mode = (info.external_attr >> 16) & 0xFFFF
    fmt = stat.S_IFMT(mode)
    if fmt and (stat.S_ISCHR(mode) or stat.S_ISBLK(mode) or stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode)):
        raise PackageError("extract", f"member {info.filename!r} is a device or FIFO")
    if info.flag_bits & 0x1:
        raise PackageError("extract", f"member {info.filename!r} is encrypted")
    parts = _member_parts(name, raw=info.filename)
    try:
        mtime: float | None = time.mktime((*info.date_time, 0, 0, -1))
    except (OverflowError, ValueError):
        mtime = None
    if info.is_dir() or stat.S_ISDIR(mode):
        return _Entry(info.filename, parts, "dir", source=info)
    if stat.S_ISLNK(mode):
        link = zf.read(info).decode("utf-8", "surrogateescape")
        return _Entry(info.filename, parts, "symlink", link=link, source=info)
    return _Entry(info.filename, parts, "file", executable=bool(mode & 0o100), mtime=mtime, source=info)


def _member_parts(name: str, *, raw: str | None = None) -> tuple[str, ...]:
    """Split a member name into safe components; refuse absolute paths and any ``..``."""
    raw = name if raw is None else raw
    if "\x00" in name:
        raise PackageError("extract", f"member {raw!r} has a NUL byte in its name")
    if name.startswith("/"):
        raise PackageError("extract", f"member {raw!r} has an absolute path")
    comps = [c for c in name.split("/") if c not in ("", ".")]
    if ".." in comps:
        if posixpath.normpath(name).split("/")[0] == "..":
            raise PackageError("extract", f"member {raw!r} escapes the target directory")
        raise PackageError("extract", f"member {raw!r} has a '..' path component")
    return tuple(comps)


class _Escape(Exception):
    pass


class _Loop(Exception):
    pass


def _walk(start: list[str], rel: str, links: dict[tuple[str, ...], str], budget: list[int]) -> list[str]:
    """Resolve ``rel`` from ``start`` like the OS would, following the archive's symlinks."""
    if rel.startswith("/"):
        raise _Escape
    stack = list(start)
    for comp in rel.split("/"):
        if comp in ("", "."):
            continue
        if comp == "..":
            if not stack:
                raise _Escape
            stack.pop()
            continue
        stack.append(comp)
        target = links.get(tuple(stack))
        if target is not None:
            budget[0] -= 1
            if budget[0] < 0:
                raise _Loop
            stack = _walk(stack[:-1], target, links, budget)
    return stack


def _validate(entries: list[_Entry]) -> None:
    """Check the whole archive before writing anything.

    Every symlink ever defined counts (even if a later member replaces it): no member may sit below
    one, and each must resolve inside the target when followed the way the OS would.
    """
    files: set[tuple[str, ...]] = set()
    links: dict[tuple[str, ...], str] = {}
    for e in entries:
        if not e.parts and e.kind != "dir":
            raise PackageError("extract", f"member {e.raw!r} has an empty name")
        if e.kind == "hardlink":
            try:
                link_parts = _member_parts(e.link)
            except PackageError:
                raise PackageError(
                    "extract", f"hardlink {e.raw!r} -> {e.link!r} points outside the target directory"
                ) from None
            if link_parts not in files:
                raise PackageError(
                    "extract",
                    f"hardlink {e.raw!r} -> {e.link!r} does not refer to an earlier file in the archive",
                )
        if e.kind in ("file", "hardlink"):
            files.add(e.parts)
        else:
            files.discard(e.parts)
        if e.kind == "symlink":
            links[e.parts] = e.link
    if not links:
        return
    for e in entries:
        # Members are written at their literal path: none may sit below a symlink.
        for i in range(1, len(e.parts)):
            if e.parts[:i] in links:
                raise PackageError(
                    "extract", f"member {e.raw!r} is inside symlinked directory {'/'.join(e.parts[:i])!r}"
                )
    for e in entries:
        if e.kind != "symlink":
            continue
        try:
            _walk(list(e.parts[:-1]), e.link, {**links, e.parts: e.link}, [_SYMLINK_BUDGET])
        except _Escape:
            raise PackageError(
                "extract", f"symlink {e.raw!r} -> {e.link!r} points outside the target directory"
            ) from None
        except _Loop:
            raise PackageError(
                "extract", f"symlink {e.raw!r} -> {e.link!r} is part of a symlink loop"
            ) from None


def _write(entries: list[_Entry], root: Path, opener: Callable[[_Entry], IO[bytes]]) -> None:
    for e in entries:
        if not e.parts:
            continue
        try:
            if e.kind == "dir":
                _make_dirs(root, e.parts)
                continue
            parent = _make_dirs(root, e.parts[:-1])
            dest = parent / e.parts[-1]
            _clear(dest, e.raw)
            if e.kind == "symlink":
                os.symlink(e.link, dest)
                continue
            flags = (
                os.O_WRONLY
                | os.O_CREAT
                | os.O_EXCL
                | getattr(os, "O_NOFOLLOW", 0)
                | getattr(os, "O_CLOEXEC", 0)
            )
            fd = os.open(dest, flags, 0o700 if e.executable else 0o600)
            with os.fdopen(fd, "wb") as out, opener(e) as stream:
                shutil.copyfileobj(stream, out, _CHUNK)
            if e.mtime is not None:
                try:
                    os.utime(dest, (e.mtime, e.mtime))
                except (OSError, OverflowError, ValueError):
                    pass
        except PackageError:
            raise
        except OSError as exc:
            raise PackageError("extract", f"cannot write member {e.raw!r}: {exc.strerror or exc}") from None


def _make_dirs(root: Path, parts: tuple[str, ...]) -> Path:
    """Create ``root/parts`` one level at a time, never following a symlink."""
    cur = root
    for comp in parts:
        cur = cur / comp
        try:
            st = os.lstat(cur)
        except FileNotFoundError:
            os.mkdir(cur, 0o700)
            continue
        if stat.S_ISLNK(st.st_mode):
            raise PackageError(
                "extract", f"path {str(cur.relative_to(root))!r} is a symlink in the target directory"
            )
        if not stat.S_ISDIR(st.st_mode):
            raise PackageError("extract", f"path {str(cur.relative_to(root))!r} is not a directory")
    return cur


def _clear(dest: Path, raw: str) -> None:
    try:
        st = os.lstat(dest)
    except FileNotFoundError:
        return
    if stat.S_ISDIR(st.st_mode):
        raise PackageError("extract", f"member {raw!r} would replace a directory")
    os.unlink(dest)
