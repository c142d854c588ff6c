"""Application packages: fetch, safe extraction and installation.

Flame v0.6.0 (``executor_manager/src/appmgr``) downloads an application's ``url``, unpacks it into a
fresh ``src`` directory and runs ``uv pip install --target <deps> .`` so that the instance process can
import the user's code (cloudpickle pickles module-level functions and classes *by reference*).

This module does the same job for a single machine without needing a package index:

* :func:`fetch` copies ``file://`` URLs, downloads ``http(s)://`` URLs and reads ``grpc://`` cache
  URLs (``grpc://host:port/<app>/pkg/<app>.tar.gz``) through an in-process callable or Arrow Flight.
* :func:`extract` unpacks tar/zip archives after validating *every* member first (no absolute paths,
  no ``..``, no links leaving the target, no devices); nothing is ever written outside the target.
* :func:`install` reads the project's declared requirements, pip-installs only those the target
  interpreter does not already satisfy, and makes the project importable through ``PYTHONPATH``
  (``<deps>``, the src-layout roots, ``<src>``) without building a wheel unless the project needs one.
* :func:`prepare` chains the three and reports failures as ``PackageError`` whose ``str()`` is the
  detail Flame puts into a bind failure: ``application installation failed: <stage>: <message>``.
"""

from __future__ import annotations

import ast
import configparser
import json
import os
import posixpath
import shutil
import signal
import stat
import subprocess
import sys
import tarfile
import time
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import IO, Any

__all__ = [
    "InstallResult",
    "PackageError",
    "PreparedPackage",
    "archive_kind",
    "extract",
    "fetch",
    "install",
    "prepare",
]

PROJECT_FILES = ("pyproject.toml", "setup.py", "setup.cfg")
_GRPC_SCHEMES = {"grpc", "grpc+tcp", "grpcs", "grpc+tls"}
_DEFAULT_CACHE_PORT = 9090
_CHUNK = 1 << 20
_TAIL_LINES = 20
_SYMLINK_BUDGET = 40
# Build backends that compile native code: a PYTHONPATH entry cannot replace their build step.
_NATIVE_BACKENDS = ("maturin", "scikit_build_core", "mesonpy", "setuptools_rust", "pymsbuild", "enscons")


class PackageError(Exception):
    """A package could not be downloaded, extracted or installed.

    ``stage`` is ``"download"``, ``"extract"`` or ``"install"``; ``message`` is the specific reason;
    ``str(err)`` is ``"application installation failed: <stage>: <message>"`` (Flame's bind detail).
    """

    def __init__(self, stage: str, message: str) -> None:
        self.stage = stage
        self.message = message
        super().__init__(f"application installation failed: {stage}: {message}")


@dataclass
class InstallResult:
    """Outcome of :func:`install`.

    ``env`` holds path-like variables to *prepend* to the instance environment (``PYTHONPATH`` always,
    ``PATH``/``LD_LIBRARY_PATH`` when the deps dir has scripts/shared libraries).  ``installed`` lists
    what pip installed (requirements, plus the project name when it had to be built), ``skipped`` the
    declared requirements that were already satisfied or do not apply to this interpreter.
    """

    env: dict[str, str]
    log: str = ""
    installed: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    requirements: list[str] = field(default_factory=list)
    python_path: list[str] = field(default_factory=list)


@dataclass
class PreparedPackage:
    """Outcome of :func:`prepare`: where the package landed and the env the instance needs."""

    url: str
    archive: Path
    src: Path
    deps: Path
    env: dict[str, str]
    install: InstallResult


# ----------------------------------------------------------------------------------------------
# fetch


