"""Cluster conversion: 1, 2 and 4 dask worker processes to a folder and to a local S3 server.

One command (also ``bench/bench_convert.py --cluster``)::

    .venv/bin/python bench/bench_cluster.py --wells 96
    .venv/bin/python bench/bench_cluster.py --wells 96 --no-s3 --repeats 3 \\
        --compare /work/wt/old-main/src          # another checkout, alternating with this one

The source is ``bench_convert``'s ImageXpress folder (96 wells: 1152 TIFFs, 604 MB).  A
``dask scheduler`` and ``dask worker --nworkers N --nthreads 1`` run as processes on this
machine; ``wellzarr convert SRC DEST --scheduler ...`` converts to a folder and to a moto S3
server (its own process, on 127.0.0.1).  In the same run, on the same disk:

* the physical limits: ``cp -r`` of the TIFF folder (into the page cache: a memory copy),
  ``cp -r`` + ``sync`` (the bytes on the disk), and an upload of the same files to the same
  S3 server (obstore, 8 requests at once); with ``--sources folder,s3`` also conversions of
  the uploaded files (``wellzarr convert s3://bench/upload DEST``: each worker downloads its
  wells' TIFFs), against a download of the same files (8 at once) for ``S3 -> folder`` and
  that download + the upload for ``S3 -> S3``;
* the codec alone: the plate's default compressor on every plane of the source, one thread
  (its MB/s per core is the floor of what a well's CPU work can cost);
* ``wellzarr convert`` in one process (no dask, no ``--workers``): the dask overhead is the
  difference;
* each conversion to a folder also + ``sync`` (its bytes on the disk).

Reported: MB/s of raw pixels (wall time of the whole command: interpreter start, scan, dask
connection, conversion, plate metadata and overview), the ratios to the limits; for dask cases
also the part of it that scales with the plate, from dask's task stream: ``fixed s`` = the
command's seconds outside the window from the first well's start on a worker to the last
well's end (interpreter, imports, scan, connection before; well list, overview, exit after),
and ``MB/s wells`` = raw MB / that window (its ratio to ``cp -r + sync``: ``x disk wells``);
and the peak
RSS of the largest worker process, and ``CPU s``: the CPU seconds of the command (with its
children) and of the dask scheduler and workers meanwhile (other jobs on a shared machine
move wall times much more than CPU times; 2 cores busy give at most 2 CPU s per second).
Each S3 plate is deleted after its case (moto holds objects in memory); ``--dests s3`` runs
the S3 cases only.  Warm page cache; a ``sync`` before every case; the
workers have imported the package before the first case (as after their first well).  With
``--compare``, each case is run with both checkouts, alternating, each with its own cluster.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_convert import WORK, make_source

ROOT = Path(__file__).resolve().parent.parent
BUCKET = "bench"
ENV_S3 = {
    "AWS_ACCESS_KEY_ID": "bench",
    "AWS_SECRET_ACCESS_KEY": "bench",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_ALLOW_HTTP": "true",
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def spawn(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, 9)
    proc.wait(30)


def start_s3(env: dict[str, str]) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    code = (
        "import time; from moto.server import ThreadedMotoServer as S; "
        f"s = S(ip_address='127.0.0.1', port={port}, verbose=False); s.start(); time.sleep(1e6)"
    )
    proc = spawn(sys.executable, "-c", code, env=env)
    endpoint = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            time.sleep(0.1)
    import boto3

    boto3.client("s3", endpoint_url=endpoint, **_boto(env)).create_bucket(Bucket=BUCKET)
    return proc, endpoint


def _boto(env: dict[str, str]) -> dict[str, str]:
    return {
        "aws_access_key_id": env["AWS_ACCESS_KEY_ID"],
        "aws_secret_access_key": env["AWS_SECRET_ACCESS_KEY"],
        "region_name": env["AWS_DEFAULT_REGION"],
    }


def upload(src: Path, prefix: str) -> float:
    """Seconds to put every file of ``src`` into the bucket (obstore, 8 at once)."""
    import obstore
    from obstore.store import S3Store

    store = S3Store(BUCKET, client_options={"allow_http": True})
    files = sorted(p for p in src.iterdir() if p.is_file() and not p.name.startswith("."))
    start = time.perf_counter()
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda p: obstore.put(store, f"{prefix}/{p.name}", p.read_bytes()), files))
    return time.perf_counter() - start


def codec_alone(src: Path) -> tuple[float, float]:
    """(MB/s per core, ratio) of the default codec on every plane of ``src``, one thread."""
    import numcodecs
    import tifffile

    from napari_wellzarr.storage.config import Compressor, Shuffle, StorageConfig

    config = StorageConfig()
    if config.compressor is not Compressor.BLOSC_LZ4:
        raise SystemExit(f"codec_alone() knows blosc-lz4, the default is {config.compressor}")
    shuffle = {Shuffle.NONE: 0, Shuffle.BYTE: 1, Shuffle.BIT: 2}[Shuffle(config.shuffle)]
    codec = numcodecs.Blosc(cname="lz4", clevel=config.level or 0, shuffle=shuffle, typesize=2)
    planes = [tifffile.imread(p) for p in sorted(src.glob("*.tif"))]
    out: dict[str, float] = {}

    def work() -> None:  # not the main thread: numcodecs' blosc then uses no threads of its own
        start = time.thread_time()
        out["stored"] = sum(len(codec.encode(p)) for p in planes)
        out["cpu"] = time.thread_time() - start

    thread = threading.Thread(target=work)
    thread.start()
    thread.join()
    raw = sum(p.nbytes for p in planes)
    return raw / out["cpu"] / 1e6, raw / out["stored"]


def purge(prefix: str) -> None:
    """Delete every object under ``prefix``: moto keeps objects in memory, and a run that
    kept each plate it wrote would make later cases slower than earlier ones."""
    import obstore
    from obstore.store import S3Store

    store = S3Store(BUCKET, client_options={"allow_http": True})
    keys = [m["path"] for batch in obstore.list(store, f"{prefix}/") for m in batch]
    for start in range(0, len(keys), 1000):
        obstore.delete(store, keys[start : start + 1000])


def download(prefix: str) -> float:
    """Seconds to get every object under ``prefix`` (obstore, 8 at once)."""
    import obstore
    from obstore.store import S3Store

    store = S3Store(BUCKET, client_options={"allow_http": True})
    keys = [m["path"] for batch in obstore.list(store, f"{prefix}/") for m in batch]
    start = time.perf_counter()
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda k: bytes(obstore.get(store, k).bytes()), keys))
    return time.perf_counter() - start


class Peak:
    """Peak RSS of the largest process below ``pid`` (sampled every 20 ms)."""

    def __init__(self, pid: int) -> None:
        self.root = psutil.Process(pid)
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                procs = self.root.children(recursive=True) or [self.root]
            except psutil.Error:
                procs = []
            for proc in procs:
                try:
                    self.peak = max(self.peak, proc.memory_info().rss)
                except psutil.Error:
                    pass
            time.sleep(0.02)

    def done(self) -> int:
        self._stop.set()
        self._thread.join()
        return self.peak


def cluster(workers: int, env: dict[str, str]) -> tuple[list[subprocess.Popen[bytes]], str]:
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    dask = [sys.executable, "-m"]
    sched = spawn(
        *dask,
        "distributed.cli.dask_scheduler",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--no-dashboard",
        env=env,
    )
    work = spawn(
        *dask,
        "distributed.cli.dask_worker",
        address,
        "--nworkers",
        str(workers),
        "--nthreads",
        "1",
        "--no-dashboard",
        "--memory-limit",
        "0",
        env=env,
    )
    from distributed import Client

    with Client(address, timeout="60s") as client:
        client.wait_for_workers(workers, timeout=120)
        # Warm: a fresh worker's first well would also pay its imports (~0.5 s, once).
        client.run(exec, "import napari_wellzarr.convert.welljob, zarr, tifffile, numcodecs")
    return [sched, work], address


class Stream:
    """Dask's task stream of a cluster, to find when its workers ran wells."""

    def __init__(self, address: str) -> None:
        from distributed import Client

        self.client = Client(address, timeout="60s")
        self.client.get_task_stream()  # (registers the scheduler's task-stream plugin)

    def window(self, since: float) -> tuple[float, float] | None:
        """(first start, last end) of the wells computed since ``since`` (time.time())."""
        spans = [
            (ss["start"], ss["stop"])
            for record in self.client.get_task_stream(start=since)
            if str(record.get("key", "")).startswith("wellzarr-")
            for ss in record["startstops"]
            if ss["action"] == "compute"
        ]
        if not spans:
            return None
        return min(a for a, _ in spans), max(b for _, b in spans)

    def close(self) -> None:
        self.client.close()


