"""Workers that look like separate hosts: each in its own UTS+PID namespace, pids colliding.

The real ``dask scheduler`` and ``dask worker`` commands, each host started with
``unshare --uts --pid --fork --mount-proc`` (its own hostname, its own pid 1), and the
``wellzarr convert --scheduler`` client in yet another namespace; a host is killed with
``kill -9`` of its namespace.  Faults then ``--resume`` from a different "host".
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from napari_wellzarr.storage.claims import CLAIM_NAME
from napari_wellzarr.storage.validation import check_plate
from tests.cluster.conftest import WELLS
from tests.cluster.servers import BUCKET, upload_folder
from tests.convert.helpers import plate_digest
from tests.remote.servers import free_port

if TYPE_CHECKING:
    from collections.abc import Iterator

    from tests.cluster.conftest import Reference
    from tests.cluster.servers import S3

ROOT = Path(__file__).parents[2]
NAMESPACE = ["unshare", "--uts", "--pid", "--fork", "--mount-proc", "--kill-child"]
PRELOAD = str(Path(__file__).with_name("slow_wells.py"))


def _unshare_works() -> str:
    """Why namespaces cannot be made here ("" when they can)."""
    if shutil.which("unshare") is None:
        return "no unshare command"
    try:
        done = subprocess.run(
            [*NAMESPACE, "sh", "-c", "hostname probe && echo $$"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as err:
        return f"unshare failed: {err}"
    if done.returncode != 0 or done.stdout.strip() != "1":
        return f"unshare --uts --pid needs root (CAP_SYS_ADMIN): {done.stderr.strip()}"
    return ""


class Hosts:
    """Processes each in its own UTS+PID namespace, by hostname; killed at the end."""

    def __init__(self, env: dict[str, str], logs: Path) -> None:
        self.env = env
        self.logs = logs
        self.procs: dict[str, subprocess.Popen[str]] = {}

    def start(self, name: str, *cmd: str, **kwargs: Any) -> subprocess.Popen[str]:
        """Run ``cmd`` as pid 1 of a new namespace whose hostname is ``name``."""
        log = (self.logs / f"{name}.log").open("w")
        proc = subprocess.Popen(
            [*NAMESPACE, "sh", "-c", f'hostname {name} && exec "$@"', "sh", *cmd],
            env=self.env,
            text=True,
            stdout=kwargs.pop("stdout", subprocess.DEVNULL),
            stderr=kwargs.pop("stderr", log),
            start_new_session=True,
            **kwargs,
        )
        log.close()
        self.procs[name] = proc
        return proc

    def kill(self, name: str) -> None:
        """``kill -9`` the host: its namespace's init, and with it all it runs."""
        proc = self.procs.pop(name)
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(30)
        if proc.stdout is not None:
            proc.stdout.close()
        if proc.stderr is not None:
            proc.stderr.close()

    def close(self) -> None:
        """Kill every host still running."""
        for name in list(self.procs):
            self.kill(name)


class Cluster:
    """A scheduler host and two worker hosts (``host1``, ``host2``)."""

    def __init__(self, hosts: Hosts) -> None:
        self.hosts = hosts
        self.port = free_port()
        self.address = f"tcp://127.0.0.1:{self.port}"

    def start_scheduler(self) -> None:
        """The ``dask scheduler`` command on the ``sched`` host."""
        self.hosts.start(
            "sched",
            sys.executable,
            *("-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1"),
            *("--port", str(self.port), "--no-dashboard"),
        )

    def start_worker(self, name: str) -> None:
        """A ``dask worker`` command (one thread, no nanny: a kill is a host's death)."""
        self.hosts.start(
            name,
            sys.executable,
            *("-m", "distributed.cli.dask_worker", self.address, "--nthreads", "1"),
            *("--no-nanny", "--no-dashboard", "--name", name, "--preload", PRELOAD),
        )

    def client(self) -> Any:
        """A dask client of the scheduler (from the test's process)."""
        from distributed import Client

        return Client(self.address, timeout="30s", set_as_default=False)

    def wait_for(self, workers: int) -> None:
        """Until ``workers`` workers are connected (at most 60 s)."""
        with self.client() as client:
            client.wait_for_workers(workers, timeout=60)


