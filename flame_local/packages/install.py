"""Stage 4, install: make a project importable by the instance interpreter.

Flame v0.6.0 runs ``uv pip install --target <deps> .``; this installs only the declared requirements
the interpreter does not already satisfy and puts the project's own code on ``PYTHONPATH``
(``<deps>``, the src-layout roots, ``<src>``), building a wheel only when the project needs one.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from flame_local.packages.errors import PackageError
from flame_local.packages.project import PROJECT_FILES, Project, read_project

__all__ = ["InstallResult", "install"]

_TAIL_LINES = 20


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
        proj = read_project(src)
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
    proj: Project,
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
