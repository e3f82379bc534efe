"""The npe2 reader called directly (no viewer) on every kind of plate it must open."""

from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
import sys
import warnings
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest

from napari_wellzarr.core import (
    PlateStore,
    StorageConfig,
    WellNotFoundError,
    WellZarrError,
)
from napari_wellzarr.plugin._reader import get_reader, read_plate
from napari_wellzarr.plugin.mosaic import DamagedWellWarning, shrink
from napari_wellzarr.plugin.view import UnfinishedPlateWarning
from napari_wellzarr.storage import store as store_module
from napari_wellzarr.storage import templates as templates_module
from napari_wellzarr.storage.axes import downsample
from tests.plugin.helpers import (
    DATA,
    SHAPE,
    label_values,
    plane_values,
    well_values,
    write_ome_zarr_py,
    write_ours,
)

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path


def layers_by_name(path: Path | str) -> dict[str, tuple[Any, dict[str, Any], str]]:
    reader = get_reader(str(path))
    assert reader is not None, f"get_reader refused {path}"
    return {meta["name"]: (data, meta, kind) for data, meta, kind in reader(str(path))}


def tile(
    data: Any, meta: dict[str, Any], position: tuple[int, int], lead: tuple[int, ...]
) -> np.ndarray:
    """The tile of the well at plate ``position`` (row, column) for leading index ``lead``."""
    layout = meta["metadata"]["wellzarr"]
    (h, w), (py, px) = layout["tile"], layout["pitch"]
    y0, x0 = position[0] * py, position[1] * px
    return np.asarray(data[(*lead, slice(y0, y0 + h), slice(x0, x0 + w))])


# -- our own plates -------------------------------------------------------------------

OUR_KINDS = [
    (version, chunks, fields)
    for version, chunks in (
        ("0.5", "sharded"),
        ("0.5", "plane"),
        ("0.5", "well"),
        ("0.4", "plane"),
        ("0.4", "well"),
    )
    for fields in ("stacked", "per-field")
]


@pytest.mark.parametrize(("version", "chunks", "fields"), OUR_KINDS)
def test_reads_our_plates(tmp_path: Path, version: str, chunks: str, fields: str) -> None:
    path = write_ours(tmp_path / "p.zarr", version=version, chunks=chunks, fields=fields)
    layers = layers_by_name(path)
    assert list(layers) == ["DAPI", "GFP", "plate map"]
    dapi, meta, kind = layers["DAPI"]
    assert kind == "image"
    assert meta["colormap"] == "#0000FF"
    assert layers["GFP"][1]["colormap"] == "#00FF00"
    assert meta["contrast_limits"] == (100.0, 5000.0)
    assert layers["GFP"][1]["contrast_limits"] == (200.0, 6000.0)
    assert meta["scale"] == [1.0, 2.0, 0.5, 0.25]
    assert meta["axis_labels"] == ("field", "z", "y", "x")
    assert meta["units"][-3:] == ["micrometer"] * 3
    assert meta["multiscale"] is False
    layout = meta["metadata"]["wellzarr"]
    (h, w), (py, px) = layout["tile"], layout["pitch"]
    assert (h, w) == SHAPE
    assert py > h
    assert px > w
    assert dapi.shape == (2, 2, 2 * py, 3 * px)
    assert dapi.dtype == np.uint16
    for c, name in enumerate(("DAPI", "GFP")):
        data, meta, _ = layers[name]
        for f in range(2):
            for z in range(2):
                np.testing.assert_array_equal(
                    tile(data, meta, (0, 0), (f, z)), plane_values(0, f, c, z)
                )
                np.testing.assert_array_equal(
                    tile(data, meta, (1, 2), (f, z)), plane_values(1, f, c, z)
                )
                for empty in ((0, 1), (0, 2), (1, 0), (1, 1)):
                    assert not tile(data, meta, empty, (f, z)).any()
    whole = np.asarray(dapi[1, 1])
    assert int(whole[0, 0]) == int(plane_values(0, 1, 0, 1)[0, 0])
    assert int(whole[py + 5, 2 * px + 7]) == int(plane_values(1, 1, 0, 1)[5, 7])
    assert not whole[h:py].any()
    assert not whole[:, w:px].any()


def test_plate_map_layer(tmp_path: Path) -> None:
    path = write_ours(tmp_path / "p.zarr", plate="96")
    data, meta, kind = layers_by_name(path)["plate map"]
    assert kind == "points"
    assert meta["features"]["well"][:3] == ["A01", "A02", "A03"]
    assert len(data) == 96
    assert len(meta["features"]["well"]) == 96
    present = dict(zip(meta["features"]["well"], meta["features"]["present"], strict=True))
    assert present["A01"]
    assert present["B03"]
    assert not present["H12"]
    layout = layers_by_name(path)["DAPI"][1]["metadata"]["wellzarr"]
    (h, w), (py, px) = layout["tile"], layout["pitch"]
    b03 = meta["features"]["well"].index("B03")
    np.testing.assert_allclose(data[b03], [py + h / 2, 2 * px + w / 2])
    assert meta["symbol"] == "square"
    assert meta["size"] == max(h, w)
    assert meta["scale"] == [0.5, 0.25]


