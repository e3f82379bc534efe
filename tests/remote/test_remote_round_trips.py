"""Round trips (requests waited for one after another) to open remote plates of ours."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import numpy as np

from napari_wellzarr.plugin._reader import get_reader
from napari_wellzarr.storage.store import PlateStore
from tests.remote.servers import RangeServer

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

#: Seconds the server sleeps before each answer: requests in turn are told from
#: requests in flight together by their arrival and answer times.  Well above the
#: scheduling delays of a loaded 2-core machine (at 0.05 s, requests sent together
#: sometimes arrived after another's answer and looked like one more round trip).
LATENCY = 0.12


def _first_screen(url: str) -> list[np.ndarray]:
    """What napari draws first: the coarsest level of each image layer, index 0 but y, x."""
    read = get_reader(url)
    assert read is not None
    planes = []
    for data, _, kind in read(url):
        if kind == "image":
            coarsest = data[-1] if isinstance(data, list) else data
            planes.append(np.asarray(coarsest[(0,) * (coarsest.ndim - 2)]))
    return planes


def _chain(server: RangeServer, until: float = float("inf")) -> list[str]:
    """The critical path of the requests answered before ``until`` (read-ahead: not waited)."""
    among = [i for i, (_, answered) in enumerate(server.times) if answered <= until]
    return [server.log[i][1] for i in server.critical_path(among)]


def test_first_screen_of_a_url_takes_four_round_trips_whatever_the_wells(
    tmp_path: Path, make_remote_plate: Callable[..., dict[str, np.ndarray]]
) -> None:
    """Plate document; layout record with the reference wells; their documents; overview."""
    trips: dict[int, list[str]] = {}
    requests: dict[int, int] = {}
    for n in (24, 96):
        root = tmp_path / f"www{n}"
        root.mkdir()
        pixels = make_remote_plate(root / "p.zarr", n, shape=(2, 2, 1, 32, 32))
        with RangeServer(root, latency=LATENCY) as server:
            planes = _first_screen(f"{server.url}/p.zarr")
            trips[n], requests[n] = _chain(server, time.monotonic()), server.requests
        assert planes[0].shape[-2:] >= (8 * 32, 12 * 32)
        first = next(iter(pixels))
        assert np.array_equal(planes[1][:32, :32], pixels[first][0, 1, 0])
    for chain in trips.values():
        assert len(chain) <= 4, trips
        assert chain[0] == "p.zarr/zarr.json", chain
        assert chain[-1].startswith("p.zarr/.wellzarr-overview/"), chain
    assert requests[96] <= requests[24] + 2, requests


def test_a_plane_of_a_url_takes_four_round_trips(
    served: RangeServer, make_remote_plate: Callable[..., dict[str, np.ndarray]]
) -> None:
    """Plate document; layout record; the template well's documents; the plane's range."""
    pixels = make_remote_plate(served.root / "p.zarr", 24, shape=(1, 2, 1, 32, 32))
    served.latency = LATENCY
    store = PlateStore.open(f"{served.url}/p.zarr")
    well = list(pixels)[5]
    assert np.array_equal(store.read_plane(well, 0, 1, 0), pixels[well][0, 1, 0])
    chain = _chain(served)
    assert len(chain) <= 4, chain
    assert chain[:2] == ["p.zarr/zarr.json", "p.zarr/.wellzarr-layouts.json"], chain
    # the rest of the plate: one more range per well, no further document
    served.reset()
    for name in pixels:
        store.read_plane(name, 0, 0, 0)
    assert all(rng is not None for _, _, rng in served.log), served.log


def test_the_round_trips_are_counted_at_the_server(served: RangeServer) -> None:
    """Requests sent together are one round trip; one sent after an answer is another."""
    import urllib.request
    from concurrent.futures import ThreadPoolExecutor

    (served.root / "a").write_bytes(b"a")
    served.latency = LATENCY

    def get(_: Any) -> bytes:
        with urllib.request.urlopen(f"{served.url}/a", timeout=10) as answer:
            return bytes(answer.read())

    with ThreadPoolExecutor(4) as pool:
        assert list(pool.map(get, range(4))) == [b"a"] * 4
    get(0)
    assert served.requests == 5
    assert served.round_trips() == 2
    assert served.critical_path()[-1] == 4
