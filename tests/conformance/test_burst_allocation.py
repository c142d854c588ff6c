"""How many instances a burst of tasks gets, and when: Flame v0.6.0's scheduler.

session_manager/src/scheduler/plugins/priority.rs ``compute_demand`` wants ``pending + running``
executors (floored to whole batches, clamped to ``[min_instances, max_instances]``), and
actions/allocate.rs re-queues an underused session after each committed gang until that demand is
met, in the same cycle (every ``schedule_interval``, 100 ms): a burst of short tasks gets one
executor per task at once, so its tasks spread over several instances even when one instance could
have run them all in less time than the others take to start.
"""

from __future__ import annotations

import flamepy
from conf_support import registered, request, service_attrs, uid, wait_for
from flamepy import TaskState

BURST = 3  # below the runtime fixture's 4 slots


def _executors_of(session_id: str) -> list[object]:
    return [e for e in flamepy.list_executors() if e.status.session_id == session_id]


def test_a_burst_of_short_tasks_gets_an_instance_per_task(runtime) -> None:
    with registered(uid("conf-burst"), service_attrs("conf_echo_service.py")) as app:
        ssn = flamepy.create_session(application=app)
        try:
            ssn.invoke(request("warm-up"))  # one instance bound and idle, as after a first call
            assert len(_executors_of(ssn.id)) == 1
            tasks = [ssn.create_task(request(f"t{i}", sleep_ms=60)) for i in range(BURST)]
            wait_for(
                lambda: all(ssn.get_task(t.id).state == TaskState.SUCCEED for t in tasks),
                60,
                "the burst to finish",
            )
            # The bound instance could run the whole burst before a new one has started; Flame
            # starts an instance per task anyway (demand = pending + running at the next cycle),
            # and they stay bound to the session (delay_release) after the burst is over.
            got = wait_for(lambda: len(_executors_of(ssn.id)) >= BURST or None, 10, "an instance per task")
            assert got
            assert len(_executors_of(ssn.id)) == BURST
        finally:
            ssn.close()
