"""``%load_ext flame_jupyter`` / ``%unload_ext flame_jupyter``.

Loading registers the magics, connects (a configured cluster, else the embedded runtime),
prints one line saying which, and closes what dead kernels on this host left open on Flame
(:func:`flame_jupyter.cleanup.cleanup_leftovers`). Loading twice is harmless. Unloading, and the
kernel's restart and exit, cancel the kernel's calls and close what the extension opened: its
sessions, its cached objects, its Flame application (unless another kernel uses it) and, if it
started one, the embedded runtime (which also dies with the kernel if the kernel is killed);
what could not be closed is printed.
"""

from __future__ import annotations

import atexit
import sys
from typing import Any

_state: dict[str, Any] = {}


def load(ipython: Any) -> None:
    if _state.get("magics") is not None:
        print("flame_jupyter is already loaded; %flame shows its status")
        return
    from flame_jupyter import connection
    from flame_jupyter.errors import FlameJupyterError
    from flame_jupyter.magics import FlameMagics

    magics = FlameMagics(shell=ipython, parent=ipython)
    ipython.register_magics(magics)
    if magics not in ipython.configurables:
        ipython.configurables.append(magics)
    _state["magics"] = magics
    _state["shell"] = ipython
    if not _state.get("atexit"):
        atexit.register(_shutdown)
        _state["atexit"] = True
    try:
        conn = connection.ensure_connected()
    except FlameJupyterError as e:
        print(
            f"flame_jupyter: loaded, but not connected: {e}\nUse %flame connect --endpoint URL, or %flame start for the embedded runtime."
        )
        return
    print(f"flame_jupyter: {conn}")
    _close_leftovers()


def _close_leftovers() -> None:
    """Close what kernels on this host that died (killed, crashed) left open on Flame."""
    from flame_jupyter.cleanup import cleanup_leftovers

    try:
        cleanup_leftovers(quiet=True)
    except Exception as e:  # noqa: BLE001 - loading must not fail for it
        print(f"flame_jupyter: could not look for sessions left by dead kernels: {e}", file=sys.stderr)


def unload(ipython: Any) -> None:
    magics = _state.pop("magics", None)
    _state.pop("shell", None)
    if magics is None:
        return
    try:
        magics._close_all_reporting()
    finally:
        from flame_jupyter import connection

        connection.disconnect()
        manager = ipython.magics_manager
        for kind in ("line", "cell"):
            table = manager.magics[kind]
            for name in ("flame", "flame_service"):
                if name in table and getattr(table[name], "__self__", None) is magics:
                    del table[name]
        if magics in ipython.configurables:
            ipython.configurables.remove(magics)


def _shutdown() -> None:
    """Kernel exit: close services and the application, then the runtime (best effort)."""
    magics = _state.get("magics")
    if magics is not None:
        try:
            magics.close_all()
        except Exception as e:  # noqa: BLE001 - interpreter shutdown: say it, never raise
            print(f"flame_jupyter: at kernel exit: {e}", file=sys.stderr)
