"""A large result's task output (``remote/large.py``), saved once, decoded by today's kernel."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from flame_jupyter import results
from flame_jupyter.remote import wire

SAMPLE = Path(__file__).parent / "samples" / "large_result.pkl"


def test_a_saved_large_result_reaches_the_kernels_resolver(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[tuple[Any, ...]] = []
    monkeypatch.setattr(results, "resolve_large", lambda *args: seen.append(args) or "the value")
    assert results.loads(SAMPLE.read_bytes()) == "the value"
    assert seen == [
        (
            wire.LARGE_FORMAT,
            "grpc://127.0.0.1:1",
            "golden-app/golden-session/obj-1",
            1,
            "/golden/storage/obj-1.arrow",
        )
    ]
