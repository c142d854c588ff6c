"""Stage 5, prepare: fetch, extract and install one application package into a work directory."""

from __future__ import annotations

import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from flame_local.packages.errors import PackageError
from flame_local.packages.extract import extract
from flame_local.packages.fetch import fetch
from flame_local.packages.install import InstallResult, install
from flame_local.packages.project import PROJECT_FILES

__all__ = ["PreparedPackage", "prepare"]


@dataclass
class PreparedPackage:
    """Outcome of :func:`prepare`: where the package landed and the env the instance needs."""

    url: str
    archive: Path
    src: Path
    deps: Path
    env: dict[str, str]
    install: InstallResult


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
