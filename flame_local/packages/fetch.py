"""Stage 1, fetch: copy ``file://``, download ``http(s)://`` and read ``grpc://`` cache URLs.

A ``grpc://host:port/<app>/pkg/<app>.tar.gz`` URL is served by an in-process callable when it names
this runtime's cache, otherwise through Arrow Flight ``DoGet``.
"""

from __future__ import annotations

import os
import shutil
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from flame_local.packages.errors import PackageError

__all__ = ["fetch"]

_GRPC_SCHEMES = {"grpc", "grpc+tcp", "grpcs", "grpc+tls"}
_DEFAULT_CACHE_PORT = 9090
_CHUNK = 1 << 20


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