def test_reads_labels_aligned_with_images(tmp_path: Path) -> None:
    path = write_ours(tmp_path / "p.zarr", labels=True)
    layers = layers_by_name(path)
    assert list(layers) == ["DAPI", "GFP", "nuclei", "plate map"]
    labels, meta, kind = layers["nuclei"]
    assert kind == "labels"
    assert labels.dtype == np.uint32
    assert labels.shape == layers["DAPI"][0].shape
    assert meta["scale"] == layers["DAPI"][1]["scale"]
    for w, position in enumerate(((0, 0), (1, 2))):
        for f in range(2):
            for z in range(2):
                np.testing.assert_array_equal(
                    tile(labels, meta, position, (f, z)), label_values(w)[f, z]
                )
    assert not tile(labels, meta, (0, 1), (0, 0)).any()


# -- other writers' plates ------------------------------------------------------------


@pytest.mark.parametrize("axes", ["czyx", "tczyx"])
def test_reads_ome_zarr_py_plates(tmp_path: Path, ngff_version: str, axes: str) -> None:
    path = write_ome_zarr_py(tmp_path / "omz", ngff_version, axes)
    layers = layers_by_name(path)
    assert list(layers) == ["Channel 0", "Channel 1", "plate map"]
    data, meta, _ = layers["Channel 1"]
    lead = ("field", "t", "z") if axes == "tczyx" else ("field", "z")
    assert meta["axis_labels"] == (*lead, "y", "x")
    assert meta["scale"][-3:] == [2.0, 0.5, 0.5]
    assert meta["colormap"] == "#00FF00"
    assert "contrast_limits" not in meta  # no omero window: napari picks the limits
    assert data.shape[-2:] == (3 * 34, 4 * 50)
    for w, position in enumerate(((0, 1), (2, 3))):  # A2 and C4, at their plate positions
        for f in range(2):
            if axes == "tczyx":
                got = tile(data, meta, position, (f, 1, 1))
                np.testing.assert_array_equal(got, plane_values(w, f, 1, 1, 1, (32, 48)))
            else:
                got = tile(data, meta, position, (f, 1))
                np.testing.assert_array_equal(got, plane_values(w, f, 1, 1, shape=(32, 48)))
    assert not tile(data, meta, (1, 1), (0,) * len(lead)).any()


@pytest.mark.parametrize("name", ["iohub_plate_v04", "iohub_plate_v05"])
def test_reads_iohub_plates(name: str) -> None:
    layers = layers_by_name(DATA / name)
    assert list(layers) == ["DAPI", "GFP", "plate map"]
    data, meta, _ = layers["GFP"]
    assert meta["axis_labels"] == ("field", "t", "z", "y", "x")
    assert meta["scale"] == [1.0, 1.0, 2.0, 0.5, 0.5]
    assert meta["colormap"] == "#00FF00"
    assert meta["contrast_limits"] == (0.0, 65535.0)
    assert data.shape == (2, 2, 2, 2 * 18, 3 * 26)
    # iohub lists the columns in creation order (1, 3, 2): the wells go where they are on
    # the plate, not where the list puts them.
    for w, position in enumerate(((0, 0), (0, 2), (1, 1))):  # A1, A3, B2
        for f in range(2):
            t, c, z = 1, 1, 0
            expected = (
                1
                + 1000 * ((((w * 2 + f) * 2 + t) * 2 + c) * 2 + z)
                + np.arange(16 * 24).reshape(16, 24)
            )
            np.testing.assert_array_equal(tile(data, meta, position, (f, t, z)), expected)
    assert layers["plate map"][1]["features"]["well"] == ["A1", "A2", "A3", "B1", "B2", "B3"]


@pytest.mark.parametrize("name", ["openhcs_plate", "openhcs_seed_plate"])
def test_reads_openhcs_plates(name: str) -> None:
    expected = json.loads((DATA / name / "expected.json").read_text())
    layers = layers_by_name(DATA / name / expected["store"])
    positions = {"A01": (0, 0), "A03": (0, 2), "B01": (1, 0)}  # column 02 is empty
    for file in expected["files"].values():
        data, meta, _ = layers[f"Channel {file['channel']}"]
        got = tile(data, meta, positions[file["well"]], (file["field"], file["z"]))
        assert int(got[0, 0]) == file["pixel_0_0"]
        assert int(got.sum(dtype=np.int64)) == file["sum"]
    data, meta, _ = layers["Channel 0"]
    assert data.shape[-2:] == (
        2 * meta["metadata"]["wellzarr"]["pitch"][0],
        3 * meta["metadata"]["wellzarr"]["pitch"][1],
    )
    assert not tile(data, meta, (0, 1), (0, 0)).any()


def test_reads_a_single_well_folder(tmp_path: Path) -> None:
    path = write_ours(tmp_path / "p.zarr", fields="per-field", labels=True)
    layers = layers_by_name(path / "B" / "03")
    assert list(layers) == ["DAPI", "GFP", "nuclei", "plate map"]
    data, meta, _ = layers["GFP"]
    assert data.shape == (2, 2, *meta["metadata"]["wellzarr"]["pitch"])
    np.testing.assert_array_equal(tile(data, meta, (0, 0), (1, 0)), plane_values(1, 1, 1, 0))
    assert meta["contrast_limits"] == (200.0, 6000.0)
    labels, lmeta, _ = layers["nuclei"]
    np.testing.assert_array_equal(tile(labels, lmeta, (0, 0), (1, 1)), label_values(1)[1, 1])
    assert layers["plate map"][1]["features"]["well"] == ["B03"]


