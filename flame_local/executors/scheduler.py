"""The scheduling rule, pure: which sessions get new instances and which idle instances go.

Instance counts follow Flame's scheduler (``scheduler/plugins/{priority,gang}.rs``,
``actions/allocate.rs``): a session wants ``max(min_instances, floor((pending + running) /
batch_size) * batch_size)`` instances, capped by its ``max_instances``; new instances are committed
in multiples of ``batch_size`` only (gang), round-robin over waiting sessions, oldest work first.
A burst gets its instances at once, as in Flame (``allocate.rs`` re-queues an underused session
after each gang until its demand is met, in one cycle): its calls spread over several instances.

Slots: ``capacity`` bounds the instances that *occupy a slot*: binding ones, ones running a task
(unless the task waits on other tasks: ``waiting``, its slot is lent, as Ray releases a blocked
worker's CPU), and idle ones above their session's ``min_instances``.  An idle instance that keeps
an open session's ``min_instances`` ("parked") holds no slot: it is never taken away for other
work while its session is open (its process may hold the user's state), and other sessions run
beside it.  ``process_limit`` bounds all live processes (lent and parked ones included).  When the
slots are full and a session waits, idle instances above ``min_instances`` are released early
instead of lingering for ``delay_release``; only when the *process limit* is what stops a session
that has no instance and whose work waited ``STARVED_AFTER_MS`` is a parked instance reclaimed
(the manager then fails that session's next task: its state was lost, never silently).
Sessions that a waiting instance waits on (``awaited``) get new instances first.

:func:`plan` takes plain data (:class:`Snapshot`) and returns a :class:`Plan`; the executor
manager builds the snapshot from its state and applies the plan with threads and processes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "STARVED_AFTER_MS",
    "InstanceView",
    "Plan",
    "SessionView",
    "Snapshot",
    "bind_retry_delay",
    "keeps_min_slot",
    "occupies_slot",
    "parked",
    "plan",
]

STARVED_AFTER_MS = 1000  # at the process limit, then a parked instance of another session goes


@dataclass(frozen=True)
class SessionView:
    """What the rule needs to know of one session the runtime remembers."""

    id: str
    open: bool = True
    schedulable: bool = True  # its application exists and is Host-shimmed, and binds are not blocked
    pending: int = 0
    running: int = 0
    oldest_pending_ms: float | None = None  # creation time of its oldest pending task (wall clock, ms)
    min_instances: int = 0
    max_instances: int | None = None
    batch_size: int = 1
    backing_off: bool = False  # a bind failed recently: no new instance for now
    awaited: bool = False  # a waiting instance watches one of its tasks: served first


@dataclass(frozen=True)
class InstanceView:
    """One live instance (every instance counts against the capacity, released or not)."""

    id: str
    session_id: str
    state: str = "bound"  # binding | bound | running | unbinding
    evict: bool = False  # already released: it ends after its current task
    waiting: bool = False  # running a task that waits on other tasks: its slot is lent


@dataclass(frozen=True)
class Snapshot:
    """The runtime at one moment: its sessions, its instances (in start order) and the clock."""

    sessions: Sequence[SessionView]
    instances: Sequence[InstanceView]
    capacity: int  # at most this many instances occupy a slot at once
    now_ms: float  # wall clock, ms (the clock of ``oldest_pending_ms``)
    process_limit: int | None = None  # at most this many live instances in all (None: no limit)


@dataclass(frozen=True)
class Plan:
    """What to do now: instances to start and idle instances to release."""

    launch: tuple[str, ...] = ()  # one session id per instance to start, in start order
    release: tuple[str, ...] = ()  # idle instances above their session's min_instances
    reclaim: tuple[str, ...] = ()  # parked instances taken at the process limit (their state is lost)


def wanted(ssn: SessionView) -> int:
    """How many instances ``ssn`` wants now (before subtracting those it has): Flame v0.6.0's
    ``compute_demand`` (session_manager/src/scheduler/plugins/priority.rs), counted in instances."""
    batch = ssn.batch_size
    work = ssn.pending + ssn.running
    want = max(ssn.min_instances, (work // batch) * batch)
    if ssn.max_instances is not None:
        want = min(want, ssn.max_instances)
    return want


def parked(snap: Snapshot) -> set[str]:
    """Idle instances that only keep their open session's ``min_instances`` (they hold no slot):
    bound, not released, their session has no pending work, and at most ``min_instances`` minus
    the session's other live instances of them (the latest started ones)."""
    sessions = {s.id: s for s in snap.sessions}
    live: dict[str, list[InstanceView]] = {}
    for inst in snap.instances:
        if not inst.evict:
            live.setdefault(inst.session_id, []).append(inst)
    out: set[str] = set()
    for sid, insts in live.items():
        ssn = sessions.get(sid)
        if ssn is None or not ssn.open or ssn.pending or ssn.min_instances <= 0:
            continue
        idle = [i for i in insts if i.state == "bound"]
        keep = max(0, ssn.min_instances - (len(insts) - len(idle)))
        out.update(i.id for i in idle[len(idle) - min(keep, len(idle)) :])
    return out


