"""Resource requests no Flame node can hold, refused before anything is created on Flame.

Flame v0.6.0 places every executor of a session on one node, and only where the session's
``ResourceRequirement`` fits the node's allocatable resources
(``session_manager/src/scheduler/plugins/drf.rs`` L196-205): a larger request leaves its tasks
pending forever. Nodes report their resources over Flame's public ``ListNodes`` RPC (the embedded
runtime reports this machine: CPU count and total memory, as Flame's ``Node::refresh`` does), so
the check is the same on any Flame. When Flame lists no nodes or does not answer, nothing is
refused: only what Flame says is used.

    check_resources(ResourceRequirement(cpu=8, memory=2**30))   # ResourceRequestError on 2 cores
"""

from __future__ import annotations

from typing import Any, NamedTuple

from flame_jupyter.errors import ResourceRequestError

GIB = 2**30


class NodeCapacity(NamedTuple):
    """What one Flame node can give an executor."""

    name: str
    cpu: int
    memory: int  # bytes
    gpu: int


def node_capacities() -> list[NodeCapacity] | None:
    """Every node's allocatable resources (its capacity where Flame leaves allocatable unset);
    None when Flame does not say (no nodes listed, or ``ListNodes`` failed)."""
    import flamepy

    try:
        nodes = list(flamepy.list_nodes())
    except Exception:  # noqa: BLE001 - a Flame without node listing: do not guess
        return None
    out = []
    for node in nodes:
        status = node.status
        res = status.allocatable if status.allocatable.cpu or status.allocatable.memory else status.capacity
        name = node.metadata.name or node.spec.hostname
        out.append(NodeCapacity(name, int(res.cpu), int(res.memory), int(res.gpu)))
    return out or None


def describe(cpu: int, memory: int, gpu: int = 0) -> str:
    """``cpu=8, memory=64 GiB`` (and ``, gpu=N`` when GPUs are asked for)."""
    return f"cpu={cpu}, memory={_size(memory)}" + (f", gpu={gpu}" if gpu > 0 else "")


def _fits(cpu: int, memory: int, gpu: int, node: NodeCapacity) -> bool:
    """Flame's test (drf.rs L198-204): CPUs and memory within the node's, GPUs only when asked for."""
    return cpu <= node.cpu and memory <= node.memory and (gpu <= 0 or gpu <= node.gpu)


def check_resources(resources: Any, what: str = "the request") -> None:
    """Raise :class:`ResourceRequestError` when no node could ever run an executor with
    ``resources`` (a Flame ``ResourceRequirement``; None asks for nothing)."""
    if resources is None:
        return
    cpu, memory = int(resources.cpu or 0), int(resources.memory or 0)
    gpu = int(getattr(resources, "gpu", 0) or 0)
    nodes = node_capacities()
    if nodes is None or any(_fits(cpu, memory, gpu, n) for n in nodes):
        return
    largest = ", ".join(
        f"{n.name}: {n.cpu} CPU{'' if n.cpu == 1 else 's'}, {_size(n.memory)}"
        + (f", {n.gpu} GPU{'' if n.gpu == 1 else 's'}" if gpu > 0 else "")
        for n in nodes[:5]
    )
    more = f" (and {len(nodes) - 5} more)" if len(nodes) > 5 else ""
    raise ResourceRequestError(
        f"{what} asks for {describe(cpu, memory, gpu)}, more than any Flame node can give "
        f"({largest}{more}): its tasks would never start. Ask for at most what one node has."
    )


def _size(n: int) -> str:
    return f"{n / GIB:.0f} GiB" if n >= GIB and n % GIB == 0 else f"{n / GIB:.1f} GiB"