def fetch(
    url: str,
    dest_dir: Path,
    *,
    read_cache_object: Callable[[str], bytes] | None = None,
    cache_endpoint: str | None = None,
    timeout: float = 300,
) -> Path:
    """Download ``url`` into ``dest_dir`` and return the file path (named after the URL's last segment).

    ``read_cache_object(key)`` (raising ``KeyError`` when absent) serves ``grpc://`` URLs in-process;
    with ``cache_endpoint`` set it is used only for URLs pointing at that endpoint, the rest go through
    Arrow Flight ``DoGet`` with ticket ``"<key>:0"``.
    """
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError as exc:
        raise PackageError("download", f"invalid url {url!r}: {exc}") from None
    scheme = parts.scheme.lower()
    dest_dir = Path(dest_dir)
    dest_dir.mkdir(parents=True, exist_ok=True)
    dest = dest_dir / _url_basename(parts.path)
    tmp = dest.with_name(dest.name + ".part")
    try:
        if scheme == "file":
            _fetch_file(parts, url, tmp)
        elif scheme in _GRPC_SCHEMES:
            _fetch_cache(parts, url, tmp, read_cache_object, cache_endpoint, timeout)
        elif scheme in ("http", "https"):
            _fetch_http(url, tmp, timeout)
        else:
            raise PackageError(
                "download",
                f"unsupported URL scheme {scheme!r} in {url!r} (supported: file, http, https, grpc, grpcs)",
            )
        os.chmod(tmp, 0o600)
        os.replace(tmp, dest)
    except PackageError:
        tmp.unlink(missing_ok=True)
        raise
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise PackageError("download", f"cannot store {url!r} at {dest}: {exc}") from None
    return dest


def _url_basename(path: str) -> str:
    name = urllib.parse.unquote(path.rstrip("/").rsplit("/", 1)[-1]).replace("\\", "_")
    if name in ("", ".", "..") or "/" in name or "\x00" in name:
        return "package.tar.gz"
    return name


def _fetch_file(parts: urllib.parse.SplitResult, url: str, tmp: Path) -> None:
    if parts.netloc not in ("", "localhost"):
        raise PackageError("download", f"file URL must be absolute (file:///path), got {url!r}")
    src = Path(urllib.request.url2pathname(parts.path))
    if not src.exists():
        raise PackageError("download", f"package file not found: {src}")
    if not src.is_file():
        raise PackageError("download", f"package path is not a regular file: {src}")
    try:
        shutil.copyfile(src, tmp)
    except OSError as exc:
        raise PackageError("download", f"cannot copy package from {src}: {exc}") from None


def _fetch_http(url: str, tmp: Path, timeout: float) -> None:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp, open(tmp, "wb") as out:
            shutil.copyfileobj(resp, out, _CHUNK)
    except urllib.error.HTTPError as exc:
        raise PackageError("download", f"HTTP {exc.code} {exc.reason} for {url}") from None
    except urllib.error.URLError as exc:
        raise PackageError("download", f"cannot download {url}: {exc.reason}") from None
    except (OSError, ValueError) as exc:  # timeouts, resets, malformed URLs
        raise PackageError("download", f"cannot download {url}: {exc}") from None


def _fetch_cache(
    parts: urllib.parse.SplitResult,
    url: str,
    tmp: Path,
    read_cache_object: Callable[[str], bytes] | None,
    cache_endpoint: str | None,
    timeout: float,
) -> None:
    key = urllib.parse.unquote(parts.path).lstrip("/")
    try:
        host, port = parts.hostname, parts.port or _DEFAULT_CACHE_PORT
    except ValueError as exc:
        raise PackageError("download", f"invalid cache URL {url!r}: {exc}") from None
    if not host:
        raise PackageError("download", f"missing host in cache URL {url!r}")
    if not key:
        raise PackageError("download", f"missing object key in cache URL {url!r}")
    if read_cache_object is not None and (
        cache_endpoint is None or _same_endpoint(cache_endpoint, host, port)
    ):
        try:
            data = read_cache_object(key)
        except (KeyError, LookupError, FileNotFoundError):
            raise PackageError("download", f"object not found in the cache: {key}") from None
        except Exception as exc:
            raise PackageError("download", f"cannot read {key!r} from the cache: {exc}") from None
        if not data:
            raise PackageError("download", f"object not found in the cache: {key} (empty)")
        tmp.write_bytes(bytes(data))
        return
    _flight_download(parts.scheme.lower(), host, port, key, tmp, timeout)


