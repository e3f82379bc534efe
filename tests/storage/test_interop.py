"""Interoperability: our plates through other people's validators and readers, theirs through ours.

- ome-zarr-models and yaozarrs must accept every plate we write (0.4 and 0.5, stacked and
  per-field, sparse, empty, 1536 wells).
- ome-zarr-py's Reader must find our plate and stitch the first field of each well into a
  rows x columns mosaic.
- Plates written by ome-zarr-py (one image group per field, resolution paths it chooses,
  axes with and without t/c/z) must read in our core with size-1 axes inserted for a
  missing c or z, and must stay valid after we add a well to them.
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest
import zarr

from napari_wellzarr.core import PlateStore, StorageConfig
from tests.helpers import write_plate

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path
    from types import ModuleType

VERSIONS = ("0.4", "0.5")
FIELDS = ("stacked", "per-field")
H, W = 32, 48


@pytest.fixture(scope="module")
def ome_writer() -> ModuleType:
    # ome-zarr 0.18 instantiates its deprecated Scaler at import time (a default argument).
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message=r"Call to deprecated class Scaler", category=DeprecationWarning
        )
        from ome_zarr import writer
    return writer


def hcs_model_class(version: str) -> type:
    if version == "0.4":
        from ome_zarr_models.v04.hcs import HCS
    else:
        from ome_zarr_models.v05.hcs import HCS
    return HCS


def write_sparse_plate(
    root: Path,
    cfg: StorageConfig,
    pixels: Callable[..., np.ndarray],
    wells: tuple[str, ...],
    shape: tuple[int, ...],
) -> dict[str, np.ndarray]:
    written = {name: pixels(shape) for name in wells}
    channels = [f"ch{i}" for i in range(shape[-4])]
    write_plate(root, written, cfg, write={"channels": channels, "pixel_size": 0.5})
    return written


# -- validators -----------------------------------------------------------------------


@pytest.mark.parametrize("fields", FIELDS)
@pytest.mark.parametrize("pyramid_levels", [1, 3])
def test_sparse_plate_passes_validators(
    tmp_path: Path,
    pixels: Callable[..., np.ndarray],
    validate_plate: Callable[[Path], None],
    ome_zarr_models_validate: Callable[[Path], Any],
    ngff_version: str,
    fields: str,
    pyramid_levels: int,
) -> None:
    root = tmp_path / "sparse.zarr"
    cfg = StorageConfig(
        ngff_version=ngff_version, fields=fields, pyramid_levels=pyramid_levels, plate=96
    )
    write_sparse_plate(root, cfg, pixels, ("B02", "B10", "H12"), (2, 2, 2, 16, 24))
    validate_plate(root)
    model = ome_zarr_models_validate(root)
    assert isinstance(model, hcs_model_class(ngff_version))
    plate = model.attributes.plate if ngff_version == "0.4" else model.attributes.ome.plate
    rows = [r.name for r in plate.rows]
    columns = [c.name for c in plate.columns]
    assert rows == list("ABCDEFGH")
    assert columns == [f"{i:02d}" for i in range(1, 13)]
    assert [(w.path, w.rowIndex, w.columnIndex) for w in plate.wells] == [
        ("B/02", 1, 1),
        ("B/10", 1, 9),
        ("H/12", 7, 11),
    ]
    assert all(f"{rows[w.rowIndex]}/{columns[w.columnIndex]}" == w.path for w in plate.wells)


def test_time_series_plate_passes_validators(
    make_plate: Callable[..., Path],
    pixels: Callable[..., np.ndarray],
    validate_plate: Callable[[Path], None],
    ngff_version: str,
) -> None:
    wells = {"C03": pixels((2, 3, 2, 1, 16, 16))}
    root = make_plate(wells, ngff_version=ngff_version, fields="per-field")
    validate_plate(root)


def test_1536_plate_passes_validators(
    tmp_path: Path,
    pixels: Callable[..., np.ndarray],
    validate_plate: Callable[[Path], None],
    ome_zarr_models_validate: Callable[[Path], Any],
    ngff_version: str,
) -> None:
    root = tmp_path / "p1536.zarr"
    write_sparse_plate(
        root,
        StorageConfig(ngff_version=ngff_version, plate=1536),
        pixels,
        ("A01", "AF48", "AA07"),
        (1, 1, 1, 8, 8),
    )
    validate_plate(root)
    model = ome_zarr_models_validate(root)
    plate = model.attributes.plate if ngff_version == "0.4" else model.attributes.ome.plate
    assert [r.name for r in plate.rows][-6:] == ["AA", "AB", "AC", "AD", "AE", "AF"]
    assert len(plate.rows) == 32
    assert len(plate.columns) == 48
    assert [w.path for w in plate.wells] == ["A/01", "AA/07", "AF/48"]


def test_plate_validates_from_its_first_well(
    make_plate: Callable[..., Path],
    pixels: Callable[..., np.ndarray],
    validate_plate: Callable[[Path], None],
    ome_zarr_models_validate: Callable[[Path], Any],
    ngff_version: str,
) -> None:
    # An empty plate cannot be a valid OME plate (the schema wants one well or more), so
    # the core writes the plate block with the first well; from then on it must validate.
    root = make_plate(ngff_version=ngff_version, plate=24)
    assert PlateStore.open(root).wells() == []
    with PlateStore.open(root, "r+") as store:
        store.write_well("C05", pixels((1, 1, 1, 8, 8)))
    validate_plate(root)
    model = ome_zarr_models_validate(root)
    assert isinstance(model, hcs_model_class(ngff_version))
    plate = model.attributes.plate if ngff_version == "0.4" else model.attributes.ome.plate
    assert [r.name for r in plate.rows] == list("ABCD")
    assert [c.name for c in plate.columns] == [f"{i:02d}" for i in range(1, 7)]
    assert [(w.path, w.rowIndex, w.columnIndex) for w in plate.wells] == [("C/05", 2, 4)]


# -- ome-zarr-py reads our plates ---------------------------------------------------------


@pytest.mark.parametrize("fields", FIELDS)
def test_ome_zarr_py_reader_opens_our_plate(
    tmp_path: Path, pixels: Callable[..., np.ndarray], ngff_version: str, fields: str
) -> None:
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Plate, Reader

    root = tmp_path / "ours.zarr"
    shape = (2, 2, 3, H, W)
    cfg = StorageConfig(ngff_version=ngff_version, fields=fields, plate=24)
    written = write_sparse_plate(root, cfg, pixels, ("B02", "D06", "A01"), shape)

    location = parse_url(str(root))
    assert location is not None
    nodes = list(Reader(location)())
    plate_nodes = [n for n in nodes if any(isinstance(s, Plate) for s in n.specs)]
    assert len(plate_nodes) == 1
    mosaic = plate_nodes[0].data[0]
    rows, cols = 4, 6
    # The reader shows the first field of every well; a stacked well shows all fields.
    lead = shape[:3] if fields == "stacked" else shape[1:3]
    assert mosaic.shape == (*lead, rows * H, cols * W)
    full = np.asarray(mosaic)
    for name, data in written.items():
        r, c = "ABCD".index(name[0]), int(name[1:]) - 1
        tile = full[..., r * H : (r + 1) * H, c * W : (c + 1) * W]
        expected = data if fields == "stacked" else data[0]
        assert np.array_equal(tile, expected), name
        assert tile[..., 5, 7].ravel()[0] == expected[..., 5, 7].ravel()[0]
    # An empty well is an empty tile.
    assert not full[..., 2 * H : 3 * H, 2 * W : 3 * W].any()


# -- ome-zarr-py writes, we read ------------------------------------------------------------

AXES_VARIANTS = {
    "czyx": (2, 3, H, W),
    "tczyx": (2, 2, 3, H, W),
    "cyx": (2, H, W),
    "zyx": (3, H, W),
}
SCALE = {"t": 1.0, "c": 1.0, "z": 2.0, "y": 0.5, "x": 0.25}
OME_ROWS = ["A", "B", "C", "D"]
OME_COLUMNS = [str(i) for i in range(1, 7)]  # ome-zarr-py examples leave columns unpadded
OME_WELLS = ("B/2", "D/6")
N_FIELDS = 2


def omero_for(n_channels: int) -> dict[str, Any]:
    colors = ["0000FF", "00FF00", "FF0000"]
    return {
        "channels": [
            {
                "label": f"stain{i}",
                "color": colors[i],
                "window": {"min": 0.0, "max": 65535.0, "start": 10.0 * (i + 1), "end": 3000.0 + i},
                "active": True,
            }
            for i in range(n_channels)
        ]
    }


def write_ome_zarr_py_plate(
    writer: ModuleType, root: Path, version: str, axes: str, rng: np.random.Generator
) -> dict[str, list[np.ndarray]]:
    from ome_zarr.format import FormatV04, FormatV05
    from ome_zarr.scale import Methods

    fmt = FormatV04() if version == "0.4" else FormatV05()
    group = zarr.open_group(str(root), mode="w", zarr_format=fmt.zarr_format)
    writer.write_plate_metadata(
        group, OME_ROWS, OME_COLUMNS, list(OME_WELLS), fmt=fmt, name="theirs"
    )
    shape = AXES_VARIANTS[axes]
    images: dict[str, list[np.ndarray]] = {}
    for well_path in OME_WELLS:
        row, col = well_path.split("/")
        well = group.require_group(row).require_group(col)
        writer.write_well_metadata(well, [{"path": str(f)} for f in range(N_FIELDS)], fmt=fmt)
        images[well_path] = []
        for field in range(N_FIELDS):
            data = rng.integers(0, 65535, shape, dtype="u2", endpoint=True)
            extra = {"omero": omero_for(shape[axes.index("c")])} if "c" in axes else {}
            writer.write_image(
                data,
                well.require_group(str(field)),
                axes=list(axes),
                fmt=fmt,
                scale_factors=(2,),
                method=Methods.NEAREST,
                scale={a: SCALE[a] for a in axes},
                **extra,
            )
            images[well_path].append(data)
    return images


def as_well_array(images: list[np.ndarray], axes: str) -> np.ndarray:
    """Stack per-field images into (field, [t,] c, z, y, x), adding size-1 c and z."""
    out = []
    for image in images:
        names = axes
        for axis in ("c", "z"):
            if axis not in names:
                position = names.index("z") if axis == "c" and "z" in names else len(names) - 2
                image = np.expand_dims(image, position)
                names = names[:position] + axis + names[position:]
        out.append(image)
    return np.stack(out)


@pytest.mark.parametrize("axes", list(AXES_VARIANTS))
def test_ome_zarr_py_plate_reads_in_our_core(
    tmp_path: Path, rng: np.random.Generator, ome_writer: ModuleType, ngff_version: str, axes: str
) -> None:
    root = tmp_path / "theirs.zarr"
    images = write_ome_zarr_py_plate(ome_writer, root, ngff_version, axes, rng)
    store = PlateStore.open(root)
    assert store.ngff_version == ngff_version
    assert store.wells() == ["B2", "D6"]
    has_t = "t" in axes
    well_axes = ("field", "t", "c", "z", "y", "x") if has_t else ("field", "c", "z", "y", "x")
    for well_path, fields in images.items():
        name = well_path.replace("/", "")
        expected = as_well_array(fields, axes)
        info = store.well_info(name)
        assert info.axes == well_axes
        assert info.shape == expected.shape
        assert not info.stacked
        back = store.read_well(name)
        assert back.dtype == np.uint16
        assert np.array_equal(back, expected)
        for key in [
            (0, 0, 0, 0),
            (1, expected.shape[-4] - 1, expected.shape[-3] - 1, 1 if has_t else 0),
        ]:
            f, c, z, t = key
            plane = store.read_plane(name, f, c, z, t)
            assert np.array_equal(plane, expected[f, t, c, z] if has_t else expected[f, c, z])
        # Scale and channels are what ome-zarr-py wrote.
        expected_scale = tuple(
            1.0 if a in ("field", "t", "c") else (SCALE[a] if a in axes else 1.0) for a in well_axes
        )
        assert info.scale == expected_scale
        if "c" in axes:
            given = omero_for(expected.shape[-4])["channels"]
            assert [ch.label for ch in info.channels] == [g["label"] for g in given]
            assert [ch.color for ch in info.channels] == [g["color"] for g in given]
            assert [ch.window for ch in info.channels] == [
                tuple(float(g["window"][k]) for k in ("min", "max", "start", "end")) for g in given
            ]
        else:
            assert len(info.channels) == 1
        # Resolution levels: whatever paths ome-zarr-py chose, read through its metadata.
        assert info.n_levels == 2
        assert info.level_shapes[1][-2:] == (H // 2, W // 2)
        group = zarr.open_group(str(root / well_path / "0"), mode="r")
        attrs = group.attrs.asdict()
        multiscales = attrs["ome"]["multiscales"] if ngff_version == "0.5" else attrs["multiscales"]
        level1_path = multiscales[0]["datasets"][1]["path"]
        level1 = np.asarray(
            zarr.open_array(str(root / well_path / "0" / level1_path), mode="r")[...]
        )
        assert np.array_equal(store.read_well(name, level=1)[0], as_well_array([level1], axes)[0])


@pytest.mark.parametrize("axes", list(AXES_VARIANTS))
def test_adding_a_well_to_an_ome_zarr_py_plate(
    tmp_path: Path,
    rng: np.random.Generator,
    pixels: Callable[..., np.ndarray],
    ome_writer: ModuleType,
    validate_plate: Callable[[Path], None],
    ngff_version: str,
    axes: str,
) -> None:
    root = tmp_path / "theirs.zarr"
    images = write_ome_zarr_py_plate(ome_writer, root, ngff_version, axes, rng)
    validate_plate(root)
    well_shape = as_well_array(images["B/2"], axes).shape
    new = pixels(well_shape, "uint16")
    with PlateStore.open(root, "r+") as store:
        store.write_well("A1", new)
    validate_plate(root)
    store = PlateStore.open(root)
    assert store.wells() == ["A1", "B2", "D6"]
    assert np.array_equal(store.read_well("A1"), new)
    for well_path, fields in images.items():
        assert np.array_equal(
            store.read_well(well_path.replace("/", "")), as_well_array(fields, axes)
        )


def test_well_added_to_a_standard_plate_keeps_its_layout(
    tmp_path: Path,
    rng: np.random.Generator,
    pixels: Callable[..., np.ndarray],
    ome_writer: ModuleType,
    ngff_version: str,
) -> None:
    # A plate written with one image group per field must stay uniform: readers such as
    # ome-zarr-py take the first well's layout for every well.
    root = tmp_path / "theirs.zarr"
    write_ome_zarr_py_plate(ome_writer, root, ngff_version, "czyx", rng)
    with PlateStore.open(root, "r+") as store:
        store.write_well("A1", pixels((N_FIELDS, 2, 3, H, W)))
    info = PlateStore.open(root).well_info("A1")
    assert not info.stacked, "a stacked well was added to a per-field (standard) plate"
    assert info.image_paths == ("0", "1")


def test_ome_zarr_py_still_reads_a_plate_we_added_a_well_to(
    tmp_path: Path,
    rng: np.random.Generator,
    pixels: Callable[..., np.ndarray],
    ome_writer: ModuleType,
    ngff_version: str,
) -> None:
    # ome-zarr-py's plate reader takes the first well's layout (its field paths and its
    # resolution paths, "s0", "s1", ...) for every well: a well we add must match them.
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Plate, Reader

    root = tmp_path / "theirs.zarr"
    images = write_ome_zarr_py_plate(ome_writer, root, ngff_version, "czyx", rng)
    new = pixels((N_FIELDS, 2, 3, H, W))
    with PlateStore.open(root, "r+") as store:
        store.write_well("A1", new)
    location = parse_url(str(root))
    assert location is not None
    (node,) = [n for n in Reader(location)() if any(isinstance(s, Plate) for s in n.specs)]
    mosaic = np.asarray(node.data[0])
    assert mosaic.shape == (2, 3, len(OME_ROWS) * H, len(OME_COLUMNS) * W)
    tiles = {"A/1": new[0], **{path: fields[0] for path, fields in images.items()}}
    for path, expected in tiles.items():
        row, col = path.split("/")
        r, c = OME_ROWS.index(row), OME_COLUMNS.index(col)
        tile = mosaic[..., r * H : (r + 1) * H, c * W : (c + 1) * W]
        assert np.array_equal(tile, expected), f"ome-zarr-py shows well {path} wrong or blank"
