"""The runtime's state: applications, sessions and tasks, and Flame v0.6.0's state machines.

* :mod:`~flame_local.state.apps`: the default applications and registration rules;
* :mod:`~flame_local.state.records`: session, task and event records and their states;
* :mod:`~flame_local.state.store`: the :class:`Store` that owns them, its lock and its waits.
"""

from __future__ import annotations

from flame_local.state.apps import Application
from flame_local.state.records import Event, Resources, Session, SessionSpec, Task, TaskState
from flame_local.state.store import Store

__all__ = ["Application", "Event", "Resources", "Session", "SessionSpec", "Store", "Task", "TaskState"]