def _same_endpoint(endpoint: str, host: str, port: int) -> bool:
    try:
        ep = urllib.parse.urlsplit(endpoint)
        ep_host, ep_port = ep.hostname or "", ep.port or _DEFAULT_CACHE_PORT
    except ValueError:
        return False
    local = {"localhost", "127.0.0.1", "::1", "0.0.0.0", "::"}
    return ep_port == port and (ep_host == host or (ep_host in local and host in local))


def _flight_download(scheme: str, host: str, port: int, key: str, tmp: Path, timeout: float) -> None:
    import pyarrow.flight as flight

    tls = scheme in ("grpcs", "grpc+tls")
    location = f"{'grpc+tls' if tls else 'grpc+tcp'}://{host}:{port}"
    kwargs: dict[str, Any] = {}
    ca_file = os.environ.get("FLAME_CA_FILE")
    if tls and ca_file:
        try:
            kwargs["tls_root_certs"] = Path(ca_file).read_bytes()
        except OSError as exc:
            raise PackageError("download", f"cannot read FLAME_CA_FILE {ca_file}: {exc}") from None
    total = 0
    try:
        client = flight.FlightClient(location, **kwargs)
        try:
            reader = client.do_get(
                flight.Ticket(f"{key}:0".encode()), flight.FlightCallOptions(timeout=timeout)
            )
            with open(tmp, "wb") as out:
                for chunk in reader:
                    batch = chunk.data
                    if batch is None:
                        continue
                    idx = batch.schema.get_field_index("data")
                    if idx < 0:
                        continue
                    for cell in batch.column(idx).to_pylist():
                        if cell:
                            out.write(cell)
                            total += len(cell)
        finally:
            client.close()
    except PackageError:
        raise
    except Exception as exc:
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if isinstance(exc, KeyError) or "not found" in detail.lower():
            raise PackageError("download", f"object not found in the cache at {location}: {key}") from None
        raise PackageError(
            "download", f"cannot fetch {key!r} from the cache at {location}: {detail}"
        ) from None
    if total == 0:
        raise PackageError("download", f"object not found in the cache at {location}: {key} (empty)")


# ----------------------------------------------------------------------------------------------
# extract

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


# ----------------------------------------------------------------------------------------------
# project metadata


@dataclass
class _Project:
    name: str | None = None
    requirements: list[str] | None = field(default_factory=list)  # None: could not be determined
    roots: list[str] = field(default_factory=list)  # import roots relative to src ("src", ...)
    build_reason: str | None = None
    notes: list[str] = field(default_factory=list)


def _load_toml(path: Path) -> dict[str, Any]:
    try:
        import tomllib  # type: ignore[import-not-found]
    except ImportError:  # Python 3.10
        try:
            import tomli as tomllib  # type: ignore[import-not-found,no-redef]
        except ImportError:
            from pip._vendor import tomli as tomllib  # type: ignore[no-redef]
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except (OSError, ValueError) as exc:
        raise PackageError("install", f"invalid {path.name}: {exc}") from None


def _requirement_lines(text: str) -> tuple[list[str], list[str]]:
    """Requirements from a requirements.txt-style text; options (``-r``, ``-e``...) are reported."""
    reqs: list[str] = []
    ignored: list[str] = []
    for line in text.replace("\\\n", "").splitlines():
        line = line.split(" #", 1)[0].strip()
        if not line or line.startswith("#"):
            continue
        (ignored if line.startswith("-") else reqs).append(line)
    return reqs, ignored


def _read_requirement_files(src: Path, files: Iterable[str], proj: _Project, origin: str) -> list[str] | None:
    out: list[str] = []
    for rel in files:
        path = (src / rel).resolve()
        if not path.is_relative_to(src.resolve()) or not path.is_file():
            proj.notes.append(f"{origin}: requirements file {rel!r} not found in the package")
            return None
        reqs, ignored = _requirement_lines(path.read_text(errors="replace"))
        out.extend(reqs)
        if ignored:
            proj.notes.append(f"{origin}: ignored options in {rel}: {ignored}")
    return out


