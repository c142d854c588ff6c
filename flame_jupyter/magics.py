"""IPython magics: ``%%flame``, ``%flame_service`` and ``%flame``.

Options are parsed with IPython's ``magic_arguments`` (so ``%%flame?`` documents itself) and
defaults are traitlets (``%config FlameMagics.block = False``). Every ``%%flame`` option goes
through one execution path, :meth:`FlameMagics.run_cell`, which takes keyword arguments and
can be called without the parser.

Long because the three magics' option declarations and help texts are the user's reference
(``docs/magics.md`` is generated from them) and stay beside the code they configure.
"""

from __future__ import annotations

import re
import sys
import threading
from typing import Any

from IPython.core.error import UsageError
from IPython.core.magic import Magics, cell_magic, line_magic, magics_class
from IPython.core.magic_arguments import argument, magic_arguments, parse_argstring
from traitlets import Bool, CFloat, Int, Unicode

from flame_jupyter.capture import CaptureError
from flame_jupyter.display.terminal import squeeze
from flame_jupyter.errors import FlameJupyterError
from flame_jupyter.future_state import state_of

_MEMORY = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]i?)?B?\s*$", re.IGNORECASE)
_UNITS = {
    "": 1,
    "K": 10**3,
    "M": 10**6,
    "G": 10**9,
    "T": 10**12,
    "KI": 2**10,
    "MI": 2**20,
    "GI": 2**30,
    "TI": 2**40,
}
_SERVICE_USAGE = "usage: %flame_service [options] NAME = EXPR   (e.g. %flame_service counter = Counter(10))"
_ASSIGN = re.compile(r"(?:^|\s)([A-Za-z_]\w*)\s*=(?!=)")


def parse_memory(text: str | None) -> int | None:
    """``"2Gi"`` -> 2147483648, ``"512M"`` -> 512000000, ``"1024"`` -> 1024 bytes."""
    if text is None:
        return None
    m = _MEMORY.match(text)
    if not m:
        raise UsageError(f"--memory {text!r}: use a size like 512Mi, 2Gi, 4G or a number of bytes")
    return int(float(m.group(1)) * _UNITS[(m.group(2) or "").upper()])


def resources(cpu: int | None, memory: str | None) -> Any:
    """Flame's ResourceRequirement for ``--cpu/--memory`` (None when neither is given)."""
    if cpu is None and memory is None:
        return None
    from flamepy.core.types import ResourceRequirement

    if cpu is not None and cpu < 1:
        raise UsageError(f"--cpu {cpu}: ask for at least 1 CPU")
    return ResourceRequirement(cpu=cpu or 1, memory=parse_memory(memory) or 1024**3)


def _check_resources(res: Any, what: str) -> None:
    """A request no Flame node can hold is a usage error, before anything is created on Flame."""
    from flame_jupyter.capacity import check_resources

    try:
        check_resources(res, what)
    except FlameJupyterError as e:
        raise UsageError(str(e)) from None


def resource_args(what: str) -> Any:
    """The --cpu/--memory option group, shared by %%flame and %flame_service (ipyparallel's
    ``exec_args`` pattern): ``what`` says what the request is for."""

    def decorate(fn: Any) -> Any:
        fn = argument(
            "--memory", default=None, metavar="SIZE", help=f"Memory to request {what}, e.g. 512Mi, 2Gi."
        )(fn)
        return argument(
            "--cpu", type=int, default=None, help=f"CPUs to request {what} (Flame ResourceRequirement)."
        )(fn)

    return decorate


