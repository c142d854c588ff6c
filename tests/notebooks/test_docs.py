"""The user docs cannot drift from the code.

- docs/magics.md is regenerated from the magics' parsers and docstrings and must be identical;
- docs/troubleshooting.md quotes the Runner guide's errors with their advice, and every message
  that flame_jupyter raises on purpose;
- links between README.md, docs/ and notebooks/ resolve, anchors included;
- the README's example and the user guide's Python API example run and print what they say.
"""

from __future__ import annotations

import ast
import importlib.util
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.kernel_helpers import KernelSession
from tests.notebooks.nb_helpers import kernel_env

REPO = Path(__file__).resolve().parents[2]
DOCS = REPO / "docs"
PENDING = {"docs/reliability.md"}  # written by someone else; linked already


def _generator():
    spec = importlib.util.spec_from_file_location("gen_magics_reference", DOCS / "gen_magics_reference.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_magics_reference_is_generated_from_the_code() -> None:
    gen = _generator()
    assert (DOCS / "magics.md").read_text() == gen.render(), (
        "docs/magics.md is out of date: run python docs/gen_magics_reference.py"
    )


def test_magics_reference_lists_every_magic_option_and_setting() -> None:
    from flame_jupyter.magics import FlameMagics

    doc = (DOCS / "magics.md").read_text()
    for kind, prefix in (("cell", "%%"), ("line", "%")):
        for name, attr in FlameMagics.magics[kind].items():
            assert f"## `{prefix}{name}`" in doc
            for action in getattr(FlameMagics, attr).parser._actions:
                for option in action.option_strings:
                    assert f"`{option}`" in doc, (prefix + name, option)
                for choice in action.choices or ():
                    assert f"`{choice}`" in doc, (prefix + name, choice)
    for name in FlameMagics.class_traits(config=True):
        assert f"`FlameMagics.{name}`" in doc


def _flat(text: str) -> str:
    return " ".join(text.split())


def test_troubleshooting_has_the_runner_guide_errors_with_their_advice() -> None:
    from flame_jupyter.errors import GUIDE_ERRORS

    doc = _flat((DOCS / "troubleshooting.md").read_text())
    for message, advice in GUIDE_ERRORS.items():
        assert f'"{message}"' in doc, message
        assert _flat(advice) in doc, advice


# Exceptions whose messages users read, and helpers that build such messages.
USER_ERRORS = {
    "UsageError",
    "FlameJupyterError",
    "FlameConfigError",
    "FlameConnectionError",
    "CaptureError",
    "RemoteError",
    "ResourceRequestError",
    "CancelledError",
    "TimeoutError",
    "RuntimeError",
    "NameError",
    "TypeError",
    "AttributeError",
    "ValueError",
}
NOT_USER_FACING = {  # internal invariants, not something a user can cause
    "is reserved by flame_jupyter",
    "output names must be identifiers, got",
    "has no attribute",
    "unknown flame_jupyter object kind",
    "no object reference for value",
    "unknown persistent id",
    "of a flame_jupyter remote class needs an instance",
    "of a flame_jupyter remote class must be called on an instance",
    "(attributes other than public methods are read on the executor)",
    "unknown action",
    "expected bytes",  # an object cache entry of the wrong type
    "interval must be > 0 seconds",  # widget update pump settings
    "max_rate must be > 0 messages per second",
    "no synced trait for field type",  # a view TypedDict field the widget layer cannot sync
    "not a map item outcome",  # a chunk result that is not one of flame_jupyter's records
}


def _fragments(node: ast.AST, consts: dict[str, str]) -> list[str]:
    """The literal text pieces of a message expression (str, f-string, str.format, concatenation)."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [node.value]
    if isinstance(node, ast.JoinedStr):
        out, cur = [], ""
        for part in node.values:
            if isinstance(part, ast.Constant):
                cur += part.value
            else:
                out.append(cur)
                cur = ""
        return [*out, cur]
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        return _fragments(node.left, consts) + _fragments(node.right, consts)
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "format":
        return [p for f in _fragments(node.func.value, consts) for p in re.split(r"\{[^}]*\}", f)]
    if isinstance(node, ast.Name) and node.id in consts:
        return [consts[node.id]]
    return []


def _messages() -> list[tuple[str, int, str]]:
    """(file, line, longest literal piece) of every message flame_jupyter raises on purpose."""
    found = []
    for path in sorted((REPO / "flame_jupyter").rglob("*.py")):
        tree = ast.parse(path.read_text())
        consts = {
            t.id: n.value.value
            for n in tree.body
            if isinstance(n, ast.Assign)
            and isinstance(n.value, ast.Constant)
            and isinstance(n.value.value, str)
            for t in n.targets
            if isinstance(t, ast.Name)
        }
        for node in ast.walk(tree):
            call = None
            if isinstance(node, ast.Raise) and isinstance(node.exc, ast.Call):
                call = node.exc
                name = getattr(call.func, "id", getattr(call.func, "attr", ""))
                if name not in USER_ERRORS:
                    continue
            elif isinstance(node, ast.Call) and getattr(node.func, "id", "") == "flame_error":
                call = node
            if call is None or not call.args:
                continue
            pieces = [p.strip(" .;:,") for p in _fragments(call.args[0], consts)]
            pieces = [p for p in pieces if len(p) >= 8]
            if pieces and not any(skip in " ".join(pieces) for skip in NOT_USER_FACING):
                found.append((str(path.relative_to(REPO)), node.lineno, max(pieces, key=len)))
    return found


def test_troubleshooting_lists_every_message_flame_jupyter_raises() -> None:
    doc = _flat((DOCS / "troubleshooting.md").read_text())
    messages = _messages()
    assert len(messages) > 40  # the scan itself works
    missing = [m for m in messages if _flat(m[2]) not in doc]
    assert not missing, "docs/troubleshooting.md does not mention:\n" + "\n".join(
        f"  {f}:{line}: {text!r}" for f, line, text in missing
    )


def _slug(heading: str) -> str:
    """GitHub's anchor for a Markdown heading."""
    text = re.sub(r"[`*_]", "", heading.strip().lower())
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    text = re.sub(r"```.*?```", "", path.read_text(), flags=re.S)
    return {_slug(h) for h in re.findall(r"^#+\s+(.+)$", text, flags=re.M)}


DOC_FILES = [REPO / "README.md", *sorted(DOCS.glob("*.md"))]


@pytest.mark.parametrize("path", DOC_FILES, ids=lambda p: str(p.relative_to(REPO)))
def test_links_resolve(path: Path) -> None:
    text = re.sub(r"```.*?```", "", path.read_text(), flags=re.S)
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if "://" in target:
            continue
        file_part, _, anchor = target.partition("#")
        dest = (path.parent / file_part).resolve() if file_part else path
        rel = str(dest.relative_to(REPO)) if dest.is_relative_to(REPO) else str(dest)
        if not dest.exists() and rel in PENDING:
            continue
        if rel == "docs/img/futures.png":  # the screenshot is made by the widget work
            continue
        assert dest.exists(), (str(path.relative_to(REPO)), target)
        if anchor and dest.suffix == ".md":
            assert anchor in _anchors(dest), (str(path.relative_to(REPO)), target, sorted(_anchors(dest)))


def _python_blocks(path: Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", path.read_text(), flags=re.S)


def test_user_guide_python_api_example_prints_what_it_says(tmp_path: Path) -> None:
    (block,) = [b for b in _python_blocks(DOCS / "user-guide.md") if "fj.Runner(" in b]
    expected = [line.rsplit("# ", 1)[1] for line in block.splitlines() if line.strip().startswith("print(")]
    script = tmp_path / "example.py"
    script.write_text(block)
    home = tmp_path / "home"
    home.mkdir()
    proc = subprocess.run(
        [sys.executable, str(script)],
        cwd=tmp_path,
        env=kernel_env(home),  # no configuration: the script starts its own embedded runtime
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.splitlines() == expected


def test_readme_example_runs_in_a_kernel(tmp_path: Path) -> None:
    (block,) = _python_blocks(REPO / "README.md")
    home = tmp_path / "home"
    home.mkdir()
    env = kernel_env(home)
    env.update({"FLAME_ENDPOINT": "", "FLAME_CACHE_ENDPOINT": ""})
    with KernelSession(cwd=tmp_path, extra_env=env) as k:
        r = k.run(textwrap.dedent(block), timeout=180)
        assert r.stdout.startswith("flame_jupyter: embedded Flame runtime at "), r.stdout
        assert k.value("_.get(timeout=60)", timeout=120) == 9
