"""Read-only plates: every read works and writes nothing; every write is refused clearly.

Three ways a plate can be read-only, because root (which runs the tests, here and in CI)
ignores file permissions:

* a read-only bind mount (``mount -o remount,bind,ro``): read-only even for root;
* files 0444 / directories 0555 read by an unprivileged user (``setpriv`` to nobody);
* a writable plate whose every file and directory (mtime, size, inode, listing) is
  compared before and after the reads.

The reads are the whole read surface: :class:`PlateStore` (``wells``, ``well_info``,
``read_well``, ``read_plane``), the napari reader (layer data materialised), the OpenHCS
backend (``list_files``, ``list_dir``, ``load``, ``load_batch``, ``exists``, ``is_*``,
``stat``) and ``wellzarr info`` / ``validate [--deep]``.  Each kind of plate is read:
OME-NGFF 0.4 and 0.5 plates written here and the OpenHCS (polystore) fixture, each also
with the leftovers of a writer that was killed mid-well, which a reader must neither need
nor try to clean.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import io
import json
import os
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest

from napari_wellzarr.core import PlateStore, StorageConfig, WellZarrError
from napari_wellzarr.errors import PlaneNotFoundError, StoreReadOnlyError
from napari_wellzarr.openhcs.backend import ZarrStorageBackend

if TYPE_CHECKING:
    from collections.abc import Iterator

TESTS = Path(__file__).parents[1]
DATA = TESTS / "data"
KINDS = ["0.4", "0.5", "openhcs"]
NOBODY = 65534
SHAPE = (5, 7)


# -- plates to read ---------------------------------------------------------------------------


def plane(value: int) -> np.ndarray:
    """A 2D uint16 plane that encodes ``value`` (no pixel is 0)."""
    return (np.arange(SHAPE[0] * SHAPE[1], dtype=np.uint16).reshape(SHAPE) + value).astype("u2")


def digest(value: Any) -> str:
    """``dtype shape sha256`` of an array, or the repr of anything else."""
    if isinstance(value, np.ndarray):
        raw = np.ascontiguousarray(value).tobytes()
        return f"{value.dtype} {value.shape} {hashlib.sha256(raw).hexdigest()}"
    return repr(value)


def backend_plate(dest: Path, kind: str) -> tuple[Path, dict[str, str]]:
    """A plate under ``dest``; returns its store directory and file name -> expected digest."""
    if kind == "openhcs":
        root = dest / "images"
        shutil.copytree(DATA / "openhcs_plate" / "images", root)
        expected = json.loads((DATA / "openhcs_plate" / "expected.json").read_text())
        return root, {
            name: f"uint16 {tuple(expected['plane_shape'])} {rec['sha256']}"
            for name, rec in expected["files"].items()
        }
    root = dest / f"plate-{kind}.zarr"
    files: dict[str, np.ndarray] = {}
    with ZarrStorageBackend(StorageConfig(ngff_version=kind, plate=24)) as backend:
        for w, well in enumerate(("A01", "B03")):
            batch = {
                f"scr_{well}_s{f + 1}_w{c + 1}.tif": plane(1000 * w + 100 * f + 10 * c + 1)
                for f in range(2)
                for c in range(2)
            }
            backend.save_batch(list(batch.values()), [root / n for n in batch])
            files.update(batch)
        files["extra.tif"] = plane(7777)
        backend.save(files["extra.tif"], root / "extra.tif")
        backend.save("plate notes\n", root / "notes.txt")
        backend.create_symlink(root / "scr_B03_s2_w1.tif", root / "link.tif")
    out = {name: digest(a) for name, a in files.items()}
    out["link.tif"] = out["scr_B03_s2_w1.tif"]
    out["notes.txt"] = repr("plate notes\n")
    return root, out


def leave_crash(root: Path) -> list[Path]:
    """What a writer killed mid-well leaves: a staging tree and a half-written document.

    Both are named after a process of this host that has exited, so the next writer
    (``PlateStore.open(path, "r+")``) deletes them.
    """
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    owner = f"{socket.gethostname().replace('.', '-')}.{child.pid}"
    stage = root / ".wellzarr-staging" / f"C_02.{owner}.0123456789ab"
    (stage / "0").mkdir(parents=True)
    (stage / "0" / "zarr.json").write_text('{"zarr_format": 3, "node_')
    half = root / f".zattrs.{owner}.deadbeef.tmp"
    half.write_text('{"plate": ')
    return [stage, half]


def tree_state(root: Path) -> dict[str, tuple[int, int, int, int]]:
    """Every entry under ``root`` (itself included): file type, size, mtime (ns), inode."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in [".", *dirnames, *filenames]:
            path = Path(dirpath) / name
            st = os.lstat(path)
            out[str(path.relative_to(root))] = (
                stat.S_IFMT(st.st_mode),
                st.st_size if not stat.S_ISDIR(st.st_mode) else 0,
                st.st_mtime_ns,
                st.st_ino,
            )
    return out