def _package_dir_roots(mapping: dict[str, str], proj: _Project, origin: str) -> None:
    for pkg, where in mapping.items():
        where = str(where).strip().strip("/") or "."
        if not pkg:
            proj.roots.append(where)
            continue
        pkg_path = PurePosixPath(*pkg.split("."))
        where_path = PurePosixPath(where)
        if (
            len(where_path.parts) >= len(pkg_path.parts)
            and where_path.parts[-len(pkg_path.parts) :] == pkg_path.parts
        ):
            proj.roots.append(str(PurePosixPath(*where_path.parts[: -len(pkg_path.parts)])) or ".")
        else:
            proj.build_reason = f"{origin} maps package {pkg!r} to directory {where!r}"


def _poetry_requirement(name: str, spec: Any) -> str | None:
    if name.lower() == "python":
        return None
    version: Any = "*"
    if isinstance(spec, dict):
        if spec.get("optional"):
            return None
        version = spec.get("version", "*")
    elif isinstance(spec, str):
        version = spec
    if not isinstance(version, str) or "||" in version:
        return name
    clauses = []
    for clause in version.split(","):
        clause = clause.strip()
        if clause in ("", "*"):
            continue
        if clause[0] in "^~" and not clause.startswith("~="):
            clauses.append(">=" + clause.lstrip("^~").strip())
        elif clause[0].isdigit():
            clauses.append("==" + clause)
        else:
            clauses.append(clause)
    return name + ",".join(clauses)


def _read_pyproject(src: Path, proj: _Project) -> bool:
    """Fill ``proj`` from pyproject.toml; returns True when it declared the requirements."""
    data = _load_toml(src / "pyproject.toml")
    tool = data.get("tool") or {}
    st = tool.get("setuptools") or {}
    backend = str((data.get("build-system") or {}).get("build-backend") or "")
    if any(backend.startswith(b) for b in _NATIVE_BACKENDS):
        proj.build_reason = f"build backend {backend!r} compiles native code"
    if st.get("ext-modules"):
        proj.build_reason = "pyproject.toml declares [tool.setuptools] ext-modules"
    if isinstance(st.get("package-dir"), dict):
        _package_dir_roots(st["package-dir"], proj, "[tool.setuptools] package-dir")
    packages = st.get("packages")
    if isinstance(packages, dict):
        find = packages.get("find") or packages.get("find-namespace") or {}
        where = find.get("where", ["."]) if isinstance(find, dict) else ["."]
        proj.roots.extend([where] if isinstance(where, str) else list(where))
    hatch_wheel = ((tool.get("hatch") or {}).get("build") or {}).get("targets", {}).get("wheel", {})
    for pkg in hatch_wheel.get("packages", []) or []:
        proj.roots.append(str(PurePosixPath(pkg).parent))
    sources = hatch_wheel.get("sources")
    if isinstance(sources, list):
        proj.roots.extend(sources)
    elif isinstance(sources, dict):
        proj.roots.extend(k for k, v in sources.items() if not v)
    poetry = tool.get("poetry") or {}
    for pkg in poetry.get("packages", []) or []:
        if isinstance(pkg, dict) and pkg.get("from"):
            proj.roots.append(pkg["from"])
    pdm_dir = ((tool.get("pdm") or {}).get("build") or {}).get("package-dir")
    if isinstance(pdm_dir, str):
        proj.roots.append(pdm_dir)

    project = data.get("project")
    if isinstance(project, dict) and project:
        proj.name = project.get("name")
        if "dependencies" in (project.get("dynamic") or []):
            dyn = ((st.get("dynamic") or {}).get("dependencies") or {}).get("file")
            if dyn:
                proj.requirements = _read_requirement_files(
                    src, [dyn] if isinstance(dyn, str) else dyn, proj, "pyproject.toml"
                )
            else:
                proj.notes.append("pyproject.toml: dependencies are dynamic and not readable")
                proj.requirements = None
        else:
            proj.requirements = [str(r) for r in project.get("dependencies") or []]
        return True
    if isinstance(poetry.get("dependencies"), dict):
        proj.name = poetry.get("name")
        proj.requirements = [
            r for n, s in poetry["dependencies"].items() if (r := _poetry_requirement(n, s)) is not None
        ]
        return True
    return False


