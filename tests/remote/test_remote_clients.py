"""The clients of remote servers kept between opens are bounded (and so their sockets)."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import numpy as np

from napari_wellzarr.storage.locations import KEPT_CLIENTS
from napari_wellzarr.storage.store import PlateStore
from tests.remote.servers import RangeServer

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path


def _sockets() -> int:
    """Socket descriptors of this process (clients and the in-process test servers)."""
    found = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            found += os.readlink(f"/proc/self/fd/{fd}").startswith("socket:")
        except OSError:
            pass  # closed while listed
    return found


def test_plates_of_many_servers_keep_a_bounded_number_of_sockets(
    tmp_path: Path, make_remote_plate: Callable[..., dict[str, np.ndarray]]
) -> None:
    root = tmp_path / "www"
    root.mkdir()
    pixels = make_remote_plate(root / "p.zarr", 4, shape=(1, 1, 1, 32, 32))
    well = next(iter(pixels))
    counts = []
    for _ in range(3 * KEPT_CLIENTS):
        with RangeServer(root) as server, PlateStore.open(f"{server.url}/p.zarr") as store:
            assert np.array_equal(store.read_plane(well, 0, 0, 0), pixels[well][0, 0, 0])
        counts.append(_sockets())
    # Once KEPT_CLIENTS servers were used, older clients (and their connections) go.
    assert counts[-1] <= counts[KEPT_CLIENTS] + 4, counts
