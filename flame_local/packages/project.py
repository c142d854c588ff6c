"""Stage 3, project metadata: read a project's name, requirements, import roots and build needs.

Reads ``pyproject.toml`` (PEP 621, setuptools, hatch, poetry, pdm), ``setup.cfg`` and ``setup.py``
(as an AST, never executed) so that :mod:`flame_local.packages.install` can skip building a wheel.
"""

from __future__ import annotations

import ast
import configparser
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from flame_local.packages.errors import PackageError

__all__ = ["PROJECT_FILES", "Project", "read_project"]

PROJECT_FILES = ("pyproject.toml", "setup.py", "setup.cfg")
# Build backends that compile native code: a PYTHONPATH entry cannot replace their build step.
_NATIVE_BACKENDS = ("maturin", "scikit_build_core", "mesonpy", "setuptools_rust", "pymsbuild", "enscons")


@dataclass
class Project:
    """What a package's project files declare, as far as they can be read without running them."""

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


def _read_requirement_files(src: Path, files: Iterable[str], proj: Project, origin: str) -> list[str] | None:
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


def _package_dir_roots(mapping: dict[str, str], proj: Project, origin: str) -> None:
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


def _read_pyproject(src: Path, proj: Project) -> bool:
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


def _read_setup_cfg(src: Path, proj: Project) -> list[str] | None:
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


def _read_setup_py(src: Path, proj: Project) -> list[str] | None:
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


def read_project(src: Path) -> Project:
    proj = Project()
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
