"""The executor-side half of the capture engine: the code that is shipped to executors.

It runs inside the *stock* ``python -m flamepy.runner.runpy`` service, where neither
flame_jupyter nor IPython is installed, so it imports nothing outside this package but the
standard library, ``cloudpickle`` and (lazily) ``dill``, ``flamepy`` and ``pyarrow`` (which
flamepy's object cache client needs). It travels as source
(:mod:`.bootstrap`), never as bytecode.

Modules, in the order they import each other (see ``docs/capture.md`` for what travels):

- :mod:`.wire` -- every format kernel and executor share (kwargs, tags, records, failures);
- :mod:`.versions` -- the versions both ends must agree on;
- :mod:`.runtime` -- per-process state and fetched values;
- :mod:`.bootstrap` -- how the package itself travels;
- :mod:`.reprs` -- small rich representations (displays, previews) without IPython;
- :mod:`.notebook_libs` -- matplotlib, tqdm and ``IPython.display`` report to the call;
- :mod:`.failure` -- a failed call's exception described for the kernel to rebuild;
- :mod:`.large` -- large results as protocol 5 parts in the object cache;
- :mod:`.channel` -- one call's output, progress and cancel; ``progress``/``display``;
- :mod:`.pickling` -- dill/cloudpickle bound to a notebook namespace;
- :mod:`.namespace` -- a payload's globals on the executor;
- :mod:`.execution` -- running the code; the wrappers flamepy serves.
"""

from __future__ import annotations

from .bootstrap import _boot_fn, _source_blob
from .channel import (
    Cancelled,
    RemoteAPI,
    RemoteFailure,
    display,
    guarded,
    import_module,
    progress,
    run_payload,
)
from .execution import LiveInstance, RemoteFunction, RemoteInstance, _build, make_remote_class, run_call
from .namespace import apply_env
from .pickling import Dumper, Loader, array_digest, bytes_digest, cheap_digest, class_for_tracker_id
from .reprs import mime_bundle
from .runtime import register_local_object
from .versions import check_versions, make_header, versions
from .wire import ARG_TAG, CALL_KWARG, ENV_KWARG, PAYLOAD_FORMAT, REF_TAG, State

__all__ = [
    "ARG_TAG",
    "CALL_KWARG",
    "ENV_KWARG",
    "PAYLOAD_FORMAT",
    "REF_TAG",
    "Cancelled",
    "Dumper",
    "Loader",
    "RemoteAPI",
    "RemoteFailure",
    "RemoteFunction",
    "RemoteInstance",
    "LiveInstance",
    "State",
    "_boot_fn",
    "_build",
    "_source_blob",
    "apply_env",
    "array_digest",
    "bytes_digest",
    "cheap_digest",
    "check_versions",
    "class_for_tracker_id",
    "display",
    "guarded",
    "import_module",
    "make_header",
    "make_remote_class",
    "mime_bundle",
    "progress",
    "register_local_object",
    "run_call",
    "run_payload",
    "versions",
]