@pytest.fixture(scope="module")
def cluster(s3_server: S3, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """One scheduler and two worker "hosts" for the module (restarted where a test kills)."""
    why = _unshare_works()
    if why:
        pytest.skip(f"workers as separate hosts need Linux namespaces: {why}")
    pytest.importorskip("distributed")
    env = {
        **os.environ,
        **s3_server.env,
        "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)]),
        "WELLZARR_NO_WORKERS_S": "2",
    }
    hosts = Hosts(env, tmp_path_factory.mktemp("hosts"))
    made = Cluster(hosts)
    try:
        made.start_scheduler()
        made.start_worker("host1")
        made.start_worker("host2")
        made.wait_for(2)
        yield made
    finally:
        hosts.close()


def _convert(cluster: Cluster, host: str, *args: Any, dask: bool = True) -> Path:
    """Start ``wellzarr convert ... [--scheduler ...]`` on the client host ``host``.

    Returns the file its standard output goes to (its standard error: ``<host>.log``).
    """
    sched = ("--scheduler", cluster.address) if dask else ()
    out = cluster.hosts.logs / f"{host}.out"
    with out.open("w") as fh:
        cluster.hosts.start(
            host,
            *(sys.executable, "-m", "napari_wellzarr.cli", "convert"),
            *map(str, args),
            *sched,
            stdout=fh,
        )
    return out


def _finish(cluster: Cluster, host: str, timeout: float = 90) -> tuple[int, str, str]:
    """Wait for the client host ``host``: its exit code, standard output and error."""
    proc = cluster.hosts.procs.pop(host)
    code = proc.wait(timeout)
    logs = cluster.hosts.logs
    return code, (logs / f"{host}.out").read_text(), (logs / f"{host}.log").read_text()


def _wait_written(cluster: Cluster, host: str, count: int, timeout: float = 60) -> None:
    """Until the client host ``host`` reported ``count`` wells written."""
    log = cluster.hosts.logs / f"{host}.log"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = log.read_text() if log.is_file() else ""
        if text.count(" written (") >= count:
            return
        if cluster.hosts.procs[host].poll() is not None:
            raise AssertionError(f"the conversion ended before {count} wells: {text}")
        time.sleep(0.02)
    raise AssertionError(f"no {count} wells written in {timeout} s")


def test_hosts_have_their_own_names_and_colliding_pids(cluster: Cluster) -> None:
    with cluster.client() as client:
        seen = client.run(lambda: (__import__("socket").gethostname(), os.getpid()))
    assert sorted(name for name, _ in seen.values()) == ["host1", "host2"]
    assert {pid for _, pid in seen.values()} == {1}  # each is pid 1 of its namespace


def test_a_conversion_from_a_client_host_to_a_shared_folder_equals_a_clean_one(
    cluster: Cluster, s3_server: S3, reference: Reference, tmp_path: Path
) -> None:
    where = "folder"  # (S3: the fault tests below end equal to a clean one too)
    name = f"hosts-{where}.zarr"
    dest = s3_server.url(name) if where == "s3" else tmp_path / name
    _convert(cluster, "client1", reference.src, dest, "--json")
    code, out, err = _finish(cluster, "client1")
    assert code == 0, err
    assert sorted(json.loads(out)["written"]) == sorted(WELLS)
    got = s3_server.digest(name) if where == "s3" else plate_digest(Path(dest))
    assert got == reference.digest(name, s3=where == "s3")
    assert check_plate(str(dest)).ok


def test_worker_hosts_read_the_wells_of_an_s3_source_themselves(
    cluster: Cluster, s3_server: S3, reference: Reference, tmp_path: Path
) -> None:
    from napari_wellzarr.convert.srcfs import fetched

    upload_folder(s3_server, reference.src, "sources/hosts/src")
    tiffs = [p for p in reference.src.rglob("*") if p.suffix.lower() in (".tif", ".tiff")]
    with cluster.client() as client:
        before = client.run(fetched)
    dest = tmp_path / "from-s3.zarr"
    _convert(cluster, "client1", s3_server.url("sources/hosts/src"), dest, "--json")
    code, out, err = _finish(cluster, "client1")
    assert code == 0, err
    assert sorted(json.loads(out)["written"]) == sorted(WELLS)
    with cluster.client() as client:
        after = client.run(fetched)
    # every TIFF was downloaded whole once, by a worker host (the client read headers only)
    assert sum(n - before.get(w, (0, 0))[0] for w, (n, _) in after.items()) == len(tiffs)
    assert plate_digest(dest) == reference.digest(dest.name)


def test_a_worker_host_killed_mid_well_then_resume_from_another_host(
    cluster: Cluster, s3_server: S3, reference: Reference, tmp_path: Path
) -> None:
    where = "s3"  # (a folder: the scheduler test below)
    name = f"killed-worker-{where}.zarr"
    dest = s3_server.url(name) if where == "s3" else tmp_path / name
    _convert(cluster, "client1", reference.src, dest)
    try:
        _wait_written(cluster, "client1", 1)
        cluster.hosts.kill("host2")  # wells are in flight on both hosts
        code, _, err = _finish(cluster, "client1")
    finally:
        cluster.start_worker("host2")
    # dask re-runs host2's well on host1 (or, if it gave up, the run is resumable)
    assert code == 0 or "--resume" in err, err
    _convert(cluster, "client2", reference.src, dest, "--resume", "--json")
    code, out, err = _finish(cluster, "client2")
    assert code == 0, err
    assert not json.loads(out)["failed"]
    got = s3_server.digest(name) if where == "s3" else plate_digest(Path(dest))
    assert got == reference.digest(name, s3=where == "s3")
    assert check_plate(str(dest)).ok
    cluster.wait_for(2)


def test_the_client_host_killed_then_resume_from_another_host(
    cluster: Cluster, s3_server: S3, reference: Reference
) -> None:
    name = "killed-client-host.zarr"
    url = s3_server.url(name)
    _convert(cluster, "client1", reference.src, url)
    _wait_written(cluster, "client1", 3)
    cluster.hosts.kill("client1")
    keys = s3_server.keys(name)
    assert CLAIM_NAME in keys  # (a run without --resume is told: see test_s3_protocol.py)
    # A well being uploaded when the client died: data objects, no document. Made from a
    # well that is done (its document taken away, a shard cut short), as if the host died
    # just before uploading the document: a well still in flight on a worker could get its
    # document after this listing (workers finish their tasks when the client dies).
    done = [w for w in WELLS if f"{w[0]}/{w[1:]}/zarr.json" in keys]
    assert len(done) >= 3, keys
    half = done[0]
    s3_server.client().delete_object(Bucket=BUCKET, Key=f"{name}/{half[0]}/{half[1:]}/zarr.json")
    s3_server.put(name, f"{half[0]}/{half[1:]}/0/c/0/0/0/0/0", b"half a shard, no document")
    _convert(cluster, "client2", reference.src, url, "--resume", "--json")
    code, out, err = _finish(cluster, "client2")
    assert code == 0, err
    result = json.loads(out)
    assert len(result["skipped"]) >= 2
    assert half in result["written"]
    assert s3_server.digest(name) == reference.digest(name, s3=True)
    assert check_plate(url).ok


def test_the_scheduler_killed_then_resume_from_another_host(
    cluster: Cluster, reference: Reference, tmp_path: Path
) -> None:
    # Last in the module: workers without a scheduler close; the resume runs locally.
    dest = tmp_path / "killed-scheduler.zarr"
    _convert(cluster, "client1", reference.src, dest)
    _wait_written(cluster, "client1", 1)
    cluster.hosts.kill("sched")
    start = time.monotonic()
    code, _, err = _finish(cluster, "client1", timeout=60)
    assert code != 0
    assert "scheduler is unreachable" in err  # (dask's own log shows its traceback)
    assert "--resume" in err
    assert time.monotonic() - start < 30
    _convert(cluster, "client2", reference.src, dest, "--resume", "--json", dask=False)
    code, out, err = _finish(cluster, "client2")
    assert code == 0, err
    assert json.loads(out)["skipped"]
    assert plate_digest(dest) == reference.digest(dest.name)
    assert check_plate(dest).ok
