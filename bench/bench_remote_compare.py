"""Remote first screen of one plate kind, this checkout vs another, alternating in one run.

    git worktree add OLD <rev>
    python bench/bench_remote_compare.py --compare OLD/src             # 96 wells, 100 ms
    python bench/bench_remote_compare.py --compare OLD/src --wells 24 --latency 0.02

Each source tree writes its own plate of the benchmark's kind (``bench_remote.py``: 2 fields x
2 channels x 256x256 uint16 a well, default configuration); the tests' Range server serves both
with ``latency`` slept before each answer; each read is a fresh process (``get_reader(url)(url)``
then the coarsest level of every image layer), the two trees alternating ``--rounds`` times.
Also: ``--upload`` measures the RSS high-water of putting a 64 MiB file to S3 (moto), read whole
vs :meth:`RemoteLocation.upload` (streamed).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent

BUILD = r"""
import sys
from pathlib import Path
from napari_wellzarr.core import PlateStore, StorageConfig
from napari_wellzarr.testing.synthetic import synthetic_well
path, n = Path(sys.argv[1]), int(sys.argv[2])
if not (path / "zarr.json").is_file():
    config = StorageConfig(plate=n)
    data = synthetic_well(2, 2, 1, (256, 256), seed=7)
    with PlateStore.create(path, config) as store:
        for well in config.plate.all_wells():
            store.write_well(well, data, channels=["DAPI", "GFP"], pixel_size=0.65)
"""

SCREEN = r"""
import json, sys, time
import numpy as np
from napari_wellzarr.plugin._reader import get_reader
url = sys.argv[1]
t0 = time.perf_counter()
read = get_reader(url)
for data, _, kind in read(url):
    if kind == "image":
        coarsest = data[-1] if isinstance(data, list) else data
        np.asarray(coarsest[(0,) * (coarsest.ndim - 2)])
print(json.dumps({"s": time.perf_counter() - t0}))
"""

UPLOAD = r"""
import sys
import obstore
from napari_wellzarr.storage.locations import open_location

def high_water():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM"):
            return int(line.split()[1]) // 1024

location = open_location(sys.argv[2])
store = location._remote.store
obstore.put(store, "warm", b"x")
before = high_water()
if sys.argv[1] == "whole":
    with open(sys.argv[3], "rb") as fh:
        obstore.put(store, location.key, fh.read())
else:
    location.upload(sys.argv[3])
print(high_water() - before)
"""


def _env(src: Path) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(src)}


def screens(trees: dict[str, Path], wells: int, latency: float, rounds: int) -> None:
    sys.path.insert(0, str(HERE.parent))
    from tests.remote.servers import RangeServer

    root = Path(tempfile.mkdtemp(prefix="wellzarr-compare-"))
    for name, src in trees.items():
        path = root / f"{name}.zarr"
        subprocess.run(
            [sys.executable, "-c", BUILD, str(path), str(wells)], env=_env(src), check=True
        )
    rows: dict[str, list[tuple[int, int, float]]] = {name: [] for name in trees}
    with RangeServer(root, latency=latency) as server:
        for _ in range(rounds):
            for name, src in trees.items():
                server.reset()
                done = subprocess.run(
                    [sys.executable, "-c", SCREEN, f"{server.url}/{name}.zarr"],
                    env=_env(src),
                    capture_output=True,
                    text=True,
                    timeout=600,
                    check=True,
                )
                seconds = json.loads(done.stdout.strip().splitlines()[-1])["s"]
                rows[name].append((server.requests, server.round_trips(), seconds))
    shutil.rmtree(root, ignore_errors=True)
    print(f"{wells} wells, {latency * 1000:.0f} ms per request, {rounds} rounds alternating")
    print("| tree | requests | round trips (all requests) | first screen, median |")
    print("| --- | ---: | ---: | ---: |")
    medians = {}
    for name, got in rows.items():
        medians[name] = statistics.median(s for _, _, s in got)
        print(
            f"| {name} | {sorted({r for r, _, _ in got})} | {sorted({t for _, t, _ in got})} "
            f"| {medians[name]:.2f} s |"
        )
    if "compare" in medians:
        print(f"compare / this = {medians['compare'] / medians['this']:.2f}x")


def upload(rounds: int) -> None:
    sys.path.insert(0, str(HERE.parent))
    import boto3
    from moto.server import ThreadedMotoServer
    from tests.remote.servers import free_port

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's request log
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    server.start()
    env = {
        **_env(HERE.parent / "src"),
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
        "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ALLOW_HTTP": "true",
    }
    try:
        client = boto3.client(
            "s3",
            endpoint_url=env["AWS_ENDPOINT_URL"],
            aws_access_key_id="bench",
            aws_secret_access_key="bench",
            region_name="us-east-1",
        )
        client.create_bucket(Bucket="bench-upload")
        with tempfile.NamedTemporaryFile() as fh:
            fh.write(os.urandom(64 * 2**20))
            fh.flush()
            print("| upload of a 64 MiB file | RSS high-water rise, MiB |")
            print("| --- | ---: |")
            for _ in range(rounds):
                for how in ("whole", "streamed"):
                    done = subprocess.run(
                        [sys.executable, "-c", UPLOAD, how, "s3://bench-upload/x/c/0", fh.name],
                        env=env,
                        capture_output=True,
                        text=True,
                        timeout=600,
                        check=True,
                    )
                    print(f"| {how} | {done.stdout.strip()} |")
    finally:
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--compare", type=Path, help="another napari-wellzarr src folder")
    parser.add_argument("--wells", type=int, default=96)
    parser.add_argument("--latency", type=float, default=0.1)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--upload", action="store_true")
    args = parser.parse_args()
    if args.upload:
        upload(args.rounds)
        return
    trees = {"this": HERE.parent / "src"}
    if args.compare:
        trees["compare"] = args.compare.resolve()
    screens(trees, args.wells, args.latency, args.rounds)


if __name__ == "__main__":
    main()