def occupies_slot(inst: InstanceView, parked_ids: set[str]) -> bool:
    """Does ``inst`` hold one of the ``capacity`` slots? Not when its task waits or it is parked."""
    if inst.state == "running" and inst.waiting:
        return False
    return inst.id not in parked_ids


def plan(snap: Snapshot) -> Plan:
    """The scheduling decision for ``snap`` (see the module docstring for the rule)."""
    # Sessions that waiting instances wait on come first: a lent slot serves what frees it.
    demand = sorted(
        (s for s in snap.sessions if s.open and s.schedulable),
        key=lambda s: (not s.awaited, _oldest(s), s.id),
    )
    have: dict[str, int] = {}
    for inst in snap.instances:
        if not inst.evict:
            have[inst.session_id] = have.get(inst.session_id, 0) + 1
    parked_ids = parked(snap)
    free_slots = snap.capacity - sum(1 for i in snap.instances if occupies_slot(i, parked_ids))
    free_procs = math.inf if snap.process_limit is None else snap.process_limit - len(snap.instances)
    free = min(free_slots, free_procs)
    wanting: list[list[Any]] = []  # [session, deficit left]
    for ssn in demand:
        deficit = wanted(ssn) - have.get(ssn.id, 0)
        deficit -= deficit % ssn.batch_size
        if deficit <= 0 or ssn.backing_off:
            continue
        wanting.append([ssn, deficit])
    # Round-robin over waiting sessions, one gang at a time: awaited sessions first, then the rest.
    launch: list[str] = []
    for group in ([i for i in wanting if i[0].awaited], [i for i in wanting if not i[0].awaited]):
        progress = True
        while free > 0 and progress:
            progress = False
            for item in group:
                ssn, deficit = item
                if deficit > 0 and free >= ssn.batch_size:
                    launch.extend([ssn.id] * ssn.batch_size)
                    item[1] -= ssn.batch_size
                    free -= ssn.batch_size
                    free_procs -= ssn.batch_size
                    progress = True
    starved = sum(item[1] for item in wanting)
    if starved <= 0:
        return Plan(launch=tuple(launch))
    waiting = {item[0].id for item in wanting if item[1] > 0}
    # Only the process limit lets a session whose work has waited STARVED_AFTER_MS with no
    # instance at all take a parked instance (parked ones hold no slot: taking one frees none).
    urgent = 0
    if free_procs < min(item[0].batch_size for item in wanting if item[1] > 0):
        urgent = sum(
            1
            for ssn, left in wanting
            if left > 0 and have.get(ssn.id, 0) == 0 and _oldest(ssn) <= snap.now_ms - STARVED_AFTER_MS
        )
    release, reclaim = _idle_to_release(snap, launch, starved, waiting, urgent, parked_ids)
    return Plan(launch=tuple(launch), release=release, reclaim=reclaim)


def _idle_to_release(
    snap: Snapshot, launch: list[str], count: int, waiting: set[str], below_min: int, parked_ids: set[str]
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Idle instances of sessions without pending work, to make room for ``count`` others: first
    those above their session's min_instances, then up to ``below_min`` parked ones (at the
    process limit only; their session's next task is told its state was lost)."""
    min_of = {s.id: (s.min_instances, s.pending) if s.open else (0, 0) for s in snap.sessions}
    per_session: dict[str, int] = {}
    for sid in [i.session_id for i in snap.instances if not i.evict] + launch:
        per_session[sid] = per_session.get(sid, 0) + 1
    idle = [  # bound, not running, and their session has no pending work
        inst
        for inst in snap.instances
        if not inst.evict
        and inst.state == "bound"
        and inst.session_id not in waiting
        and min_of.get(inst.session_id, (0, 0))[1] == 0
    ]
    release: list[str] = []
    for inst in idle:
        if count <= 0:
            break
        if per_session[inst.session_id] > min_of.get(inst.session_id, (0, 0))[0]:
            per_session[inst.session_id] -= 1
            count -= 1
            release.append(inst.id)
    reclaim: list[str] = []
    for inst in idle:
        if below_min <= 0 or count <= 0:
            break
        if inst.id not in release and inst.id in parked_ids:
            below_min -= 1
            count -= 1
            reclaim.append(inst.id)
    return tuple(release), tuple(reclaim)


def keeps_min_slot(min_instances: int, bound: int) -> bool:
    """Does an idle instance of an open session stay bound? Yes while the session's ``bound`` (not
    released) instances, this one included, do not exceed its ``min_instances``."""
    return bound <= min_instances


def bind_retry_delay(failures: int) -> float:
    """Seconds before a session whose bind failed ``failures`` times gets another instance."""
    return min(2.0, 0.1 * 2**failures)


def _oldest(ssn: SessionView) -> float:
    return math.inf if ssn.oldest_pending_ms is None else ssn.oldest_pending_ms
