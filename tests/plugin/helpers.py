"""Shared set-up of the plugin tests: plates written by us and by ome-zarr-py, and checks."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np

from napari_wellzarr.core import Channel, PlateStore, StorageConfig, Well

#: The shipped test plates (``tests/data``).
DATA = Path(__file__).parents[1] / "data"
SHAPE = (16, 24)
CHANNELS = (
    Channel("DAPI", "0000FF", (0.0, 65535.0, 100.0, 5000.0)),
    Channel("GFP", "00FF00", (0.0, 65535.0, 200.0, 6000.0)),
)


def plane_values(well: int, field: int, c: int, z: int, t: int = 0, shape=SHAPE) -> np.ndarray:
    """Pixels that encode their own coordinates (no pixel is 0)."""
    base = (((well * 2 + field) * 2 + t) * 2 + c) * 2 + z
    return (1 + 1000 * base + np.arange(shape[0] * shape[1]).reshape(shape) % 1000).astype("u2")


def well_values(well: int, n_t: int = 0, shape=SHAPE) -> np.ndarray:
    """A (field, c, z, y, x) well (or (field, t, c, z, y, x) with ``n_t``) of plane_values."""
    if n_t:
        return np.stack(
            [np.stack([well_values_t(well, f, t, shape) for t in range(n_t)]) for f in range(2)]
        )
    return np.array(
        [
            [[plane_values(well, f, c, z, shape=shape) for z in range(2)] for c in range(2)]
            for f in range(2)
        ]
    )


def well_values_t(well: int, field: int, t: int, shape=SHAPE) -> np.ndarray:
    """A (c, z, y, x) block of plane_values at time point ``t``."""
    return np.array(
        [[plane_values(well, field, c, z, t, shape) for z in range(2)] for c in range(2)]
    )


def label_values(well: int, shape=SHAPE) -> np.ndarray:
    """A (field, z, y, x) label image: a square object numbered per well/field/z."""
    out = np.zeros((2, 2, *shape), dtype="u4")
    for f in range(2):
        for z in range(2):
            out[f, z, 2:8, 3:11] = 100 * (well + 1) + 10 * f + z + 1
    return out


def write_ours(
    path: Path,
    *,
    version: str = "0.5",
    chunks: str | None = None,
    fields: str = "stacked",
    wells: tuple[str, ...] = ("A01", "B03"),
    plate: str = "2x3",
    labels: bool = False,
) -> Path:
    """A plate as this package writes it: ``wells`` of well_values, channels, labels."""
    config = StorageConfig(ngff_version=version, chunks=chunks, fields=fields, plate=plate)
    with PlateStore.create(path, config) as store:
        for w, name in enumerate(wells):
            store.write_well(
                name,
                well_values(w),
                channels=CHANNELS,
                pixel_size=(0.5, 0.25),
                z_step=2.0,
                labels={"nuclei": label_values(w)} if labels else None,
            )
    return path


def write_ome_zarr_py(path: Path, version: str, axes: str) -> Path:
    """A sparse 3 x 4 plate as ome-zarr-py writes it: one image per field, s0/s1 levels."""
    import zarr

    with warnings.catch_warnings():
        # ome-zarr-py evaluates a deprecated Scaler() default when its writer is imported.
        warnings.simplefilter("ignore", DeprecationWarning)
        from ome_zarr.format import FormatV04, FormatV05
        from ome_zarr.writer import write_image, write_plate_metadata, write_well_metadata

    fmt = FormatV05() if version == "0.5" else FormatV04()
    root = zarr.open_group(str(path), mode="w", zarr_format=3 if version == "0.5" else 2)
    write_plate_metadata(root, ["A", "B", "C"], ["1", "2", "3", "4"], ["A/2", "C/4"], fmt=fmt)
    for w, (row, col) in enumerate((("A", "2"), ("C", "4"))):
        group = root.require_group(row).require_group(col)
        write_well_metadata(group, [{"path": "0"}, {"path": "1"}], fmt=fmt)
        for field in range(2):
            if axes == "tczyx":
                data = np.stack([well_values_t(w, field, t, (32, 48)) for t in range(2)])
            else:
                data = well_values(w, shape=(32, 48))[field]
            write_image(
                data,
                group.require_group(str(field)),
                axes=axes,
                fmt=fmt,
                scale_factors=(2,),
                scale={"t": 1.0, "c": 1.0, "z": 2.0, "y": 0.5, "x": 0.5}
                if axes == "tczyx"
                else {"c": 1.0, "z": 2.0, "y": 0.5, "x": 0.5},
                axes_units=dict.fromkeys("zyx", "micrometer"),
            )
    return path


def assert_same_plate(src: Path, dst: Path) -> None:
    """Same wells at the same positions, same pixels, channels, pixel sizes and labels."""
    a, b = PlateStore.open(src), PlateStore.open(dst)
    assert sorted(Well.parse(w) for w in a.wells()) == sorted(Well.parse(w) for w in b.wells())
    by_position = {Well.parse(w): w for w in b.wells()}
    for name in a.wells():
        other = by_position[Well.parse(name)]
        ia, ib = a.well_info(name), b.well_info(other)
        np.testing.assert_array_equal(a.read_well(name), b.read_well(other), err_msg=name)
        assert ia.dtype == ib.dtype
        assert [(c.label, c.color) for c in ia.channels] == [
            (c.label, c.color) for c in ib.channels
        ]
        if all(c.window for c in ia.channels):
            assert [c.window for c in ia.channels] == [c.window for c in ib.channels]
        assert ia.scale[-3:] == ib.scale[-3:]
        assert ia.labels == ib.labels
        for label in ia.labels:
            np.testing.assert_array_equal(a.read_labels(name, label), b.read_labels(other, label))


def camera_of(viewer: Any) -> Any:
    """The 2D camera of a viewer."""
    # napari 0.9 moved the camera to viewer.scene (viewer.camera warns).
    return viewer.scene.camera if hasattr(viewer, "scene") else viewer.camera


def well_centre(layer: Any, well: str) -> tuple[float, float]:
    """World (y, x) of the centre of ``well`` in a plate layer."""
    layout = layer.metadata["wellzarr"]
    (h, w), (py, px) = layout["tile"], layout["pitch"]
    pos = Well.parse(well)
    sy, sx = layer.scale[-2:]
    return (pos.row * py + h / 2) * sy, (pos.column * px + w / 2) * sx
