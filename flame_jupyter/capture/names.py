"""Which global names a piece of code needs.

- :func:`code_global_names` -- globals read/written by a compiled function (bytecode scan).
- :func:`cell_free_names` -- names a ``%%flame`` cell reads before (or without) assigning them.

>>> sorted(code_global_names((lambda x: helper(x) + K).__code__))
['K', 'helper']
>>> cell_free_names("y = x + 1\\nprint(y)")
['x', 'print']
"""

from __future__ import annotations

import ast
import dis
import functools
import symtable
import textwrap
import types

_GLOBAL_OPS = frozenset({"LOAD_GLOBAL", "STORE_GLOBAL", "DELETE_GLOBAL", "LOAD_NAME"})


@functools.lru_cache(maxsize=8192)
def code_global_names(code: types.CodeType) -> tuple[str, ...]:
    """Global names used by ``code`` and the code objects nested in it, in order of use."""
    names: dict[str, None] = {}
    for ins in dis.get_instructions(code):
        if ins.opname in _GLOBAL_OPS and isinstance(ins.argval, str):
            names.setdefault(ins.argval, None)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names.update(dict.fromkeys(code_global_names(const)))
    return tuple(names)


# --------------------------------------------------------------------------- cells


def _deferred_globals(table: symtable.SymbolTable) -> set[str]:
    """Globals read inside nested scopes (functions, lambdas, classes, comprehensions)."""
    found: set[str] = set()
    for child in table.get_children():
        for sym in child.get_symbols():
            if sym.is_global() and sym.is_referenced():
                found.add(sym.get_name())
        found |= _deferred_globals(child)
    return found


class _TopLevel:
    """Walks module-level statements in execution order, recording reads before writes."""

    def __init__(self) -> None:
        self.bound: set[str] = set()
        self.needed: dict[str, None] = {}

    # expressions -----------------------------------------------------------
    def load(self, name: str) -> None:
        if name not in self.bound:
            self.needed.setdefault(name, None)

    def expr(self, node: ast.AST | None) -> None:
        if node is None:
            return
        if isinstance(node, ast.Name):
            if isinstance(node.ctx, ast.Store):
                self.bound.add(node.id)
            else:
                self.load(node.id)
        elif isinstance(node, ast.NamedExpr):
            self.expr(node.value)
            self.bound.add(node.target.id)
        elif isinstance(node, ast.Lambda):
            self.arguments(node.args)
        elif isinstance(node, (ast.ListComp, ast.SetComp, ast.GeneratorExp, ast.DictComp)):
            self.expr(node.generators[0].iter)
            for sub in ast.walk(node):
                if isinstance(sub, ast.NamedExpr):
                    self.bound.add(sub.target.id)
        else:
            for child in ast.iter_child_nodes(node):
                self.expr(child)

    def target(self, node: ast.AST) -> None:
        """An assignment target: subscripts/attributes read their base, names are bound."""
        if isinstance(node, ast.Name):
            self.bound.add(node.id)
        elif isinstance(node, (ast.Tuple, ast.List)):
            for elt in node.elts:
                self.target(elt)
        elif isinstance(node, ast.Starred):
            self.target(node.value)
        else:
            self.expr(node)

    def arguments(self, args: ast.arguments) -> None:
        for default in [*args.defaults, *args.kw_defaults]:
            self.expr(default)

    # statements ------------------------------------------------------------
    def body(self, stmts: list[ast.stmt]) -> None:
        for stmt in stmts:
            self.stmt(stmt)

    def stmt(self, node: ast.stmt) -> None:  # noqa: C901 - a flat dispatch
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for deco in node.decorator_list:
                self.expr(deco)
            self.arguments(node.args)
            self.bound.add(node.name)
        elif isinstance(node, ast.ClassDef):
            for item in [*node.decorator_list, *node.bases, *(k.value for k in node.keywords)]:
                self.expr(item)
            self.bound.add(node.name)
        elif isinstance(node, ast.Assign):
            self.expr(node.value)
            for tgt in node.targets:
                self.target(tgt)
        elif isinstance(node, ast.AugAssign):
            self.expr(node.value)
            if isinstance(node.target, ast.Name):
                self.load(node.target.id)
            self.target(node.target)
        elif isinstance(node, ast.AnnAssign):
            self.expr(node.value)
            if node.value is not None:
                self.target(node.target)
        elif isinstance(node, (ast.For, ast.AsyncFor)):
            self.expr(node.iter)
            self.target(node.target)
            self.body(node.body)
            self.body(node.orelse)
        elif isinstance(node, (ast.While, ast.If)):
            self.expr(node.test)
            self.body(node.body)
            self.body(node.orelse)
        elif isinstance(node, (ast.With, ast.AsyncWith)):
            for item in node.items:
                self.expr(item.context_expr)
                if item.optional_vars is not None:
                    self.target(item.optional_vars)
            self.body(node.body)
        elif isinstance(node, ast.Try) or type(node).__name__ == "TryStar":
            self.body(node.body)
            for handler in node.handlers:
                self.expr(handler.type)
                if handler.name:
                    self.bound.add(handler.name)
                self.body(handler.body)
            self.body(node.orelse)
            self.body(node.finalbody)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            for alias in node.names:
                if alias.name != "*":
                    self.bound.add(alias.asname or alias.name.partition(".")[0])
        elif isinstance(node, ast.Match):
            self.expr(node.subject)
            for case in node.cases:
                for sub in ast.walk(case.pattern):
                    if isinstance(sub, (ast.MatchValue, ast.MatchClass)):
                        self.expr(sub.value if isinstance(sub, ast.MatchValue) else sub.cls)
                    name = getattr(sub, "name", None) or getattr(sub, "rest", None)
                    if isinstance(name, str):
                        self.bound.add(name)
                self.expr(case.guard)
                self.body(case.body)
        elif isinstance(node, (ast.Global, ast.Nonlocal, ast.Pass, ast.Break, ast.Continue)):
            pass
        else:  # Expr, Return, Raise, Assert, Delete, ...
            for child in ast.iter_child_nodes(node):
                self.expr(child)


def cell_free_names(source: str, *, filename: str = "<cell>") -> list[str]:
    """Names a cell needs from the notebook, in order of first use.

    A name is needed if module-level code reads it before the cell assigns it, or if a nested
    scope (function, lambda, class, comprehension) reads it as a global and the cell never
    assigns it. Builtins are included; callers filter them.
    """
    tree = ast.parse(source, filename=filename)
    walker = _TopLevel()
    walker.body(tree.body)
    try:
        scopes = _deferred_globals(symtable.symtable(source, filename, "exec"))
    except SyntaxError:  # top-level await: analyse the cell as the body of an async function
        wrapped = "async def __flame_cell__():\n" + textwrap.indent(source, "    ") + "\n    pass\n"
        table = symtable.symtable(wrapped, filename, "exec").get_children()[0]
        scopes = _deferred_globals(table)
    needed = dict(walker.needed)
    for name in sorted(scopes):
        if name not in walker.bound:
            needed.setdefault(name, None)
    return list(needed)
