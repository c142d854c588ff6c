"""The front-end code of flame_jupyter's widgets, read from ``static/`` (no JS build step).

Two pieces:

* ``STUB_ESM`` (``static/stub.js``) is every widget's anywidget ``_esm`` (about 1.5 KB). It loads
  the shared library once per page and delegates ``render`` to it.
* ``LIB_JS`` (``static/lib.js`` with ``static/lib.css`` inside) is the library: views for futures
  and the status panel. It travels once: in the ``_lib`` state of the first widget of the kernel
  and of the panel (so saved widget state renders without a kernel), or, when a view needs it and
  no model carried it, in answer to a ``{"kind": "lib"}`` message. 2,000 futures therefore cost
  2,000 small models, not 2,000 copies of the code (in the comm traffic, in the browser, and in a
  notebook's saved widget state).

The library is templated once, here: the state names come from :mod:`flame_jupyter.remote.wire`
(via :mod:`flame_jupyter.display.states`) and the field names from the view models
(:data:`~flame_jupyter.display.future_view.FUTURE_VIEW_KEYS`,
:data:`~flame_jupyter.display.panel_view.PANEL_VIEW_KEYS`), so the JavaScript never spells them.
"""

from __future__ import annotations

import hashlib
import json
import re
from importlib import resources

from flame_jupyter.display.future_view import FUTURE_VIEW_KEYS
from flame_jupyter.display.map_view import MAP_VIEW_KEYS
from flame_jupyter.display.panel_view import PANEL_VIEW_KEYS
from flame_jupyter.display.states import STATES, TERMINAL_STATES
from flame_jupyter.remote.wire import State

_SLOT = re.compile(r"/\*%([A-Z_]+)%\*/")
_STATE_SLOT = re.compile(r"%S\.([A-Z_]+)%")


def static_text(name: str) -> str:
    """The text of ``flame_jupyter/widgets/static/<name>``."""
    return resources.files("flame_jupyter.widgets").joinpath("static", name).read_text("utf-8")


def _fill(text: str, slots: dict[str, str], where: str) -> str:
    def one(m: re.Match[str]) -> str:
        if m.group(1) not in slots:
            raise KeyError(f"{where}: unknown slot {m.group(0)}")
        return slots[m.group(1)]

    return _SLOT.sub(one, text)


def _fill_states(text: str, where: str) -> str:
    names = {s.name: s.value for s in State}

    def one(m: re.Match[str]) -> str:
        if m.group(1) not in names:
            raise KeyError(f"{where}: unknown state {m.group(0)}")
        return names[m.group(1)]

    return _STATE_SLOT.sub(one, text)


def build_lib(js: str, css: str) -> str:
    """The library code: ``js`` with its slots filled (``%HASH%`` left for the caller)."""
    slots = {
        "STATE_NAMES": json.dumps({s.name: s.value for s in State}),
        "STATES": json.dumps(list(STATES)),
        "TERMINAL": json.dumps(list(TERMINAL_STATES)),
        "FUTURE_FIELDS": json.dumps({k: k for k in FUTURE_VIEW_KEYS}),
        "PANEL_FIELDS": json.dumps({k: k for k in PANEL_VIEW_KEYS}),
        "MAP_FIELDS": json.dumps({k: k for k in MAP_VIEW_KEYS}),
        "CSS": json.dumps(_fill_states(css, "lib.css")),
    }
    return _fill(js, slots, "lib.js")


_LIB_TEMPLATE = build_lib(static_text("lib.js"), static_text("lib.css"))
LIB_HASH = hashlib.sha256(_LIB_TEMPLATE.encode()).hexdigest()[:12]
LIB_JS = _LIB_TEMPLATE.replace("%HASH%", LIB_HASH)
STUB_ESM = static_text("stub.js").replace("%HASH%", LIB_HASH)