def _read_setup_cfg(src: Path, proj: _Project) -> list[str] | None:
    cfg = configparser.ConfigParser(interpolation=None)
    try:
        cfg.read(src / "setup.cfg", encoding="utf-8")
    except (configparser.Error, UnicodeDecodeError) as exc:
        proj.notes.append(f"setup.cfg: cannot parse: {exc}")
        return None
    proj.name = proj.name or cfg.get("metadata", "name", fallback=None)
    package_dir = cfg.get("options", "package_dir", fallback="").strip()
    if package_dir:
        mapping = {}
        for line in package_dir.replace(",", "\n").splitlines():
            if "=" in line:
                key, _, value = line.partition("=")
                mapping[key.strip()] = value.strip()
        _package_dir_roots(mapping, proj, "setup.cfg package_dir")
    if cfg.get("options", "packages", fallback="").strip().startswith("find"):
        where = cfg.get("options.packages.find", "where", fallback="").strip()
        if where:
            proj.roots.append(where)
    value = cfg.get("options", "install_requires", fallback="").strip()
    if value.startswith("file:"):
        files = [f.strip() for f in value[5:].split(",") if f.strip()]
        return _read_requirement_files(src, files, proj, "setup.cfg")
    return [
        r.strip()
        for r in value.replace(";\n", "\n").splitlines()
        if r.strip() and not r.strip().startswith("#")
    ]


def _read_setup_py(src: Path, proj: _Project) -> list[str] | None:
    text = (src / "setup.py").read_text(errors="replace")
    if any(word in text for word in ("ext_modules", "Extension(", "cythonize", "CFFI", "cffi_modules")):
        proj.build_reason = "setup.py builds extension modules"
    try:
        tree = ast.parse(text)
    except SyntaxError as exc:
        proj.notes.append(f"setup.py: cannot parse: {exc}")
        return None
    names: dict[str, ast.expr] = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            names[node.targets[0].id] = node.value

    def literal(node: ast.expr) -> Any:
        if isinstance(node, ast.Name) and node.id in names:
            node = names[node.id]
        return ast.literal_eval(node)

    reqs: list[str] | None = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        fname = (
            func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else ""
        )
        if fname != "setup":
            continue
        for kw in node.keywords:
            try:
                if kw.arg == "install_requires":
                    value = literal(kw.value)
                    reqs = [value] if isinstance(value, str) else [str(v) for v in value]
                elif kw.arg == "name":
                    proj.name = proj.name or literal(kw.value)
                elif kw.arg == "package_dir":
                    _package_dir_roots(dict(literal(kw.value)), proj, "setup.py package_dir")
                elif kw.arg == "packages" and isinstance(kw.value, ast.Call):
                    call = kw.value
                    where = [kw2.value for kw2 in call.keywords if kw2.arg == "where"] or call.args[:1]
                    if where:
                        proj.roots.append(str(literal(where[0])))
            except (ValueError, TypeError, SyntaxError):
                if kw.arg == "install_requires":
                    proj.notes.append("setup.py: install_requires is not a literal; requirements unknown")
                    reqs = None
    return reqs


def _read_project(src: Path) -> _Project:
    proj = _Project()
    declared = (src / "pyproject.toml").is_file() and _read_pyproject(src, proj)
    if not declared:
        collected: list[str] | None = []
        for fname, reader in (("setup.cfg", _read_setup_cfg), ("setup.py", _read_setup_py)):
            if (src / fname).is_file():
                found = reader(src, proj)
                collected = None if collected is None or found is None else collected + found
        proj.requirements = collected
    roots: list[str] = []
    for rel in proj.roots:
        rel = str(rel).strip().strip("/") or "."
        path = (src / rel).resolve()
        if rel != "." and path.is_dir() and path.is_relative_to(src.resolve()) and rel not in roots:
            roots.append(rel)
    if not proj.roots and _looks_like_src_layout(src / "src"):
        roots.append("src")
    proj.roots = roots
    return proj


