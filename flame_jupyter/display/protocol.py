"""What the display reads on a future: exactly these public members, nothing private.

:class:`~flame_jupyter.futures.ObjectFuture` satisfies :class:`ViewedFuture`; the view models, the
static renderings and the widgets are typed against this protocol, so they never import the
futures module and never reach into a future's private state.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol


class ViewedFuture(Protocol):
    """The reads (and the three actions: cancel, get, ref) the display makes on a future."""

    label: str
    service: str
    app: str
    session_id: str
    task_id: str | None

    @property
    def known_state(self) -> str:
        """queued, running, done, failed or cancelled, as last seen (never asks Flame)."""

    @property
    def elapsed(self) -> float: ...

    @property
    def run_time(self) -> float | None: ...

    @property
    def finished_at(self) -> float | None: ...

    @property
    def output(self) -> Sequence[tuple[str, str]]: ...

    @property
    def progress(self) -> tuple[float, float, str] | None: ...

    @property
    def displays(self) -> Sequence[dict[str, Any]]: ...

    @property
    def preview(self) -> dict[str, Any] | None: ...

    @property
    def result_loaded(self) -> bool: ...

    @property
    def loaded_result(self) -> Any: ...

    @property
    def error(self) -> BaseException | None: ...

    @property
    def cancel_requested(self) -> bool: ...

    @property
    def known_waiting(self) -> str | None:
        """What a queued call waits for, as last seen (never asks Flame), else None."""

    @property
    def streams_closed(self) -> bool: ...

    def done(self) -> bool: ...

    def cancel(self) -> bool: ...

    def get(self, timeout: float | None = None) -> Any: ...

    def ref(self) -> Any: ...

    def add_listener(self, fn: Callable[[Any], None], *, shows_output: bool = True) -> None: ...

    def remove_listener(self, fn: Callable[[Any], None]) -> None: ...
