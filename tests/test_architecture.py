"""The shape rules of both packages, checked on their source (see docs/architecture.md).

- imports flow one way: no cycle among the project's modules, counting every import (module
  level, ``TYPE_CHECKING`` and imports inside functions);
- ``flame_jupyter/remote/`` (shipped to executors as source) imports nothing of the project
  outside itself and only the standard library, cloudpickle, dill and flamepy;
- only the seam modules touch flamepy's private attributes or dill's/cloudpickle's internals;
- no module is over ~400 lines without saying why in its docstring;
- ``flame_jupyter.__all__`` is exactly its lazy names, and ``dir()`` shows them.

Each rule is also run on a small synthetic tree that breaks it, so a rule that can no longer
fail is noticed.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterable
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("flame_jupyter", "flame_local")
MAX_LINES = 400
LONG_REASON = "Long because"  # a module over MAX_LINES says why in its docstring with these words

# flamepy's private names the project needs, and the one module allowed to use them.
FLAMEPY_PRIVATE = {"_session", "_future", "_services", "_task_id", "_context_cache", "_context_cache_lock"}
FLAMEPY_SEAM = {"flame_jupyter._flamepy", "flame_jupyter._lean_flamepy"}
# dill/cloudpickle internals (their private modules and names) and where they may be used.
PICKLER_SEAMS = {"flame_jupyter.remote.pickling", "flame_jupyter.capture.env"}
SHIPPED = "flame_jupyter.remote"
SHIPPED_MAY_IMPORT = {"cloudpickle", "dill", "flamepy", "pyarrow"}  # pyarrow: flamepy.core needs it


def modules(root: Path, packages: Iterable[str] = PACKAGES) -> dict[str, Path]:
    """Dotted module name -> file, for every .py file of the packages under ``root``."""
    found: dict[str, Path] = {}
    for pkg in packages:
        for path in sorted((root / pkg).rglob("*.py")):
            rel = path.relative_to(root).with_suffix("")
            parts = list(rel.parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


def _resolve(name: str, module: str, is_package: bool, level: int) -> str:
    if level == 0:
        return name
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[: len(base) - (level - 1)]
    return ".".join([*base, name] if name else base)


def imports_of(module: str, path: Path, known: dict[str, Path]) -> set[str]:
    """Every project module ``module`` imports, wherever the import statement is."""
    tree = ast.parse(path.read_text(), str(path))
    is_package = path.name == "__init__.py"
    out: set[str] = set()

    def add(target: str) -> None:
        # ``import a.b.c`` depends on the deepest known module of that path
        while target and target not in known:
            target = target.rpartition(".")[0]
        if target and target != module:
            out.add(target)

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                add(alias.name)
        elif isinstance(node, ast.ImportFrom):
            base = _resolve(node.module or "", module, is_package, node.level)
            for alias in node.names:
                full = f"{base}.{alias.name}"
                add(full if full in known else base)
    return out


def import_graph(root: Path, packages: Iterable[str] = PACKAGES) -> dict[str, set[str]]:
    known = modules(root, packages)
    return {m: imports_of(m, p, known) for m, p in known.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = [0]
    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def _is_package_parent(a: str, b: str) -> bool:
    # a package's __init__ re-exporting its submodules is not a cycle of meaning
    return b.startswith(a + ".") or a.startswith(b + ".")


def real_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    pruned = {m: {t for t in ts if not _is_package_parent(m, t)} for m, ts in graph.items()}
    return cycles(pruned)


def shipped_violations(root: Path) -> list[str]:
    """Imports of ``remote/`` modules that reach outside it (project or third-party)."""
    known = modules(root)
    bad = []
    stdlib = set(sys.stdlib_module_names)
    for mod, path in known.items():
        if mod != SHIPPED and not mod.startswith(SHIPPED + "."):
            continue
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = _resolve(node.module or "", mod, path.name == "__init__.py", node.level)
                    names = [base]
                else:
                    names = [node.module or ""]
            for name in names:
                top = name.split(".")[0]
                inside = name == SHIPPED or name.startswith(SHIPPED + ".")
                if not inside and top not in stdlib and top not in SHIPPED_MAY_IMPORT and top != "__future__":
                    bad.append(f"{mod}:{node.lineno} imports {name}")
                if top in PACKAGES and not inside:
                    bad.append(f"{mod}:{node.lineno} imports {name}")
    return bad


def seam_violations(root: Path) -> list[str]:
    """Uses of flamepy's private attributes, or of dill's/cloudpickle's internals, outside the seams."""
    bad = []
    for mod, path in modules(root).items():
        tree = ast.parse(path.read_text(), str(path))
        # names this module binds to flamepy/dill/cloudpickle modules or objects
        foreign: dict[str, str] = {}
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for a in node.names:
                    foreign[(a.asname or a.name).split(".")[0]] = a.name.split(".")[0]
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                for a in node.names:
                    foreign[a.asname or a.name] = node.module.split(".")[0]
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name)
                and node.attr.startswith("_")
                and not node.attr.startswith("__")
            ):
                top = foreign.get(node.value.id)
                if top == "flamepy" and mod not in FLAMEPY_SEAM:
                    bad.append(f"{mod}:{node.lineno} uses flamepy's {node.value.id}.{node.attr}")
                elif top in ("dill", "cloudpickle") and mod not in PICKLER_SEAMS:
                    bad.append(f"{mod}:{node.lineno} uses {top}'s {node.value.id}.{node.attr}")
            if isinstance(node, ast.Attribute) and node.attr in FLAMEPY_PRIVATE and mod not in FLAMEPY_SEAM:
                if not (isinstance(node.value, ast.Name) and node.value.id == "self"):
                    bad.append(f"{mod}:{node.lineno} uses flamepy's .{node.attr}")
            if isinstance(node, ast.ImportFrom) and node.module and not node.level:
                top = node.module.split(".")[0]
                private = [a.name for a in node.names if a.name.startswith("_") and a.name != "__future__"]
                if top == "flamepy" and (private or "._" in node.module) and mod not in FLAMEPY_SEAM:
                    bad.append(f"{mod}:{node.lineno} imports flamepy internals {node.module} {private}")
                if (
                    top in ("dill", "cloudpickle")
                    and (private or "._" in node.module)
                    and mod not in PICKLER_SEAMS
                ):
                    bad.append(f"{mod}:{node.lineno} imports {top} internals {node.module} {private}")
    return bad