def tree_cpu(pids: list[int]) -> float:
    """CPU seconds (user + system) used so far by the processes ``pids`` and their children."""
    total = 0.0
    for pid in pids:
        try:
            root = psutil.Process(pid)
            procs = [root, *root.children(recursive=True)]
        except psutil.Error:
            continue
        for proc in procs:
            try:
                times = proc.cpu_times()
            except psutil.Error:
                continue
            total += times.user + times.system
    return total


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed(
    args: list[str], env: dict[str, str], watch: int | None = None, cluster: list[int] = ()
) -> tuple[float, int, float]:
    """Wall seconds of a command, the peak RSS of the largest process under ``watch``, and
    the CPU seconds of the command and of the ``cluster`` processes meanwhile."""
    os.sync()  # the previous case's writes are not flushed during this one
    before = children_cpu() + tree_cpu(list(cluster))
    start = time.perf_counter()
    proc = subprocess.Popen(args, env=env)
    peak = Peak(watch if watch is not None else proc.pid)
    code = proc.wait(900)
    seconds = time.perf_counter() - start
    high = peak.done()
    cpu = children_cpu() + tree_cpu(list(cluster)) - before
    if code != 0:
        raise SystemExit(f"{' '.join(args)} failed ({code})")
    return seconds, high, cpu


