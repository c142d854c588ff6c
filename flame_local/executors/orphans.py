"""Child processes that die with the runtime, even when it is SIGKILLed (Linux's parent-death signal)."""

from __future__ import annotations

import ctypes
import shutil
import signal
import sys

__all__ = ["orphan_guard"]

_PR_SET_PDEATHSIG = 1
_SETPRIV = shutil.which("setpriv")


def _die_with_parent() -> None:  # runs in the child between fork and exec
    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except Exception:  # noqa: BLE001 - best effort; stop() still ends the group
        pass


def orphan_guard(argv: list[str]) -> tuple[list[str], object]:
    """Make the instance die with the runtime (even on SIGKILL): Linux's parent-death signal.

    util-linux ``setpriv --pdeathsig`` sets it without a ``preexec_fn``, which keeps
    subprocess on its fast vfork path and off gRPC's fork handlers; ``prctl`` in a
    ``preexec_fn`` is the fallback.
    """
    if not sys.platform.startswith("linux"):
        return argv, None
    if _SETPRIV:
        return [_SETPRIV, "--pdeathsig", "KILL", "--", *argv], None
    return argv, _die_with_parent
