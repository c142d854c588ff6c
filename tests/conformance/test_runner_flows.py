"""flamepy.runner.Runner flows: function/class/instance services, futures, sessions, errors."""

from __future__ import annotations

import shutil
import tarfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import cloudpickle
import conf_runner_svc as svc
import flamepy
import pytest
from conf_support import HERE, uid
from flamepy.core import ObjectRef, get_object, put_object
from flamepy.runner import (
    ErrorType,
    Runner,
    RunnerContext,
    RunnerError,
    RunnerRequest,
    SessionContext,
    get_data,
)


@pytest.fixture
def project(runtime, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A project directory holding the service module; the Runner packages the cwd."""
    root = tmp_path / "proj"
    root.mkdir()
    shutil.copy(HERE / "conf_runner_svc.py", root / "conf_runner_svc.py")
    monkeypatch.chdir(root)
    yield root


@contextmanager
def registered_cleanup(name: str) -> Iterator[None]:
    """Close what is left open for ``name`` and unregister it, if it is still registered."""
    try:
        yield
    finally:
        for ssn in flamepy.list_sessions():
            if ssn.application == name and ssn.state == flamepy.SessionState.OPEN:
                flamepy.close_session(ssn.id)
        if name in _app_names():
            flamepy.unregister_application(name)


def _app_names() -> set[str]:
    return {a.name for a in flamepy.list_applications()}


def test_runner_registers_for_its_lifetime_and_close_is_idempotent(project: Path) -> None:
    name = uid("conf-rr")
    with Runner(name) as rr:
        assert name in _app_names()
        assert rr.service(svc.add)(1, 1).get() == 2
    assert name not in _app_names()
    rr.close()
    rr.close()
    auto = uid("conf-rr")
    started = Runner(auto)  # starts in __init__, no context manager needed
    try:
        assert auto in _app_names()
        assert started.service(svc.add)(10, 20).get() == 30
    finally:
        started.close()
    assert auto not in _app_names()


def test_package_leaves_out_the_default_excludes(project: Path) -> None:
    (project / "main.py").write_text("print('hello')\n")
    (project / "run.log").write_text("log\n")
    (project / "cache").mkdir()
    (project / "__pycache__").mkdir()
    (project / "__pycache__" / "m.cpython-311.pyc").write_bytes(b"\0")
    name = uid("conf-rr-pkg")
    with Runner(name) as rr:
        assert rr.service(svc.add)(2, 2).get() == 4
        archives = list((project / "dist").glob("*.tar.gz"))
        assert len(archives) == 1
        with tarfile.open(archives[0]) as tar:
            names = tar.getnames()
    assert "conf_runner_svc.py" in names and "main.py" in names
    assert not any("__pycache__" in n or n.endswith(".pyc") or n.startswith("dist") for n in names), names


def test_function_services(project: Path) -> None:
    with Runner(uid("conf-rr-fn")) as rr:
        add = rr.service(svc.add)
        fut = add(1, 3)
        assert isinstance(fut, flamepy.runner.ObjectFuture)
        assert fut.get() == 4
        ref = fut.ref()
        assert isinstance(ref, ObjectRef) and ref.endpoint and ref.key
        assert rr.get([add(i, i + 1) for i in range(5)]) == [1, 3, 5, 7, 9]
        greet = rr.service(svc.hello)
        assert rr.get([greet(name="World", greeting="Hi"), greet(name="Python")]) == [
            "Hi, World!",
            "Hello, Python!",
        ]

        def constant() -> int:
            return 42

        def is_none(x: object) -> str:
            return "none" if x is None else "not-none"

        def nested(data: dict) -> dict:
            return {"input": data, "processed": True, "nested": {"level": 2}}

        assert rr.service(constant)().get() == 42
        assert rr.service(is_none)(None).get() == "none"
        assert rr.service(nested)({"k": [1, 2]}).get() == {
            "input": {"k": [1, 2]},
            "processed": True,
            "nested": {"level": 2},
        }

        def make_list(n: int) -> list[int]:
            return list(range(n))

        big = rr.service(make_list)(10000).get()
        assert len(big) == 10000 and big[-1] == 9999
        assert sorted(f.get() for f in rr.select([add(1, 2), add(5, 7), add(3, 4)])) == [3, 7, 12]


def test_class_and_instance_services(project: Path) -> None:
    with Runner(uid("conf-rr-cls")) as rr:
        arith = rr.service(svc.Arith)
        assert arith.times(2, 3).get() == 6
        single = rr.service(svc.Arith, autoscale=False)
        assert rr.get([single.plus(10, 5), single.times(3, 4)]) == [15, 12]
        tally = svc.Tally()
        tally.add(10)  # the instance's state travels with it
        counter = rr.service(tally)
        counter.bump().wait()
        counter.add(3).wait()
        first = counter.value()
        assert first.get() == 14
        counter.add(first).wait()  # an ObjectFuture as an argument
        assert counter.value().get() == 28
        other = rr.service(svc.Tally(100))
        other.bump().wait()
        assert (counter.value().get(), other.value().get()) == (28, 101)
        with pytest.raises(ValueError, match="always fixed"):
            rr.service(svc.Tally(), autoscale=True)
        mixed = [rr.service(svc.add)(10, 5), arith.times(3, 4), arith.minus(15, 5)]
        assert rr.get(mixed) == [15, 12, 10]


def test_interleaved_map_reduce_over_two_services(project: Path) -> None:
    with Runner(uid("conf-rr-mr")) as rr:
        arith = rr.service(svc.Arith())
        add = rr.service(svc.add)
        calls = []
        for i in range(6):
            calls += [add(i, 1), arith.times(i, 2)]
        values = rr.get(calls)
        assert values[0::2] == [i + 1 for i in range(6)] and values[1::2] == [i * 2 for i in range(6)]
        squares = rr.get([arith.times(x, x) for x in (1, 2, 3, 4)])
        pair = rr.get([add(squares[0], squares[1]), add(squares[2], squares[3])])
        assert add(*pair).get() == 30
        assert rr.get([add(i, 1) for i in range(30)]) == list(range(1, 31))


def test_errors_reach_the_caller_and_other_calls_go_on(project: Path) -> None:
    def picky(x: int) -> int:
        if x == 3:
            raise ValueError("three is refused")
        return x * 10

    name = uid("conf-rr-err")
    with Runner(name) as rr:
        fn = rr.service(picky)
        futures = [fn(i) for i in (1, 2, 3, 4)]
        ok, failed = [], []
        for fut in futures:
            try:
                ok.append(fut.get())
            except Exception as exc:  # noqa: BLE001 - the failure is the result under test
                failed.append(str(exc))
        assert ok == [10, 20, 40]
        # Flame v0.6.0's WatchTask carries no events (controller/mod.rs watch_task), so flamepy's
        # future has no message; the failed task's GetTask events have it.
        assert failed == ["Task failed without error message (code: 3)"]
        (sid,) = [s.id for s in flamepy.list_sessions() if s.application == name]
        ssn = flamepy.open_session(sid)
        failed_ids = [t.id for t in ssn.list_tasks() if t.state == flamepy.TaskState.FAILED]
        events = [e.message or "" for tid in failed_ids for e in ssn.get_task(tid).events if e.code == 3]
        assert len(events) == 1 and "three is refused" in events[0]
        assert fn(5).get() == 50


def test_fail_if_exists_and_reusing_a_registered_app(project: Path) -> None:
    name = uid("conf-rr-dup")
    with registered_cleanup(name):
        with Runner(name) as outer:
            with pytest.raises(flamepy.FlameError) as err:
                Runner(name, fail_if_exists=True)
            assert err.value.code == flamepy.FlameErrorCode.ALREADY_EXISTS
            inner = Runner(name)
            assert inner.service(svc.add)(3, 4).get() == 7
            inner.close()
            assert name in _app_names()  # the inner Runner did not register it, so it leaves it
            own = outer.service(svc.add)
            assert own(10, 20).get() == 30
            sid = own._session.id
        # The outer Runner closed its own sessions (the inner one, not the registrar, left its own open).
        assert flamepy.get_session(sid).state == flamepy.SessionState.CLOSED


def test_session_context_picks_the_session_id(project: Path) -> None:
    name = uid("conf-rr-ctx")

    class WithCtx:
        _session_context = SessionContext(session_id=f"{name}-cls", application_name="ignored")

        def twice(self, x: int) -> int:
            return 2 * x

    class Partial:
        _session_context = SessionContext(application_name="partial")

        def echo(self, msg: str) -> str:
            return msg

    class Invalid:
        _session_context = {"session_id": "invalid"}

        def plus(self, a: int, b: int) -> int:
            return a + b

    def make(sid: str) -> type:
        class Dynamic:
            _session_context = SessionContext(session_id=sid)

            def ident(self) -> str:
                return sid

        return Dynamic

    def fn(a: int, b: int) -> int:
        return a + b

    fn._session_context = SessionContext(session_id=f"{name}-fn")  # type: ignore[attr-defined]
    tally = svc.Tally()
    tally._session_context = SessionContext(session_id=f"{name}-obj")  # type: ignore[attr-defined]
    with Runner(name) as rr:
        cls = rr.service(WithCtx)
        assert cls._session.id == f"{name}-cls" and cls.twice(21).get() == 42
        f = rr.service(fn)
        assert f._session.id == f"{name}-fn" and f(10, 20).get() == 30
        obj = rr.service(tally)
        assert obj._session.id == f"{name}-obj"
        obj.add(10).wait()
        assert obj.value().get() == 10
        for kind in (Partial, Invalid, svc.Arith):
            assert rr.service(kind)._session.id.startswith(name)
        assert rr.service(Partial).echo("hello").get() == "hello"
        assert rr.service(Invalid).plus(5, 3).get() == 8
        dyn = rr.service(make(f"{name}-dyn"))
        assert dyn._session.id == f"{name}-dyn" and dyn.ident().get() == f"{name}-dyn"


def test_session_context_validation() -> None:
    for bad, text in (({"session_id": ""}, "cannot be empty"), ({"session_id": "x" * 129}, "too long")):
        with pytest.raises(ValueError, match=text):
            SessionContext(**bad)
    for bad in ({"session_id": 12345}, {"application_name": 12345}):
        with pytest.raises(ValueError, match="must be a string"):
            SessionContext(**bad)  # type: ignore[arg-type]
    assert (SessionContext("s", "a").session_id, SessionContext("s", "a").application_name) == ("s", "a")
    assert SessionContext(session_id="only").application_name is None
    assert SessionContext(application_name="only").session_id is None
    assert SessionContext("x" * 128).session_id == "x" * 128


def test_flame_package_defaults() -> None:
    pkg = flamepy.FlamePackage(storage="file:///tmp/test")
    assert pkg.storage == "file:///tmp/test"
    assert {".venv", "__pycache__", "*.pyc"} <= set(pkg.excludes)
    assert flamepy.FlamePackage(storage="file:///tmp/t", excludes=["*.log"]).excludes == ["*.log"]


def test_get_data_reads_task_inputs_and_outputs(project: Path) -> None:
    with Runner(uid("conf-rr-data")) as rr:
        fn = rr.service(svc.times)
        assert fn(4, 7).get() == 28
        task = next(iter(flamepy.get_session(fn._session.id).list_tasks()))
        inp = get_data(task.input)
        assert (inp["type"], inp["method"], inp["args"]) == ("input", None, (4, 7))
        out = get_data(task.output)
        assert (out["type"], out["result"]) == ("output", 28)
        obj = rr.service(svc.Arith())
        assert obj.plus(15, 25).get() == 40
        task = next(iter(flamepy.get_session(obj._session.id).list_tasks()))
        inp = get_data(task.input)
        assert (inp["type"], inp["method"], inp["args"]) == ("input", "plus", (15, 25))
    for junk in (b"not an object ref", b""):
        with pytest.raises(RunnerError) as err:
            get_data(junk)
        assert err.value.error_type == ErrorType.DECODE_ERROR


def test_a_task_can_call_its_own_session_recursively(project: Path) -> None:
    name = uid("conf-rr-rec")
    sid = f"{name}-ssn"

    class Recursive(svc.Nested):
        _session_context = SessionContext(session_id=sid, application_name=name)

    with Runner(name) as rr:
        rec = rr.service(Recursive, autoscale=True)
        assert rec._session.id == sid
        assert [rec.depth(n).get() for n in (0, 1, 2)] == [1, 2, 4]


def _invoke(ssn: flamepy.Session, method: str | None, *args: object, **kwargs: object) -> object:
    req = RunnerRequest(method=method, args=args or None, kwargs=kwargs or None)
    out = ssn.invoke(cloudpickle.dumps(req))
    return get_object(ObjectRef.decode(out))


def test_flmrun_template_with_runner_context_and_requests(project: Path) -> None:
    """The Runner protocol by hand: an app copied from flmrun, a RunnerContext, RunnerRequests."""
    flmrun = flamepy.get_application("flmrun")
    name = uid("conf-flmrun")
    flamepy.register_application(
        name,
        flamepy.ApplicationAttributes(
            working_directory=str(project),
            command=flmrun.command,
            arguments=flmrun.arguments,
            environments={"PYTHONPATH": str(project)},
            installer="python",
        ),
    )
    try:
        for target, calls in (
            (svc.add, [((None, 1, 2), {}, 3)]),
            (svc.Arith(), [(("plus", 5, 3), {}, 8), (("times", 4, 7), {}, 28), (("minus", 10, 3), {}, 7)]),
            (
                svc.hello,
                [
                    ((None,), {"name": "World", "greeting": "Hi"}, "Hi, World!"),
                    ((None,), {"name": "Py"}, "Hello, Py!"),
                ],
            ),
            (svc.Tally(), [(("bump",), {}, 1), (("bump",), {}, 2), (("add", 5), {}, 7), (("value",), {}, 7)]),
        ):
            ctx = put_object(
                f"{name}/{uid('ctx')}", cloudpickle.dumps(RunnerContext(execution_object=target))
            )
            ssn = flamepy.create_session(name, ctx.encode())
            try:
                for (method, *args), kwargs, expected in calls:
                    assert _invoke(ssn, method, *args, **kwargs) == expected
            finally:
                ssn.close()
    finally:
        flamepy.unregister_application(name)
