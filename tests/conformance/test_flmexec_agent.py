"""flmexec scripts that start Runners, and the flamepy.service (agent) Session API."""

from __future__ import annotations

import json
import textwrap
from collections.abc import Iterator

import flamepy
import pytest
from conf_agent_api import Answer, Ask, Memo
from conf_support import registered, service_attrs, uid
from flamepy.service import Session

MARK = "CONF_FLMEXEC_RESULT="


def _flmexec(code: str) -> str:
    ssn = flamepy.create_session("flmexec")
    try:
        raw = ssn.invoke(
            json.dumps({"language": "python", "runtime": None, "code": code, "input": None}).encode()
        )
    finally:
        ssn.close()
    return bytes(json.loads(raw.decode())["data"]).decode()


def _result(output: str) -> object:
    line = next((ln for ln in output.splitlines() if ln.startswith(MARK)), None)
    assert line is not None, output
    return json.loads(line.removeprefix(MARK))


SCRIPT = """
import json, uuid
from flamepy.runner import Runner

def work(x):
    {body}

with Runner("conf-flmexec-" + uuid.uuid4().hex[:8]{deps}) as rr:
    svc = rr.service(work)
    print("{mark}" + json.dumps(rr.get([svc(3), svc(4)]), sort_keys=True))
"""


@pytest.mark.parametrize(
    ("body", "deps", "expected"),
    [
        ("return x * x", "", [9, 16]),
        (
            "import numpy as np\n    v = np.arange(1, x + 1, dtype=np.int64)\n"
            "    return {'dtype': str(v.dtype), 'shape': list(v.shape), 'sum': int(v.sum())}",
            ", dependencies=['numpy']",
            [{"dtype": "int64", "shape": [3], "sum": 6}, {"dtype": "int64", "shape": [4], "sum": 10}],
        ),
    ],
    ids=["no-project-metadata", "numpy-dependency"],
)
def test_flmexec_script_starts_a_runner(runtime, body: str, deps: str, expected: object) -> None:
    assert flamepy.get_application("flmexec") is not None and flamepy.get_application("flmrun") is not None
    code = textwrap.dedent(SCRIPT).format(body=body, deps=deps, mark=MARK)
    assert _result(_flmexec(code)) == expected


def test_flmexec_runs_plain_python_and_returns_stdout(runtime) -> None:
    assert _result(_flmexec(f"print('{MARK}' + str(6 * 7))")) == 42


@pytest.fixture(scope="module")
def agent(runtime) -> Iterator[str]:
    with registered(uid("conf-agent"), service_attrs("conf_agent_service.py")) as name:
        yield name


def _open_ids(app: str) -> list[str]:
    return [
        s.id for s in flamepy.list_sessions() if s.application == app and s.state == flamepy.SessionState.OPEN
    ]


def test_service_session_lifecycle_and_context(agent: str) -> None:
    ssn = Session(agent, ctx=Memo(text="first"))
    sid = ssn.id()
    assert _open_ids(agent) == [sid]
    assert flamepy.get_session(sid).application == agent
    ctx = ssn.context()
    assert isinstance(ctx, Memo) and ctx.text == "first"
    assert ssn.invoke(Ask(text="hi")) == Answer(text="hi", memo="first")
    ssn.close()
    assert _open_ids(agent) == []
    assert flamepy.get_session(sid).state == flamepy.SessionState.CLOSED


def test_service_session_without_context(agent: str) -> None:
    with Session(name=agent, ctx=None) as ssn:
        sid = ssn.id()
        assert _open_ids(agent) == [sid]
        assert ssn.context() is None
        assert ssn.invoke(Ask(text="plain")) == Answer(text="plain", memo=None)
    assert flamepy.get_session(sid).state == flamepy.SessionState.CLOSED


def test_update_context_is_seen_by_the_next_call_and_the_client(agent: str) -> None:
    ssn = Session(agent, ctx=Memo(text="m0"))
    try:
        previous = "m0"
        for i in range(3):
            assert ssn.invoke(Ask(text=f"m{i + 1}", remember=True)) == Answer(text=f"m{i + 1}", memo=previous)
            assert ssn.context() == Memo(text=f"m{i + 1}")
            previous = f"m{i + 1}"
    finally:
        ssn.close()


def test_service_session_opens_an_existing_session(agent: str) -> None:
    first = Session(agent, ctx=Memo(text="kept"))
    second = Session(session_id=first.id())
    try:
        assert second.id() == first.id() and _open_ids(agent) == [first.id()]
        assert second.invoke(Ask(text="via second")) == Answer(text="via second", memo="kept")
    finally:
        first.close()
        second.close()


def test_service_session_argument_rules(runtime) -> None:
    with pytest.raises(ValueError, match="Either 'name' or 'session_id' must be provided"):
        Session(name=None, session_id=None)
    with pytest.raises(ValueError, match="Cannot provide both 'name' and 'session_id'"):
        Session(name="x", session_id="y")
