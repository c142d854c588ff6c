"""``%flame check`` / :func:`check`: is the cluster's executor environment able to run this notebook?

One probe task runs on an executor and reports its Python, the versions of flamepy, dill and
cloudpickle, and which of the notebook's imported modules it can import; the report puts them
beside the kernel's and says how to fix each difference.

>>> report = flame_jupyter.check()      # doctest: +SKIP
>>> print(report)                       # doctest: +SKIP
>>> report.ok                           # doctest: +SKIP
True
"""

from __future__ import annotations

import importlib.metadata
import sys
import time
import types
from dataclasses import dataclass, field
from typing import Any

#: The distributions whose versions the kernel and the executors must agree on.
PACKAGES = ("flamepy", "dill", "cloudpickle")

_PROBE = """
def flame_jupyter_check_probe(names):
    import importlib.metadata, importlib.util, sys

    def version(dist):
        try:
            return importlib.metadata.version(dist)
        except Exception:
            return None

    found = {}
    for name in names:
        try:
            found[name] = importlib.util.find_spec(name) is not None
        except Exception:
            found[name] = False
    return {
        "python": sys.version.split()[0],
        "executable": sys.executable,
        "versions": {dist: version(dist) for dist in ("flamepy", "dill", "cloudpickle")},
        "modules": found,
    }
"""


def _probe() -> Any:
    """The probe as notebook code (``__main__``), so it travels by value to executors that do
    not have flame_jupyter."""
    ns: dict[str, Any] = {"__name__": "__main__"}
    exec(compile(_PROBE, "<flame_jupyter check>", "exec"), ns)
    return ns["flame_jupyter_check_probe"]


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def notebook_modules(namespace: dict[str, Any]) -> list[str]:
    """Top-level names of the installed (not standard, not local) modules the namespace uses:
    imported modules and the modules of imported functions and classes."""
    from flame_jupyter.capture.modules import NEVER_BY_VALUE, local_top

    tops: set[str] = set()
    for name, value in list(namespace.items()):
        if name.startswith("_"):
            continue
        if isinstance(value, types.ModuleType):
            module = value.__name__
        elif isinstance(value, type) or callable(value):
            module = getattr(value, "__module__", None) or ""
        else:
            continue
        top = module.partition(".")[0]
        if not top or top in NEVER_BY_VALUE or top in sys.builtin_module_names or top.startswith("_"):
            continue
        if top in getattr(sys, "stdlib_module_names", ()) or top not in sys.modules:
            continue
        if top in ("flamepy",) or local_top(top) is not None:
            continue  # local modules travel with the code
        tops.add(top)
    return sorted(tops)


def distribution_of(top: str) -> tuple[str, str | None]:
    """(distribution name, its version in the kernel) that provides module ``top``."""
    dists = importlib.metadata.packages_distributions().get(top) or [top]
    return dists[0], _version(dists[0])


@dataclass
class Row:
    """One thing compared: the kernel's value, the executor's, and the fix if they differ."""

    what: str
    kernel: str
    executor: str
    fix: str = ""

    @property
    def ok(self) -> bool:
        return not self.fix


@dataclass
class CheckReport:
    """The result of :func:`check`; ``str()`` is what ``%flame check`` prints."""

    where: str
    seconds: float
    rows: list[Row] = field(default_factory=list)
    modules: list[str] = field(default_factory=list)
    missing: list[Row] = field(default_factory=list)
    executor_python: str = ""

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.rows) and not self.missing

    def __str__(self) -> str:
        lines = [f"flame_jupyter check: {self.where} (probe task ran in {self.seconds:.1f} s)"]
        lines.append(f"  {'':<12} {'kernel':<16} {'executor':<16}")
        for r in self.rows:
            lines.append(f"  {r.what:<12} {r.kernel:<16} {r.executor:<16} {'ok' if r.ok else 'DIFFERS'}")
        lines.append(f"  executor python: {self.executor_python}")
        shown = ", ".join(self.modules) if self.modules else "(none besides the standard library)"
        lines.append(f"  notebook imports: {shown}")
        if self.missing:
            lines.append("  missing on the executors:")
            lines += [f"    {r.what} ({r.kernel} in the kernel): {r.fix}" for r in self.missing]
        else:
            lines.append("  every notebook import is available on the executors")
        fixes = [r for r in self.rows if not r.ok]
        if fixes:
            lines.append("  to fix:")
            lines += [f"    {r.what}: {r.fix}" for r in fixes]
        lines.append(
            "  OK: the executors can run this notebook's code" if self.ok else "  NOT OK: see the fixes above"
        )
        return "\n".join(lines)

    def _repr_pretty_(self, p: Any, cycle: bool) -> None:
        p.text(str(self))


def _compare(remote: dict[str, Any]) -> list[Row]:
    kernel_py = ".".join(map(str, sys.version_info[:3]))
    exec_py = str(remote.get("python") or "?")
    rows = []
    fix = ""
    if exec_py.split(".")[:2] != kernel_py.split(".")[:2]:
        minor = ".".join(kernel_py.split(".")[:2])
        fix = (
            f"executors run Python {exec_py}: give them python{minor} (FLAME_PYTHON_VERSION={minor}, see "
            f"docs/cluster.md) or run the kernel on Python {'.'.join(exec_py.split('.')[:2])}"
        )
    rows.append(Row("python", kernel_py, exec_py, fix))
    versions = remote.get("versions") or {}
    for dist in PACKAGES:
        mine, theirs = _version(dist), versions.get(dist)
        fix = ""
        if theirs is None:
            fix = f"install {dist}=={mine} into FLAME_HOME (the executors' Python), see docs/cluster.md"
        elif mine is not None and theirs != mine:
            fix = (
                f"versions differ: install {dist}=={mine} into FLAME_HOME, or {dist}=={theirs} in the kernel"
            )
        rows.append(Row(dist, mine or "-", theirs or "missing", fix))
    return rows


def _missing(remote: dict[str, Any], modules: list[str]) -> list[Row]:
    found = remote.get("modules") or {}
    rows = []
    for top in modules:
        if found.get(top):
            continue
        dist, version = distribution_of(top)
        req = f"{dist}=={version}" if version else dist
        rows.append(
            Row(
                top,
                req,
                "missing",
                f"install {req} where the executors run (`${{FLAME_HOME}}/bin/uv pip install --python "
                f"{remote.get('executable') or 'python3'} {req}`), or serve with "
                f"flame_jupyter.Runner(dependencies=[{req!r}])",
            )
        )
    return rows


def check(runner: Any = None, namespace: dict[str, Any] | None = None, timeout: float = 300.0) -> CheckReport:
    """Run a probe task on Flame and compare the executors' environment with this process's.

    ``runner``: the Runner whose application runs the probe (default: a new one, closed after);
    ``namespace``: the notebook's globals whose imports are checked (default: ``__main__``'s).
    """
    from flame_jupyter import connection
    from flame_jupyter.runner import Runner

    conn = connection.ensure_connected()
    if namespace is None:
        namespace = vars(sys.modules["__main__"])
    modules = notebook_modules(namespace)
    own = runner is None
    rr = Runner() if own else runner
    try:
        svc = rr.service(_probe(), name="flame_jupyter check")
        started = time.monotonic()
        try:
            remote = svc(modules).get(timeout)
        finally:
            svc.close()
        seconds = time.monotonic() - started
    finally:
        if own:
            rr.close()
    return CheckReport(
        where=str(conn),
        seconds=seconds,
        rows=_compare(remote),
        modules=modules,
        missing=_missing(remote, modules),
        executor_python=str(remote.get("executable") or "?"),
    )