# -- the reads --------------------------------------------------------------------------------


def _cli(*argv: str) -> tuple[int, str]:
    from napari_wellzarr.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(argv))
    return code, out.getvalue()


def read_all(root: Path) -> dict[str, Any]:
    """Everything the project reads from the plate at ``root``, as comparable digests.

    No path appears in the result, so that two copies of a plate give equal results.
    """
    from napari_wellzarr.plugin._reader import get_reader

    out: dict[str, Any] = {}
    store = PlateStore.open(root)
    out["read_only"] = store.read_only
    out["wells"] = store.wells()
    for well in store.wells():
        info = store.well_info(well)
        out[f"info {well}"] = [list(info.shape), str(info.dtype), sorted(info.plane_names)]
        out[f"well {well}"] = digest(store.read_well(well))
        last = store.read_plane(well, info.n_fields - 1, info.n_channels - 1, 0)
        out[f"plane {well}"] = digest(last)

    reader = get_reader(str(root))
    assert reader is not None, f"get_reader refused {root}"
    for data, meta, kind in reader(str(root)):
        level = data[-1] if isinstance(data, list) else data  # smallest level of a pyramid
        lead = (0,) * (level.ndim - 2) if kind != "points" else ()
        out[f"layer {meta['name']} {kind}"] = digest(np.asarray(level[lead]))

    with ZarrStorageBackend() as backend:
        files = backend.list_files(root)
        out["files"] = [p.name for p in files]
        out["files *.tif"] = [p.name for p in backend.list_files(root, pattern="*.tif")]
        out["files recursive"] = [
            str(p.relative_to(root)) for p in backend.list_files(root, recursive=True)
        ]
        out["list_dir"] = backend.list_dir(root)
        for path, value in zip(files, backend.load_batch(files), strict=True):
            out[f"file {path.name}"] = digest(value)
        out["load first"] = digest(backend.load(files[0]))
        out["queries"] = [
            [
                p.name,
                backend.exists(p),
                backend.is_file(p),
                backend.is_dir(p),
                backend.is_symlink(p),
                backend.stat(p)["type"],
            ]
            for p in files
        ]
        out["dir queries"] = [backend.exists(root), backend.is_dir(root), backend.is_file(root)]
        out["absent"] = backend.exists(root / "absent_A01_s9_w9.tif")
        try:
            backend.load(root / "absent_A01_s9_w9.tif")
        except PlaneNotFoundError as err:
            out["absent load"] = type(err).__name__

    code, text = _cli("info", "--json", str(root))
    doc = json.loads(text)
    out["cli info"] = [code, doc["wells"], doc["rows"], doc["columns"], doc["ngff_version"]]
    for deep in ([], ["--deep"]):
        code, text = _cli("validate", "--json", *deep, str(root))
        out[f"cli validate {deep}"] = [code, json.loads(text)["problems"]]
    return out


def check_reads(got: dict[str, Any], files: dict[str, str]) -> None:
    """The reads found every file with its right content, and every command succeeded."""
    assert got["read_only"] is True
    assert len(got["wells"]) >= 2
    names = [n for n in got["files"] if n != "notes.txt"]
    assert sorted(got["files"]) == sorted(files)
    assert got["files *.tif"] == sorted(names)
    for name, expected in files.items():
        assert got[f"file {name}"] == expected, name
    assert got["dir queries"] == [True, True, False]
    assert got["absent"] is False
    assert got["absent load"] == "PlaneNotFoundError"
    assert all(q[1] and q[2] and not q[3] for q in got["queries"])
    assert got["cli info"][0] == 0
    assert got["cli info"][1] == got["wells"]
    assert got["cli validate []"] == [0, []]
    assert got["cli validate ['--deep']"] == [0, []]
    images = [k for k in got if k.startswith("layer ") and k.endswith(" image")]
    assert len(images) >= 2, list(got)


@pytest.fixture(params=KINDS)
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


# -- in-process: reads change nothing ----------------------------------------------------------


@pytest.mark.parametrize("crashed", [False, True], ids=["clean", "crashed"])
def test_reads_change_nothing(tmp_path: Path, kind: str, crashed: bool) -> None:
    root, files = backend_plate(tmp_path, kind)
    leftovers = leave_crash(root) if crashed else []
    before = tree_state(root)
    got = read_all(root)
    check_reads(got, files)
    assert tree_state(root) == before  # not a file added, removed, touched or replaced
    assert all(p.exists() for p in leftovers)
    # Twice: the second read (warm caches, a fresh backend) reads the same.
    assert read_all(root) == got
    assert tree_state(root) == before


