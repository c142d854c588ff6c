"""Tests for flame_local.packages: real archives, real pip, real Flight/HTTP servers (no mocks)."""

from __future__ import annotations

import functools
import http.server
import io
import os
import stat
import subprocess
import sys
import tarfile
import threading
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pyarrow as pa
import pyarrow.flight as flight
import pytest
from flamepy.runner.runner import Runner

from flame_local.packages import PackageError, extract, fetch, install, prepare

pytestmark = pytest.mark.timeout(180)

# A project shaped like Flame's e2e project (src layout, setuptools, a console script, a
# dependency group for dev tools): the shape the Runner packages and executors install.
E2E_LIKE_PROJECT = {
    "README.md": "An e2e-like project.\n",
    "pyproject.toml": """[project]
name = "e2e"
version = "0.1.0"
description = "A project shaped like Flame's e2e project"
readme = "README.md"
requires-python = ">=3.9"
dependencies = [
    "cloudpickle>=3.1",
    "grpcio>=1.80",
    "grpcio-tools>=1.80",
]

[project.scripts]
e2e = "e2e:main"

[build-system]
requires = ["setuptools>=61.0", "wheel"]
build-backend = "setuptools.build_meta"

[tool.setuptools.packages.find]
where = ["src"]
include = ["e2e*"]
exclude = ["tests*"]

[dependency-groups]
dev = ["flamepy", "pytest>=8.4.2"]
""",
    "src/e2e/__init__.py": "def main() -> None:\n    print('e2e')\n",
    "src/e2e/helpers.py": "def double(x):\n    return 2 * x\n",
    "src/e2e/basic_svc.py": "from e2e.helpers import double\n",
    "tests/test_nothing.py": "def test_nothing():\n    pass\n",
}
OFFLINE = {"PIP_NO_INDEX": "1", "PIP_DISABLE_PIP_VERSION_CHECK": "1"}


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every install in this module must work without a package index."""
    for key, value in OFFLINE.items():
        monkeypatch.setenv(key, value)


# ----------------------------------------------------------------------------------------------
# helpers


def flamepy_package(project: Path, name: str, dependencies: list[str] | None = None) -> Path:
    """Build ``dist/<name>.tar.gz`` with flamepy's own ``Runner._create_package`` code."""
    this = SimpleNamespace(_name=name, _dependencies=dependencies, _context=SimpleNamespace(package=None))
    this._should_exclude = functools.partial(Runner._should_exclude, this)
    this._generated_pyproject_toml = functools.partial(Runner._generated_pyproject_toml, this)
    old = os.getcwd()
    os.chdir(project)
    try:
        return Path(Runner._create_package(this))
    finally:
        os.chdir(old)