@magics_class
class FlameMagics(Magics):
    """Run notebook code on Flame."""

    block = Bool(True, help="Wait for %%flame cells to finish (else return the future at once).").tag(
        config=True
    )
    timeout = CFloat(0.0, help="Default %%flame timeout in seconds (0 = none).").tag(config=True)
    app = Unicode("", help="Flame application name of this kernel ('' = unique per kernel).").tag(config=True)
    stream_output = Bool(True, help="Print remote output of blocking cells as it arrives.").tag(config=True)
    warmup = Int(0, help="Default instances to pre-start for %flame_service.").tag(config=True)

    def __init__(self, shell: Any = None, **kwargs: Any) -> None:
        super().__init__(shell=shell, **kwargs)
        self._runner: Any = None
        self._cells: dict[tuple[Any, ...], Any] = {}  # (session name or None, cpu, memory) -> CellService
        self.services: dict[str, Any] = {}  # notebook name -> Service
        self._lock = threading.RLock()

    # -- the kernel's Runner ---------------------------------------------------------------------------
    @property
    def runner(self) -> Any:
        with self._lock:
            if self._runner is None or self._runner.closed:
                from flame_jupyter.runner import Runner

                self._runner = Runner(self.app or None)
            return self._runner

    def close_all(self) -> None:
        """Cancel the kernel's calls, close its services and sessions, delete its cached
        objects and its application (unload, restart, exit). Raises
        :class:`~flame_jupyter.cleanup.CleanupError` listing what could not be closed (the
        Runner stays registered for the exit-time retry)."""
        with self._lock:
            runner, self._runner = self._runner, None
            self._cells.clear()
            self.services.clear()
        if runner is not None:
            runner.close()

    def _close_all_reporting(self) -> None:
        """:meth:`close_all`, printing what could not be closed instead of raising."""
        from flame_jupyter.cleanup import CleanupError

        try:
            self.close_all()
        except CleanupError as e:
            print(e, file=sys.stderr)

    def _cell_service(self, session: str | None, res: Any) -> Any:
        """One cell service per (session, resources): cells asking for other resources get
        their own Flame session, since resources belong to a session."""
        from flame_jupyter.cells import CellService

        key = (session, getattr(res, "cpu", None), getattr(res, "memory", None))
        with self._lock:
            svc = self._cells.get(key)
            if svc is None or svc.closed:
                if session is not None and any(
                    k[0] == session and not v.closed for k, v in self._cells.items()
                ):
                    raise UsageError(
                        f"--session {session} already runs with other --cpu/--memory; use another name"
                    )
                name = f"%%flame --session {session}" if session else "%%flame"
                if res is not None:
                    name += f" (cpu={res.cpu}, memory={res.memory})"
                svc = CellService(self.runner, name, session=session, resources=res)
                self._cells[key] = svc
            return svc

    # -- %%flame -------------------------------------------------------------------------------------
    @magic_arguments(name="%flame")
    @argument(
        "-o",
        "--out",
        default="",
        metavar="NAMES",
        help="Names assigned in the cell to bind back into the notebook, comma-separated: -o model,score",
    )
    @argument(
        "--block",
        dest="block",
        action="store_const",
        const=True,
        default=None,
        help="Wait for the cell to finish, printing its output live (default: FlameMagics.block).",
    )
    @argument(
        "--no-block",
        dest="block",
        action="store_const",
        const=False,
        help="Return the ObjectFuture at once; it updates live.",
    )
    @argument(
        "-t",
        "--timeout",
        type=float,
        default=None,
        metavar="SECONDS",
        help="Cancel the remote work after SECONDS (default: FlameMagics.timeout).",
    )
    @argument(
        "-l", "--label", default=None, help="A name for this run, shown in its widget and the status panel."
    )
    @resource_args("for the executor")
    @argument(
        "-s",
        "--session",
        default=None,
        metavar="NAME",
        help="Run on a named session: one executor whose namespace persists across cells with the same NAME.",
    )
    @cell_magic
    def flame(self, line: str, cell: str) -> Any:
        """Run this cell on a Flame executor; its value is an ObjectFuture.

        Notebook functions, classes and values the cell uses travel with it; ``print`` and
        ``display`` output streams back while it runs; ``flame_jupyter.progress(i, n)`` drives a
        progress bar. The interrupt button cancels the remote work.

        Examples
        --------
        In [1]: %%flame
           ...: total = sum(i * i for i in range(10**6))
           ...: total
        Out[1]: <ObjectFuture %%flame done 0.4s> (get() -> 333332833333500000)

        In [2]: %%flame --no-block -o model --cpu 2 --memory 4Gi --label train
           ...: model = train(data)

        In [3]: %%flame --session prep
           ...: cache = load_big_table()        # stays on the executor

        In [4]: %%flame --session prep
           ...: len(cache)                      # same executor, same namespace
        """
        args = parse_argstring(self.flame, line)
        outputs = [n.strip() for n in (args.out or "").split(",") if n.strip()]
        return self.run_cell(
            cell,
            outputs=outputs,
            block=args.block,
            timeout=args.timeout,
            label=_unquote(args.label),
            resources=resources(args.cpu, args.memory),
            session=args.session,
        )

    def run_cell(
        self,
        cell: str,
        *,
        outputs: list[str] | tuple[str, ...] = (),
        block: bool | None = None,
        timeout: float | None = None,
        label: str | None = None,
        resources: Any = None,
        session: str | None = None,
    ) -> Any:
        """The one execution path behind every %%flame option (callable without the parser).

        ``block``/``timeout`` default to ``FlameMagics.block``/``FlameMagics.timeout``;
        ``resources`` is a Flame ``ResourceRequirement`` (see :func:`resources`).

        >>> get_ipython().find_magic("flame", "cell").__self__.run_cell("1 + 1", block=True)  # doctest: +SKIP
        """
        outputs = list(outputs)
        for name in outputs:
            if not name.isidentifier():
                raise UsageError(f"-o/--out: {name!r} is not a Python name")
        block = self.block if block is None else block
        timeout = timeout if timeout is not None else (self.timeout or None)
        if timeout is not None and timeout <= 0:
            raise UsageError("--timeout must be a positive number of seconds")
        shell = self.shell
        source = shell.transform_cell(cell) if shell is not None else cell
        count = _cell_number(shell)
        label = label or (f"%%flame In[{count}]" if count else "%%flame")
        _check_resources(resources, "%%flame")
        try:
            captured = self.runner.capturer.capture_cell(
                source,
                shell.user_ns,
                outputs=outputs,
                filename=f"<flame cell In[{count}]>",
                namespace_id=f"session:{session}" if session else None,
            )
        except CaptureError as e:
            raise UsageError(str(e)) from None
        except SyntaxError as e:
            raise UsageError(f"%%flame: the cell has a syntax error: {e}") from None
        fut = self._cell_service(session, resources).run(captured, label=label)
        fut.bound_names = tuple(outputs)
        if outputs:
            ns = shell.user_ns
            state_of(fut).add_finish_hook(lambda f: _bind_outputs(f, ns))  # bound before get()/wait() return
        if timeout is not None:
            _cancel_after(fut, timeout)
        if block:
            self._wait(fut)
            if getattr(fut, "timed_out", None) is not None and fut.cancelled():
                raise TimeoutError(
                    f"%%flame: no result after {fut.timed_out:g} s; the remote work was cancelled"
                ) from None
            if fut.error is not None:
                raise fut.error
        return fut

    def _wait(self, fut: Any) -> None:
        """Wait for a blocking cell, streaming its output into the cell; interrupt cancels.

        The one rule: remote output (print, tqdm, displays, plots) streams into the cell as it
        would locally, in order; with widgets, the future's live widget is shown at submission (a
        display handle: queued, waiting, running, progress, Cancel) and does not repeat that
        output. At the end the live view is emptied: the cell's value (the same future, final) or
        its error is the one result below the output.
        """
        handle = self._live_handle(fut)
        printed = displayed = 0
        try:
            while not fut.wait(0.1):
                printed, displayed = self._stream(fut, printed, displayed)
        except KeyboardInterrupt:
            fut.cancel()
            print("flame_jupyter: interrupted; the remote work was asked to stop.", file=sys.stderr)
            _end_live(handle)
            raise
        self._stream(fut, printed, displayed)  # wait() read the records that came with the end
        if handle is not None and fut.error is None:
            from flame_jupyter.widgets.preview import fetch_preview

            fetch_preview(fut)  # a small result (<= 1 MiB) is in the final view and saved fallback
        _end_live(handle)

    def _live_handle(self, fut: Any) -> Any:
        """Display the future's live widget with a display id (None when widgets are off)."""
        if self.shell is None or getattr(self.shell, "kernel", None) is None:
            return None
        from flame_jupyter.views import WIDGET_MIME, future_mimebundle

        if self.stream_output:
            fut.output_echoed = True  # its views leave the output to the cell
        bundle = future_mimebundle(fut)
        if WIDGET_MIME not in bundle:
            fut.output_echoed = False
            return None
        from IPython.display import display

        return display(bundle, raw=True, display_id=True)

    def _stream(self, fut: Any, printed: int, displayed: int) -> tuple[int, int]:
        if not self.stream_output:
            return printed, displayed
        for stream, text in fut.output[printed:]:
            (sys.stderr if stream == "stderr" else sys.stdout).write(squeeze(text))
        for bundle in fut.displays[displayed:]:
            from IPython.display import display

            display(bundle, raw=True)
        return len(fut.output), len(fut.displays)

    # -- %flame_service ------------------------------------------------------------------------------
    @magic_arguments()
    @argument(
        "--autoscale",
        dest="autoscale",
        action="store_const",
        const=True,
        default=None,
        help="Start instances as calls queue up (default for functions and classes).",
    )
    @argument(
        "--no-autoscale",
        dest="autoscale",
        action="store_const",
        const=False,
        help="A fixed number of instances (--warmup, default 1).",
    )
    @argument("--warmup", type=int, default=None, help="Instances to start right away.")
    @resource_args("per instance")
    @argument(
        "--snapshot",
        action="store_true",
        help="Freeze the notebook globals the code uses now, instead of sending current values with every call.",
    )
    @argument("--list", action="store_true", help="List this kernel's services and cell sessions.")
    @argument("--close", default=None, metavar="NAME", help="Close the service bound to NAME.")
    @argument("--close-all", action="store_true", help="Close every service and cell session of this kernel.")
    @line_magic
    def flame_service(self, line: str) -> Any:
        """Make a remote service from a notebook function, class or instance.

        ``%flame_service NAME = EXPR`` evaluates EXPR in the notebook, serves it on Flame and
        binds NAME to the service; calling it (or its methods) returns ObjectFutures.

        Examples
        --------
        In [1]: %flame_service scorer = score
        In [2]: scorer(3).get()
        Out[2]: 9

        In [3]: %flame_service counter = Counter(10)
        In [4]: counter.add(1); counter.add(3).get()
        Out[4]: 14

        In [5]: %flame_service --no-autoscale --warmup 2 --cpu 1 --memory 2Gi model = Model
        In [6]: %flame_service --list
        In [7]: %flame_service --close counter
        """
        m = _ASSIGN.search(line)
        opts_text = line[: m.start(1)] if m else line
        try:
            args = parse_argstring(self.flame_service, opts_text)
        except UsageError as e:
            if m is None and "unrecognized arguments" in str(e):
                raise UsageError(_SERVICE_USAGE) from None
            raise
        if args.list:
            return self._list_services()
        if args.close_all:
            names = list(self.services)
            removed = [name for name in names if self._close_service(name)]
            closed = names + self._close_cells()
            print(_closed_message(closed, removed) if closed else "flame_jupyter: no services to close")
            return None
        if args.close:
            if args.close not in self.services:
                raise UsageError(
                    f"%flame_service --close: no service named {args.close!r} (see %flame_service --list)"
                )
            removed = self._close_service(args.close)
            print(_closed_message([args.close], [args.close] if removed else []))
            return None
        if m is None:
            raise UsageError(_SERVICE_USAGE)
        name, expr = m.group(1), line[m.end() :].strip()
        if not expr:
            raise UsageError(f"%flame_service: nothing after '{name} ='")
        try:
            obj = self.shell.ev(expr)
        except Exception as e:
            raise UsageError(f"%flame_service: cannot evaluate {expr!r}: {type(e).__name__}: {e}") from None
        if args.warmup is not None and args.warmup < 0:
            raise UsageError("--warmup must be 0 or more")
        res = resources(args.cpu, args.memory)
        _check_resources(res, f"%flame_service {name}")
        from flame_jupyter.runner import check_servable

        try:
            check_servable(obj, expr)
            captured = self.runner.capturer.capture(obj, snapshot=args.snapshot, name=expr)
            captured.served_as = name
        except (CaptureError, FlameJupyterError) as e:
            raise UsageError(str(e)) from None
        if not callable(obj) and args.autoscale:
            raise UsageError(
                "an instance is one stateful object: it cannot --autoscale (serve its class instead)"
            )
        warmup = args.warmup if args.warmup is not None else self.warmup
        if not callable(obj):
            warmup = min(warmup, 1)
        try:
            svc = self.runner.service(
                captured, name=name, autoscale=args.autoscale, warmup=warmup, resources=res
            )
        except FlameJupyterError as e:
            raise UsageError(str(e)) from None
        if name in self.services:
            self._close_service(name)
        self.services[name] = svc
        self.shell.user_ns[name] = svc
        return None

    def _close_service(self, name: str) -> bool:
        """Close the service bound to ``name``; True if its notebook variable was removed."""
        svc = self.services.pop(name)
        try:
            svc.close()
        finally:
            removed = self.shell.user_ns.get(name) is svc
            if removed:
                del self.shell.user_ns[name]
        return removed

    def _close_cells(self) -> list[str]:
        """Close the ``%%flame`` sessions (named ones and the plain cells'); their names."""
        with self._lock:
            cells = [svc for svc in self._cells.values() if not svc.closed]
            self._cells.clear()
        for svc in cells:
            svc.close()
        return [svc.name for svc in cells]

    def _list_services(self) -> None:
        with self._lock:
            rows = [(name, svc.kind, svc) for name, svc in self.services.items()]
            rows += [
                (c.name, "session" if c.session else "cell", c) for c in self._cells.values() if not c.closed
            ]
        if not rows:
            print("no services (create one with %flame_service NAME = EXPR)")
            return
        from flame_jupyter.registry import registry

        w = max(16, *(len(name) for name, _, _ in rows))
        print(
            f"{'name':<{w}} {'kind':<9} {'session':<28} {'queued':>6} {'running':>7} {'done':>6} {'failed':>6}"
        )
        for name, kind, svc in rows:
            info = registry.services.get(svc.session_id)
            c = info.counts if info else {}
            print(
                f"{name:<{w}} {kind:<9} {svc.session_id:<28} {c.get('queued', 0):>6} {c.get('running', 0):>7} {c.get('done', 0):>6} {c.get('failed', 0):>6}"
            )

    # -- %flame ---------------------------------------------------------------------------------------
    @magic_arguments()
    @argument(
        "action",
        nargs="?",
        default="status",
        choices=["status", "connect", "start", "stop", "panel", "disconnect", "check", "cleanup"],
        help="What to do (default: status).",
    )
    @argument(
        "--dry-run",
        action="store_true",
        help="cleanup: only list what dead kernels left on Flame, close nothing",
    )
    @argument("--endpoint", default=None, help="connect: the cluster's frontend, e.g. http://flame:8080")
    @argument("--cache", default=None, help="connect: the cluster's object cache, e.g. grpc://flame:9090")
    @argument(
        "--package-storage",
        default=None,
        metavar="URL",
        help="connect: where Runner packages go (file:// on a shared filesystem); flamepy reads it from ~/.flame/flame.yaml only, so this writes nothing and only checks it",
    )
    @argument(
        "--max-instances",
        type=int,
        default=None,
        help="start: instance processes of the embedded runtime (default: cores)",
    )
    @line_magic("flame")
    def flame_line(self, line: str) -> Any:
        """The connection, the embedded runtime, and the status panel.

        Examples
        --------
        In [1]: %flame                       # status: where flamepy points, services, futures
        In [2]: %flame connect --endpoint http://flame:8080 --cache grpc://flame:9090
        In [3]: %flame start --max-instances 4   # the embedded runtime
        In [4]: %flame stop                  # close services, stop the embedded runtime
        In [5]: %flame panel                 # the live status panel
        In [6]: %flame check                 # can the executors run this notebook's code?
        In [7]: %flame cleanup --dry-run     # what dead kernels left on Flame (then: %flame cleanup)
        """
        args = parse_argstring(self.flame_line, line)
        from flame_jupyter import connection

        if args.action == "status":
            return self._status()
        if args.action == "check":
            return self._check()
        if args.action == "cleanup":
            from flame_jupyter.cleanup import cleanup_leftovers

            cleanup_leftovers(dry_run=args.dry_run)
            return None
        if args.action == "panel":
            from flame_jupyter.status_panel import panel

            return panel()
        if args.action in ("connect", "start"):
            if args.action == "connect" and args.endpoint is None and args.cache is not None:
                raise UsageError("%flame connect --cache needs --endpoint too")
            if args.package_storage is not None and not args.package_storage.startswith(
                ("file://", "http://", "https://", "grpc://", "grpcs://")
            ):
                raise UsageError(
                    f"--package-storage {args.package_storage!r}: use a file://, http(s):// or grpc(s):// URL"
                )
            if args.max_instances is not None and args.max_instances < 1:
                raise UsageError(f"--max-instances {args.max_instances}: the runtime needs at least 1")
            if args.action == "connect" and args.endpoint is not None:
                try:  # before anything is closed: a bad endpoint changes nothing
                    connection.check_endpoint(args.endpoint)
                except FlameJupyterError as e:
                    raise UsageError(str(e)) from None
            self._close_all_reporting()
            try:
                conn = connection.connect(
                    args.endpoint,
                    args.cache,
                    embedded=True if args.action == "start" else None,
                    max_instances=args.max_instances,
                )
            except FlameJupyterError as e:
                raise UsageError(str(e)) from None
            print(f"flame_jupyter: connected to {conn}")
            return None
        if args.action in ("stop", "disconnect"):
            self._close_all_reporting()
            connection.disconnect()
            print(
                "flame_jupyter: disconnected"
                + (" (embedded runtime stopped)" if args.action == "stop" else "")
            )
            return None
        raise UsageError(f"unknown action {args.action!r}")

    def _check(self) -> None:
        from flame_jupyter.check import check

        try:
            report = check(runner=self.runner, namespace=self.shell.user_ns if self.shell else None)
        except FlameJupyterError as e:
            raise UsageError(f"%flame check: the probe task did not run: {e}") from None
        print(report)

    def _status(self) -> None:
        from flame_jupyter import connection
        from flame_jupyter.registry import registry

        conn = connection.current()
        print(f"flame_jupyter: {conn if conn else 'not connected (%flame connect or %flame start)'}")
        for line in connection.health(conn):
            print(f"  {line}")
        if self._runner is not None:
            print(f"application: {self._runner.name}")
        live = registry.live_futures()
        print(f"services: {len(self.services)}  cell sessions: {len(self._cells)}  live futures: {len(live)}")