def synced(seconds: float) -> float:
    """``seconds`` plus the time a ``sync`` takes now (the command's bytes reaching the disk)."""
    start = time.perf_counter()
    os.sync()
    return seconds + time.perf_counter() - start


def convert_args(src: Path | str, dest: str, address: str | None) -> list[str]:
    args = [sys.executable, "-m", "napari_wellzarr.cli", "convert", str(src), dest, "-q"]
    return args + (["--scheduler", address] if address else [])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--wells", type=int, default=96, help="24, 96 or 384")
    parser.add_argument("--workers", default="1,2,4")
    parser.add_argument("--repeats", type=int, default=1, help="runs per case (best kept)")
    parser.add_argument("--no-s3", action="store_true", help="folders only")
    parser.add_argument(
        "--sources", default="folder", help="folder, s3 or folder,s3: where the TIFFs are read"
    )
    parser.add_argument(
        "--dests", default="folder,s3", help="folder, s3 or folder,s3: where the plate goes"
    )
    parser.add_argument(
        "--compare", type=Path, help="another checkout's src/ folder, run alternating with this one"
    )
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args()
    load_start = os.getloadavg()
    src = make_source(args.wells)
    raw = sum(p.stat().st_size for p in src.glob("*.tif"))  # (uncompressed TIFFs: ~raw)
    trees = {"": ROOT / "src"}
    if args.compare is not None:
        trees = {"": ROOT / "src", " [compare]": args.compare.resolve()}
    base_env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    envs = {label: {**base_env, **ENV_S3, "PYTHONPATH": str(path)} for label, path in trees.items()}
    s3 = None
    if not args.no_s3:
        s3, endpoint = start_s3(envs[""])
        for env in envs.values():
            env["AWS_ENDPOINT_URL"] = endpoint
        os.environ.update({k: v for k, v in envs[""].items() if k.startswith("AWS_")})
    out = WORK / f"cluster-{os.getpid()}"  # (concurrent runs must not share it)
    rows: list[dict[str, Any]] = []
    best: dict[str, dict[str, Any]] = {}

    def record(
        case: str,
        seconds: float,
        peak: int | None = None,
        cpu: float | None = None,
        wells_s: float | None = None,
    ) -> None:
        row: dict[str, Any] = {"case": case, "MB/s": raw / seconds / 1e6}
        if cpu is not None:
            row["CPU s"] = cpu
        if wells_s is not None:
            row["fixed s"] = seconds - wells_s
            row["MB/s wells"] = raw / wells_s / 1e6
        if peak is not None:
            row["peak RSS/worker MB"] = peak / 2**20
        rows.append(row)
        if case not in best or row["MB/s"] > best[case]["MB/s"]:
            best[case] = row

    try:
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir(parents=True)
        for _ in range(args.repeats):
            shutil.rmtree(out / "copy", ignore_errors=True)
            copy_s, _, cpu = timed(["cp", "-r", str(src), str(out / "copy")], envs[""])
            record("cp -r (page cache)", copy_s, cpu=cpu)
            record("cp -r + sync (disk)", synced(copy_s))
            if s3 is not None:
                up_s = upload(src, "upload")
                down_s = download("upload")
                record("upload (S3 limit)", up_s)
                record("download (S3 source limit)", down_s)
                record("download + upload (S3 -> S3 limit)", down_s + up_s)
        per_core, ratio = codec_alone(src)
        codec_cpu = raw / per_core / 1e6
        rows.append(
            {"case": "codec alone, 1 core", "MB/s": per_core, "ratio": ratio, "CPU s": codec_cpu}
        )
        best["codec alone, 1 core"] = rows[-1]
        for _ in range(args.repeats):
            for label, env in envs.items():
                dest = out / f"serial{label.strip(' []')}.zarr"
                shutil.rmtree(dest, ignore_errors=True)
                seconds, peak, cpu = timed(convert_args(src, str(dest), None), env)
                record(f"convert, 1 process{label}", seconds, peak, cpu)
                record(f"convert, 1 process + sync{label}", synced(seconds))
        for n in map(int, args.workers.split(",")):
            clusters = {label: cluster(n, env) for label, env in envs.items()}
            streams = {label: Stream(address) for label, (_, address) in clusters.items()}
            try:
                for _ in range(args.repeats):
                    for label, (procs, address) in clusters.items():
                        for origin in args.sources.split(","):
                            if origin == "s3" and s3 is None:
                                continue
                            source = src if origin == "folder" else f"s3://{BUCKET}/upload"
                            into = f"{n} worker(s) {'S3 ' if origin == 's3' else ''}->"
                            env = envs[label]
                            name = f"w{n}{origin}{label.strip(' []')}"
                            pids = [p.pid for p in procs]
                            if "folder" in args.dests.split(","):
                                dest = out / f"{name}.zarr"
                                shutil.rmtree(dest, ignore_errors=True)
                                since = time.time()
                                seconds, peak, cpu = timed(
                                    convert_args(source, str(dest), address),
                                    env,
                                    procs[1].pid,
                                    pids,
                                )
                                window = streams[label].window(since)
                                wells_s = None if window is None else window[1] - window[0]
                                record(f"{into} folder{label}", seconds, peak, cpu, wells_s)
                                record(f"{into} folder + sync{label}", synced(seconds))
                            if s3 is None or "s3" not in args.dests.split(","):
                                continue
                            url = f"s3://{BUCKET}/{name}-{time.time_ns()}.zarr"
                            since = time.time()
                            seconds, peak, cpu = timed(
                                convert_args(source, url, address), env, procs[1].pid, pids
                            )
                            window = streams[label].window(since)
                            wells_s = None if window is None else window[1] - window[0]
                            record(f"{into} S3{label}", seconds, peak, cpu, wells_s)
                            purge(url.removeprefix(f"s3://{BUCKET}/"))
            finally:
                for stream in streams.values():
                    stream.close()
                for procs, _ in clusters.values():
                    for proc in procs:
                        stop(proc)
    finally:
        if s3 is not None:
            stop(s3)
        shutil.rmtree(out, ignore_errors=True)
    report(args, raw, best, load_start)
    if args.json:
        args.json.write_text(json.dumps({"best": list(best.values()), "runs": rows}, indent=2))


