"""The clients of remote servers kept between opens are bounded (and so their sockets)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from napari_wellzarr.storage.locations import KEPT_CLIENTS

if TYPE_CHECKING:
    from collections.abc import Callable


_CHILD = """
import json, os, sys
from pathlib import Path
import numpy as np
from napari_wellzarr.storage.locations import KEPT_CLIENTS
from napari_wellzarr.storage.store import PlateStore
from tests.remote.servers import RangeServer

def sockets():
    found = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            found += os.readlink(f"/proc/self/fd/{fd}").startswith("socket:")
        except OSError:
            pass  # closed while listed
    return found

root, well, want = Path(sys.argv[1]), sys.argv[2], np.load(sys.argv[3])
counts = []
for _ in range(3 * KEPT_CLIENTS):
    with RangeServer(root) as server, PlateStore.open(f"{server.url}/p.zarr") as store:
        assert np.array_equal(store.read_plane(well, 0, 0, 0), want)
    counts.append(sockets())
print(json.dumps(counts))
"""


def test_plates_of_many_servers_keep_a_bounded_number_of_sockets(
    tmp_path: Path, make_remote_plate: Callable[..., dict[str, np.ndarray]]
) -> None:
    """Counted in a process of its own: other tests' servers and threads share a worker's."""
    root = tmp_path / "www"
    root.mkdir()
    pixels = make_remote_plate(root / "p.zarr", 4, shape=(1, 1, 1, 32, 32))
    well = next(iter(pixels))
    np.save(tmp_path / "want.npy", pixels[well][0, 0, 0])
    repo = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    done = subprocess.run(
        [sys.executable, "-c", _CHILD, str(root), well, str(tmp_path / "want.npy")],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
        cwd=repo,
        env=env,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    counts = json.loads(done.stdout.strip().splitlines()[-1])
    assert len(counts) == 3 * KEPT_CLIENTS
    # Once KEPT_CLIENTS servers were used, older clients (and their connections) go.
    assert counts[-1] <= counts[KEPT_CLIENTS] + 4, counts
