"""flame_local: the embedded single-machine Flame runtime.

It speaks Flame v0.6.0's wire protocols (the ``flame.v1.Frontend`` gRPC service and the
Arrow Flight object cache) so the unmodified ``flamepy==0.6.0`` client cannot tell it from a
cluster.  It never imports IPython or flame_jupyter.

Example
-------
>>> from flame_local import LocalRuntime
>>> with LocalRuntime() as rt:          # doctest: +SKIP
...     print(rt.endpoint, rt.cache_endpoint)
"""

from __future__ import annotations

__all__ = ["LocalRuntime", "RuntimeSettings"]


def __getattr__(name: str):
    if name in __all__:
        from flame_local.runtime import LocalRuntime, RuntimeSettings

        return {"LocalRuntime": LocalRuntime, "RuntimeSettings": RuntimeSettings}[name]
    raise AttributeError(name)
