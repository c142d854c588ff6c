"""Run Flame v0.6.0's own end-to-end suite, unmodified, against the embedded runtime.

Flame's suite is Flame's code and is never kept in this repository: give the launcher a local copy
of Flame's ``e2e/`` folder at tag v0.6.0 (``../shared/conformance/README.md`` says how to make one)::

    python tests/conformance/run_e2e.py --suite /tmp/flame-e2e/e2e            # the default files
    FLAME_E2E_SUITE=/tmp/flame-e2e/e2e python tests/conformance/run_e2e.py     # the same
    python tests/conformance/run_e2e.py --suite DIR test_cache.py -k put      # a subset (extra args go to pytest)
    python tests/conformance/run_e2e.py --suite DIR --system                  # also the opt-in system tests

With no suite given, the launcher prints one line saying the suite is not present and exits 0 (the
project's own ``tests/conformance/test_*.py`` guard the behaviours it checks). A suite that is
given but is not a Flame e2e folder is an error.

What the launcher does (and nothing else): copies the suite to a temporary directory, because
flamepy's Runner writes ``dist/`` into its working directory; points ``/opt/e2e`` at the copy (the suite's service apps hard-code that
path); starts a :class:`flame_local.LocalRuntime`; writes a ``flame.yaml`` in a temporary
``HOME`` like Flame's ``ci/flame-local.yaml``; runs pytest in the copy; prints
passed/failed/skipped per file. Exit status 0 only if nothing failed and nothing skipped except
the two upstream skips.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SUITE_ENV = "FLAME_E2E_SUITE"
OPT_E2E = Path("/opt/e2e")
DEFAULT_FILES = [
    "test_application.py",
    "test_cache.py",
    "test_session.py",
    "test_core.py",
    "test_agent.py",
    "test_runner.py",
    "test_flmexec.py",
]
# Skips that are not the launcher's fault (see ../shared/conformance/README.md).
UPSTREAM_SKIPS = {
    "tests.test_cache::test_patch_max_deltas_limit",
    "tests.test_runner::test_runner_error_no_storage_config",
}


def find_suite(given: Path | None) -> Path | None:
    """The suite to run: ``--suite``, else ``$FLAME_E2E_SUITE``, else none."""
    if given is None and os.environ.get(SUITE_ENV):
        given = Path(os.environ[SUITE_ENV])
    if given is None:
        return None
    given = given.expanduser().resolve()
    if not (given / "tests" / "test_session.py").is_file() or not (given / "src" / "e2e").is_dir():
        raise SystemExit(
            f"{given} is not Flame's e2e suite (expected tests/test_session.py and src/e2e/ in it)"
        )
    return given


def link_opt_e2e(target: Path) -> None:
    if OPT_E2E.is_symlink() or not OPT_E2E.exists():
        if OPT_E2E.is_symlink():
            OPT_E2E.unlink()
        OPT_E2E.parent.mkdir(parents=True, exist_ok=True)
        OPT_E2E.symlink_to(target)
    else:
        raise SystemExit(f"{OPT_E2E} exists and is not a symlink; refusing to replace it")


def write_flame_yaml(home: Path, endpoint: str, cache: str) -> None:
    (home / ".flame").mkdir(parents=True, exist_ok=True)
    (home / ".flame" / "flame.yaml").write_text(
        "current-context: flame\n"
        "contexts:\n"
        "  - name: flame\n"
        "    cluster:\n"
        f'      endpoint: "{endpoint}"\n'
        "    cache:\n"
        f'      endpoint: "{cache}"\n'
    )


def summarize(junit: Path) -> tuple[dict[str, Counter[str]], list[str], list[str]]:
    per_file: dict[str, Counter[str]] = {}
    bad_skips: list[str] = []
    failures: list[str] = []
    for case in ET.parse(junit).getroot().iter("testcase"):
        module = case.get("classname", "").split(".")
        name = f"{module[0]}.{module[1]}::{case.get('name')}" if len(module) > 1 else case.get("name", "")
        file = (module[1] + ".py") if len(module) > 1 else "?"
        outcome = "passed"
        if case.find("failure") is not None or case.find("error") is not None:
            outcome = "failed"
            failures.append(f"{module[-1] if len(module) > 2 else ''}{name}")
        elif case.find("skipped") is not None:
            outcome = "skipped"
            if name not in UPSTREAM_SKIPS:
                bad_skips.append(name)
        per_file.setdefault(file, Counter())[outcome] += 1
    return per_file, failures, bad_skips


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="*", help="test files (default: the standard set)")
    parser.add_argument(
        "--suite", type=Path, default=None, help=f"Flame's e2e folder at tag v0.6.0 (default: ${SUITE_ENV})"
    )
    parser.add_argument("--system", action="store_true", help="also run the opt-in system tests")
    parser.add_argument("--max-instances", type=int, default=None, help="runtime instance cap")
    parser.add_argument("--junit", type=Path, default=None, help="keep the junit xml here")
    args, pytest_args = parser.parse_known_args(argv)
    source = find_suite(args.suite)
    if source is None:
        print(
            f"Flame e2e conformance suite not present (no --suite, no ${SUITE_ENV}): skipped; "
            "tests/conformance/ ran instead. See ../shared/conformance/README.md to run it."
        )
        return 0

    from flame_local import LocalRuntime, RuntimeSettings

    files = args.files or list(DEFAULT_FILES)
    if args.system and "test_system.py" not in files:
        files.append("test_system.py")
    work = Path(tempfile.mkdtemp(prefix="flame-e2e-"))
    suite = work / "e2e"
    shutil.copytree(source, suite, ignore=shutil.ignore_patterns("__pycache__", "dist", ".pytest_cache"))
    link_opt_e2e(suite)
    home = work / "home"
    junit = args.junit or (work / "junit.xml")
    # Default slots (cores): the nested-runner test runs on lent slots (docs/runtime.md, "Slots").
    settings = (
        RuntimeSettings() if args.max_instances is None else RuntimeSettings(max_instances=args.max_instances)
    )
    started = time.monotonic()
    with LocalRuntime(settings) as rt:
        write_flame_yaml(home, rt.endpoint, rt.cache_endpoint)
        env = dict(os.environ, HOME=str(home), PYTHONPATH=str(suite / "src"), **rt.client_env())
        env.pop("FLAME_CACHE_STORAGE", None)
        if args.system:
            env["FLAME_E2E_SYSTEM_TESTS"] = "all"
        cmd = [
            sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-o", "log_cli=false",
            "-q", f"--junitxml={junit}", *[f"tests/{f}" for f in files], *pytest_args,
        ]  # fmt: skip
        proc = subprocess.run(cmd, cwd=suite, env=env, stdin=subprocess.DEVNULL)
    elapsed = time.monotonic() - started
    per_file, failures, bad_skips = summarize(junit) if junit.exists() else ({}, ["no junit report"], [])
    print(f"\nFlame v0.6.0 e2e against flame-local ({elapsed:.0f}s):")
    print(f"{'file':<22} {'passed':>7} {'failed':>7} {'skipped':>8}")
    for file, c in sorted(per_file.items()):
        print(f"{file:<22} {c['passed']:>7} {c['failed']:>7} {c['skipped']:>8}")
    for name in failures:
        print(f"FAILED  {name}")
    for name in bad_skips:
        print(f"SKIPPED (launcher's fault) {name}")
    if OPT_E2E.is_symlink() and OPT_E2E.resolve() == suite.resolve():
        OPT_E2E.unlink()
    shutil.rmtree(work, ignore_errors=True)
    return 0 if proc.returncode == 0 and not failures and not bad_skips else 1


if __name__ == "__main__":
    sys.exit(main())
