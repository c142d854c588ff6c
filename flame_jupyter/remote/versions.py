"""The versions kernel and executor must agree on, and the check that says what to install."""

from __future__ import annotations

import sys
from typing import Any

import cloudpickle

from .wire import PAYLOAD_FORMAT, Header


def _dill() -> Any:
    try:
        import dill
    except ImportError as exc:  # pragma: no cover - depends on the executor image
        raise RuntimeError(
            "flame_jupyter payloads need 'dill' on the executor; install it there "
            "(pip install dill) with the same version as in the notebook kernel"
        ) from exc
    return dill


def versions() -> dict[str, str]:
    """Versions that must match between kernel and executor."""
    try:
        dill_version = _dill().__version__
    except RuntimeError:
        dill_version = "missing"
    return {
        "python": ".".join(str(p) for p in sys.version_info[:3]),
        "dill": dill_version,
        "cloudpickle": cloudpickle.__version__,
    }


def make_header() -> Header:
    """Header stored in every payload: format and serializer versions."""
    return {"format": PAYLOAD_FORMAT, **versions()}  # type: ignore[typeddict-item]


def _minor(version: str) -> str:
    return ".".join(str(version).split(".")[:2])


def _describe(v: dict[str, str]) -> str:
    return "Python {} / dill {} / cloudpickle {}".format(
        _minor(v.get("python", "?")),
        v.get("dill", "?"),
        v.get("cloudpickle", "?"),
    )


def check_versions(header: dict[str, Any]) -> None:
    """Raise ``RuntimeError`` if this process cannot load a payload made under ``header``.

    Python, dill and cloudpickle must agree on major.minor (bytecode and pickle formats).
    """
    mine = versions()
    fmt = header.get("format")
    if fmt != PAYLOAD_FORMAT:
        raise RuntimeError(
            f"flame_jupyter payload format {fmt!r} is not supported by this executor (expects {PAYLOAD_FORMAT!r}); "
            "use the same flame_jupyter version everywhere"
        )
    if all(_minor(header.get(k, "?")) == _minor(mine[k]) for k in ("python", "dill", "cloudpickle")):
        return
    want = {k: header.get(k, "?") for k in ("python", "dill", "cloudpickle")}
    raise RuntimeError(
        "flame_jupyter payload was made with {} but this executor has {}; "
        "code captured in a notebook only runs where Python and the serializers match: "
        "install dill=={} and cloudpickle=={} on the executors and run them with Python {} "
        "(or switch the notebook kernel to Python {})".format(
            _describe(want),
            _describe(mine),
            want["dill"],
            want["cloudpickle"],
            _minor(want["python"]),
            _minor(mine["python"]),
        )
    )