def test_crash_leftovers_are_what_a_writer_cleans(tmp_path: Path) -> None:
    # The leftovers the read-only tests use are real ones: the next writer removes them.
    root, _ = backend_plate(tmp_path, "0.5")
    leftovers = leave_crash(root)
    PlateStore.open(root)
    assert all(p.exists() for p in leftovers)
    PlateStore.open(root, "r+").close()
    assert not any(p.exists() for p in leftovers)


# -- a read-only bind mount: read-only for root too --------------------------------------------


@contextlib.contextmanager
def read_only_mount(src: Path, dst: Path) -> Iterator[Path]:
    """``src`` bind-mounted read-only at ``dst``; always unmounted."""
    if os.geteuid() != 0:
        pytest.skip("a read-only bind mount needs root")
    if shutil.which("mount") is None:
        pytest.skip("no mount command")
    dst.mkdir()
    bound = subprocess.run(["mount", "--bind", str(src), str(dst)], capture_output=True, text=True)
    if bound.returncode != 0:
        pytest.skip(f"mount --bind failed: {bound.stderr.strip()}")
    try:
        ro = subprocess.run(
            ["mount", "-o", "remount,bind,ro", str(dst)], capture_output=True, text=True
        )
        if ro.returncode != 0:
            pytest.skip(f"remount read-only failed: {ro.stderr.strip()}")
        with pytest.raises(OSError, match="Read-only file system") as refused:  # even for root
            (dst / "probe").write_text("x")
        assert refused.value.errno == errno.EROFS
        yield dst
    finally:
        if subprocess.run(["umount", str(dst)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(dst)], check=True)


@pytest.mark.parametrize("crashed", [False, True], ids=["clean", "crashed"])
def test_reads_on_a_read_only_mount(tmp_path: Path, kind: str, crashed: bool) -> None:
    src = tmp_path / "src"
    root, files = backend_plate(src, kind)
    if crashed:
        leave_crash(root)
    before = tree_state(src)
    with read_only_mount(src, tmp_path / "ro") as ro:
        got = read_all(ro / root.relative_to(src))
    check_reads(got, files)
    assert got == read_all(root)  # the same as reading the writable original
    assert tree_state(src) == before


def test_backend_writes_on_a_read_only_mount_are_refused(tmp_path: Path, kind: str) -> None:
    src = tmp_path / "src"
    root, _ = backend_plate(src, kind)
    leave_crash(root)
    before = tree_state(src)
    with read_only_mount(src, tmp_path / "ro") as ro:
        store = ro / root.relative_to(src)
        attempts = write_attempts(store)
    assert tree_state(src) == before
    for what, (name, message) in attempts.items():
        assert name == "StoreReadOnlyError", (what, name, message)
        assert str(store) in message, (what, message)


def write_attempts(store: Path) -> dict[str, tuple[str, str]]:
    """Try every backend write on ``store``: what each one raised (class name, message)."""
    out: dict[str, tuple[str, str]] = {}
    first = ZarrStorageBackend().list_files(store)[0]
    calls = {
        "save_batch": lambda b: b.save_batch([plane(1)], [store / "D04_s1_w1.tif"]),
        "save array": lambda b: b.save(plane(2), store / "new.tif"),
        "save text": lambda b: b.save("x", store / "new.txt"),
        "symlink": lambda b: b.create_symlink(first, store / "new_link.tif"),
        "copy": lambda b: b.copy(first, store / "copy.tif"),
        "move": lambda b: b.move(store / "notes.txt", store / "moved.txt"),
        "delete": lambda b: b.delete(store / "notes.txt"),
        "delete_all": lambda b: b.delete_all(store),
    }
    for what, call in calls.items():
        with ZarrStorageBackend() as backend:
            try:
                call(backend)
            except Exception as err:
                out[what] = (type(err).__name__, str(err))
            else:
                out[what] = ("nothing raised", "")
    return out


def test_plate_store_write_on_a_read_only_mount_is_our_error(
    tmp_path: Path, ngff_version: str
) -> None:
    src = tmp_path / "src"
    root, _ = backend_plate(src, ngff_version)
    with read_only_mount(src, tmp_path / "ro") as ro:
        plate = ro / root.relative_to(src)
        with pytest.raises(StoreReadOnlyError, match=str(plate)):
            PlateStore.open(plate, "r+").write_well("D04", np.ones((1, 1, 1, 4, 4), "u2"))


