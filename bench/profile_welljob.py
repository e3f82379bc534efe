"""Where a well's conversion spends its CPU: one worker's well jobs, stage by stage.

One command::

    .venv/bin/python bench/profile_welljob.py --wells 96
    MALLOC_TRIM_THRESHOLD_=65536 .venv/bin/python bench/profile_welljob.py --nanny

Converts the wells of ``bench_convert``'s ImageXpress source one after the other with
``convert_well`` (what a dask worker or a worker process runs per well) and charges the
process's CPU time (``time.process_time``) to the stage running: the codec runs on the
calling thread here (the codec pool is replaced by inline calls), so each stage's CPU is
its own; nested stages are subtracted from their callers.  ``--nanny`` first calls
``keep_freed_buffers`` as a dask worker does, and reports the page faults per well (run it
with and without ``MALLOC_TRIM_THRESHOLD_=65536``, dask's nanny's setting, to see why).
"""

from __future__ import annotations

import argparse
import collections
import functools
import resource
import shutil
import sys
import tempfile
import time
import uuid
from concurrent.futures import Future
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_convert import make_source

STAGES = [  # (module, attribute, stage)
    ("convert.tiffio", "decode_stack", "TIFF read (tifffile)"),
    ("convert.welljob", "read_raw_into", "TIFF read (pread, plain files)"),
    ("convert.welljob", "assemble", "well array from the planes"),
    ("storage.store", "prepare_well", "checks, channel windows"),
    ("storage.writing", "_shrunk", "whole-plate level (block means)"),
    ("storage.writing", "downsample", "whole-plate level (block means)"),
    ("storage.shards", "ShardGrid._encode", "codec (blosc) + crc32c"),
    ("storage.shards", "EncodedShards.write", "shard files written"),
    ("storage.writing", "_start_sharded_array", "array documents, folders"),
    ("storage.fsio", "write_group", "group documents"),
    ("storage.store", "open_well", "staged well described"),
    ("storage.store", "place_well", "staging: rename into place"),
    ("storage.store", "stage_for", "staging: folder made"),
    ("storage.store", "discard_stage", "staging: folder made"),
    ("storage.store", "build_well", "other (write_well, build_well)"),
    ("convert.welljob", "write_loaded", "other (write_well, build_well)"),
]


class Inline:
    """A stand-in for the codec pool: runs each job at once on the calling thread."""

    def submit(self, fn: Any, *args: Any, **kwargs: Any) -> Future[Any]:
        future: Future[Any] = Future()
        future.set_result(fn(*args, **kwargs))
        return future

    def map(self, fn: Any, items: Any) -> list[Any]:
        return [fn(x) for x in items]


def instrument(spent: collections.Counter[str]) -> None:
    import importlib

    from napari_wellzarr.storage import shards, writing

    shards.encode_pool = Inline  # type: ignore[assignment]
    writing.encode_pool = Inline  # type: ignore[attr-defined]
    running: list[str] = []
    for module_name, attr, stage in STAGES:
        owner: Any = importlib.import_module(f"napari_wellzarr.{module_name}")
        *path, name = attr.split(".")
        for part in path:
            owner = getattr(owner, part)
        original = getattr(owner, name, None)
        if original is None:  # (an older checkout: --compare)
            continue

        def timed(*a: Any, __f: Any = original, __s: str = stage, **k: Any) -> Any:
            start = time.process_time()
            running.append(__s)
            try:
                return __f(*a, **k)
            finally:
                took = time.process_time() - start
                running.pop()
                spent[__s] += took
                if running:
                    spent[running[-1]] -= took  # nested: charged to its own stage only

        setattr(owner, name, functools.wraps(original)(timed))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--wells", type=int, default=96)
    parser.add_argument("--nanny", action="store_true", help="keep_freed_buffers() first")
    args = parser.parse_args()
    from napari_wellzarr.convert import engine, runners, welljob
    from napari_wellzarr.convert.sources import scan_source
    from napari_wellzarr.storage.config import StorageConfig
    from napari_wellzarr.storage.store import PlateStore

    src = make_source(args.wells)
    if args.nanny:
        print(f"keep_freed_buffers() changed the allocator: {runners.keep_freed_buffers()}")
    spent: collections.Counter[str] = collections.Counter()
    instrument(spent)
    dest = Path(tempfile.mkdtemp(prefix="wellzarr-profile-")) / "p.zarr"
    try:
        plan = scan_source(src)
        PlateStore.create(dest, StorageConfig(plate=args.wells))
        jobs = engine._jobs(plan, str(dest), uuid.uuid4().hex, False, None, None)
        welljob.convert_well(jobs[0])  # imports and caches: not counted
        jobs = jobs[1:]
        spent.clear()
        faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        start, wall = time.process_time(), time.perf_counter()
        for job in jobs:
            welljob.convert_well(job)
        cpu, wall = time.process_time() - start, time.perf_counter() - wall
        faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults
    finally:
        shutil.rmtree(dest.parent, ignore_errors=True)
    raw = sum(j.raw_bytes for j in jobs)
    n = len(jobs)
    print(
        f"{n} wells of {raw / n / 1e6:.1f} MB: {cpu / n * 1e3:.1f} ms of CPU per well "
        f"({raw / cpu / 1e6:.0f} MB/s per core; wall {wall:.1f} s), "
        f"{faults / n:.0f} page faults per well"
    )
    print(f"{'stage':34} {'ms/well':>8} {'share':>6}")
    for stage, seconds in sorted(spent.items(), key=lambda kv: -kv[1]):
        print(f"{stage:34} {seconds / n * 1e3:8.2f} {100 * seconds / cpu:5.1f}%")
    print(f"{'(not in a stage)':34} {(cpu - sum(spent.values())) / n * 1e3:8.2f}")


if __name__ == "__main__":
    main()
