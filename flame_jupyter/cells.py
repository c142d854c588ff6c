"""``%%flame`` cells on Flame: one session runs many captured cells (the magics' back end).

The execution object is :data:`flame_jupyter.remote.run_payload`; each cell travels as the task's
argument. A named ``session`` keeps one instance (``max_instances=1``) and one namespace there,
so cells can build on each other's remote state; its loss is told as an instance service's is
(:mod:`flame_jupyter.live_state`).
"""

from __future__ import annotations

from typing import Any

from flame_jupyter import _flamepy, live_state
from flame_jupyter.capture import Captured
from flame_jupyter.futures import ObjectFuture
from flame_jupyter.registry import ServiceInfo, registry
from flame_jupyter.remote.wire import EXPECT_KWARG
from flame_jupyter.runner import Runner, flame_error, forget, launch


class CellFuture(ObjectFuture):
    """The future of a ``%%flame`` cell: ``get()`` is the value of the cell's last expression;
    ``outputs`` are the names the cell was asked to send back (``-o``)."""

    bound_names: tuple[str, ...] = ()  # the cell's -o names (its view lists them)

    def get(self, timeout: float | None = None) -> Any:
        return self._cell_result(timeout)["value"]

    @property
    def loaded_result(self) -> Any:
        """The cell's value once fetched (never the internal value/outputs record)."""
        record = ObjectFuture.loaded_result.fget(self)  # type: ignore[attr-defined]
        return record["value"] if isinstance(record, dict) and "value" in record else record

    @property
    def outputs(self) -> dict[str, Any]:
        return self._cell_result(None)["outputs"]

    def _cell_result(self, timeout: float | None) -> dict[str, Any]:
        return ObjectFuture.get(self, timeout)


class CellService:
    """Runs captured ``%%flame`` cells: one Flame session for many cells."""

    def __init__(
        self, runner: Runner, name: str, *, session: str | None = None, resources: Any = None
    ) -> None:
        from flame_jupyter.remote import run_payload

        self._runner = runner
        self.name = name
        self.session = session
        autoscale = False if session else True
        try:
            self._fp = runner._runner.service(run_payload, autoscale=autoscale, resreq=resources)
        except Exception as e:
            raise flame_error(f"cannot start the cell service {name!r}", e) from None
        self.session_id = _flamepy.session_of(self._fp).id
        self.closed = False
        self._live = live_state.LiveState() if session else None  # its namespace lives in its instance
        registry.add_service(
            ServiceInfo(name=name, kind="cell", app=runner.name, session_id=self.session_id, handle=self)
        )

    def run(self, captured: Captured, label: str = "cell") -> CellFuture:
        sent = self._live.expect() if self._live is not None else None
        fut = launch(
            self._runner,
            self._fp,
            self._fp,
            (captured.execution_object, None),
            {} if sent is None else {EXPECT_KWARG: sent},
            service=self.name,
            label=label,
            action="cannot submit the cell",
            future_cls=CellFuture,
        )
        if self._live is not None and sent is not None:
            self._live.follow(fut, sent)
        return fut

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            registry.close_service(self.session_id)
            self._fp.close()
            forget(self._runner, self._fp)
