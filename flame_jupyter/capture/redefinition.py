"""Has the notebook redefined what a service serves? Said once per service, at its next call.

A service runs the definition it captured (its function, its class, an instance's class); cells
that redefine that name later change nothing remotely, which looks like a bug when nothing says
so. :class:`Redefinition` remembers the served definition and its cell; :meth:`Redefinition.check`
warns (:class:`~flame_jupyter.errors.FlameJupyterWarning`) the first time a call finds the
notebook's name bound to another definition of the same kind.

    watch = Redefinition.of(summarize, user_ns)
    watch.check("summary")   # after `def summarize` ran again: one warning, then silence
"""

from __future__ import annotations

import functools
import inspect
import sys
import warnings
from typing import Any

from flame_jupyter.errors import FlameJupyterWarning


def _definition(obj: Any) -> Any:
    """The function or class whose notebook definition ``obj`` runs (None: nothing to watch)."""
    if isinstance(obj, functools.partial):
        obj = obj.func
    if inspect.isfunction(obj) or inspect.isclass(obj):
        return obj
    if inspect.ismethod(obj) or inspect.isbuiltin(obj):
        return None
    return type(obj)  # an instance: its class (checked to be the notebook's by the caller)


def _code_file(defn: Any) -> str | None:
    if inspect.isfunction(defn):
        return defn.__code__.co_filename
    for member in vars(defn).values():  # a class: any of its own functions
        func = getattr(member, "__func__", member)
        if inspect.isfunction(func):
            return func.__code__.co_filename
    return None


def cell_of(defn: Any) -> int | None:
    """The ``In[N]`` of the notebook cell that defined ``defn`` (None outside IPython)."""
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None else None  # type: ignore[attr-defined]
    filename = _code_file(defn)
    if shell is None or filename is None:
        return None
    number = getattr(getattr(shell, "compile", None), "_filename_map", {}).get(filename)
    return number if isinstance(number, int) else None


def _where(number: int | None) -> str:
    return f"In[{number}]" if number else "an earlier cell"


class Redefinition:
    """The served definition, and whether the notebook still binds its name to it."""

    def __init__(self, defn: Any, ns: dict[str, Any]) -> None:
        self._defn = defn
        self._name: str = defn.__name__
        self._ns = ns
        self._cell = cell_of(defn)
        self._warned = False

    @classmethod
    def of(cls, obj: Any, ns: dict[str, Any]) -> Redefinition | None:
        """A watch for ``obj``, when its definition is the notebook's name for it (not a lambda
        or an alias of something imported)."""
        defn = _definition(obj)
        if defn is None or getattr(defn, "__module__", None) != "__main__":
            return None
        name = getattr(defn, "__name__", "")
        if not name.isidentifier() or ns.get(name) is not defn:
            return None
        return cls(defn, ns)

    def check(self, service: str) -> None:
        """Warn once if the notebook's ``name`` is now another definition of the same kind."""
        if self._warned:
            return
        current = self._ns.get(self._name)
        if current is self._defn or current is None:
            return
        same_kind = inspect.isclass(current) if inspect.isclass(self._defn) else inspect.isfunction(current)
        if not same_kind or getattr(current, "__module__", None) != "__main__":
            return
        self._warned = True
        warnings.warn(
            f"{service} serves the definition of {self._name} from {_where(self._cell)}; the notebook "
            f"redefined {self._name} in {_where(cell_of(current))}. Re-run %flame_service "
            f"(or rr.service) to use the new one.",
            FlameJupyterWarning,
            stacklevel=_user_stacklevel(),
        )


def _user_stacklevel() -> int:
    """The ``stacklevel`` that points the warning at the first frame outside flame_jupyter."""
    frame = sys._getframe(2)  # the caller of check(), which is stacklevel 2
    level = 2
    while frame is not None and str(frame.f_globals.get("__name__", "")).startswith("flame_jupyter"):
        frame = frame.f_back
        level += 1
    return level
