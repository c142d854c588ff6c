"""The one benchmark command: same workloads, one run, flame-jupyter and its peers.

    python benchmarks/run.py                       # full run, all systems; writes docs/benchmarks.md
    python benchmarks/run.py --smoke               # tiny sizes, flame + processpool (CI)
    python benchmarks/run.py --systems flame,dask --workloads W2,W3

Peers (Ray, Dask, ipyparallel) are installed into ``benchmarks/.venv-peers`` on first use, from
``benchmarks/requirements-peers.txt``.  Each system runs in its own subprocesses: W1 in fresh
processes (one per repeat), W2..W8 in one process that starts the system once.  Every child has a
wall-clock limit, its own temporary HOME, and is followed by a sweep that kills any process it left.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent
REPO = ROOT.parent
sys.path.insert(0, str(ROOT))

import report  # noqa: E402
import workloads  # noqa: E402
from systems import DEFAULT_SYSTEMS, REGISTRY, SMOKE_SYSTEMS  # noqa: E402

PEERS_VENV = ROOT / ".venv-peers"
PEERS_REQS = ROOT / "requirements-peers.txt"
RUN_MARK = "BENCH_RUN_ID"  # in every child's environment, for the leftover-process sweep


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# -- environments ---------------------------------------------------------------------------------


def ensure_peers(venv: Path, base_python: str, log_dir: Path) -> dict[str, str]:
    """Create/update the peers venv; return {requirement: why it failed} for what did not install."""
    py = venv / "bin" / "python"
    stamp = venv / ".bench-requirements.sha256"
    want = hashlib.sha256(PEERS_REQS.read_bytes()).hexdigest()
    if py.exists() and stamp.exists() and stamp.read_text().strip() == want:
        return {}
    pip_log = log_dir / "pip-peers.log"
    with open(pip_log, "ab") as out:
        if not py.exists():
            log(f"creating {venv} with {base_python}")
            subprocess.run([base_python, "-m", "venv", str(venv)], check=True, stdout=out, stderr=out)
        log(f"installing peers from {PEERS_REQS.name} (log: {pip_log})")
        cmd = [str(py), "-m", "pip", "install", "--disable-pip-version-check", "-r", str(PEERS_REQS)]
        if subprocess.run(cmd, stdout=out, stderr=out, timeout=1800).returncode == 0:
            stamp.write_text(want)
            return {}
        failed: dict[str, str] = {}
        for req in _requirements():  # one at a time: keep what installs, remember what does not
            p = subprocess.run(
                [str(py), "-m", "pip", "install", req], capture_output=True, text=True, timeout=1800
            )
            out.write((p.stdout + p.stderr).encode())
            if p.returncode != 0:
                tail = [
                    ln for ln in (p.stderr or p.stdout).splitlines() if ln.strip() and "WARNING" not in ln
                ]
                failed[req] = (tail[-1] if tail else f"pip exited {p.returncode}")[:300]
        return failed


def _requirements() -> list[str]:
    return [
        ln.split("#")[0].strip() for ln in PEERS_REQS.read_text().splitlines() if ln.split("#")[0].strip()
    ]


def import_check(python: str, modules: tuple[str, ...]) -> str:
    """Empty if ``python`` imports all ``modules``; otherwise the reason."""
    if not Path(python).exists() and not shutil.which(python):
        return f"interpreter {python} not found"
    code = "import " + ", ".join(modules)
    p = subprocess.run([python, "-c", code], capture_output=True, text=True, timeout=300)
    if p.returncode == 0:
        return ""
    lines = [ln for ln in p.stderr.strip().splitlines() if ln.strip()]
    return f"`{code}` failed: {lines[-1] if lines else p.returncode}"


# -- children -------------------------------------------------------------------------------------


def child_env(run_id: str, home: str, peers: bool) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLAME_")}
    if peers:  # their workers import the adapters' holder classes (systems.*) by name
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    env.update(
        HOME=home,  # no user flame.yaml, ray token, ipython profile or dask config leaks in
        PYTHONUNBUFFERED="1",
        RAY_USAGE_STATS_ENABLED="0",
        RAY_TMPDIR=os.path.join(home, "ray"),
        DASK_TEMPORARY_DIRECTORY=os.path.join(home, "dask"),
        **{RUN_MARK: run_id},
    )
    return env


def run_child(
    argv: list[str], env: dict[str, str], timeout: float, log_path: Path
) -> tuple[int | None, float]:
    """Run a child in its own session; kill its group at ``timeout``. Returns (rc or None, wall s)."""
    with open(log_path, "ab") as out:
        out.write(f"$ {' '.join(argv)}\n".encode())
        out.flush()
        t = time.perf_counter()
        proc = subprocess.Popen(
            argv,
            env=env,
            cwd=str(REPO),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=out,
            start_new_session=True,
        )
        try:
            rc: int | None = proc.wait(timeout)
        except subprocess.TimeoutExpired:
            rc = None
            for sig in (signal.SIGTERM, signal.SIGKILL):
                try:
                    os.killpg(proc.pid, sig)
                except ProcessLookupError:
                    break
                try:
                    proc.wait(10)
                    break
                except subprocess.TimeoutExpired:
                    continue
        return rc, time.perf_counter() - t


def sweep(run_id: str, grace: float = 10.0) -> list[str]:
    """Kill every process that still carries this run's mark ``grace`` seconds after its child ended."""
    try:
        import psutil
    except ImportError:
        return []

    def marked() -> list[Any]:
        found = []
        for p in psutil.process_iter(["pid", "name", "cmdline"]):
            try:
                if p.pid != os.getpid() and p.environ().get(RUN_MARK) == run_id:
                    found.append(p)
            except (psutil.Error, OSError):
                continue
        return found

    def alive(p: Any) -> bool:
        try:
            return p.is_running() and p.status() != psutil.STATUS_ZOMBIE
        except psutil.Error:
            return False

    left = marked()
    deadline = time.monotonic() + grace
    while left and time.monotonic() < deadline:
        time.sleep(0.2)
        left = [p for p in left if alive(p)]
    out: list[str] = []
    for p in left:
        try:
            out.append(f"{p.pid} {' '.join(p.info['cmdline'] or [p.info['name']])[:160]}")
            p.kill()
        except (psutil.Error, OSError):
            continue
    return out