def _looks_like_src_layout(path: Path) -> bool:
    if not path.is_dir() or (path / "__init__.py").exists():
        return False
    for child in path.iterdir():
        if child.suffix == ".py" and child.is_file():
            return True
        if child.is_dir() and (child / "__init__.py").exists():
            return True
    return False


# ----------------------------------------------------------------------------------------------
# install

_CHECK_SCRIPT = r"""
import json, re, sys
import importlib.metadata as md
try:
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name
except Exception:
    try:
        from pip._vendor.packaging.requirements import Requirement
        from pip._vendor.packaging.utils import canonicalize_name
    except Exception:
        Requirement = None

def version(name):
    try:
        return md.version(name)
    except Exception:
        return None

def check(req, seen):
    # (ok, detail) for an applicable, parsed requirement, including the extras it asks for.
    have = version(req.name)
    if have is None:
        return False, "not installed"
    if req.url:
        detail = "installed %s (URL not verified)" % have
    elif req.specifier and not req.specifier.contains(have, prereleases=True):
        return False, "installed %s does not match %s" % (have, req.specifier)
    else:
        detail = "installed %s" % have
    for extra in sorted(req.extras):
        key = (canonicalize_name(req.name), extra)
        if key in seen:
            continue
        seen.add(key)
        for text in md.distribution(req.name).requires or []:
            try:
                sub = Requirement(text)
            except Exception:
                continue
            if sub.marker is None or sub.marker.evaluate({"extra": ""}):
                continue
            if not sub.marker.evaluate({"extra": extra}):
                continue
            ok, why = check(sub, seen)
            if not ok:
                return False, "extra %r needs %s: %s" % (extra, sub.name, why)
    return True, detail

out = []
for text in json.load(sys.stdin):
    if Requirement is None:
        m = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", text)
        have = version(m.group(1)) if m else None
        out.append(["satisfied" if have else "missing",
                    ("installed %s (version not checked)" % have) if have else "not installed"])
        continue
    try:
        req = Requirement(text)
    except Exception as exc:
        out.append(["invalid", str(exc)])
        continue
    if req.marker is not None and not req.marker.evaluate({"extra": ""}):
        out.append(["not-applicable", "marker %s is false" % req.marker])
        continue
    ok, detail = check(req, set())
    out.append(["satisfied" if ok else "missing", detail])
json.dump(out, sys.stdout)
"""


def install(
    src: Path,
    deps_dir: Path,
    *,
    python: str = sys.executable,
    log_path: Path | None = None,
    offline_ok: bool = True,
    timeout: float = 600,
) -> InstallResult:
    """Make the project in ``src`` importable by ``python``; returns the env to prepend.

    With ``offline_ok`` (default) only the declared requirements the interpreter does not already
    satisfy are pip-installed into ``deps_dir``, and the project's own code is put on ``PYTHONPATH``
    (``deps_dir`` if used, src-layout roots, ``src``); a wheel is built (``--no-deps``) only for
    projects that need a build step (extension modules, renamed package dirs, native backends).
    ``offline_ok=False`` does what Flame does: ``pip install --target deps_dir src`` (needs an index).
    """
    src, deps_dir = Path(src).resolve(), Path(deps_dir).resolve()
    deadline = time.monotonic() + timeout
    log: list[str] = [f"install {src} for {python}"]
    result = InstallResult(env={}, log="")

    def finish(error: PackageError | None = None) -> None:
        if error is not None:
            log.append(f"ERROR: {error.message}")
        result.log = "\n".join(log) + "\n"
        if log_path is not None:
            try:
                Path(log_path).parent.mkdir(parents=True, exist_ok=True, mode=0o700)
                fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                with os.fdopen(fd, "w") as f:
                    f.write(result.log)
            except OSError:
                pass

    try:
        if not src.is_dir() or not any((src / name).is_file() for name in PROJECT_FILES):
            raise PackageError("install", "no pyproject.toml, setup.py or setup.cfg in package")
        try:
            deps_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise PackageError("install", f"cannot create {deps_dir}: {exc}") from None
        proj = _read_project(src)
        log.extend(f"note: {n}" for n in proj.notes)
        if offline_ok:
            _install_smart(src, deps_dir, proj, python, log, result, deadline)
        else:
            log.append("installing the project with pip (Flame mode)")
            _pip(python, ["--upgrade", str(src)], deps_dir, log, deadline, what="the project")
            result.installed.append(proj.name or src.name)
        paths = [str(src / rel) for rel in proj.roots] + [str(src)]
        if _non_empty(deps_dir):
            paths.insert(0, str(deps_dir))
            if (deps_dir / "bin").is_dir():
                result.env["PATH"] = str(deps_dir / "bin")
            libs = _native_lib_dirs(deps_dir)
            if libs:
                result.env["LD_LIBRARY_PATH"] = os.pathsep.join(libs)
        result.python_path = paths
        result.env["PYTHONPATH"] = os.pathsep.join(paths)
        log.append(f"PYTHONPATH={result.env['PYTHONPATH']}")
    except PackageError as exc:
        finish(exc)
        raise
    finish()
    return result


