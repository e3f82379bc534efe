"""What keeps a well's conversion cheap: the worker's allocator, copies and levels."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

SRC = str(Path(__file__).resolve().parents[2] / "src")

# Allocates and frees 1 MB buffers 100 times, before and after keep_freed_buffers(), and
# prints the page faults each round took (a fresh mapping is faulted in page by page;
# numpy maps 4 MB and more as huge pages, hence 1 MB).
_FAULTS = """
import json, resource, numpy as np
from napari_wellzarr.convert.runners import keep_freed_buffers

def faults():
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(100):
        buf = np.ones(2**19, np.uint16)
        del buf
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before

first = faults()
changed = keep_freed_buffers()
print(json.dumps({"before": first, "changed": changed, "after": faults(),
                  "again": keep_freed_buffers()}))
"""


def _faults(env: dict[str, str]) -> dict[str, int]:
    run = subprocess.run(
        [sys.executable, "-c", _FAULTS],
        env={**env, "PYTHONPATH": SRC},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    out: dict[str, int] = json.loads(run.stdout)
    return out


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_a_dask_workers_allocator_reuses_freed_buffers_again() -> None:
    base = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    # As dask's nanny starts its workers: every 1 MB buffer is mapped and faulted afresh.
    nanny = _faults({**base, "MALLOC_TRIM_THRESHOLD_": "65536"})
    assert nanny["before"] > 100 * 200  # ~256 pages per buffer
    assert nanny["changed"] is True
    assert nanny["again"] is False  # once per process
    assert nanny["after"] * 20 < nanny["before"]
    # Without the variable glibc adapts by itself, and nothing is changed.
    plain = _faults(base)
    assert plain["changed"] is False
    assert plain["before"] * 20 < nanny["before"]


@pytest.mark.parametrize("dtype", ["u1", "u2"])
def test_integer_levels_are_block_means_rounded_half_up_up_to_256x(dtype: str) -> None:
    from napari_wellzarr.storage.axes import shrink

    top = np.iinfo(dtype).max
    rng = np.random.default_rng(15)
    planes = rng.integers(0, top, (2, 3, 70, 300), endpoint=True).astype(dtype)
    planes[0, 0] = top  # the largest sums: 2**16 pixels of 65535 fill uint32
    for halvings in (1, 2, 3, 5, 8):
        f = 2**halvings
        h, w = -(-70 // f), -(-300 // f)
        pad = ((0, 0), (0, 0), (0, h * f - 70), (0, w * f - 300))
        blocks = np.pad(planes, pad, mode="edge").astype(np.int64).reshape(2, 3, h, f, w, f)
        expected = (blocks.sum(axis=(3, 5)) + f * f // 2) // (f * f)
        got = shrink(planes, halvings)
        assert got.dtype == np.dtype(dtype)
        np.testing.assert_array_equal(got, expected)
    assert (shrink(planes, 8)[0, 0] == top).all()


def test_array_documents_are_written_as_zarr_writes_them(tmp_path: Path) -> None:
    from zarr.core.buffer import default_buffer_prototype
    from zarr.core.metadata.v3 import ArrayV3Metadata

    from napari_wellzarr.storage.config import StorageConfig
    from napari_wellzarr.storage.store import PlateStore

    store = PlateStore.create(tmp_path / "p.zarr", StorageConfig(plate=1536))
    # 256 px wide on 48 columns: an 8x whole-plate level, stored whatever the plate's size
    data = np.random.default_rng(2).integers(0, 4000, (2, 2, 1, 192, 256), dtype="u2")
    for well in ("A01", "B02"):  # the second is written from the cached documents
        names = {f"{well}_f{f}_c{c}.tif": (f, c, 0) for f in range(2) for c in range(2)}
        store.write_well(well, data, plane_names=names)
    store.flush()
    docs = sorted((tmp_path / "p.zarr").glob("[AB]/*/0/*/zarr.json"))
    assert len(docs) == 4  # two levels per well (plate=1536: a whole-plate level)
    for path in docs:
        written = path.read_bytes()
        meta = ArrayV3Metadata.from_dict(json.loads(written))
        assert meta.to_buffer_dict(default_buffer_prototype())["zarr.json"].to_bytes() == written
    attrs = json.loads(docs[-2].read_bytes())["attributes"]
    assert sorted(attrs["openhcs_filename_map"]) == sorted(names)  # B02's own names


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_a_conversion_on_dask_tunes_the_workers_allocator(tmp_path: Path) -> None:
    distributed = pytest.importorskip("distributed")
    from napari_wellzarr.convert.engine import convert, scan_source
    from napari_wellzarr.convert.runners import keep_freed_buffers
    from napari_wellzarr.storage.config import StorageConfig
    from tests.convert.helpers import ix_set

    ix_set(tmp_path / "src", np.random.default_rng(7), wells=("A01", "A02"), shape=(64, 64))
    with (
        distributed.LocalCluster(
            n_workers=1, threads_per_worker=1, processes=True, dashboard_address=":0"
        ) as cluster,
        distributed.Client(cluster.scheduler_address, set_as_default=False) as client,
    ):
        # The nanny starts its workers with the variable that keeps glibc from adapting.
        assert set(client.run(os.environ.get, "MALLOC_TRIM_THRESHOLD_").values()) == {"65536"}
        plan = scan_source(tmp_path / "src")
        result = convert(
            plan, tmp_path / "p.zarr", StorageConfig(), scheduler=cluster.scheduler_address
        )
        assert result.complete
        # Already done by the conversion's first well: a second call changes nothing.
        assert set(client.run(keep_freed_buffers).values()) == {False}
