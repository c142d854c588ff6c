"""``flame-local``: start, inspect and stop the embedded runtime, or run a command against it.

Examples
--------
$ flame-local start                      # in the background; prints the endpoints
$ flame-local status
$ flame-local stop
$ flame-local run -- python my_script.py # a private runtime just for this command
$ eval "$(flame-local env)"              # point flamepy at the background runtime
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from flame_local.runfiles import (
    START_LOCK,
    STATE_FILE,
    read_state,
    remove_own_flame_yaml,
    start_lock,
    sweep_stale,
    write_flame_yaml,
    write_json,
)


# -- commands ------------------------------------------------------------------------------------
def cmd_start(args: argparse.Namespace) -> int:
    if args.foreground:
        return _serve_foreground(args)
    with start_lock() as locked:
        if not locked:
            print(f"flame-local: another `flame-local start` holds {START_LOCK}", file=sys.stderr)
            return 1
        return _start_background(args)


def _start_background(args: argparse.Namespace) -> int:
    state = read_state()
    if state is not None:
        print(f"flame-local is already running (pid {state['pid']}) at {state['endpoint']}", file=sys.stderr)
        return 1
    swept = sweep_stale()
    if swept:
        print(f"flame-local: {swept}")
    from flame_local.process import RuntimeProcess, RuntimeStartError

    try:
        rp = RuntimeProcess.start(
            home=args.home, max_instances=args.max_instances, port=args.port, cache_port=args.cache_port,
            die_with_parent=False, cache_budget=args.cache_budget,
        )  # fmt: skip
    except RuntimeStartError as e:
        print(f"flame-local: {e}", file=sys.stderr)
        return 1
    state = {"pid": rp.pid, "endpoint": rp.endpoint, "cache_endpoint": rp.cache_endpoint, "home": rp.home,
             "log": rp.log_path, "temp_home": rp.temp_home, "socket_dir": rp.socket_dir}  # fmt: skip
    write_json(STATE_FILE, state)
    print(f"flame-local started (pid {rp.pid})\n  endpoint: {rp.endpoint}\n  cache:    {rp.cache_endpoint}")
    print(f"  home:     {rp.home}\n  log:      {rp.log_path}")
    if not args.no_config:
        print(write_flame_yaml(rp.endpoint, rp.cache_endpoint))
    return 0


def _protos_only_flamepy() -> None:
    """In a process that is only the runtime, load flamepy's generated protos without running
    ``flamepy/__init__`` (which imports the whole client: fastapi, pydantic, ...): 0.6 s saved."""
    import importlib.util
    import types

    if "flamepy" in sys.modules:
        return
    spec = importlib.util.find_spec("flamepy")
    if spec is None or not spec.submodule_search_locations:
        return
    shell = types.ModuleType("flamepy")
    shell.__path__ = list(spec.submodule_search_locations)
    shell.__file__ = spec.origin
    sys.modules["flamepy"] = shell


def _serve_foreground(args: argparse.Namespace) -> int:
    _protos_only_flamepy()
    from flame_local.runtime import LocalRuntime
    from flame_local.settings import RuntimeSettings, parse_size

    settings = RuntimeSettings(port=args.port, cache_port=args.cache_port, home=args.home)
    if args.max_instances:
        settings.max_instances = args.max_instances
    if args.cache_budget:
        settings.cache_budget = parse_size(args.cache_budget)
    # Signal handlers run between bytecodes of the main thread, possibly inside a lock it holds:
    # they only set flags (never Event.set, which takes a lock), and the loop below polls them.
    flags = {"done": False, "orphaned": False}

    def on_stop(*_: object) -> None:
        flags["done"] = True

    def on_orphaned(*_: object) -> None:
        flags["orphaned"] = flags["done"] = True

    signal.signal(signal.SIGTERM, on_stop)
    signal.signal(signal.SIGINT, on_stop)
    if args.owned:  # SIGHUP is our parent-death signal (see flame_local.process)
        signal.signal(signal.SIGHUP, on_orphaned)
    rt = LocalRuntime(settings).start()
    try:
        info = {
            "pid": os.getpid(),
            "endpoint": rt.endpoint,
            "cache_endpoint": rt.cache_endpoint,
            "home": str(rt.home),
            "temp_home": args.home is None,
            "socket_dir": str(rt.socket_dir or ""),
            "cache_storage": str(rt.cache_storage_dir),
        }
        if args.ready_file:
            write_json(Path(args.ready_file), info)
        else:
            print(
                f"flame-local serving at {rt.endpoint} (cache {rt.cache_endpoint}); Ctrl-C stops it",
                flush=True,
            )
            if not args.no_config:
                print(write_flame_yaml(rt.endpoint, rt.cache_endpoint), flush=True)
        while not flags["done"]:
            time.sleep(0.2)
    finally:
        # The process that started us died (a killed kernel): no one waits for results, and no
        # one will remove our log dir.
        rt.stop(grace=0.0 if flags["orphaned"] else None)
        if flags["orphaned"] and args.ready_file:
            from flame_local.process import remove_state_dir

            remove_state_dir(str(Path(args.ready_file).parent / "runtime.log"))
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    state = read_state()
    if state is None:
        swept = sweep_stale()
        print("flame-local is not running" + (f" ({swept})" if swept else ""))
        return 3
    import grpc
    from flamepy.proto import frontend_pb2, frontend_pb2_grpc

    with grpc.insecure_channel(state["endpoint"].split("://", 1)[1]) as ch:
        stub = frontend_pb2_grpc.FrontendStub(ch)
        try:
            sessions = stub.ListSession(frontend_pb2.ListSessionRequest(), timeout=5).sessions
            executors = stub.ListExecutor(frontend_pb2.ListExecutorRequest(), timeout=5).executors
            apps = stub.ListApplication(frontend_pb2.ListApplicationRequest(), timeout=5).applications
        except grpc.RpcError as e:
            print(f"flame-local (pid {state['pid']}) does not answer at {state['endpoint']}: {e.details()}")
            return 1
    open_sessions = sum(1 for s in sessions if s.status.state == 0)
    print(f"flame-local is running (pid {state['pid']})")
    print(
        f"  endpoint: {state['endpoint']}\n  cache:    {state['cache_endpoint']}\n  home:     {state['home']}"
    )
    print(
        f"  applications: {len(apps)}  sessions: {open_sessions} open / {len(sessions)}  instances: {len(executors)}"
    )
    return 0


def cmd_stop(args: argparse.Namespace) -> int:
    state = read_state()
    if state is None:
        swept = sweep_stale()
        print("flame-local is not running" + (f" ({swept})" if swept else ""))
        STATE_FILE.unlink(missing_ok=True)
        remove_own_flame_yaml()
        return 0
    from flame_local.process import remove_state_dir, terminate_pid

    gone = terminate_pid(int(state["pid"]), timeout=args.timeout)
    if gone and state.get("log"):
        remove_state_dir(state["log"])
    STATE_FILE.unlink(missing_ok=True)
    remove_own_flame_yaml()
    print("flame-local stopped" if gone else f"flame-local (pid {state['pid']}) did not stop")
    return 0 if gone else 1


def cmd_env(args: argparse.Namespace) -> int:
    state = read_state()
    if state is None:
        print("flame-local is not running; start it with `flame-local start`", file=sys.stderr)
        return 3
    print(f"export FLAME_ENDPOINT={state['endpoint']}\nexport FLAME_CACHE_ENDPOINT={state['cache_endpoint']}")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        print(
            "flame-local run: give a command after --, e.g. flame-local run -- python my_script.py",
            file=sys.stderr,
        )
        return 2
    from flame_local.runtime import LocalRuntime
    from flame_local.settings import RuntimeSettings, parse_size

    settings = RuntimeSettings(home=args.home)
    if args.max_instances:
        settings.max_instances = args.max_instances
    if args.cache_budget:
        settings.cache_budget = parse_size(args.cache_budget)
    with LocalRuntime(settings) as rt:
        env = dict(os.environ, **rt.client_env())
        env.pop("FLAME_CACHE_STORAGE", None)
        try:
            proc = subprocess.Popen(command, env=env)
        except OSError as e:
            print(f"flame-local run: cannot run {command[0]!r}: {e.strerror}", file=sys.stderr)
            return 127
        while True:
            try:
                rc = proc.wait()
                break
            except KeyboardInterrupt:  # the child got the SIGINT too; wait for it to finish
                continue
    return rc if rc >= 0 else 128 - rc


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="flame-local", description="The embedded single-machine Flame runtime.")
    sub = p.add_subparsers(dest="cmd", required=True)

    def common(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--home", default=None, help="runtime home (logs, packages); default: a temp dir")
        sp.add_argument(
            "--max-instances", type=int, default=None, help="concurrent instances (default: cores)"
        )
        sp.add_argument(
            "--cache-budget",
            default=None,
            help="object cache bytes in memory, e.g. 2G; beyond it objects spill to disk "
            "(default: $FLAME_LOCAL_CACHE_BUDGET, else a quarter of RAM, at most 4G)",
        )

    s = sub.add_parser("start", help="start the runtime (in the background unless --foreground)")
    common(s)
    s.add_argument("--foreground", action="store_true", help="serve in this process until SIGTERM/Ctrl-C")
    s.add_argument("--port", type=int, default=0, help="frontend port (default: a free one)")
    s.add_argument("--cache-port", type=int, default=0, help="object cache port (default: a free one)")
    s.add_argument("--no-config", action="store_true", help="do not write ~/.flame/flame.yaml")
    s.add_argument("--ready-file", help=argparse.SUPPRESS)
    s.add_argument("--owned", action="store_true", help=argparse.SUPPRESS)  # dies with its parent
    s.set_defaults(fn=cmd_start)
    sub.add_parser("status", help="is it running, and what it runs").set_defaults(fn=cmd_status)
    st = sub.add_parser("stop", help="stop the background runtime")
    st.add_argument("--timeout", type=float, default=30.0, help="seconds before SIGKILL")
    st.set_defaults(fn=cmd_stop)
    sub.add_parser("env", help="print export lines for FLAME_ENDPOINT/FLAME_CACHE_ENDPOINT").set_defaults(
        fn=cmd_env
    )
    r = sub.add_parser("run", help="run a command against a private runtime: run -- CMD ...")
    common(r)
    r.add_argument("command", nargs=argparse.REMAINDER)
    r.set_defaults(fn=cmd_run)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.fn(args))


if __name__ == "__main__":
    sys.exit(main())