def long_modules(root: Path) -> list[str]:
    out = []
    for mod, path in modules(root).items():
        text = path.read_text()
        lines = text.count("\n")
        if lines > MAX_LINES:
            doc = ast.get_docstring(ast.parse(text)) or ""
            if LONG_REASON not in doc:
                out.append(f"{mod}: {lines} lines")
    return out


# -- the rules on the project --------------------------------------------------------------------------
def test_no_import_cycles() -> None:
    assert real_cycles(import_graph(REPO)) == []


def test_shipped_half_imports_nothing_outside_itself() -> None:
    assert modules(REPO).get(SHIPPED), "flame_jupyter/remote/ is the shipped half"
    assert shipped_violations(REPO) == []


def test_only_the_seams_touch_flamepy_dill_and_cloudpickle_internals() -> None:
    assert seam_violations(REPO) == []


def test_no_module_over_the_limit_without_a_reason() -> None:
    assert long_modules(REPO) == []


def test_public_names_are_the_lazy_names_and_dir_shows_them() -> None:
    import flame_jupyter

    assert flame_jupyter.__all__ == sorted(flame_jupyter._LAZY)
    shown = dir(flame_jupyter)
    assert set(flame_jupyter.__all__) <= set(shown)
    assert not [
        n for n in shown if n in modules(REPO, ["flame_jupyter"]) or n in ("futures", "remote", "sdk")
    ]
    for name in flame_jupyter.__all__:
        assert getattr(flame_jupyter, name) is not None


# -- each rule can fail --------------------------------------------------------------------------------
def _tree(tmp: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        p = tmp / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    for pkg in PACKAGES:
        (tmp / pkg).mkdir(exist_ok=True)
        (tmp / pkg / "__init__.py").touch()
    return tmp


@pytest.mark.parametrize(
    "files",
    [
        {
            "flame_jupyter/a.py": "from flame_jupyter import b\n",
            "flame_jupyter/b.py": "import flame_jupyter.a\n",
        },
        {  # a cycle through TYPE_CHECKING and a function-level import still counts
            "flame_jupyter/a.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from flame_jupyter.b import B\n",
            "flame_jupyter/b.py": "def f():\n    from flame_jupyter.a import x\n",
        },
        {"flame_jupyter/a.py": "from .b import x\n", "flame_jupyter/b.py": "from . import a\n"},
    ],
)
def test_the_cycle_rule_fails_on_a_cycle(tmp_path: Path, files: dict[str, str]) -> None:
    assert real_cycles(import_graph(_tree(tmp_path, files))) != []


def test_the_shipped_rule_fails_on_an_outside_import(tmp_path: Path) -> None:
    root = _tree(
        tmp_path,
        {
            "flame_jupyter/remote/__init__.py": "",
            "flame_jupyter/remote/wire.py": "import json\nfrom . import wire\nfrom flame_jupyter.errors import E\nimport numpy\n",
        },
    )
    bad = shipped_violations(root)
    assert any("flame_jupyter.errors" in b for b in bad) and any("numpy" in b for b in bad)
    assert not any("json" in b for b in bad)


def test_the_seam_rule_fails_on_a_private_use(tmp_path: Path) -> None:
    root = _tree(
        tmp_path,
        {
            "flame_jupyter/x.py": "def f(svc):\n    return svc._session.id\n",
            "flame_jupyter/y.py": "from dill._dill import save_function\nfrom flamepy.core.client import _x\n",
            "flame_jupyter/z.py": "from flamepy.core import cache\ndef f():\n    return cache._get_flight_client\n",
            "flame_jupyter/_flamepy.py": "def f(svc):\n    return svc._session\n",
        },
    )
    bad = seam_violations(root)
    assert len(bad) == 4 and not any(b.startswith("flame_jupyter._flamepy") for b in bad), bad


def test_the_length_rule_fails_on_a_long_module(tmp_path: Path) -> None:
    long_body = "x = 1\n" * (MAX_LINES + 1)
    root = _tree(
        tmp_path,
        {
            "flame_local/big.py": '"""Big."""\n' + long_body,
            "flame_local/ok.py": f'"""Big. {LONG_REASON} it is one state machine."""\n' + long_body,
        },
    )
    assert long_modules(root) == [f"flame_local.big: {MAX_LINES + 2} lines"]
