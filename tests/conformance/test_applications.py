"""Application registration rules and metadata (RegisterApplication/GetApplication/ListApplications)."""

from __future__ import annotations

import time

import flamepy
from conf_support import call, registered, request, service_attrs, uid

BUILTINS = {"flmexec", "flmping", "flmrun"}


def test_a_fresh_runtime_lists_exactly_the_three_builtin_apps_enabled(runtime) -> None:
    from flame_local import LocalRuntime
    from tests.conftest import point_flamepy_at

    fresh = LocalRuntime(max_instances=1).start()
    try:
        point_flamepy_at(fresh.endpoint, fresh.cache_endpoint)
        apps = flamepy.list_applications()
    finally:
        point_flamepy_at(runtime.endpoint, runtime.cache_endpoint)
        fresh.stop()
    assert sorted(a.name for a in apps) == sorted(BUILTINS)
    assert all(a.state == flamepy.ApplicationState.ENABLED for a in apps)


def test_builtins_are_listed_and_unregistering_restores_the_list(runtime) -> None:
    before = {a.name for a in flamepy.list_applications()}
    assert BUILTINS <= before
    name = uid("conf-app")
    with registered(name, flamepy.ApplicationAttributes()):
        assert {a.name for a in flamepy.list_applications()} == before | {name}
    assert {a.name for a in flamepy.list_applications()} == before


def test_register_defaults_enabled_host_shim_no_url_and_unregister_removes(runtime) -> None:
    name = uid("conf-app")
    flamepy.register_application(
        name,
        flamepy.ApplicationAttributes(
            description="no shim given", command="/usr/bin/python3", arguments=["-c", "print('hello')"]
        ),
    )
    app = flamepy.get_application(name)
    assert app is not None and app.name == name
    assert app.state == flamepy.ApplicationState.ENABLED
    assert app.shim == flamepy.Shim.HOST
    assert app.url is None
    assert app.command == "/usr/bin/python3"
    assert app.arguments == ["-c", "print('hello')"]
    flamepy.unregister_application(name)
    assert flamepy.get_application(name) is None


def test_url_is_stored_and_returned(runtime) -> None:
    name = uid("conf-app-url")
    with registered(name, flamepy.ApplicationAttributes(url="file:///opt/pkg.whl", description="with url")):
        app = flamepy.get_application(name)
        assert app.state == flamepy.ApplicationState.ENABLED
        assert app.url == "file:///opt/pkg.whl"


def test_builtin_flmrun_is_the_uv_runner_template(runtime) -> None:
    flmrun = flamepy.get_application("flmrun")
    assert flmrun.state == flamepy.ApplicationState.ENABLED
    assert flmrun.command.endswith("/bin/uv")
    assert flmrun.arguments[:4] == ["run", "--python", "python${FLAME_PYTHON_VERSION}", "python"]


def test_a_builtin_app_takes_sessions(runtime) -> None:
    ssn = flamepy.create_session(application="flmping")
    try:
        assert ssn.application == "flmping" and ssn.state == flamepy.SessionState.OPEN
    finally:
        ssn.close()


def test_default_host_shim_app_runs_and_reports_its_context(runtime) -> None:
    with registered(uid("conf-host"), service_attrs("conf_echo_service.py")) as app:
        ssn = flamepy.create_session(app)
        reply = call(ssn, "on host", show=["app"])
        assert reply["out"] == "on host" and reply["counts"]["tasks"] == 1
        assert reply["app"]["name"] == app
        assert reply["app"]["command"] == flamepy.get_application(app).command
        assert reply["app"]["working_directory"] == flamepy.get_application(app).working_directory
        assert reply["app"]["url"] is None


def test_wasm_app_session_opens_but_its_task_stays_pending(runtime) -> None:
    attrs = flamepy.ApplicationAttributes(shim=flamepy.Shim.WASM, command="/bin/echo", arguments=["hello"])
    with registered(uid("conf-wasm"), attrs) as app:
        assert flamepy.get_application(app).shim == flamepy.Shim.WASM
        ssn = flamepy.create_session(application=app)
        assert flamepy.get_session(ssn.id).state == flamepy.SessionState.OPEN
        task = ssn.create_task(request("never runs"))
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline:
            assert ssn.get_task(task.id).state == flamepy.TaskState.PENDING
            time.sleep(0.25)
        ssn.close()
