"""``AsyncRunner``: the plain Python API for asyncio code (RFE280's ``FlameAsyncRunner``).

Example
-------
>>> async with AsyncRunner("test") as runner:     # doctest: +SKIP
...     res = await runner.service(sum_fn)(1, 2)
...     print(res.get())
3
"""

from __future__ import annotations

import asyncio
from typing import Any

from flame_jupyter import futures as _futures
from flame_jupyter.errors import FlameJupyterError
from flame_jupyter.runner import Runner, Service


class AsyncRunner:
    """``Runner`` for asyncio code (RFE280's ``FlameAsyncRunner``): ``await svc(1, 2)``.

    >>> async with AsyncRunner("test") as runner:     # doctest: +SKIP
    ...     sum_s = runner.service(sum_fn)
    ...     res = await sum_s(1, 2)
    ...     print(res.get())
    3
    """

    def __init__(self, name: str | None = None, **kwargs: Any) -> None:
        self._name = name
        self._kwargs = kwargs
        self._runner: Runner | None = None

    async def __aenter__(self) -> AsyncRunner:
        self._runner = await asyncio.to_thread(Runner, self._name, **self._kwargs)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._runner is not None:
            await asyncio.to_thread(self._runner.close)

    @property
    def runner(self) -> Runner:
        if self._runner is None:
            raise FlameJupyterError("use `async with AsyncRunner(...) as runner:` first")
        return self._runner

    def service(self, obj: Any, **kwargs: Any) -> Service:
        """As :meth:`Runner.service`; the futures its calls return can be awaited."""
        return self.runner.service(obj, **kwargs)

    async def get(self, futures: Any) -> Any:
        return await asyncio.to_thread(_futures.get, futures)
