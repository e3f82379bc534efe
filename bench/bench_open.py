"""How long opening a plate takes: the reader alone, and viewer.open until the layers are in.

    python bench/bench_open.py [--wells 96 1536] [--out bench/.cache] [--repeat 5]
    xvfb-run -a python bench/bench_open.py          # adds the Qt viewer rows

Plates (built once, kept under ``--out``):

* ``96``: a full 96-well plate, 2 fields x 3 channels x 512 x 512 uint16 nuclei-like
  pixels per well, one image group per field (the standard layout, so napari-ome-zarr
  reads it too), OME-NGFF 0.5, sharded, no pyramid.
* ``1536``: a full 1536-well plate, 1 field x 1 channel x 2048 x 2048 uint16 per well,
  6 stored pyramid levels.  Its pixels are 0, so zarr stores no chunks and the plate
  stays small on disk.

Rows (median of ``--repeat``, warm OS cache, each open in a new viewer):

* ``reader``: ``read_plate(path)``: plate + one well's metadata to layer data;
* ``open, async slicing``: ``viewer.open`` returns with the layers added; napari reads
  the pixels on its slicing thread afterwards (napari's ``experimental.async_``), so
  this is the metadata-only cost of opening in the viewer;
* ``open, sync slicing``: napari's default: ``viewer.open`` also reads the first view
  (for a multiscale plate: every well at the coarsest level) before it returns;
* ``Qt``: the same in a Qt window (needs a display, e.g. ``xvfb-run``).

With ``napari-ome-zarr`` importable, the 96-well plate is also opened with it.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import statistics
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from napari_wellzarr.core import PlateStore, StorageConfig
from napari_wellzarr.synthetic import synthetic_well

PLUGIN = "napari-wellzarr"


def build(path: Path, wells: int) -> Path:
    if (path / "zarr.json").is_file():
        return path
    t0 = time.perf_counter()
    if wells == 96:
        config = StorageConfig(plate=96, fields="per-field")
        data = synthetic_well(2, 3, 1, (512, 512), seed=7)
    else:
        config = StorageConfig(plate=1536, pyramid_levels=6)
        data = np.zeros((1, 1, 1, 2048, 2048), dtype="u2")
    names = ["DAPI", "GFP", "Cy5"][: data.shape[1]]
    with PlateStore.create(path, config, name=f"bench-{wells}") as store:
        for well in config.plate.all_wells():
            store.write_well(well, data, channels=names, pixel_size=0.65)
    print(f"built {path} ({wells} wells) in {time.perf_counter() - t0:.1f} s")
    return path


def median_ms(samples: list[float]) -> float:
    return 1000 * statistics.median(samples)


def time_reader(read: Any, path: Path, repeat: int) -> tuple[float, int]:
    samples, n = [], 0
    for _ in range(repeat):
        t0 = time.perf_counter()
        with contextlib.redirect_stdout(io.StringIO()):  # napari-ome-zarr prints
            n = len(read(str(path)))
        samples.append(time.perf_counter() - t0)
    return median_ms(samples), n


def time_open(make_viewer: Any, path: Path, plugin: str, repeat: int) -> tuple[float, int]:
    samples, n = [], 0
    for _ in range(repeat):
        viewer = make_viewer()
        t0 = time.perf_counter()
        with contextlib.redirect_stdout(io.StringIO()):
            n = len(viewer.open(str(path), plugin=plugin))
        samples.append(time.perf_counter() - t0)
        slicer = getattr(viewer, "_layer_slicer", None)
        if slicer is not None:
            slicer.wait_until_idle(600)  # async slicing finishes off the clock
        viewer.layers.clear()
        if hasattr(viewer, "close"):
            viewer.close()
    return median_ms(samples), n


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--wells", type=int, nargs="+", default=[96, 1536], choices=[96, 1536])
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / ".cache")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    warnings.simplefilter("ignore")  # third-party deprecation noise is not what we measure
    # napari saves changed settings: switching async slicing here must not change the
    # user's own napari, so this run gets a settings file of its own.
    settings_dir = tempfile.TemporaryDirectory()
    os.environ["NAPARI_CONFIG"] = os.path.join(settings_dir.name, "settings.yaml")

    import napari
    from napari.components import ViewerModel
    from napari.plugins import _initialize_plugins
    from napari.settings import get_settings

    from napari_wellzarr._reader import read_plate

    _initialize_plugins()  # napari.Viewer does this; a bare ViewerModel does not
    readers: dict[str, Any] = {PLUGIN: read_plate}
    with contextlib.suppress(ImportError):
        from napari_ome_zarr import napari_get_reader

        readers["napari-ome-zarr"] = lambda p: napari_get_reader(p)(p)
    settings = get_settings().experimental
    rows = []
    for wells in args.wells:
        path = build(args.out / f"plate-{wells}.ome.zarr", wells)
        for plugin, read in readers.items():
            if wells != 96 and plugin != PLUGIN:
                continue
            rows.append((wells, plugin, "reader", *time_reader(read, path, args.repeat)))
            settings.async_ = True
            ms, n = time_open(ViewerModel, path, plugin, args.repeat)
            rows.append((wells, plugin, "open, async slicing", ms, n))
            settings.async_ = False
            ms, n = time_open(ViewerModel, path, plugin, args.repeat)
            rows.append((wells, plugin, "open, sync slicing", ms, n))
            if os.environ.get("DISPLAY"):
                ms, n = time_open(lambda: napari.Viewer(show=True), path, plugin, args.repeat)
                rows.append((wells, plugin, "Qt open, sync slicing", ms, n))
    print(f"\n{'wells':>5}  {'plugin':<16} {'what':<22} {'median':>10}  layers")
    for wells, plugin, what, ms, n in rows:
        print(f"{wells:>5}  {plugin:<16} {what:<22} {ms:8.1f} ms  {n}")


if __name__ == "__main__":
    main()