def test_plate_store_open_for_writing_with_leftovers_on_a_read_only_mount(tmp_path: Path) -> None:
    src = tmp_path / "src"
    root, _ = backend_plate(src, "0.5")
    leave_crash(root)
    with read_only_mount(src, tmp_path / "ro") as ro:
        plate = ro / root.relative_to(src)
        with pytest.raises(WellZarrError, match=str(plate)):
            PlateStore.open(plate, "r+")


# -- file permissions, read by an unprivileged user ------------------------------------------

_CHILD = """
import json, sys
sys.path.insert(0, sys.argv[1])
from pathlib import Path
import tests.storage.test_readonly as t
root = Path(sys.argv[2])
out = {"reads": t.read_all(root), "writes": t.write_attempts(root)}
try:
    from napari_wellzarr.core import PlateStore
    import numpy as np
    PlateStore.open(root, "r+").write_well("D04", np.ones((1, 1, 1, 4, 4), "u2"))
except Exception as err:
    out["plate store write"] = [type(err).__name__, str(err)]
print("RESULT " + json.dumps(out))
"""
_CHILD_PROBE = "import sys; sys.path.insert(0, sys.argv[1]); import napari_wellzarr, numpy, zarr"


@pytest.fixture
def public_dir() -> Iterator[Path]:
    """A fresh directory that every user may traverse (tmp_path may be 0700)."""
    if os.geteuid() != 0:
        pytest.skip("switching to an unprivileged user needs root")
    if shutil.which("setpriv") is None:
        pytest.skip("no setpriv (util-linux) to run as nobody")
    base = Path(tempfile.mkdtemp(prefix="wellzarr-readonly-", dir="/tmp"))
    try:
        base.chmod(0o755)
        for parent in base.parents:
            if not parent.stat().st_mode & stat.S_IXOTH:
                pytest.skip(f"{parent} is not traversable by other users")
        yield base
    finally:
        shutil.rmtree(base)


@pytest.fixture
def public_code(public_dir: Path) -> Path:
    """The code under test and this module, copied where nobody can read them.

    The clone may sit in a private (0700) directory, such as ``mktemp -d`` or a home
    directory, and the package under test is not necessarily the one the interpreter would
    import for another user: the child imports these copies, first on its path.
    """
    import napari_wellzarr

    code = public_dir / "code"
    skip = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(Path(napari_wellzarr.__file__).parent, code / "napari_wellzarr", ignore=skip)
    for rel in ("__init__.py", "storage/__init__.py", "storage/test_readonly.py"):
        (code / "tests" / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(TESTS / rel, code / "tests" / rel)
    for dirpath, _, filenames in os.walk(code):
        Path(dirpath).chmod(0o755)
        for name in filenames:
            (Path(dirpath) / name).chmod(0o644)
    probe = as_nobody(sys.executable, "-c", _CHILD_PROBE, str(code))
    if probe.returncode != 0:
        pytest.skip(f"nobody cannot run this interpreter: {probe.stderr.strip()[-200:]}")
    return code


def as_nobody(*argv: str) -> subprocess.CompletedProcess[str]:
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": "/nonexistent",
        "PYTHONDONTWRITEBYTECODE": "1",
        "NUMBA_DISABLE_JIT": "1",
    }
    return subprocess.run(
        ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", *argv],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )


def freeze(root: Path) -> None:
    """Files 0444, directories 0555: nobody may write anything under ``root``."""
    for dirpath, _, filenames in os.walk(root):
        for name in filenames:
            (Path(dirpath) / name).chmod(0o444)
        Path(dirpath).chmod(0o555)


@pytest.mark.slow
def test_unprivileged_user_reads_a_frozen_plate(
    public_dir: Path, public_code: Path, kind: str
) -> None:
    root, files = backend_plate(public_dir, kind)
    leave_crash(root)
    freeze(public_dir)
    before = tree_state(public_dir)
    done = as_nobody(sys.executable, "-c", _CHILD, str(public_code), str(root))
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.split("RESULT ", 1)[1])
    assert tree_state(public_dir) == before
    check_reads(result["reads"], files)
    as_root = json.loads(json.dumps(read_all(root)))  # tuples -> lists, as the child's
    assert result["reads"] == as_root
    for what, (name, message) in result["writes"].items():
        assert name == "StoreReadOnlyError", (what, name, message)
        assert str(root) in message, (what, message)
    assert tree_state(public_dir) == before


@pytest.mark.slow
def test_unprivileged_plate_store_write_is_our_error(public_dir: Path, public_code: Path) -> None:
    root, _ = backend_plate(public_dir, "0.5")
    freeze(public_dir)
    done = as_nobody(sys.executable, "-c", _CHILD, str(public_code), str(root))
    assert done.returncode == 0, done.stderr[-3000:]
    name, message = json.loads(done.stdout.split("RESULT ", 1)[1])["plate store write"]
    assert name == "StoreReadOnlyError"
    assert str(root) in message
