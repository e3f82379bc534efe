"""The npe2 sample plate and the demo entry point, without a viewer."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from napari_wellzarr import demo
from napari_wellzarr.core import PlateStore, StorageConfig, Well
from napari_wellzarr.plugin._sample_data import (
    SAMPLE_WELLS,
    synthetic_96_well_plate,
    write_synthetic_plate,
)
from napari_wellzarr.testing.synthetic import derive_seed, synthetic_well

if TYPE_CHECKING:
    from pathlib import Path

    import pytest


def test_sample_plate_is_a_real_plate_read_back() -> None:
    layers = synthetic_96_well_plate()
    names = [meta["name"] for _, meta, _ in layers]
    assert names == ["DAPI", "Phalloidin", "EdU", "nuclei", "plate map"]
    data, meta, kind = layers[1]
    assert kind == "image"
    assert meta["colormap"] == "#00FF00"
    layout = meta["metadata"]["wellzarr"]
    assert len(layout["rows"]) == 8
    assert len(layout["columns"]) == 12
    assert sorted(layout["wells"]) == sorted(SAMPLE_WELLS)
    # Written through the core: the plate on disk opens with PlateStore.
    store = PlateStore.open(layout["source"])
    assert store.wells() == sorted(SAMPLE_WELLS, key=lambda w: (w[0], w[1:]))
    (h, w), (py, px) = layout["tile"], layout["pitch"]
    f10 = Well.parse("F10")
    expected = synthetic_well(2, 3, 1, (128, 128), seed=derive_seed(2024, f10.row, f10.column))
    tile = np.asarray(
        data[1, 0, f10.row * py : f10.row * py + h, f10.column * px : f10.column * px + w]
    )
    np.testing.assert_array_equal(tile, expected[1, 1, 0])
    assert meta["scale"][-2:] == [0.65, 0.65]
    labels, label_meta, kind = layers[3]
    assert kind == "labels"
    assert label_meta["name"] == "nuclei"
    cells = np.asarray(
        labels[1, 0, f10.row * py : f10.row * py + h, f10.column * px : f10.column * px + w]
    )
    dapi = expected[1, 0, 0]
    assert cells.max() >= 2  # several nuclei, numbered
    assert dapi[cells > 0].mean() > 2 * dapi[cells == 0].mean()  # they sit on bright DAPI


def test_synthetic_plate_looks_like_nuclei(tmp_path: Path) -> None:
    path = write_synthetic_plate(tmp_path / "p.zarr", wells=("A01",), n_fields=1, shape=(128, 128))
    dapi = PlateStore.open(path).read_plane("A01", 0, 0, 0)
    background = np.percentile(dapi, 20)
    assert dapi.max() > 4 * background  # bright nuclei on a dark background
    assert 0.01 < (dapi > 2 * background).mean() < 0.6


def test_demo_writes_and_describes_a_plate(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "demo"
    assert demo.main(["--output", str(out), "--no-viewer"]) == 0
    printed = capsys.readouterr().out
    assert "8 rows x 12 columns = 96 wells" in printed
    assert "6 written: B02, B03, C05, D07, E10, G11" in printed
    assert "field=2 x c=3 x z=1 x y=256 x x=256  uint16" in printed
    assert f"compressor={StorageConfig().compressor.value}" in printed
    assert "bytes in" in printed
    assert demo.main(["--output", str(out), "--no-viewer"]) == 1  # refuses to overwrite
    assert "--overwrite" in capsys.readouterr().err
    assert demo.main(["--output", str(out), "--no-viewer", "--overwrite"]) == 0
