"""Old name of :mod:`flame_jupyter.failures` (tests and a browser notebook still import it)."""

from __future__ import annotations

from flame_jupyter.failures import decode_failure
from flame_jupyter.remote.wire import encode_failure as encode

__all__ = ["decode_failure", "encode"]
