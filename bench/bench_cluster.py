"""Cluster conversion: 1, 2 and 4 dask worker processes, from and to a folder and local S3.

One command (also ``bench/bench_convert.py --cluster``)::

    .venv/bin/python bench/bench_cluster.py --wells 24

The source is ``bench_convert``'s ImageXpress folder (24 wells: 288 TIFFs, 151 MB).  A
``dask scheduler`` and ``dask worker --nworkers N --nthreads 1`` run as processes on this
machine; ``wellzarr convert SRC DEST --scheduler ...`` converts to a folder and to a moto
S3 server (its own process, on 127.0.0.1).  The physical limits in the same run: ``cp -r``
of the TIFF folder, and an upload of the same files to the same S3 server (obstore, 8
requests at once).  The same files uploaded are also the source of the ``s3 ->`` cases
(``wellzarr convert s3://bench/upload DEST``: each worker downloads its wells' TIFFs);
their limits are a download of the same files (8 at once) for ``s3 -> folder``, and that
download followed by the upload for ``s3 -> s3``.  Reported: MB/s of raw pixels (wall
time of the command), the ratio to the plain copy, and the peak RSS of the largest
worker process.  Warm page cache.
"""

from __future__ import annotations

import argparse
import json
import os
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
    """Peak RSS of the worker processes below ``pid`` (sampled every 20 ms)."""

    def __init__(self, pid: int) -> None:
        self.root = psutil.Process(pid)
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            for proc in self.root.children(recursive=True) or [self.root]:
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
    return [sched, work], address


def convert(
    src: Path | str, dest: str, address: str, env: dict[str, str], work: int
) -> tuple[float, int]:
    start = time.perf_counter()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "napari_wellzarr.cli",
            "convert",
            str(src),
            dest,
            "-q",
            "--scheduler",
            address,
        ],
        env=env,
    )
    peak = Peak(work)
    code = proc.wait(900)
    seconds = time.perf_counter() - start
    high = peak.done()
    if code != 0:
        raise SystemExit(f"convert to {dest} failed ({code})")
    return seconds, high


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--wells", type=int, default=24, help="24, 96 or 384")
    parser.add_argument("--workers", default="1,2,4")
    parser.add_argument("--sources", default="folder,s3", help="folder, s3 or both")
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args()
    src = make_source(args.wells)
    raw = sum(p.stat().st_size for p in src.glob("*.tif"))  # (uncompressed TIFFs: ~raw)
    env = {**os.environ, **ENV_S3, "PYTHONPATH": str(ROOT / "src")}
    s3, endpoint = start_s3(env)
    env["AWS_ENDPOINT_URL"] = endpoint
    os.environ.update({k: v for k, v in env.items() if k.startswith("AWS_")})
    out = WORK / f"cluster-{os.getpid()}"  # (concurrent runs must not share it)
    rows: list[dict[str, Any]] = []
    try:
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir(parents=True)
        start = time.perf_counter()
        subprocess.run(["cp", "-r", str(src), str(out / "copy")], check=True)
        copy_s = time.perf_counter() - start
        up_s = upload(src, "upload")
        down_s = download("upload")
        limits = {
            "folder -> folder": raw / copy_s / 1e6,
            "folder -> s3": raw / up_s / 1e6,
            "s3 -> folder": raw / down_s / 1e6,
            "s3 -> s3": raw / (down_s + up_s) / 1e6,
        }
        rows.append({"case": "cp -r (folder limit)", "MB/s": limits["folder -> folder"]})
        rows.append({"case": "upload (S3 limit)", "MB/s": limits["folder -> s3"]})
        rows.append({"case": "download (S3 source limit)", "MB/s": limits["s3 -> folder"]})
        rows.append({"case": "download+upload", "MB/s": limits["s3 -> s3"]})
        sources: dict[str, Path | str] = {"folder": src, "s3": f"s3://{BUCKET}/upload"}
        for n in map(int, args.workers.split(",")):
            procs, address = cluster(n, env)
            try:
                for origin in args.sources.split(","):
                    for where in ("folder", "s3"):
                        name = f"w{n}-{origin}"
                        dest = (
                            str(out / f"{name}.zarr")
                            if where == "folder"
                            else f"s3://{BUCKET}/{name}.zarr"
                        )
                        seconds, peak = convert(sources[origin], dest, address, env, procs[1].pid)
                        rate = raw / seconds / 1e6
                        case = f"{origin} -> {where}"
                        rows.append(
                            {
                                "case": f"{n} worker(s) {case}",
                                "MB/s": rate,
                                "x limit": rate / limits[case],
                                "peak RSS/worker MB": peak / 2**20,
                            }
                        )
            finally:
                for proc in procs:
                    stop(proc)
    finally:
        stop(s3)
        shutil.rmtree(out, ignore_errors=True)
    print(f"{args.wells} wells, {raw / 1e6:.0f} MB raw, {psutil.cpu_count()} cores")
    print(f"{'case':34} {'MB/s':>8} {'x limit':>8} {'peak RSS/worker MB':>19}")
    for r in rows:
        ratio = f"{r['x limit']:.2f}" if "x limit" in r else ""
        peak = f"{r['peak RSS/worker MB']:.0f}" if "peak RSS/worker MB" in r else ""
        print(f"{r['case']:34} {r['MB/s']:8.1f} {ratio:>8} {peak:>19}")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