# -- one system -----------------------------------------------------------------------------------


def run_system(
    name: str,
    python: str,
    args: argparse.Namespace,
    sizes: dict[str, Any],
    wl: list[str],
    run_id: str,
    log_dir: Path,
) -> dict[str, Any]:
    res: dict[str, Any] = {"system": name, "status": "ok", "python": python, "workloads": {}}
    script = str(ROOT / REGISTRY[name].script)
    home = tempfile.mkdtemp(prefix="bench-home-")
    try:
        env = child_env(run_id, home, peers=REGISTRY[name].env == "peers")
        leaked: list[str] = []
        if "W1" in wl:
            runs = []
            reps = args.w1_repeats or sizes["W1"]["repeats"]
            for i in range(reps):
                out = Path(home) / f"cold-{i}.json"
                log(f"{name}: W1 cold start {i + 1}/{reps}")
                argv = [
                    python,
                    script,
                    "--system",
                    name,
                    "--cold",
                    "--out",
                    str(out),
                    "--workers",
                    str(args.workers),
                ]
                rc, wall = run_child(argv, env, sizes["W1"]["cap_s"], log_dir / f"{name}-W1.log")
                r: dict[str, Any] = {"wall_s": wall}
                if rc == 0 and out.exists():
                    r.update(json.loads(out.read_text()), status="ok")
                else:
                    r.update(
                        status="timeout" if rc is None else "error",
                        reason=f"exit {rc}; see {log_dir / f'{name}-W1.log'}",
                    )
                runs.append(r)
                leaked += sweep(run_id)
            res["cold"] = {"runs": runs}
        warm = [w for w in wl if w != "W1"]
        if warm:
            out = Path(home) / "warm.json"
            argv = [
                python,
                script,
                "--system",
                name,
                "--workloads",
                ",".join(warm),
                "--out",
                str(out),
                "--workers",
                str(args.workers),
            ]
            argv += ["--smoke"] if args.smoke else []
            argv += ["--no-memory"] if args.no_memory else []
            limit = sum(sizes[w]["cap_s"] for w in warm) + 240  # + start, stop, set-up of each workload
            log(f"{name}: {','.join(warm)} (limit {limit:.0f}s)")
            rc, wall = run_child(argv, env, limit, log_dir / f"{name}-warm.log")
            if out.exists():
                got = json.loads(out.read_text())
                got.pop("system", None)
                res.update(got)
            if rc is None or not out.exists() or rc != 0 and res.get("status") == "ok":
                missing = [w for w in warm if w not in res["workloads"]]
                why = "timeout" if rc is None else "error"
                for i, w in enumerate(missing):
                    res["workloads"][w] = {
                        "status": why if i == 0 else "not run",
                        "reason": f"process {'hit its ' + str(limit) + ' s limit' if rc is None else f'exited {rc}'}; "
                        f"see {log_dir / f'{name}-warm.log'}",
                    }
                if not out.exists():
                    res.update(status=why, reason=f"no results; see {log_dir / f'{name}-warm.log'}")
            res["warm_wall_s"] = wall
            leaked += sweep(run_id)
        if leaked:
            res["leaked"] = leaked
    finally:
        shutil.rmtree(home, ignore_errors=True)
    return res


