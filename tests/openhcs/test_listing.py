"""The backend's plate is valid OME from its first well on, as another process sees it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import TYPE_CHECKING

import numpy as np

from napari_wellzarr.openhcs import index
from napari_wellzarr.openhcs.backend import ZarrStorageBackend

if TYPE_CHECKING:
    from pathlib import Path

    import pytest

# Another process (a validator, napari) looks at the plate while the writer still runs.
OUTSIDE = """
import json, sys
import ome_zarr_models, yaozarrs, zarr
path = sys.argv[1]
model = ome_zarr_models.open_ome_zarr(zarr.open_group(path, mode="r"))
yaozarrs.validate_zarr_store(path)
attrs = zarr.open_group(path, mode="r").attrs.asdict()
plate = attrs.get("ome", attrs)["plate"]
print(json.dumps({"model": type(model).__name__, "wells": [w["path"] for w in plate["wells"]]}))
"""


def save_wells(backend: ZarrStorageBackend, store: Path, wells: list[str]) -> None:
    for i, well in enumerate(wells):
        names = [f"{well}_s1_w{c + 1}.tif" for c in range(2)]
        data = [np.full((16, 16), 10 * i + c, np.uint16) for c in range(2)]
        backend.save_batch(data, [store / n for n in names])


def outside_view(store: Path) -> dict[str, object]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    run = subprocess.run(
        [sys.executable, "-c", OUTSIDE, str(store)],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )
    assert run.returncode == 0, f"another process rejects {store}:\n{run.stderr[-3000:]}"
    view: dict[str, object] = json.loads(run.stdout)
    return view


def test_plate_valid_for_another_process_without_flush(tmp_path: Path) -> None:
    store = tmp_path / "plate" / "images"
    backend = ZarrStorageBackend()
    save_wells(backend, store, ["A01", "B02", "C03"])
    view = outside_view(store)  # the backend is neither flushed nor closed
    assert view["model"] == "HCS"
    assert "A/01" in view["wells"]  # the first well is listed at once
    backend.close()
    assert outside_view(store)["wells"] == ["A/01", "B/02", "C/03"]


def test_progress_listed_every_interval(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(index, "LIST_EVERY_S", 0.0)
    store = tmp_path / "plate" / "images"
    backend = ZarrStorageBackend()
    save_wells(backend, store, ["A01", "B02", "C03"])
    assert outside_view(store)["wells"] == ["A/01", "B/02", "C/03"]
    backend.close()


def test_listed_at_exit_without_close(tmp_path: Path) -> None:
    store = tmp_path / "plate" / "images"
    code = (
        "import sys; from pathlib import Path; import numpy as np\n"
        "from napari_wellzarr.openhcs.backend import ZarrStorageBackend\n"
        "b = ZarrStorageBackend(); store = Path(sys.argv[1])\n"
        "for w in ['A01', 'B02', 'C03']:\n"
        "    b.save_batch([np.zeros((8, 8), np.uint16)], [store / f'{w}_s1_w1.tif'])\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    subprocess.run([sys.executable, "-c", code, str(store)], check=True, timeout=120, env=env)
    assert outside_view(store)["wells"] == ["A/01", "B/02", "C/03"]
