"""Small, seeded versions of Flame's opt-in system tests: stress, longevity, fuzzed Runner work."""

from __future__ import annotations

import random
import shutil
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import conf_runner_svc as svc
import flamepy
import pytest
from conf_support import HERE, call, registered, service_attrs, settings, uid
from flamepy.runner import Runner


@pytest.fixture(scope="module")
def app(runtime) -> Iterator[str]:
    with registered(uid("conf-system"), service_attrs("conf_echo_service.py")) as name:
        yield name


def _text(label: str, size: int) -> str:
    return label if size <= len(label) else f"{label}:{'x' * (size - len(label) - 1)}"


def test_cluster_has_a_ready_node_and_lists_executors(runtime) -> None:
    nodes = flamepy.list_nodes()
    assert len(nodes) >= 1
    node = nodes[0]
    assert node.metadata.name and node.spec.hostname
    assert node.status.capacity.cpu > 0 and node.status.allocatable.cpu > 0
    for executor in flamepy.list_executors():
        assert executor.spec.node in {n.metadata.name for n in nodes}


def test_parallel_sessions_with_fuzzed_tasks(app: str) -> None:
    rng = random.Random(20250601)
    sessions, notes = [], []
    try:
        for i in range(3):
            note = _text(f"common-{i}", rng.randint(10, 2048))
            notes.append(note)
            sessions.append(
                flamepy.create_session(
                    application=app,
                    session_id=uid(f"conf-stress-{i}"),
                    common_data=settings(app, note=note),
                    min_instances=0,
                    max_instances=rng.randint(1, 2),
                )
            )
        plan = [(i % 3 if i < 3 else rng.randrange(3), i) for i in range(12)]
        rng.shuffle(plan)

        def run(item: tuple[int, int]) -> int:
            s, n = item
            reply_text = _text(f"out-{s}-{n}", rng.randint(1, 4096))
            reply = call(sessions[s], _text(f"in-{s}-{n}", 64), reply=reply_text, sleep_ms=rng.randint(0, 50))
            assert reply["out"] == reply_text and reply["note"] == notes[s]
            return s

        with ThreadPoolExecutor(max_workers=6) as pool:
            done = Counter(pool.map(run, plan))
        assert done == Counter(s for s, _ in plan)
        for i, ssn in enumerate(sessions):
            fresh = flamepy.get_session(ssn.id)
            assert (fresh.state, fresh.succeed, fresh.failed) == (flamepy.SessionState.OPEN, done[i], 0)
    finally:
        for ssn in sessions:
            ssn.close()


def test_one_session_stays_healthy_for_a_while(app: str) -> None:
    note = _text("longevity", 256)
    ssn = flamepy.create_session(application=app, common_data=settings(app, note=note), max_instances=1)
    try:
        deadline, count = time.monotonic() + 3.0, 0
        while time.monotonic() < deadline and count < 200:
            reply = call(ssn, f"tick-{count}", reply=_text(f"tock-{count}", 256))
            assert reply["out"] == _text(f"tock-{count}", 256) and reply["note"] == note
            count += 1
            fresh = flamepy.get_session(ssn.id)
            assert fresh.state == flamepy.SessionState.OPEN and fresh.failed == 0
            time.sleep(0.05)
        assert count >= 3
        assert flamepy.get_session(ssn.id).succeed == count
    finally:
        ssn.close()


def test_runner_with_warmup_and_fuzzed_payloads(
    runtime, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shutil.copy(HERE / "conf_runner_svc.py", tmp_path / "conf_runner_svc.py")
    monkeypatch.chdir(tmp_path)
    rng = random.Random(7)
    cases = [
        (_text(f"in-{i}", rng.randint(1, 8192)), _text(f"out-{i}", rng.randint(1, 8192)), f"note-{i}")
        for i in range(10)
    ]
    with Runner(uid("conf-system-rr")) as rr:
        echo = rr.service(svc.echo_case, warmup=1)
        results = rr.get([echo(*case) for case in cases])
    assert results == [{"text": t, "reply": r, "note": n} for t, r, n in cases]
