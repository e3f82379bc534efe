"""Tests for the numpy-only synthetic nuclei image generator."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from napari_wellzarr.testing.synthetic import (
    BACKGROUND_OFFSET,
    derive_seed,
    nuclei_plane,
    synthetic_well,
)

SYNTHETIC_PY = (
    Path(__file__).resolve().parents[2] / "src" / "napari_wellzarr" / "testing" / "synthetic.py"
)


def _background(plane: np.ndarray) -> float:
    return float(np.percentile(plane, 10))


def _sharpness(plane: np.ndarray) -> float:
    im = plane.astype(np.float64)
    return float(np.var(np.diff(im, axis=0)) + np.var(np.diff(im, axis=1)))


def _corr(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a.ravel().astype(np.float64), b.ravel().astype(np.float64))[0, 1])


# --- determinism ---------------------------------------------------------------------------------


@pytest.mark.parametrize("channel", [0, 1, 2])
def test_same_seed_same_pixels(channel: int) -> None:
    a = nuclei_plane((128, 160), seed=11, channel=channel)
    b = nuclei_plane((128, 160), seed=11, channel=channel)
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("channel", [0, 1, 2])
def test_different_seed_differs(channel: int) -> None:
    a = nuclei_plane((128, 128), seed=1, channel=channel)
    b = nuclei_plane((128, 128), seed=2, channel=channel)
    assert not np.array_equal(a, b)


def test_channels_and_z_differ() -> None:
    planes = [nuclei_plane((96, 96), seed=5, channel=c) for c in range(4)]
    for i in range(len(planes)):
        for j in range(i + 1, len(planes)):
            assert not np.array_equal(planes[i], planes[j])
    z0 = nuclei_plane((96, 96), seed=5, z=0)
    z1 = nuclei_plane((96, 96), seed=5, z=1)
    assert not np.array_equal(z0, z1)  # independent shot noise per slice


def test_synthetic_well_deterministic() -> None:
    a = synthetic_well(2, 2, 2, (48, 64), seed=3)
    b = synthetic_well(2, 2, 2, (48, 64), seed=3)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, synthetic_well(2, 2, 2, (48, 64), seed=4))


def test_derive_seed_stable_and_distinct() -> None:
    assert derive_seed(1, 2, 3) == derive_seed(1, 2, 3)
    seeds = {derive_seed(7, row, col) for row in range(16) for col in range(24)}
    assert len(seeds) == 16 * 24
    assert derive_seed(7, 0, 1) != derive_seed(7, 1, 0)
    assert all(0 <= s < 2**63 for s in seeds)
    with pytest.raises(ValueError, match="non-negative"):
        derive_seed(-1)
    with pytest.raises(ValueError, match="non-negative"):
        derive_seed(1, -2)


# --- dtype, shape, range -------------------------------------------------------------------------


@pytest.mark.parametrize("channel", [0, 1, 2, 3])
def test_default_dtype_shape_range(channel: int) -> None:
    plane = nuclei_plane(seed=0, channel=channel)
    assert plane.shape == (512, 512)
    assert plane.dtype == np.uint16
    assert int(plane.max()) <= 4095
    assert int(plane.min()) >= BACKGROUND_OFFSET - 1


@settings(max_examples=25, deadline=None)
@given(
    height=st.integers(8, 96),
    width=st.integers(8, 96),
    seed=st.integers(0, 2**63 - 1),
    channel=st.integers(0, 5),
    n_nuclei=st.one_of(st.none(), st.integers(0, 30)),
    defocus=st.floats(0.0, 10.0),
)
def test_any_shape_and_seed(
    height: int, width: int, seed: int, channel: int, n_nuclei: int | None, defocus: float
) -> None:
    plane = nuclei_plane(
        (height, width), seed=seed, channel=channel, n_nuclei=n_nuclei, defocus=defocus
    )
    assert plane.shape == (height, width)
    assert plane.dtype == np.uint16
    assert 0 <= int(plane.min()) <= int(plane.max()) <= 4095


@pytest.mark.parametrize(
    ("dtype", "bit_depth", "maximum"),
    [(np.uint8, 8, 255), (np.uint16, 16, 65535), (np.int32, 12, 4095), (np.uint16, 10, 1023)],
)
def test_other_dtypes_and_bit_depths(dtype: type, bit_depth: int, maximum: int) -> None:
    plane = nuclei_plane((64, 64), seed=2, dtype=dtype, bit_depth=bit_depth)
    assert plane.dtype == np.dtype(dtype)
    assert int(plane.min()) >= 0
    assert int(plane.max()) <= maximum
    assert int(plane.max()) > 2 * _background(plane)  # still has bright cells


@pytest.mark.parametrize(
    "kwargs",
    [
        {"seed": -1},
        {"seed": 1, "channel": -1},
        {"seed": 1, "z": -1},
        {"seed": 1, "defocus": -0.5},
        {"seed": 1, "n_nuclei": -3},
        {"seed": 1, "dtype": np.float32},
        {"seed": 1, "dtype": np.uint8, "bit_depth": 12},
        {"seed": 1, "dtype": np.int16, "bit_depth": 16},
        {"seed": 1, "bit_depth": 0},
        {"seed": 1, "shape": (4, 64)},
    ],
)
def test_invalid_arguments(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - several distinct messages
        nuclei_plane(**kwargs)  # type: ignore[arg-type]


# --- image content -------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1, 17, 123456789])
@pytest.mark.parametrize("channel", [0, 1, 2])
def test_plane_has_cell_structure(seed: int, channel: int) -> None:
    plane = nuclei_plane(seed=seed, channel=channel).astype(np.float64)
    background = _background(plane)
    assert 100 <= background <= 200, "dark background of ~100-200 counts"
    threshold = background + 8 * np.sqrt(background)
    foreground = float((plane > threshold).mean())
    assert 0.05 <= foreground <= 0.60
    brightest_decile = np.sort(plane.ravel())[-plane.size // 10 :].mean()
    assert brightest_decile >= 3 * background


def test_n_nuclei_controls_foreground() -> None:
    few = nuclei_plane((256, 256), seed=4, n_nuclei=3).astype(np.float64)
    many = nuclei_plane((256, 256), seed=4, n_nuclei=60).astype(np.float64)
    empty = nuclei_plane((256, 256), seed=4, n_nuclei=0).astype(np.float64)
    thr = _background(many) + 8 * np.sqrt(_background(many))
    assert (empty > thr).mean() < 0.001
    assert (few > thr).mean() < (many > thr).mean()


def test_channels_show_the_same_cells() -> None:
    nuclear = nuclei_plane((256, 256), seed=9, channel=0)
    cyto = nuclei_plane((256, 256), seed=9, channel=1)
    other = nuclei_plane((256, 256), seed=10, channel=1)
    assert _corr(nuclear, cyto) > 0.2
    assert _corr(nuclear, cyto) > _corr(nuclear, other) + 0.1


def test_channel_looks_differ() -> None:
    nuclear = nuclei_plane((256, 256), seed=3, channel=0).astype(np.float64)
    cyto = nuclei_plane((256, 256), seed=3, channel=1).astype(np.float64)
    spots = nuclei_plane((256, 256), seed=3, channel=2).astype(np.float64)

    def fg(p: np.ndarray) -> float:
        return float((p > _background(p) + 8 * np.sqrt(_background(p))).mean())

    assert fg(cyto) > fg(nuclear)  # cytoplasm covers more area
    assert np.percentile(cyto, 99) < np.percentile(nuclear, 99)  # ...but is dimmer
    # Spots: a few very bright small objects -> highest pixel-to-pixel variation per area.
    assert _sharpness(spots) / fg(spots) > _sharpness(cyto) / fg(cyto)


# --- wells and z ---------------------------------------------------------------------------------


def test_synthetic_well_shape_and_variation() -> None:
    well = synthetic_well(3, 2, 4, (32, 48), seed=derive_seed(1, 0, 0))
    assert well.shape == (3, 2, 4, 32, 48)
    assert well.dtype == np.uint16
    assert int(well.max()) <= 4095
    planes = well.reshape(-1, 32, 48)
    for i in range(len(planes)):
        for j in range(i + 1, len(planes)):
            assert not np.array_equal(planes[i], planes[j])
    other_well = synthetic_well(3, 2, 4, (32, 48), seed=derive_seed(1, 0, 1))
    assert not np.array_equal(well, other_well)


def test_synthetic_well_matches_nuclei_plane() -> None:
    seed = 77
    well = synthetic_well(2, 3, 1, (40, 40), seed=seed)
    for field in range(2):
        for c in range(3):
            expected = nuclei_plane((40, 40), seed=derive_seed(seed, field), channel=c)
            np.testing.assert_array_equal(well[field, c, 0], expected)


@pytest.mark.parametrize("seed", [0, 5])
def test_z_varies_smoothly_around_focus(seed: int) -> None:
    stack = synthetic_well(1, 1, 5, (128, 128), seed=seed)[0, 0]
    sharp = [_sharpness(stack[z]) for z in range(5)]
    assert int(np.argmax(sharp)) == 2  # middle slice in focus
    assert sharp[2] > sharp[1] > sharp[0]
    assert sharp[2] > sharp[3] > sharp[4]
    near = _corr(stack[2], stack[3])
    far = _corr(stack[2], stack[4])
    assert near > far > 0.5  # neighbouring slices resemble each other most


def test_synthetic_well_invalid() -> None:
    with pytest.raises(ValueError, match=">= 1"):
        synthetic_well(0, 1, 1, (16, 16), seed=1)
    with pytest.raises(ValueError, match="z_step"):
        synthetic_well(1, 1, 1, (16, 16), seed=1, z_step=-1.0)


# --- speed and import hygiene --------------------------------------------------------------------


def test_module_imports_numpy_only() -> None:
    code = (
        "import importlib.util, sys\n"
        f"spec = importlib.util.spec_from_file_location('wz_synthetic', {str(SYNTHETIC_PY)!r})\n"
        "mod = importlib.util.module_from_spec(spec)\n"
        "spec.loader.exec_module(mod)\n"
        "mod.nuclei_plane((16, 16), seed=1)\n"
        "heavy = {'napari', 'qtpy', 'PyQt5', 'PyQt6', 'PySide6', 'dask', 'zarr', 'ome_zarr',\n"
        "         'scipy', 'numcodecs'}\n"
        "loaded = sorted(heavy & {m.split('.')[0] for m in sys.modules})\n"
        "assert not loaded, loaded\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