def run_python(code: str, pythonpath: str | None, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(OFFLINE)
    if pythonpath is not None:
        env["PYTHONPATH"] = pythonpath
    cwd.mkdir(parents=True, exist_ok=True)
    return subprocess.run(
        [sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True, text=True, timeout=60
    )


def write_tree(root: Path, files: dict[str, str | bytes]) -> Path:
    for rel, content in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)
    return root


def make_tar(path: Path, members: list[tuple[str, str, str | bytes]], mode: str = "w:gz") -> Path:
    """members: (name, kind, payload) with kind in file/dir/sym/lnk/fifo/chr."""
    types = {"dir": tarfile.DIRTYPE, "sym": tarfile.SYMTYPE, "lnk": tarfile.LNKTYPE}
    types.update(fifo=tarfile.FIFOTYPE, chr=tarfile.CHRTYPE)
    with tarfile.open(path, mode) as tar:
        for name, kind, payload in members:
            info = tarfile.TarInfo(name)
            info.mode = 0o644
            if kind == "file":
                data = payload if isinstance(payload, bytes) else payload.encode()
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
                continue
            info.type = types[kind]
            if kind in ("sym", "lnk"):
                info.linkname = str(payload)
            tar.addfile(info)
    return path


def make_zip(path: Path, members: list[tuple[str, str, str | bytes]]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, kind, payload in members:
            info = zipfile.ZipInfo(name)
            info.create_system = 3
            if kind == "sym":
                info.external_attr = (stat.S_IFLNK | 0o777) << 16
            elif kind == "exe":
                info.external_attr = (stat.S_IFREG | 0o755) << 16
            else:
                info.external_attr = (stat.S_IFREG | 0o644) << 16
            zf.writestr(info, payload)
    return path


def snapshot(root: Path) -> set[str]:
    found = set()
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            found.add(os.path.relpath(os.path.join(dirpath, name), root))
    return found


def make_wheel(directory: Path, name: str, version: str, code: str) -> Path:
    dist_info = f"{name}-{version}.dist-info"
    files = {
        f"{name}/__init__.py": code,
        f"{dist_info}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
        f"{dist_info}/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    files[f"{dist_info}/RECORD"] = "".join(f"{p},,\n" for p in [*files, f"{dist_info}/RECORD"])
    wheel = directory / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        for rel, content in files.items():
            zf.writestr(rel, content)
    return wheel


# ----------------------------------------------------------------------------------------------
# extract: formats


SOURCE_TREE: dict[str, str | bytes] = {
    "pkg/__init__.py": "VALUE = 1\n",
    "pkg/sub/data.bin": bytes(range(256)) * 64,
    "run.sh": "#!/bin/sh\necho hi\n",
}


@pytest.mark.parametrize(
    "suffix", [".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz", ".tar", ".zip"]
)
def test_extract_round_trips_every_format(tmp_path: Path, suffix: str) -> None:
    src = write_tree(tmp_path / "tree", SOURCE_TREE)
    (src / "run.sh").chmod(0o755)
    (src / "empty").mkdir()
    os.symlink("pkg/__init__.py", src / "link.py")
    archive = tmp_path / f"pkg{suffix}"
    if suffix == ".zip":
        make_zip(
            archive,
            [
                ("pkg/__init__.py", "file", SOURCE_TREE["pkg/__init__.py"]),
                ("pkg/sub/data.bin", "file", SOURCE_TREE["pkg/sub/data.bin"]),
                ("run.sh", "exe", SOURCE_TREE["run.sh"]),
                ("empty/", "file", b""),
                ("link.py", "sym", "pkg/__init__.py"),
            ],
        )
    else:
        mode = {".tar.gz": "w:gz", ".tgz": "w:gz", ".tar.bz2": "w:bz2", ".tbz2": "w:bz2"}
        mode.update({".tar.xz": "w:xz", ".txz": "w:xz", ".tar": "w"})
        with tarfile.open(archive, mode[suffix]) as tar:
            for item in sorted(os.listdir(src)):
                tar.add(src / item, arcname=item)
    out = tmp_path / "out"
    extract(archive, out)
    assert snapshot(out) == snapshot(src)
    for rel, content in SOURCE_TREE.items():
        expected = content if isinstance(content, bytes) else content.encode()
        assert (out / rel).read_bytes() == expected
    assert os.readlink(out / "link.py") == "pkg/__init__.py"
    assert (out / "link.py").read_text() == "VALUE = 1\n"
    assert (out / "empty").is_dir()
    assert os.stat(out / "run.sh").st_mode & 0o100
    assert not os.stat(out / "pkg/__init__.py").st_mode & 0o111
    for rel in snapshot(out):
        mode = os.lstat(out / rel).st_mode
        if not stat.S_ISLNK(mode):
            assert mode & 0o077 == 0, f"{rel} is group/world accessible: {oct(mode)}"


def test_extract_copies_a_plain_file(tmp_path: Path) -> None:
    binary = tmp_path / "flmping"
    binary.write_bytes(b"\x7fELF not really")
    binary.chmod(0o755)
    extract(binary, tmp_path / "out")
    assert (tmp_path / "out/flmping").read_bytes() == b"\x7fELF not really"
    assert os.stat(tmp_path / "out/flmping").st_mode & 0o100


def test_extract_rejects_a_corrupt_archive(tmp_path: Path) -> None:
    archive = tmp_path / "broken.tar.gz"
    archive.write_bytes(b"this is not gzip data at all")
    with pytest.raises(PackageError) as err:
        extract(archive, tmp_path / "out")
    assert err.value.stage == "extract"
    assert "broken.tar.gz" in err.value.message


# ----------------------------------------------------------------------------------------------
# extract: malicious archives

OK_FIRST: list[tuple[str, str, str | bytes]] = [("ok.txt", "file", b"benign")]
MALICIOUS = {
    "dotdot": ("tar", [("../x", "file", b"pwned")], "'../x' escapes the target directory"),
    "dotdot-deep": ("tar", [("a/../../x", "file", b"pwned")], "'a/../../x' escapes the target directory"),
    "absolute": (
        "tar",
        [("/tmp/abs-flame-test", "file", b"pwned")],
        "'/tmp/abs-flame-test' has an absolute path",
    ),
    "symlink-passwd": (
        "tar",
        [("passwd", "sym", "/etc/passwd")],
        "symlink 'passwd' -> '/etc/passwd' points outside",
    ),
    "symlink-dir-escape": (
        "tar",
        [("d", "sym", ".."), ("d/x", "file", b"pwned")],
        "'d/x' is inside symlinked directory 'd'",
    ),
    "symlink-relative-escape": (
        "tar",
        [("s", "sym", "../../outside")],
        "symlink 's' -> '../../outside' points outside",
    ),
    "symlink-chain-escape": (
        "tar",
        [("a", "sym", "."), ("b", "sym", "a/a/../..")],
        "symlink 'b' -> 'a/a/../..' points outside",
    ),
    "symlink-replaced-by-dir": (
        "tar",
        [("d", "sym", "/etc"), ("d", "dir", ""), ("d/passwd", "file", b"pwned")],
        "'d/passwd' is inside symlinked directory 'd'",
    ),
    "symlink-loop": ("tar", [("l1", "sym", "l2"), ("l2", "sym", "l1")], "symlink loop"),
    "hardlink-absolute": (
        "tar",
        [("h", "lnk", "/etc/passwd")],
        "hardlink 'h' -> '/etc/passwd' points outside",
    ),
    "hardlink-relative": ("tar", [("h", "lnk", "../outside")], "hardlink 'h' -> '../outside' points outside"),
    "fifo": ("tar", [("p", "fifo", "")], "'p' is a device or FIFO"),
    "chardev": ("tar", [("c", "chr", "")], "'c' is a device or FIFO"),
    "zip-dotdot": ("zip", [("../x", "file", b"pwned")], "'../x' escapes the target directory"),
    "zip-absolute": (
        "zip",
        [("/tmp/abs-flame-test", "file", b"pwned")],
        "'/tmp/abs-flame-test' has an absolute",
    ),
    "zip-symlink-escape": ("zip", [("s", "sym", "../../etc")], "symlink 's' -> '../../etc' points outside"),
    "zip-symlink-dir": (
        "zip",
        [("s", "sym", ".."), ("s/x", "file", b"pwned")],
        "'s/x' is inside symlinked directory 's'",
    ),
}


@pytest.mark.parametrize("case", sorted(MALICIOUS))
def test_extract_refuses_malicious_archives(tmp_path: Path, case: str) -> None:
    kind, members, expected = MALICIOUS[case]
    archive = tmp_path / ("evil.zip" if kind == "zip" else "evil.tar.gz")
    (make_zip if kind == "zip" else make_tar)(archive, OK_FIRST + members)
    target = tmp_path / "box" / "target"
    target.parent.mkdir()
    before = snapshot(tmp_path)
    abs_before = os.path.exists("/tmp/abs-flame-test")
    with pytest.raises(PackageError) as err:
        extract(archive, target)
    assert err.value.stage == "extract"
    assert expected in err.value.message
    assert str(err.value) == f"application installation failed: extract: {err.value.message}"
    # Nothing was written anywhere: not outside, and not even the benign first member inside.
    assert snapshot(tmp_path) - {"box/target"} == before
    assert list(target.iterdir()) == []
    assert os.path.exists("/tmp/abs-flame-test") == abs_before


def test_extract_allows_internal_symlinks_and_hardlinks(tmp_path: Path) -> None:
    archive = make_tar(
        tmp_path / "ok.tar.gz",
        [
            ("lib/real.py", "file", b"X = 1\n"),
            ("lib/alias.py", "sym", "real.py"),
            ("top", "sym", "lib"),
            ("copy.py", "lnk", "lib/real.py"),
        ],
    )
    extract(archive, tmp_path / "out")
    assert (tmp_path / "out/lib/alias.py").read_text() == "X = 1\n"
    assert (tmp_path / "out/top/real.py").read_text() == "X = 1\n"
    assert (tmp_path / "out/copy.py").read_text() == "X = 1\n"
    assert not (tmp_path / "out/copy.py").is_symlink()


# ----------------------------------------------------------------------------------------------
# fetch


def test_fetch_file_url_and_missing_file(tmp_path: Path) -> None:
    payload = tmp_path / "app.tar.gz"
    payload.write_bytes(b"abc" * 1000)
    got = fetch(payload.as_uri(), tmp_path / "dl")
    assert got == tmp_path / "dl/app.tar.gz"
    assert got.read_bytes() == b"abc" * 1000
    with pytest.raises(PackageError) as err:
        fetch((tmp_path / "missing.tar.gz").as_uri(), tmp_path / "dl2")
    assert err.value.stage == "download"
    assert "not found" in err.value.message and "missing.tar.gz" in err.value.message
    assert not (tmp_path / "dl2/missing.tar.gz").exists()


def test_fetch_unsupported_scheme(tmp_path: Path) -> None:
    with pytest.raises(PackageError) as err:
        fetch("ftp://example.invalid/app.tar.gz", tmp_path)
    assert err.value.stage == "download" and "unsupported URL scheme 'ftp'" in err.value.message


class _Cache(flight.FlightServerBase):
    """A real Arrow Flight server holding objects as Flame's cache does (one row per chunk)."""

    def __init__(self, objects: dict[str, bytes]) -> None:
        super().__init__("grpc://127.0.0.1:0")
        self.objects = objects
        self.tickets: list[str] = []

    def do_get(self, context: object, ticket: flight.Ticket) -> flight.RecordBatchStream:
        text = ticket.ticket.decode()
        self.tickets.append(text)
        key = text.split(":", 1)[0]
        if key not in self.objects:
            raise flight.FlightServerError(f"object not found: {key}")
        data = self.objects[key]
        chunks = [data[i : i + 1000] for i in range(0, len(data), 1000)]
        schema = pa.schema([("version", pa.uint64()), ("data", pa.binary())])
        batches = [
            pa.record_batch(
                [pa.array([1] * len(part), pa.uint64()), pa.array(part, pa.binary())], schema=schema
            )
            for part in (chunks[:2], chunks[2:])
        ]
        return flight.RecordBatchStream(pa.Table.from_batches(batches, schema))


@pytest.fixture
def cache_server() -> Iterator[_Cache]:
    server = _Cache({"app/pkg/app.tar.gz": os.urandom(4500)})
    try:
        yield server
    finally:
        server.shutdown()


def test_fetch_grpc_url_through_flight(tmp_path: Path, cache_server: _Cache) -> None:
    url = f"grpc://127.0.0.1:{cache_server.port}/app/pkg/app.tar.gz"
    got = fetch(url, tmp_path / "dl", timeout=30)
    assert got.name == "app.tar.gz"
    assert got.read_bytes() == cache_server.objects["app/pkg/app.tar.gz"]
    assert cache_server.tickets == ["app/pkg/app.tar.gz:0"]
    with pytest.raises(PackageError) as err:
        fetch(f"grpc://127.0.0.1:{cache_server.port}/app/pkg/nope.tar.gz", tmp_path / "dl", timeout=30)
    assert err.value.stage == "download" and "app/pkg/nope.tar.gz" in err.value.message


def test_fetch_grpc_url_in_process(tmp_path: Path, cache_server: _Cache) -> None:
    store = {"app/pkg/app.tar.gz": b"in-process bytes"}
    asked: list[str] = []

    def read(key: str) -> bytes:
        asked.append(key)
        return store[key]

    got = fetch("grpc://127.0.0.1:9090/app/pkg/app.tar.gz", tmp_path / "a", read_cache_object=read)
    assert got.read_bytes() == b"in-process bytes" and asked == ["app/pkg/app.tar.gz"]
    with pytest.raises(PackageError) as err:
        fetch("grpc://127.0.0.1:9090/app/pkg/other.tar.gz", tmp_path / "b", read_cache_object=read)
    assert err.value.stage == "download" and "not found" in err.value.message
    # A URL for another endpoint bypasses the in-process store and goes through Flight.
    got = fetch(
        f"grpc://127.0.0.1:{cache_server.port}/app/pkg/app.tar.gz",
        tmp_path / "c",
        read_cache_object=read,
        cache_endpoint="grpc://127.0.0.1:1",
        timeout=30,
    )
    assert got.read_bytes() == cache_server.objects["app/pkg/app.tar.gz"]
    assert asked == ["app/pkg/app.tar.gz", "app/pkg/other.tar.gz"]


def test_fetch_http(tmp_path: Path) -> None:
    served = tmp_path / "www"
    (served / "pkg").mkdir(parents=True)
    (served / "pkg/app.zip").write_bytes(b"zip-bytes" * 100)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(served))
    handler.log_message = lambda *args: None  # type: ignore[attr-defined]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}"
        got = fetch(f"{base}/pkg/app.zip", tmp_path / "dl", timeout=30)
        assert got.read_bytes() == b"zip-bytes" * 100
        with pytest.raises(PackageError) as err:
            fetch(f"{base}/pkg/missing.zip", tmp_path / "dl", timeout=30)
        assert err.value.stage == "download" and "HTTP 404" in err.value.message
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


# ----------------------------------------------------------------------------------------------
# install / prepare


def test_e2e_project_packaged_like_the_runner_installs_offline(tmp_path: Path) -> None:
    project = write_tree(tmp_path / "e2e-project", E2E_LIKE_PROJECT)
    archive = flamepy_package(project, "e2e")
    assert archive == project / "dist/e2e.tar.gz"
    with tarfile.open(archive) as tar:
        names = tar.getnames()
    assert "pyproject.toml" in names and "src/e2e/helpers.py" in names and "dist" not in names

    work = tmp_path / "work"
    log = tmp_path / "logs/e2e.log"
    prepared = prepare(archive.as_uri(), work, log_path=log)
    src = work / "src"
    assert prepared.src == src
    assert prepared.env["PYTHONPATH"].split(os.pathsep) == [str(src / "src"), str(src)]
    assert prepared.install.installed == []
    assert prepared.install.skipped == ["cloudpickle>=3.1", "grpcio>=1.80", "grpcio-tools>=1.80"]
    assert "cloudpickle>=3.1: satisfied" in log.read_text()

    code = "import e2e.helpers, e2e; print(e2e.__file__)"
    done = run_python(code, prepared.env["PYTHONPATH"], tmp_path / "elsewhere")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(src / "src/e2e/__init__.py")
    # Without the returned PYTHONPATH the package is not importable: the env is what makes it work.
    assert run_python(code, None, tmp_path / "elsewhere").returncode != 0


def test_runner_generated_pyproject(tmp_path: Path) -> None:
    project = write_tree(
        tmp_path / "nb",
        {"mymod.py": "def answer():\n    return 42\n", "helpers/__init__.py": "NAME = 'helpers'\n"},
    )
    archive = flamepy_package(project, "nbapp", dependencies=["pyarrow", "cloudpickle>=3"])
    prepared = prepare(archive.as_uri(), tmp_path / "work")
    pyproject = (prepared.src / "pyproject.toml").read_text()
    assert "py-modules = []" in pyproject and '"cloudpickle>=3"' in pyproject
    assert prepared.install.skipped == ["cloudpickle>=3", "pyarrow"]
    assert prepared.env["PYTHONPATH"] == str(prepared.src)
    done = run_python(
        "import mymod, helpers; print(mymod.answer(), helpers.NAME)",
        prepared.env["PYTHONPATH"],
        tmp_path / "x",
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["42", "helpers"]


def test_flat_layout_with_py_modules(tmp_path: Path) -> None:
    src = write_tree(
        tmp_path / "flat",
        {
            "pyproject.toml": (
                '[project]\nname = "flat"\nversion = "1"\ndependencies = []\n'
                '[tool.setuptools]\npy-modules = ["flatmod"]\n'
            ),
            "flatmod.py": "X = 'flat'\n",
        },
    )
    result = install(src, tmp_path / "deps")
    assert result.env == {"PYTHONPATH": str(src)}
    assert result.installed == [] and result.skipped == []
    done = run_python("import flatmod; print(flatmod.X)", result.env["PYTHONPATH"], tmp_path / "x")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "flat"


SRC_LAYOUTS = {
    "setup.cfg": {
        "setup.cfg": (
            "[metadata]\nname = cfgproj\n[options]\npackage_dir =\n    =lib\npackages = find:\n"
            "install_requires =\n    cloudpickle\n[options.packages.find]\nwhere = lib\n"
        ),
        "lib/cfgpkg/__init__.py": "X = 'cfgpkg'\n",
    },
    "setup.py": {
        "setup.py": (
            "from setuptools import find_packages, setup\n"
            "REQS = ['cloudpickle>=1']\n"
            "setup(name='pyproj', packages=find_packages(where='code'), install_requires=REQS)\n"
        ),
        "code/pypkg/__init__.py": "X = 'pypkg'\n",
    },
    "package-dir": {
        "pyproject.toml": (
            '[project]\nname = "pd"\nversion = "1"\ndependencies = ["cloudpickle"]\n'
            '[tool.setuptools]\npackage-dir = {"" = "source"}\n'
        ),
        "source/pdpkg/__init__.py": "X = 'pdpkg'\n",
    },
    "heuristic": {
        "pyproject.toml": (
            '[project]\nname = "h"\nversion = "1"\ndependencies = ["cloudpickle"]\n'
            '[build-system]\nrequires = ["hatchling"]\nbuild-backend = "hatchling.build"\n'
        ),
        "src/hpkg/__init__.py": "X = 'hpkg'\n",
    },
}


@pytest.mark.parametrize("layout", sorted(SRC_LAYOUTS))
def test_src_layout_detection(tmp_path: Path, layout: str) -> None:
    files = SRC_LAYOUTS[layout]
    src = write_tree(tmp_path / "proj", files)
    root, package = next(Path(rel).parts[:2] for rel in files if rel.endswith("__init__.py"))
    result = install(src, tmp_path / "deps")
    assert result.env["PYTHONPATH"].split(os.pathsep) == [str(src / root), str(src)]
    assert result.installed == [] and len(result.skipped) == 1
    done = run_python(f"import {package}; print({package}.X)", result.env["PYTHONPATH"], tmp_path / "x")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == package


def test_unsatisfied_requirement_is_installed_with_pip(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    make_wheel(wheels, "flametinydep", "1.0", "VALUE = 'from-wheel'\n")
    monkeypatch.setenv("PIP_FIND_LINKS", str(wheels))
    src = write_tree(
        tmp_path / "proj",
        {
            "pyproject.toml": (
                '[project]\nname = "needsdep"\nversion = "1"\n'
                'dependencies = ["cloudpickle", "flametinydep==1.0", "nothere-xyz; python_version < \'3\'"]\n'
            ),
            "usesdep.py": "import flametinydep\nVALUE = flametinydep.VALUE\n",
        },
    )
    deps = tmp_path / "deps"
    result = install(src, deps, log_path=tmp_path / "install.log", timeout=120)
    assert result.installed == ["flametinydep==1.0"]
    assert result.skipped == ["cloudpickle", "nothere-xyz; python_version < '3'"]
    assert result.env["PYTHONPATH"].split(os.pathsep) == [str(deps), str(src)]
    assert (deps / "flametinydep/__init__.py").is_file()
    assert "flametinydep" in (tmp_path / "install.log").read_text()
    done = run_python("import usesdep; print(usesdep.VALUE)", result.env["PYTHONPATH"], tmp_path / "x")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "from-wheel"


@pytest.mark.parametrize("requirement", ["definitely-not-a-real-pkg-xyz==1.0", "cloudpickle<0.0.1"])
def test_unsatisfiable_requirement_offline_fails_install(tmp_path: Path, requirement: str) -> None:
    src = write_tree(
        tmp_path / "proj",
        {"pyproject.toml": f'[project]\nname = "bad"\nversion = "1"\ndependencies = ["{requirement}"]\n'},
    )
    log = tmp_path / "install.log"
    started = time.monotonic()
    with pytest.raises(PackageError) as err:
        install(src, tmp_path / "deps", log_path=log, timeout=120)
    assert time.monotonic() - started < 120
    assert err.value.stage == "install"
    assert requirement in err.value.message
    assert "No matching distribution" in err.value.message or "Could not find a version" in err.value.message
    assert "ERROR" in log.read_text()


def test_install_requires_project_metadata(tmp_path: Path) -> None:
    src = write_tree(tmp_path / "proj", {"main.py": "print('hi')\n"})
    with pytest.raises(PackageError) as err:
        install(src, tmp_path / "deps")
    assert err.value.stage == "install"
    assert err.value.message == "no pyproject.toml, setup.py or setup.cfg in package"


def test_prepare_reports_flame_style_errors(tmp_path: Path) -> None:
    archive = make_tar(tmp_path / "evil.tar.gz", [("../evil", "file", b"x")])
    with pytest.raises(PackageError) as err:
        prepare(archive.as_uri(), tmp_path / "work")
    assert (
        str(err.value)
        == "application installation failed: extract: member '../evil' escapes the target directory"
    )
    assert not (tmp_path / "work/evil").exists()
    with pytest.raises(PackageError) as err:
        prepare((tmp_path / "nope.tar.gz").as_uri(), tmp_path / "work")
    assert str(err.value).startswith("application installation failed: download: package file not found")


def test_prepare_sdist_style_archive_and_fresh_src(tmp_path: Path) -> None:
    tree = write_tree(
        tmp_path / "tree/proj-1.0",
        {
            "setup.py": "from setuptools import setup\nsetup(name='sd', py_modules=['sdmod'])\n",
            "sdmod.py": "X = 7\n",
        },
    )
    archive = tmp_path / "proj-1.0.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(tree, arcname="proj-1.0")
    work = tmp_path / "work"
    (work / "src").mkdir(parents=True)
    (work / "src/stale.txt").write_text("old")
    prepared = prepare(archive.as_uri(), work)
    assert prepared.src == work / "src/proj-1.0"
    assert not (work / "src/stale.txt").exists()
    done = run_python("import sdmod; print(sdmod.X)", prepared.env["PYTHONPATH"], tmp_path / "x")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "7"


def test_renamed_package_dir_is_built_without_network(tmp_path: Path) -> None:
    src = write_tree(
        tmp_path / "proj",
        {
            "setup.py": (
                "from setuptools import setup\n"
                "setup(name='renamed-proj', version='1.0', packages=['renamed'], package_dir={'renamed': 'lib'})\n"
            ),
            "lib/__init__.py": "X = 'renamed'\n",
        },
    )
    deps = tmp_path / "deps"
    result = install(src, deps, timeout=120)
    assert result.installed == ["renamed-proj"]
    assert result.env["PYTHONPATH"].split(os.pathsep) == [str(deps), str(src)]
    done = run_python(
        "import renamed; print(renamed.X, renamed.__file__)", result.env["PYTHONPATH"], tmp_path / "x"
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["renamed", str(deps / "renamed/__init__.py")]


def test_flame_mode_runs_pip_on_the_project(tmp_path: Path) -> None:
    src = write_tree(
        tmp_path / "proj",
        {
            "pyproject.toml": (
                '[build-system]\nrequires = ["setuptools>=61.0", "wheel"]\nbuild-backend = "setuptools.build_meta"\n'
                '[project]\nname = "flamemode"\nversion = "1"\ndependencies = []\n'
            ),
            "fm.py": "X = 1\n",
        },
    )
    # Like Flame's `uv pip install --target deps .`, this needs an index for the build requirements.
    with pytest.raises(PackageError) as err:
        install(src, tmp_path / "deps", offline_ok=False, timeout=120)
    assert err.value.stage == "install"
    assert "pip install of the project failed" in err.value.message
    assert "setuptools" in err.value.message