def _install_smart(
    src: Path,
    deps_dir: Path,
    proj: _Project,
    python: str,
    log: list[str],
    result: InstallResult,
    deadline: float,
) -> None:
    if proj.requirements is None:
        log.append("warning: could not determine the project's requirements; installing none")
    reqs = list(proj.requirements or [])
    own = _canonical(proj.name) if proj.name else None
    result.requirements = reqs
    unsatisfied: list[str] = []
    if reqs:
        statuses = _check_requirements(python, reqs, deps_dir, log, deadline)
        for req, (status, detail) in zip(reqs, statuses, strict=True):
            log.append(f"requirement {req}: {status} ({detail})")
            if status == "invalid":
                raise PackageError("install", f"invalid requirement {req!r}: {detail}")
            if own and _canonical(_req_name(req)) == own:
                result.skipped.append(req)
            elif status in ("satisfied", "not-applicable"):
                result.skipped.append(req)
            else:
                unsatisfied.append(req)
    if unsatisfied:
        log.append(f"installing {len(unsatisfied)} unsatisfied requirement(s) into {deps_dir}")
        _pip(python, ["--upgrade", *unsatisfied], deps_dir, log, deadline, what=", ".join(unsatisfied))
        result.installed.extend(unsatisfied)
    if proj.build_reason:
        log.append(f"building the project: {proj.build_reason}")
        _pip(
            python,
            ["--upgrade", "--no-deps", "--no-build-isolation", str(src)],
            deps_dir,
            log,
            deadline,
            what=f"the project ({proj.build_reason})",
        )
        result.installed.append(proj.name or src.name)
    else:
        log.append("project code is used from source (no build needed)")


def _canonical(name: str) -> str:
    return "".join("-" if c in "_." else c for c in name.strip().lower())


def _req_name(req: str) -> str:
    name = ""
    for c in req.strip():
        if c.isalnum() or c in "._-":
            name += c
        else:
            break
    return name


def _check_requirements(
    python: str, reqs: list[str], deps_dir: Path, log: list[str], deadline: float
) -> list[tuple[str, str]]:
    env = dict(os.environ)
    if _non_empty(deps_dir):
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(deps_dir), env.get("PYTHONPATH", "")) if p)
    code, out = _run(
        [python, "-c", _CHECK_SCRIPT], cwd=deps_dir, env=env, deadline=deadline, stdin=json.dumps(reqs)
    )
    try:
        statuses = json.loads(out.strip().splitlines()[-1]) if code == 0 else None
    except (ValueError, IndexError):
        statuses = None
    if not isinstance(statuses, list) or len(statuses) != len(reqs):
        raise PackageError(
            "install",
            f"cannot check requirements with {python} (exit {code}): {_tail(out, 5) or 'no output'}",
        )
    return [(str(s), str(d)) for s, d in statuses]


