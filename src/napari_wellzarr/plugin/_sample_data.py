"""npe2 sample data: a small synthetic 96-well plate written through the storage core."""

from __future__ import annotations

import atexit
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from collections.abc import Sequence

    from napari_wellzarr.storage.config import StorageConfig

SAMPLE_WELLS = ("B02", "B03", "B04", "C03", "D06", "E08", "F10", "G11")
SAMPLE_CHANNELS = (("DAPI", "0000FF"), ("Phalloidin", "00FF00"), ("EdU", "FF00FF"))
PIXEL_SIZE = 0.65  # micrometres, a 10x objective on a 6.5 um camera


def write_synthetic_plate(
    path: str | Path,
    *,
    wells: Sequence[str] = SAMPLE_WELLS,
    n_fields: int = 2,
    n_z: int = 1,
    shape: tuple[int, int] = (128, 128),
    config: StorageConfig | None = None,
    seed: int = 2024,
    labels: bool = False,
    overwrite: bool = False,
) -> Path:
    """Write a 96-well plate with nuclei-like pixels in ``wells`` and return its path.

    Each well holds ``n_fields`` fields of 3 channels (DAPI, Phalloidin, EdU) and
    ``n_z`` planes of ``shape`` uint16 pixels; every well and field differs.  With
    ``labels``, a "nuclei" OME label image (the DAPI channel thresholded) goes with it.
    """
    from napari_wellzarr.storage.geometry import Well
    from napari_wellzarr.storage.metadata import Channel
    from napari_wellzarr.storage.store import PlateStore
    from napari_wellzarr.testing.synthetic import derive_seed, synthetic_well

    channels = [Channel(label, color) for label, color in SAMPLE_CHANNELS]
    with PlateStore.create(path, config, name="synthetic", overwrite=overwrite) as store:
        for name in wells:
            pos = Well.parse(name)
            data = synthetic_well(
                n_fields, len(channels), n_z, shape, seed=derive_seed(seed, pos.row, pos.column)
            )
            store.write_well(
                name,
                data,
                channels=channels,
                pixel_size=PIXEL_SIZE,
                z_step=2.0,
                labels={"nuclei": nuclei_labels(data[:, 0])} if labels else None,
            )
    return Path(path)


def nuclei_labels(dapi: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    """Number the nuclei of (field, z, y, x) DAPI planes: threshold, then connected parts."""
    from scipy import ndimage  # type: ignore[import-untyped]

    out = np.zeros(dapi.shape, dtype=np.uint32)
    for index in np.ndindex(*dapi.shape[:-2]):
        plane = dapi[index]
        out[index] = ndimage.label(plane > 3 * np.median(plane))[0]
    return out


def synthetic_96_well_plate() -> list[tuple[Any, dict[str, Any], str]]:
    """npe2 ``sample_data`` command: write the sample plate to a temporary folder and open it.

    The folder lives until the Python process exits (the layers read it lazily).
    """
    from napari_wellzarr.plugin._reader import read_plate

    tmp = Path(tempfile.mkdtemp(prefix="napari-wellzarr-sample-"))
    atexit.register(shutil.rmtree, tmp, ignore_errors=True)
    return read_plate(write_synthetic_plate(tmp / "synthetic_96.ome.zarr", labels=True))
