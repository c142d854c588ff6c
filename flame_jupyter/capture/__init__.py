"""The capture engine: notebook code, and the globals it uses, made ready for an executor.

- :mod:`.capturer` -- :class:`Capturer` and :class:`Captured`;
- :mod:`.stores` -- the object stores large values go to;
- :mod:`.env` -- one capture run: pickle, discover globals, build the env;
- :mod:`.names` -- which global names a piece of code needs;
- :mod:`.modules` -- local modules that travel as source;
- :mod:`.errors` -- what cannot travel, and how the user reached it.

The executor-side half that runs what is captured is :mod:`flame_jupyter.remote`.
"""

from __future__ import annotations

from .capturer import (
    DEFAULT_THRESHOLD,
    ENV_KWARG,
    Captured,
    Capturer,
    FlameObjectStore,
    MemoryObjectStore,
    ObjectStore,
    capture,
    capture_cell,
    configure,
    default_capturer,
)
from .capturer import (
    _public_methods as _public_methods,
)
from .errors import CaptureError

__all__ = [
    "DEFAULT_THRESHOLD",
    "ENV_KWARG",
    "CaptureError",
    "Captured",
    "Capturer",
    "FlameObjectStore",
    "MemoryObjectStore",
    "ObjectStore",
    "capture",
    "capture_cell",
    "configure",
    "default_capturer",
]
