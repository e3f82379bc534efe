"""Requests to a URL plate's first screen do not grow with its wells; no range is read twice."""

from __future__ import annotations

import itertools
import threading
import time
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest

from napari_wellzarr.plugin._reader import get_reader
from napari_wellzarr.storage.config import StorageConfig
from napari_wellzarr.storage.locations import open_location
from napari_wellzarr.storage.store import PlateStore
from napari_wellzarr.testing.synthetic import synthetic_well
from tests.remote.servers import RangeServer

if TYPE_CHECKING:
    from pathlib import Path

#: The benchmark's plates (bench/bench_remote.py): 2 fields x 2 channels of 256 x 256,
#: shown at full resolution (their mosaics are under 4096 px: no stored level).
WELL = synthetic_well(2, 2, 1, (256, 256), seed=7)
SIZES = (24, 96)


@pytest.fixture(scope="module")
def www(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 24- and a 96-well plate of the benchmark's kind, every well written."""
    root = tmp_path_factory.mktemp("www")
    for n in SIZES:
        config = StorageConfig(plate=n)
        with PlateStore.create(root / f"p{n}.zarr", config) as store:
            for well in config.plate.all_wells():
                store.write_well(well, WELL)
    return root


def _layers(url: str) -> list[Any]:
    read = get_reader(url)
    assert read is not None
    return [data for data, _, kind in read(url) if kind == "image"]


def _screen(layers: list[Any], field: int) -> list[np.ndarray]:
    """What napari draws of ``field``: the coarsest level of each layer, index 0 but y, x."""
    out = []
    for data in layers:
        coarsest = data[-1] if isinstance(data, list) else data
        out.append(np.asarray(coarsest[(field,) + (0,) * (coarsest.ndim - 3)]))
    return out


def test_the_first_screen_of_96_wells_at_full_resolution_takes_the_requests_of_24(
    www: Path,
) -> None:
    requests: dict[int, int] = {}
    for n in SIZES:
        with RangeServer(www) as server:
            planes = _screen(_layers(f"{server.url}/p{n}.zarr"), 0)
            requests[n] = server.requests
            log = list(server.log)
        # every well drawn from the plate overview: no well's pixels were asked for
        assert not [key for _, key, rng in log if rng and ".wellzarr-overview" not in key], log
        for c, plane in enumerate(planes):  # well A01 at the origin, the last well's tile
            np.testing.assert_array_equal(plane[:256, :256], WELL[0, c, 0])
            assert np.count_nonzero(plane[-256:, -256:]) > 0
    assert requests[96] <= 1.5 * requests[24], requests


def test_a_range_in_flight_is_requested_once(www: Path) -> None:
    """A read of bytes another thread is fetching waits for that answer (one request)."""
    shard = www / "p24.zarr" / ".wellzarr-overview" / "plate" / "c" / "0" / "0" / "0" / "0" / "0"
    size = shard.stat().st_size
    truth = shard.read_bytes()
    with RangeServer(www, latency=0.4) as server:
        location = open_location(f"{server.url}/p24.zarr/.wellzarr-overview/plate/c/0/0/0/0/0")
        got: list[bytes] = []
        first = threading.Thread(target=lambda: got.extend(location.read_ranges([(0, 5000)], size)))
        first.start()
        deadline = time.monotonic() + 10
        while server.requests == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert server.requests == 1
        # inside the range in flight, and two touching ranges (one request if not in flight)
        assert location.read_ranges([(100, 50), (4000, 1000)], size) == [
            truth[100:150],
            truth[4000:5000],
        ]
        first.join(10)
        assert got == [truth[:5000]]
        assert server.requests == 1, server.log
        assert location.read_ranges([(6000, 10), (6010, 20)], size) == [
            truth[6000:6010],
            truth[6010:6030],
        ]
        assert server.requests == 2, server.log  # touching ranges: one request


def test_a_field_step_during_the_read_ahead_requests_no_byte_twice(www: Path) -> None:
    """The viewer reads the next field ahead; a step to it waits for that read."""
    with RangeServer(www) as server:
        layers = _layers(f"{server.url}/p96.zarr")
        server.latency = 1.0  # the read-ahead is still in flight when the step asks
        _screen(layers, 0)  # the read-ahead of field 1 starts meanwhile, in the background
        planes = _screen(layers, 1)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and any(t[1] == float("inf") for t in server.times):
            time.sleep(0.05)
        log = list(server.log)
    for c, plane in enumerate(planes):
        np.testing.assert_array_equal(plane[:256, :256], WELL[1, c, 0])
    ranges = [rng for _, key, rng in log if ".wellzarr-overview" in key and rng]
    spans = sorted(tuple(int(v) for v in r.removeprefix("bytes=").split("-")) for r in ranges)
    assert len(spans) >= 2, log  # field 0 (and what follows it), then the rest of field 1
    for (_, end), (start, _) in itertools.pairwise(spans):
        assert start > end, log  # no byte of the overview requested twice