def _bind_outputs(fut: Any, ns: dict[str, Any]) -> None:
    if fut.error is None:
        try:
            ns.update(fut.outputs)
        except Exception as e:  # noqa: BLE001 - shown, never raised from a callback thread
            print(f"flame_jupyter: could not bind -o names: {e}", file=sys.stderr)


def _end_live(handle: Any) -> None:
    """Empty a blocking cell's live view: its value or error below the output is the result."""
    if handle is not None:
        try:
            handle.update({"text/plain": ""}, raw=True)
        except Exception:  # noqa: BLE001 - the cell's own result matters more
            pass


def _cancel_after(fut: Any, timeout: float) -> None:
    def fire() -> None:
        if not fut.done():
            fut.timed_out = timeout
            fut.cancel()

    timer = threading.Timer(timeout, fire)
    timer.daemon = True
    timer.start()
    fut.add_done_callback(lambda f: timer.cancel())


def _cell_number(shell: Any) -> int:
    """The ``In[N]`` of the running cell: IPython counts the next cell as soon as one starts, so
    the running cell's number is the one its ``ExecutionResult`` carries."""
    running = getattr(getattr(shell, "displayhook", None), "exec_result", None)
    number = getattr(running, "execution_count", None)
    if isinstance(number, int) and number > 0:
        return number
    return int(getattr(shell, "execution_count", 0) or 0)


def _unquote(text: str | None) -> str | None:
    """IPython splits magic arguments without removing quotes: ``--label "two words"``."""
    if text and len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'":
        return text[1:-1]
    return text


def _closed_message(closed: list[str], removed: list[str]) -> str:
    """What ``--close`` / ``--close-all`` did, including the notebook variables they removed."""
    text = "flame_jupyter: closed " + ", ".join(closed)
    if removed:
        plural = "s" if len(removed) > 1 else ""
        text += f"; removed the notebook variable{plural} " + ", ".join(removed)
    return text