def test_reads_a_single_iohub_well() -> None:
    layers = layers_by_name(DATA / "iohub_plate_v05" / "B" / "2")
    data, meta, _ = layers["DAPI"]
    expected = 1 + 1000 * ((((2 * 2 + 1) * 2 + 0) * 2 + 0) * 2 + 1) + np.arange(384).reshape(16, 24)
    np.testing.assert_array_equal(tile(data, meta, (0, 0), (1, 0, 1)), expected)


# -- big plates: multiscale -------------------------------------------------------------


@pytest.mark.parametrize("stored_levels", [1, 3])
def test_big_plate_is_multiscale(make_plate: Callable[..., Path], stored_levels: int) -> None:
    ramp = np.arange(700 * 700, dtype=np.uint32).reshape(700, 700)
    planes = {
        name: (ramp * (w + 3) % 60000).astype("u2") for w, name in enumerate(("A01", "H12", "P24"))
    }
    wells = {name: plane[None, None, None] for name, plane in planes.items()}
    path = make_plate(wells, plate=384, pyramid_levels=stored_levels)
    data, meta, _ = layers_by_name(path)["Channel 0"]
    assert meta["multiscale"] is True
    assert isinstance(data, list)
    assert len(data) >= 4
    assert data[0].shape[-1] > 16384  # the full-resolution mosaic exceeds a GPU texture
    assert max(data[-1].shape[-2:]) <= 2048
    for k in range(1, len(data)):
        assert data[k].shape[-2:] == (data[0].shape[-2] >> k, data[0].shape[-1] >> k)
    (h, w), (py, px) = meta["metadata"]["wellzarr"]["tile"], meta["metadata"]["wellzarr"]["pitch"]
    y0, x0 = 7 * py, 11 * px  # H12
    np.testing.assert_array_equal(
        np.asarray(data[0][0, 0, y0 : y0 + h, x0 : x0 + w]), planes["H12"]
    )
    stored = [planes["P24"]]
    for _ in range(stored_levels - 1):
        stored.append(downsample(stored[-1]))  # what the core wrote
    for k in range(1, 5):
        # Stored levels are shown as stored; further ones are averaged from the last.
        source = min(k, stored_levels - 1)
        expected = shrink(stored[source], k - source)
        assert expected.shape == (-(-700 // 2**k),) * 2
        y, x = (15 * py) >> k, (23 * px) >> k
        got = np.asarray(data[k][0, 0, y : y + expected.shape[0], x : x + expected.shape[1]])
        np.testing.assert_array_equal(got, expected)
    coarse = np.asarray(data[-1][0, 0])
    assert coarse.any()
    assert not coarse[: py >> (len(data) - 1), (px >> (len(data) - 1)) :].any()


# -- damaged and broken plates ----------------------------------------------------------


def test_damaged_wells_show_blank_with_one_warning_each(tmp_path: Path) -> None:
    wells = ("A01", "A02", "A03", "B01", "B03")
    path = write_ours(tmp_path / "p.zarr", wells=wells, chunks="plane")

    def first_chunk(well: str) -> Path:
        folder = path / well[0] / well[1:] / "0" / "0"
        return next(p for p in sorted(folder.rglob("*")) if p.is_file() and p.name != "zarr.json")

    first_chunk("A02").write_bytes(b"not a chunk")  # a corrupt chunk
    first_chunk("A03").unlink()  # a missing chunk
    (path / "B" / "01" / "0" / "zarr.json").write_text("{broken")  # bad metadata
    data, meta, _ = layers_by_name(path)["DAPI"]
    with pytest.warns(DamagedWellWarning) as record:
        plane = np.asarray(data[0, 0])
    assert sorted(str(w.message).split()[1] for w in record) == ["A02", "A03", "B01"]
    for damaged in ((0, 1), (0, 2), (1, 0)):
        assert not tile(data, meta, damaged, (0, 0)).any()
    np.testing.assert_array_equal(tile(data, meta, (1, 2), (0, 0)), plane_values(4, 0, 0, 0))
    np.testing.assert_array_equal(tile(data, meta, (0, 0), (0, 0)), plane_values(0, 0, 0, 0))
    assert plane.any()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        np.asarray(data[1, 1])  # each well is reported once: no second warning


def test_damaged_first_well_does_not_stop_the_plate(tmp_path: Path) -> None:
    path = write_ours(tmp_path / "p.zarr")
    (path / "A" / "01" / "zarr.json").write_text("{broken")
    with pytest.warns(DamagedWellWarning, match="A01"):
        layers = layers_by_name(path)
    data, meta, _ = layers["GFP"]
    np.testing.assert_array_equal(tile(data, meta, (1, 2), (1, 1)), plane_values(1, 1, 1, 1))
    assert not tile(data, meta, (0, 0), (1, 1)).any()


def test_well_of_another_shape_is_blank(tmp_path: Path) -> None:
    path = write_ours(tmp_path / "p.zarr")
    with PlateStore.open(path, "r+") as store:
        store.write_well("A02", np.ones((2, 2, 2, 8, 8), dtype="u2"))
    data, meta, _ = layers_by_name(path)["DAPI"]
    with pytest.warns(DamagedWellWarning, match=r"A02.*\(8, 8\)"):
        assert not tile(data, meta, (0, 1), (0, 0)).any()


def test_broken_plate_metadata_is_one_clear_error(tmp_path: Path) -> None:
    path = write_ours(tmp_path / "p.zarr")
    (path / "zarr.json").write_text('{"attributes": {"ome": {"plate": ')
    reader = get_reader(str(path))
    assert reader is not None  # claimed, so the user gets our error, not "no reader"
    with pytest.raises(WellZarrError, match=r"p\.zarr"):
        reader(str(path))


def test_plate_with_no_readable_well_is_one_clear_error(tmp_path: Path) -> None:
    path = write_ours(tmp_path / "p.zarr")
    for well in ("A/01", "B/03"):
        shutil.rmtree(path / well)
    with pytest.warns(DamagedWellWarning), pytest.raises(WellZarrError, match="none of its 2 well"):
        read_plate(str(path))


def test_plate_listing_no_wells_shows_the_wells_on_disk(tmp_path: Path) -> None:
    path = write_ours(tmp_path / "p.zarr")
    doc = json.loads((path / "zarr.json").read_text())
    doc["attributes"]["ome"]["plate"]["wells"] = []
    (path / "zarr.json").write_text(json.dumps(doc))
    with pytest.warns(UnfinishedPlateWarning, match=r"2 wells \(A01, B03\)"):
        layers = layers_by_name(path)
    data, meta, _ = layers["GFP"]
    np.testing.assert_array_equal(tile(data, meta, (1, 2), (1, 0)), plane_values(1, 1, 1, 0))
    for well in ("A/01", "B/03"):
        shutil.rmtree(path / well)
    with pytest.warns(UnfinishedPlateWarning, match="no wells yet"):
        layers = layers_by_name(path)
    assert list(layers) == ["plate map"]


# -- interrupted writers: complete wells not listed yet -----------------------------------

#: Run by a subprocess: write wells into a plate (creating it if needed), then be killed
#: with SIGKILL before the session lists them (no flush, no close, no atexit).
KILLED_WRITER = """
import os, signal, sys
import numpy as np
from napari_wellzarr.core import PlateStore, StorageConfig
root, version, *wells = sys.argv[1:]
store = PlateStore.create(root, StorageConfig(ngff_version=version, plate=24), exist_ok=True)
for name in wells:
    store.write_well(name, np.load(f"{root}.{name}.npy"), channels=["DAPI", "GFP"])
os.kill(os.getpid(), signal.SIGKILL)
"""
#: Interrupted plates' wells: well -> (index for well_values, plate position).
INTERRUPTED = {"A01": (0, (0, 0)), "B02": (1, (1, 1)), "C03": (2, (2, 2)), "D05": (3, (3, 4))}


def killed_writer(root: Path, version: str, wells: tuple[str, ...]) -> str:
    """Write ``wells`` (``well_values``) in a subprocess killed before it lists them.

    Returns the dead writer's ``host.pid``, as its temporary files would be named.
    """
    for name in wells:
        np.save(f"{root}.{name}.npy", well_values(INTERRUPTED[name][0]))
    writer = subprocess.Popen([sys.executable, "-c", KILLED_WRITER, str(root), version, *wells])
    assert writer.wait() == -9
    return f"{socket.gethostname().replace('.', '-')}.{writer.pid}"


def interrupted_plate(root: Path, version: str, listed: tuple[str, ...]) -> Path:
    """A 24-well plate: ``listed`` wells by a finished session, the others by a killed one.

    Also what is never a well: the killed writer's staging leftover (which the next
    writer, never a reader, removes), a well folder without its group document, and a
    well-like folder outside the plate's rows.
    """
    if listed:
        config = StorageConfig(ngff_version=version, plate=24)
        with PlateStore.create(root, config) as store:
            for name in listed:
                store.write_well(name, well_values(INTERRUPTED[name][0]), channels=["DAPI", "GFP"])
    owner = killed_writer(root, version, tuple(w for w in INTERRUPTED if w not in listed))
    group = "zarr.json" if version == "0.5" else ".zgroup"
    for decoy in (f".wellzarr-staging/B_04.{owner}.0123456789ab", "Z/01"):
        (root / decoy).mkdir(parents=True)
        (root / decoy / group).write_text('{"zarr_format": 3, "node_type": "group"}')
    (root / "D" / "06" / "0").mkdir(parents=True)  # no group document: not a well
    return root


def read_everything(layers: dict[str, tuple[Any, dict[str, Any], str]]) -> None:
    for data, _, kind in layers.values():
        if kind != "points":
            np.asarray(data)


@pytest.mark.parametrize("listed", [("A01", "B02"), ()], ids=["some-listed", "none-listed"])
def test_interrupted_plate_shows_its_unlisted_wells(
    tmp_path: Path, ngff_version: str, listed: tuple[str, ...]
) -> None:
    path = interrupted_plate(tmp_path / "p.zarr", ngff_version, listed)
    unlisted = [w for w in INTERRUPTED if w not in listed]
    store = PlateStore.open(path)
    assert store.wells() == list(listed)
    assert store.unlisted_wells() == unlisted
    assert get_reader(str(path)) is read_plate
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        layers = layers_by_name(path)
        read_everything(layers)
    assert [w.category for w in caught] == [UnfinishedPlateWarning]
    message = str(caught[0].message)
    assert f"{len(unlisted)} wells ({', '.join(unlisted)})" in message
    assert not any(w in message for w in listed)
    assert "--resume" in message
    assert "recover()" in message
    assert list(layers) == ["DAPI", "GFP", "plate map"]
    for c, name in enumerate(("DAPI", "GFP")):
        data, meta, _ = layers[name]
        assert data.dtype == np.uint16
        for index, position in INTERRUPTED.values():
            for f in range(2):
                for z in range(2):
                    got = tile(data, meta, position, (f, z))
                    np.testing.assert_array_equal(got, plane_values(index, f, c, z))
        assert not tile(data, meta, (3, 5), (0, 0)).any()  # D06: no group document
    features = layers["plate map"][1]["features"]
    present = {w for w, here in zip(features["well"], features["present"], strict=True) if here}
    assert present == set(INTERRUPTED)
    # Finishing the plate lists them: then it opens silently, with the same pixels.
    with PlateStore.open(path, "r+") as store:
        assert store.recover() == unlisted
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        data, meta, _ = layers_by_name(path)["GFP"]
        np.testing.assert_array_equal(tile(data, meta, (3, 4), (1, 1)), plane_values(3, 1, 1, 1))


def test_plate_killed_before_its_first_well_opens_empty(tmp_path: Path, ngff_version: str) -> None:
    path = tmp_path / "p.zarr"
    killed_writer(path, ngff_version, ())
    assert get_reader(str(path)) is read_plate
    with pytest.warns(UnfinishedPlateWarning, match="no wells yet") as record:
        layers = read_plate(str(path))
    assert len(record) == 1
    assert "--resume" in str(record[0].message)
    assert [(meta["name"], kind) for _, meta, kind in layers] == [("plate map", "points")]
    data, meta, _ = layers[0]
    assert len(data) == 24
    assert meta["features"]["well"][:7] == ["A01", "A02", "A03", "A04", "A05", "A06", "B01"]
    assert not any(meta["features"]["present"])


def file_states(root: Path) -> dict[str, tuple[int, int, int]]:
    """(size, mtime_ns, inode) of every file and folder under ``root``, itself included."""
    out = {}
    for entry in [root, *root.rglob("*")]:
        stat = entry.lstat()
        out[str(entry.relative_to(root))] = (stat.st_size, stat.st_mtime_ns, stat.st_ino)
    return out


def test_opening_an_interrupted_plate_writes_nothing(tmp_path: Path, ngff_version: str) -> None:
    path = interrupted_plate(tmp_path / "p.zarr", ngff_version, ("A01",))
    before = file_states(path)
    with pytest.warns(UnfinishedPlateWarning, match="B02, C03, D05"):
        read_everything(layers_by_name(path))
    assert PlateStore.open(path).unlisted_wells() == ["B02", "C03", "D05"]
    assert file_states(path) == before


# -- one damaged well, the rest of the plate shown ------------------------------------------

FOUR = ("A01", "A02", "B01", "B02")  # plate positions (0, 0), (0, 1), (1, 0), (1, 1)


def array_doc(path: Path, well: str, version: str) -> Path:
    """The level-0 array document of ``well``'s field 0 (stacked layout: all its fields)."""
    return path / well[0] / well[1:] / "0" / "0" / ("zarr.json" if version == "0.5" else ".zarray")


def damaged_plate_layers(
    path: Path, monkeypatch: pytest.MonkeyPatch, damaged: str | None = None
) -> tuple[dict[str, tuple[Any, dict[str, Any], str]], list[warnings.WarningMessage], set[str]]:
    """Open ``path``, read every layer; the warnings issued and the wells whose pixels were read.

    Reading a pixel of the ``damaged`` well fails the test (an AssertionError is no read
    error the mosaic blanks a well for), before anything is allocated.
    """
    read: set[str] = set()

    def spy(name: str) -> Any:
        original = getattr(PlateStore, name)

        def read_pixels(self: PlateStore, well: str, *args: Any, **kwargs: Any) -> Any:
            if well == damaged:
                raise AssertionError(f"the pixels of {well} were read")
            read.add(well)
            return original(self, well, *args, **kwargs)

        return read_pixels

    for name in ("read_plane", "read_planes"):  # the mosaic reads a well's tiles together
        monkeypatch.setattr(PlateStore, name, spy(name))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        layers = layers_by_name(path)
        read_everything(layers)
    return layers, caught, read


def assert_rest_of_plate_shown(
    layers: dict[str, tuple[Any, dict[str, Any], str]], wells: tuple[str, ...], blank: str
) -> None:
    for c, name in enumerate(("DAPI", "GFP")):
        data, meta, _ = layers[name]
        assert data.dtype == np.uint16
        for w, well in enumerate(wells):
            position = (ord(well[0]) - ord("A"), int(well[1:]) - 1)
            for f in range(2):
                for z in range(2):
                    got = tile(data, meta, position, (f, z))
                    if well == blank:
                        assert not got.any(), well
                    else:
                        np.testing.assert_array_equal(got, plane_values(w, f, c, z))


@pytest.mark.parametrize(
    "damage", [b"\x00\xffnot json{", "truncated", b"[1, 2]"], ids=["garbage", "truncated", "list"]
)
@pytest.mark.parametrize(
    "wells",
    [("A01", "A02", "B02", "C03", "D04"), ("A01", "B02", "C03", "D04")],
    ids=["found-at-open", "found-when-drawn"],  # B02 one of the wells opening reads, or not
)
def test_broken_array_document_blanks_only_its_well(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    ngff_version: str,
    damage: bytes | str,
    wells: tuple[str, ...],
) -> None:
    path = write_ours(tmp_path / "p.zarr", version=ngff_version, wells=wells, plate="4x6")
    doc = array_doc(path, "B02", ngff_version)
    raw = doc.read_bytes()
    doc.write_bytes(raw[: len(raw) // 2] if damage == "truncated" else damage)
    layers, caught, read = damaged_plate_layers(path, monkeypatch)
    assert [w.category for w in caught] == [DamagedWellWarning]
    assert "well B02 " in str(caught[0].message)
    assert read == set(wells) - {"B02"}
    assert_rest_of_plate_shown(layers, wells, blank="B02")


@pytest.mark.parametrize("change", ["dtype", "huge plane"])
def test_first_well_of_another_dtype_or_shape_does_not_set_the_plate(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, ngff_version: str, change: str
) -> None:
    path = write_ours(tmp_path / "p.zarr", version=ngff_version, wells=FOUR)
    doc = array_doc(path, "A01", ngff_version)
    meta = json.loads(doc.read_text())
    if change == "dtype" and ngff_version == "0.5":
        meta["data_type"] = "float64"
    elif change == "dtype":
        meta["dtype"] = "<f8"
    else:  # 3.2 GB planes, declared: never to be allocated
        meta["shape"][-2:] = [40000, 40000]
    doc.write_text(json.dumps(meta))
    layers, caught, read = damaged_plate_layers(path, monkeypatch, "A01")
    assert [w.category for w in caught] == [DamagedWellWarning]
    expected = "float64" if change == "dtype" else r"\(40000, 40000\) uint16"
    assert re.search(rf"well A01 .*{expected}", str(caught[0].message))
    assert read == set(FOUR) - {"A01"}  # A01 blanked from its metadata, no pixel read
    assert_rest_of_plate_shown(layers, FOUR, blank="A01")
    assert layers["DAPI"][1]["metadata"]["wellzarr"]["tile"] == list(SHAPE)


def test_unlisted_wells_are_found_without_being_listed(tmp_path: Path) -> None:
    path = interrupted_plate(tmp_path / "p.zarr", "0.5", ("A01", "B02"))
    store = PlateStore.open(path)
    with pytest.raises(WellNotFoundError, match="C03"):
        store.well_info("C03")  # not listed: unknown until looked for
    assert store.unlisted_wells() == ["C03", "D05"]
    assert store.well_info("C03").shape == (2, 2, 2, *SHAPE)
    np.testing.assert_array_equal(store.read_plane("D05", 1, 0, 1), plane_values(3, 1, 0, 1))
    assert store.wells() == ["A01", "B02"]  # still what the metadata lists
    assert "C03" not in store
    with pytest.raises(WellNotFoundError, match="B04"):
        store.well_info("B04")  # its staging leftover is not a well


def test_layout_groups_come_from_the_records_and_layout_info_from_the_template(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_ours(tmp_path / "p.zarr", wells=FOUR)
    assert PlateStore.open(path).layout_groups([*FOUR, "A03"]) == [list(FOUR)]
    with PlateStore.open(path, "r+") as store:
        store.write_well("B01", np.ones((2, 2, 2, 8, 8), "u2"), overwrite=True)
    store = PlateStore.open(path)
    assert store.layout_groups(FOUR) == [["A01", "A02", "B02"], ["B01"]]
    opened: list[str] = []
    original = store_module.open_well

    def counting(root: Path, well_path: str, *args: Any) -> Any:
        opened.append(well_path)
        return original(root, well_path, *args)

    monkeypatch.setattr(store_module, "open_well", counting)
    monkeypatch.setattr(templates_module, "open_well", counting)
    infos = {well: store.layout_info(well) for well in FOUR}
    assert {w: i.shape[-2:] for w, i in infos.items()} == {
        "A01": SHAPE,
        "A02": SHAPE,
        "B01": (8, 8),
        "B02": SHAPE,
    }
    assert len(opened) == 2  # one template per layout; the other wells' metadata unread
    v04 = write_ours(tmp_path / "v04.zarr", version="0.4", chunks="plane", wells=FOUR)
    assert PlateStore.open(v04).layout_groups(FOUR) == []  # no records: nothing claimed


# -- what get_reader refuses, and how cheaply ------------------------------------------


def test_get_reader_refuses_what_is_not_a_plate(tmp_path: Path) -> None:
    import zarr

    (tmp_path / "image.tif").write_bytes(b"II*\x00")
    (tmp_path / "folder").mkdir()
    zarr.open_group(str(tmp_path / "plain.zarr"), mode="w")
    image = zarr.open_group(str(tmp_path / "image.zarr"), mode="w")
    image.attrs["ome"] = {"version": "0.5", "multiscales": []}
    # our block, but not a plate's (a plate's carries its configuration)
    marked = zarr.open_group(str(tmp_path / "marked.zarr"), mode="w")
    marked.attrs["wellzarr"] = {"version": "0.1.0", "all_chunks_written": True}
    plate = write_ours(tmp_path / "p.zarr")
    for refused in ("image.tif", "folder", "plain.zarr", "image.zarr", "marked.zarr", "missing"):
        assert get_reader(str(tmp_path / refused)) is None, refused
    assert get_reader([str(plate), str(plate)]) is None
    assert get_reader([str(plate)]) is read_plate
    assert get_reader(str(plate / "B")) is None  # a row group is neither plate nor well
    assert get_reader(str(plate / "B" / "03" / "0")) is None  # an image: other plugins'


def test_get_reader_is_cheap_and_silent(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    plate = write_ours(tmp_path / "p.zarr")
    probe = (
        "import sys, time\n"
        "from napari_wellzarr.plugin._reader import get_reader\n"
        "t = time.perf_counter()\n"
        f"assert get_reader({str(tmp_path)!r}) is None\n"
        f"assert get_reader({str(plate)!r}) is not None\n"
        "elapsed = time.perf_counter() - t\n"
        "names = ('zarr', 'dask', 'napari', 'ome_zarr', 'qtpy')\n"
        "heavy = sorted(m for m in names if m in sys.modules)\n"
        "print(heavy, elapsed)\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    heavy, elapsed = out.stdout.rsplit("]", 1)
    assert heavy == "["  # neither call imported zarr, dask, napari, ome-zarr or Qt
    assert float(elapsed) < 0.02
    get_reader(str(plate))
    read_plate(str(plate))
    assert capsys.readouterr() == ("", "")


def test_opening_reads_no_pixels(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_ours(tmp_path / "p.zarr")

    def forbidden(*args: object, **kwargs: object) -> None:
        raise AssertionError("opening read pixels")

    monkeypatch.setattr(PlateStore, "read_plane", forbidden)
    monkeypatch.setattr(PlateStore, "read_planes", forbidden)
    monkeypatch.setattr(PlateStore, "read_well", forbidden)
    layers = read_plate(str(path))
    assert [m["name"] for _, m, _ in layers] == ["DAPI", "GFP", "plate map"]


# -- the lazy mosaic as an array ------------------------------------------------------------


def test_mosaic_indexing_is_numpy_indexing(tmp_path: Path) -> None:
    data = layers_by_name(write_ours(tmp_path / "p.zarr"))["GFP"][0]
    whole = np.asarray(data)  # every field and z: (2, 2, Y, X)
    assert whole.shape == data.shape
    for key in [
        (1, 0),
        (-1, -2, slice(3, 40), slice(None, None, 3)),
        (slice(None), 1, 20, slice(50, 90, 7)),
        (Ellipsis, slice(10, 30)),
        (0, slice(None), slice(5, 60, 2), 60),
    ]:
        got = data[key]
        np.testing.assert_array_equal(np.asarray(got), whole[key], err_msg=str(key))
    # napari cuts the displayed region first, every leading axis whole, then the plane:
    view = data[:, :, 0:30, 0:70]
    assert not isinstance(view, np.ndarray)
    assert view.shape == (2, 2, 30, 70)
    np.testing.assert_array_equal(view[1, 0], whole[1, 0, :30, :70])
    np.testing.assert_array_equal(view[1][1, 5:7], whole[1, 1, 5:7, :70])
    with pytest.raises(IndexError):
        data[2]
    with pytest.raises(IndexError):
        data[0, 0, ::-1]


def test_shrink_is_the_block_mean() -> None:
    rng = np.random.default_rng(3)
    plane = rng.integers(0, 65535, (37, 50)).astype("u2")
    for halvings in range(4):
        f = 2**halvings
        h, w = -(-37 // f), -(-50 // f)
        padded = np.pad(plane, ((0, h * f - 37), (0, w * f - 50)), mode="edge").astype(float)
        expected = np.floor(padded.reshape(h, f, w, f).mean(axis=(1, 3)) + 0.5)
        for dtype in ("u2", "i4", "f4"):
            got = shrink(plane.astype(dtype), halvings)
            assert got.dtype == np.dtype(dtype)
            assert got.shape == (h, w)
            if dtype == "f4":
                np.testing.assert_allclose(
                    got, padded.reshape(h, f, w, f).mean(axis=(1, 3)), rtol=1e-6
                )
            else:
                np.testing.assert_array_equal(got, expected.astype(dtype))


# -- foreign plates read fast: chunks without zarr, wells through the first well ----------


def foreign_plate(path: Path, chunks: tuple[int, ...], dtype: str = "uint16") -> Path:
    """ome-zarr-py's standard layout: 3 wells x 2 fields, (c, z, y, x) 2 x 1 x 40 x 50, s0-s2."""
    import zarr

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from ome_zarr.format import FormatV05
        from ome_zarr.writer import write_image, write_plate_metadata, write_well_metadata

    fmt, rng = FormatV05(), np.random.default_rng(11)
    root = zarr.open_group(str(path), mode="w", zarr_format=3)
    wells = ["A/1", "A/2", "B/1"]
    write_plate_metadata(root, ["A", "B"], ["1", "2"], wells, fmt=fmt)
    for well in wells:
        group = root.require_group(well)
        write_well_metadata(group, [{"path": "0"}, {"path": "1"}], fmt=fmt)
        for field in range(2):
            data = rng.integers(0, 60000, (2, 1, 40, 50)).astype(dtype)
            write_image(
                data,
                group.require_group(str(field)),
                axes="czyx",
                fmt=fmt,
                scale_factors=(2, 4),
                storage_options={"chunks": chunks},
            )
    return path


def zarr_plane(path: Path, well: str, field: int, c: int, level: int) -> np.ndarray:
    import zarr

    array = zarr.open_array(str(path / well / str(field) / f"s{level}"), mode="r")
    return np.asarray(array[c, 0])


@pytest.mark.parametrize("chunks", [(2, 1, 40, 50), (1, 1, 16, 16)])
def test_foreign_plate_pixels_are_zarr_s_without_zarr_or_each_wells_metadata(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, chunks: tuple[int, ...]
) -> None:
    import zarr

    from napari_wellzarr.storage import foreignwells

    path = foreign_plate(tmp_path / "omz.zarr", chunks)
    opened: list[str] = []
    zarr_arrays: list[str] = []
    real_open, real_array = foreignwells.open_well, zarr.open_array

    def counting_open(root: Any, well_path: str, *args: Any) -> Any:
        opened.append(well_path)
        return real_open(root, well_path, *args)

    def counting_array(*args: Any, **kwargs: Any) -> Any:
        if "store" in kwargs:  # the store's reads (this test's own are by path)
            zarr_arrays.append(kwargs.get("path", ""))
        return real_array(*args, **kwargs)

    for module in (foreignwells, store_module):
        monkeypatch.setattr(module, "open_well", counting_open)
    monkeypatch.setattr(zarr, "open_array", counting_array)
    store = PlateStore.open(path)
    for name, well in (("A1", "A/1"), ("A2", "A/2"), ("B1", "B/1")):
        for level in range(3):
            planes = store.read_planes(
                name, [(f, c, 0, 0) for f in (1, 0) for c in (1, 0)], level=level
            )
            expected = [zarr_plane(path, well, f, c, level) for f in (1, 0) for c in (1, 0)]
            for got, want in zip(planes, expected, strict=True):
                assert got.dtype == want.dtype
                np.testing.assert_array_equal(got, want, err_msg=f"{name} level {level}")
    assert opened == ["A/1"]  # the template, read once; A2 and B1 are clones of it
    assert zarr_arrays == []  # every chunk read directly


def test_foreign_well_with_other_documents_is_opened_on_its_own(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import zarr

    from napari_wellzarr.storage import foreignwells

    path = foreign_plate(tmp_path / "omz.zarr", (2, 1, 40, 50))
    # B1 field 1, level 0: rewritten with another chunk shape (same pixels)
    where = path / "B/1/1/s0"
    data = np.asarray(zarr.open_array(str(where), mode="r")[...])
    doc = json.loads((where / "zarr.json").read_text())
    shutil.rmtree(where)
    array = zarr.create_array(str(where), shape=data.shape, dtype=data.dtype, chunks=(1, 1, 20, 25))
    array[...] = data
    new_doc = json.loads((where / "zarr.json").read_text())
    new_doc["attributes"] = doc.get("attributes", {})
    (where / "zarr.json").write_text(json.dumps(new_doc))
    opened: list[str] = []
    real_open = foreignwells.open_well

    def counting_open(root: Any, well_path: str, *args: Any) -> Any:
        opened.append(well_path)
        return real_open(root, well_path, *args)

    for module in (foreignwells, store_module):
        monkeypatch.setattr(module, "open_well", counting_open)
    store = PlateStore.open(path)
    for name, well in (("A1", "A/1"), ("A2", "A/2"), ("B1", "B/1")):
        got = store.read_planes(name, [(1, 1, 0, 0)], level=0)[0]
        np.testing.assert_array_equal(got, zarr_plane(path, well, 1, 1, 0), err_msg=name)
    assert opened == ["A/1", "B/1"]  # B1 from its own metadata, A2 a clone of A1


def test_foreign_chunk_damaged_or_missing(tmp_path: Path) -> None:
    path = foreign_plate(tmp_path / "omz.zarr", (2, 1, 40, 50))
    chunk = path / "A/2/0/s1/c/0/0/0/0"
    chunk.write_bytes(chunk.read_bytes()[:-7])
    (path / "B/1/1/s0/c/0/0/0/0").unlink()
    store = PlateStore.open(path)
    with pytest.raises(WellZarrError, match=r"A2.*s1"):
        store.read_planes("A2", [(0, 0, 0, 0)], level=1)
    missing = store.read_planes("B1", [(1, 0, 0, 0), (1, 1, 0, 0)], level=0)
    for got in missing:  # zarr's road: the fill value
        assert got.shape == (40, 50)
        assert not got.any()