# -- machine --------------------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    cpu = "?"
    try:
        for ln in Path("/proc/cpuinfo").read_text().splitlines():
            if ln.startswith("model name"):
                cpu = ln.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    ram = 0.0
    try:
        for ln in Path("/proc/meminfo").read_text().splitlines():
            if ln.startswith("MemTotal:"):
                ram = int(ln.split()[1]) * 1024 / 1e9
    except OSError:
        pass
    os_name = platform.platform()
    try:
        for ln in Path("/etc/os-release").read_text().splitlines():
            if ln.startswith("PRETTY_NAME="):
                os_name = ln.split("=", 1)[1].strip('"')
    except OSError:
        pass
    git = subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    )
    dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain"], capture_output=True, text=True)
    notes = [f"{k}={os.environ[k]}" for k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE") if k in os.environ]
    return {
        "cpu_model": cpu,
        "cpus": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "ram_gb": ram,
        "os": os_name,
        "kernel": platform.release(),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "git": (git.stdout.strip() or "?") + (" (with uncommitted changes)" if dirty.stdout.strip() else ""),
        "loadavg_start": _loadavg(),
        "env_notes": ", ".join(notes),
    }


def _loadavg() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "?"


# -- main -----------------------------------------------------------------------------------------


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--smoke", action="store_true", help="tiny sizes; default systems flame,processpool")
    p.add_argument(
        "--systems", help=f"comma list from {','.join(REGISTRY)} (default {','.join(DEFAULT_SYSTEMS)})"
    )
    p.add_argument("--workloads", default=",".join(workloads.WORKLOADS), help="comma list of W1..W8")
    p.add_argument("--out", help="results JSON (default benchmarks/results/<date>-<full|smoke>.json)")
    p.add_argument(
        "--doc", help="markdown to write (default docs/benchmarks.md for full runs, none for --smoke)"
    )
    p.add_argument("--flame-python", default=sys.executable, help="interpreter for flame and processpool")
    p.add_argument(
        "--peers-python", help=f"interpreter for ray/dask/ipyparallel (default {PEERS_VENV}/bin/python)"
    )
    p.add_argument(
        "--peers-base-python",
        default=getattr(sys, "_base_executable", sys.executable),
        help="interpreter that creates the peers venv",
    )
    p.add_argument("--no-install", action="store_true", help="never create or update the peers venv")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--w1-repeats", type=int, default=0, help="cold starts per system (default 3, smoke 1)")
    p.add_argument("--no-memory", action="store_true", help="no RSS sampling thread")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    names = [
        s.strip()
        for s in (args.systems or ",".join(SMOKE_SYSTEMS if args.smoke else DEFAULT_SYSTEMS)).split(",")
    ]
    names = [s for s in names if s]
    unknown = [s for s in names if s not in REGISTRY]
    wl = [w.strip().upper() for w in args.workloads.split(",") if w.strip()]
    bad = [w for w in wl if w not in workloads.WORKLOADS]
    if unknown or bad:
        print(f"unknown systems {unknown} / workloads {bad}; systems: {', '.join(REGISTRY)}", file=sys.stderr)
        return 2
    sizes = workloads.SMOKE if args.smoke else workloads.FULL
    stamp = datetime.now(timezone.utc)
    out = (
        Path(args.out)
        if args.out
        else ROOT / "results" / f"{stamp:%Y%m%dT%H%M%SZ}-{'smoke' if args.smoke else 'full'}.json"
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    log_dir = out.with_suffix("")  # results/<name>/ holds the children's logs
    log_dir.mkdir(parents=True, exist_ok=True)
    run_id = uuid.uuid4().hex
    results: dict[str, Any] = {
        "date": stamp.isoformat(timespec="seconds"),
        "command": " ".join(["python benchmarks/run.py", *(sys.argv[1:] if argv is None else argv)]),
        "smoke": args.smoke,
        "workers": args.workers,
        "workloads": wl,
        "sizes": {w: sizes[w] for w in wl},
        "machine": machine(),
        "systems": {},
    }
    peers_python = args.peers_python or str(PEERS_VENV / "bin" / "python")
    install_failed: dict[str, str] = {}
    if (
        any(REGISTRY[s].env == "peers" and not REGISTRY[s].planned for s in names)
        and not args.peers_python
        and not args.no_install
    ):
        try:
            install_failed = ensure_peers(PEERS_VENV, args.peers_base_python, log_dir)
        except (OSError, subprocess.SubprocessError) as e:
            install_failed = {"*": f"{type(e).__name__}: {e}"}
    for name in names:
        spec = REGISTRY[name]
        python = args.flame_python if spec.env == "flame" else peers_python
        if spec.planned:
            results["systems"][name] = {"status": "n/a", "reason": spec.planned, "workloads": {}}
            continue
        why = import_check(python, spec.imports)
        if why:
            pip_why = "; ".join(
                f"{r}: {m}"
                for r, m in install_failed.items()
                if r == "*" or r.split("=")[0].split("[")[0] in spec.imports or r.startswith(name)
            )
            results["systems"][name] = {
                "status": "n/a",
                "python": python,
                "workloads": {},
                "reason": f"not installable: {pip_why}" if pip_why else why,
            }
            log(f"{name}: n/a: {results['systems'][name]['reason']}")
            continue
        results["systems"][name] = run_system(name, python, args, sizes, wl, run_id, log_dir)
        results["machine"]["loadavg_end"] = _loadavg()
        out.write_text(json.dumps(results, indent=1, default=str))
    results["machine"]["loadavg_end"] = _loadavg()
    out.write_text(json.dumps(results, indent=1, default=str))
    print(report.console(results))
    doc = args.doc or (None if args.smoke else str(REPO / "docs" / "benchmarks.md"))
    rel = os.path.relpath(out, REPO)
    if doc:
        Path(doc).parent.mkdir(parents=True, exist_ok=True)
        Path(doc).write_text(report.markdown(results, rel))
        log(f"wrote {doc}")
    log(f"results: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
