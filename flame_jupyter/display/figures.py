"""Matplotlib figures that arrive as results: shown once, as the value they are.

A figure pickled while pyplot managed it comes back registered with the kernel's pyplot, and the
inline backend then shows it at the end of whichever cell runs next (a duplicate, or a plot under
an unrelated cell). The executor closes figures before they travel; :func:`adopt_figures` also
unregisters any that arrive registered, and makes sure the kernel's figure formatter is set up so
the figure renders as an image.
"""

from __future__ import annotations

import sys
from typing import Any

_WALK_LIMIT = 1_000


def _figures(value: Any) -> list[Any]:
    found: list[Any] = []
    stack, seen = [value], 0
    while stack and seen < _WALK_LIMIT:
        obj = stack.pop()
        seen += 1
        if type(obj).__module__ == "matplotlib.figure" and hasattr(obj, "savefig"):
            found.append(obj)
        elif isinstance(obj, dict):
            stack.extend(obj.values())
        elif isinstance(obj, (list, tuple)):
            stack.extend(obj)
    return found


def adopt_figures(value: Any) -> None:
    """Unregister result figures from pyplot; in IPython, let pyplot pick its backend (the inline
    one registers the PNG formatter of figures). Never raises."""
    if "matplotlib.figure" not in sys.modules:
        return
    try:
        figures = _figures(value)
        if not figures:
            return
        import matplotlib.pyplot as plt
        from matplotlib import _pylab_helpers

        for fig in figures:
            manager = getattr(fig.canvas, "manager", None)
            if manager is not None and manager in _pylab_helpers.Gcf.figs.values():
                _pylab_helpers.Gcf.destroy(manager)
        ipython = sys.modules.get("IPython")
        if ipython is not None and ipython.get_ipython() is not None:
            # load pyplot's backend as its first figure would: the inline one sets up figure display
            load = getattr(plt, "_get_backend_mod", None)
            load() if load is not None else plt.switch_backend(plt.get_backend())
    except Exception:  # noqa: BLE001 - a figure that cannot be adopted is still the result
        pass