def _pip(python: str, args: list[str], deps_dir: Path, log: list[str], deadline: float, *, what: str) -> None:
    cmd = [
        python,
        "-m",
        "pip",
        "install",
        "--disable-pip-version-check",
        "--no-input",
        "--target",
        str(deps_dir),
        *args,
    ]
    log.append("$ " + " ".join(cmd))
    env = dict(os.environ, PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_NO_INPUT="1")
    code, out = _run(cmd, cwd=deps_dir, env=env, deadline=deadline)
    log.append(out.rstrip())
    if code != 0:
        raise PackageError(
            "install", f"pip install of {what} failed (exit {code}):\n{_tail(out, _TAIL_LINES)}"
        )


def _run(
    cmd: list[str], *, cwd: Path, env: dict[str, str], deadline: float, stdin: str | None = None
) -> tuple[int, str]:
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise PackageError("install", f"timed out before running {Path(cmd[0]).name} {' '.join(cmd[1:3])}")
    try:
        proc = subprocess.Popen(
            cmd,
            cwd=cwd,
            env=env,
            stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
            start_new_session=True,
        )
    except OSError as exc:
        raise PackageError("install", f"cannot run {cmd[0]}: {exc}") from None
    try:
        out, _ = proc.communicate(stdin, timeout=remaining)
    except subprocess.TimeoutExpired:
        _kill_group(proc)
        try:
            out, _ = proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            out = ""
        raise PackageError(
            "install",
            f"{' '.join(cmd[1:4])} timed out after {remaining:.0f}s:\n{_tail(out or '', _TAIL_LINES)}",
        ) from None
    except BaseException:
        _kill_group(proc)
        proc.wait()
        raise
    return proc.returncode, out


def _kill_group(proc: subprocess.Popen[str]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        proc.kill()


def _tail(text: str, n: int) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return "\n".join(lines[-n:])


def _non_empty(path: Path) -> bool:
    try:
        return path.is_dir() and any(path.iterdir())
    except OSError:
        return False


def _native_lib_dirs(root: Path, depth: int = 4) -> list[str]:
    found: list[str] = []
    for dirpath, dirnames, filenames in os.walk(root):
        if len(Path(dirpath).relative_to(root).parts) >= depth:
            dirnames[:] = []
        if any(f.endswith(".so") for f in filenames):
            found.append(dirpath)
    return sorted(found)


# ----------------------------------------------------------------------------------------------
# prepare


def prepare(
    url: str,
    workdir: Path,
    *,
    read_cache_object: Callable[[str], bytes] | None = None,
    cache_endpoint: str | None = None,
    python: str = sys.executable,
    log_path: Path | None = None,
    offline_ok: bool = True,
    timeout: float = 600,
) -> PreparedPackage:
    """Fetch ``url`` into ``workdir/download``, extract into a fresh ``workdir/src``, install into ``workdir/deps``.

    When the archive holds a single top-level directory with the project files (an sdist-style
    archive) that directory is used as the project root.  Failures raise :class:`PackageError`.
    """
    workdir = Path(workdir)
    deadline = time.monotonic() + timeout
    download, src, deps = workdir / "download", workdir / "src", workdir / "deps"
    for path in (download, src, deps):
        try:
            if path.is_symlink() or path.is_file():
                path.unlink()
            elif path.exists():
                shutil.rmtree(path)
        except OSError as exc:
            raise PackageError("download", f"cannot reset {path}: {exc}") from None
    archive = fetch(
        url, download, read_cache_object=read_cache_object, cache_endpoint=cache_endpoint, timeout=timeout
    )
    extract(archive, src)
    project = src
    if not any((src / name).is_file() for name in PROJECT_FILES):
        children = list(src.iterdir())
        if len(children) == 1 and children[0].is_dir() and not children[0].is_symlink():
            if any((children[0] / name).is_file() for name in PROJECT_FILES):
                project = children[0]
    result = install(
        project,
        deps,
        python=python,
        log_path=log_path,
        offline_ok=offline_ok,
        timeout=max(1.0, deadline - time.monotonic()),
    )
    return PreparedPackage(url=url, archive=archive, src=project, deps=deps, env=result.env, install=result)