def report(
    args: argparse.Namespace, raw: int, best: dict[str, dict[str, Any]], load: tuple[float, ...]
) -> None:
    copy = best["cp -r (page cache)"]["MB/s"]
    disk = best["cp -r + sync (disk)"]["MB/s"]
    upload_rate = best.get("upload (S3 limit)", {}).get("MB/s")
    down_rate = best.get("download (S3 source limit)", {}).get("MB/s")
    both_rate = best.get("download + upload (S3 -> S3 limit)", {}).get("MB/s")
    print(
        f"\n{args.wells} wells, {raw / 1e6:.0f} MB raw, {psutil.cpu_count()} cores; load "
        f"average {load[0]:.2f} at the start, {os.getloadavg()[0]:.2f} at the end; best of "
        f"{args.repeats}"
    )
    print(
        f"{'case':42} {'MB/s':>8} {'x cp -r':>8} {'x cp+sync':>9} {'x S3 lim':>9} {'RSS MB':>7} "
        f"{'CPU s':>6} {'fixed s':>7} {'MB/s wells':>10} {'x disk wells':>12}"
    )
    for case, r in best.items():
        rate = r["MB/s"]
        cols = ["", "", ""]
        s3_limit = None
        if "S3 -> S3" in case:
            s3_limit = both_rate
        elif "S3 -> folder" in case:
            s3_limit = down_rate
        elif "-> S3" in case:
            s3_limit = upload_rate
        elif "folder" in case or "process" in case:
            cols[0] = f"{rate / copy:.2f}"
            cols[1] = f"{rate / disk:.2f}"
        if "worker" in case and s3_limit:
            cols[2] = f"{rate / s3_limit:.2f}"
        if case.startswith("codec"):
            cols[1] = f"ratio {r['ratio']:.2f}"
        peak = f"{r['peak RSS/worker MB']:.0f}" if "peak RSS/worker MB" in r else ""
        cpu = f"{r['CPU s']:.1f}" if "CPU s" in r else ""
        fixed = wells = versus = ""
        if "fixed s" in r:
            fixed, wells = f"{r['fixed s']:.2f}", f"{r['MB/s wells']:.1f}"
            limit = s3_limit if "S3" in case else disk
            versus = f"{r['MB/s wells'] / limit:.2f}" if limit else ""
        print(
            f"{case:42} {rate:8.1f} {cols[0]:>8} {cols[1]:>9} {cols[2]:>9} {peak:>7} {cpu:>6} "
            f"{fixed:>7} {wells:>10} {versus:>12}"
        )


if __name__ == "__main__":
    main()
