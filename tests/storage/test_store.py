"""PlateStore round trips: every allowed storage combination, dtypes, pyramids, time series.

Expectations come from the inputs: random pixels written are read back bit-identical;
metadata read back is what was passed in; level shapes halve y and x (rounding up); a
resolution level is the 2x2 mean of the level above (integers rounded to the nearest).
"""

from __future__ import annotations

import itertools
import math
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest
import zarr
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from napari_wellzarr.core import (
    Channel,
    ConfigError,
    PlaneKey,
    PlateStore,
    StorageConfig,
    WellDataError,
    WellNotFoundError,
)
from napari_wellzarr.testing.strategies import ngff_versions

if TYPE_CHECKING:
    from collections.abc import Callable

VERSIONS = ("0.4", "0.5")
CHUNKS = ("well", "plane", "sharded")
FIELDS = ("stacked", "per-field")
COMPRESSORS = ("blosc-zstd", "blosc-lz4", "zstd", "zlib", "gzip", "lz4", "none")
DTYPES = ("uint8", "uint16", "int32", "float32")
COMBOS = list(itertools.product(VERSIONS, CHUNKS, FIELDS, COMPRESSORS))
SHAPE = (2, 2, 3, 32, 48)  # field, c, z, y, x
PIXEL = (0.65, 0.325)
Z_STEP = 2.5


def refusal(version: str, chunks: str, compressor: str) -> str | None:
    """The option the spec rules out, or None (sharding: zarr v3 only; zlib/lz4: v2 only)."""
    if chunks == "sharded" and version == "0.4":
        return "chunks"
    if compressor in ("zlib", "lz4") and version == "0.5":
        return "compressor"
    return None


def level_shapes(shape: tuple[int, ...], levels: int) -> list[tuple[int, ...]]:
    out = [shape]
    for _ in range(levels - 1):
        *lead, y, x = out[-1]
        out.append((*lead, -(-y // 2), -(-x // 2)))
    return out


def assert_is_2x2_mean(level: np.ndarray, above: np.ndarray) -> None:
    """``level`` is the 2x2 block mean of ``above`` (edges repeated; integers rounded)."""
    y, x = above.shape[-2:]
    pad = [(0, 0)] * (above.ndim - 2) + [(0, y % 2), (0, x % 2)]
    padded = np.pad(above.astype(np.float64), pad, mode="edge")
    mean = padded.reshape(
        *padded.shape[:-2], padded.shape[-2] // 2, 2, padded.shape[-1] // 2, 2
    ).mean(axis=(-3, -1))
    assert level.shape == mean.shape
    assert level.dtype == above.dtype
    if np.issubdtype(level.dtype, np.integer):
        assert np.abs(level.astype(np.float64) - mean).max() <= 0.5
    else:
        np.testing.assert_allclose(level, mean, rtol=1e-5, atol=1e-3)


CHECKSUMS = ("crc32c", "crc32", "adler32", "fletcher32")


def codec_summary(codecs: Any) -> list[dict[str, Any]]:
    """Comparable descriptions of zarr v3 or numcodecs compressors, checksums left out."""
    if codecs is None:
        return []
    if not isinstance(codecs, list | tuple):
        codecs = [codecs]
    out = []
    for codec in codecs:
        if hasattr(codec, "get_config"):
            described = dict(codec.get_config())
            if described["id"] in CHECKSUMS:
                continue
        else:
            described = codec.to_dict()
            if described["name"] in CHECKSUMS:
                continue
            described.get("configuration", {}).pop("typesize", None)
        out.append(described)
    return out


def image_arrays(
    root: Path, well_path: str, stacked: bool, n_fields: int, n_levels: int
) -> list[Any]:
    images = ["0"] if stacked else [str(f) for f in range(n_fields)]
    return [
        zarr.open_array(str(root / well_path / i / str(lvl)), mode="r")
        for i in images
        for lvl in range(n_levels)
    ]


def planes_of(data: np.ndarray) -> list[tuple[PlaneKey, np.ndarray]]:
    """Every plane of a (field, c, z, y, x) or (field, t, c, z, y, x) array with its key."""
    if data.ndim == 5:
        return [(PlaneKey(f, c, z), data[f, c, z]) for f, c, z in np.ndindex(data.shape[:3])]
    return [(PlaneKey(f, c, z, t), data[f, t, c, z]) for f, t, c, z in np.ndindex(data.shape[:4])]


@pytest.mark.parametrize(("version", "chunks", "fields", "compressor"), COMBOS)
def test_round_trip_every_combination(
    tmp_path: Path,
    rng: np.random.Generator,
    pixels: Callable[..., np.ndarray],
    version: str,
    chunks: str,
    fields: str,
    compressor: str,
) -> None:
    options = {
        "ngff_version": version,
        "chunks": chunks,
        "fields": fields,
        "compressor": compressor,
    }
    refused = refusal(version, chunks, compressor)
    if refused is not None:
        with pytest.raises(ConfigError) as err:
            StorageConfig(**options)
        assert refused in str(err.value)
        assert repr(options[refused]) in str(err.value)
        return

    index = COMBOS.index((version, chunks, fields, compressor))
    dtype = np.dtype(DTYPES[index % len(DTYPES)])
    n_levels = 2 + index % 2
    cfg = StorageConfig(**options, plate=24, pyramid_levels=n_levels)
    root = tmp_path / "plate.zarr"
    first = pixels(SHAPE, dtype)
    second = pixels(SHAPE, dtype)
    window = (0.0, 100.0, 5.0, 50.0)
    names = {key: f"img_s{key.field}_w{key.c}_z{key.z:03d}.tif" for key, _ in planes_of(second)}

    with PlateStore.create(root, cfg) as store:
        info = store.write_well(
            "B02",
            first,
            channels=[Channel("DAPI", "0000FF", window), "GFP"],
            pixel_size=PIXEL,
            z_step=Z_STEP,
        )
        assert info.shape == SHAPE
        shuffled = planes_of(second)
        rng.shuffle(shuffled)  # type: ignore[arg-type]
        missing = store.write_planes(
            "C05",
            [(tuple(key), plane) for key, plane in shuffled],
            names=[names[key] for key, _ in shuffled],
            channels=["Hoechst", "Actin"],
        )
        assert missing == []

    store = PlateStore.open(root)
    assert store.read_only
    assert store.config == cfg
    assert StorageConfig.from_dict(store.config.to_dict()) == cfg
    assert store.wells() == ["B02", "C05"]
    assert store.rows == ("A", "B", "C", "D")
    assert store.columns == ("01", "02", "03", "04", "05", "06")

    for well, data in (("B02", first), ("C05", second)):
        back = store.read_well(well)
        assert back.dtype == dtype
        assert np.array_equal(back, data)
        keys = [key for key, _ in planes_of(data)]
        rng.shuffle(keys)  # type: ignore[arg-type]
        for key, plane in zip(keys, store.read_planes(well, keys), strict=True):
            assert plane.dtype == dtype
            assert np.array_equal(plane, data[key.field, key.c, key.z])
        f, c, z = (int(rng.integers(n)) for n in SHAPE[:3])
        assert np.array_equal(store.read_plane(well, f, c, z), data[f, c, z])
        assert np.array_equal(store.read_plane(well, field=1, c=1, z=2), data[1, 1, 2])

    info = store.well_info("B02")
    assert info.axes == ("field", "c", "z", "y", "x")
    assert info.shape == SHAPE
    assert info.dtype == dtype
    assert info.stacked == (fields == "stacked")
    assert info.image_paths == (("0",) if fields == "stacked" else ("0", "1"))
    assert [ch.label for ch in info.channels] == ["DAPI", "GFP"]
    assert info.channels[0].color == "0000FF"
    assert info.channels[0].window == window
    gfp = info.channels[1].window
    assert gfp is not None
    assert gfp[2:] == (float(first[:, 1].min()), float(first[:, 1].max()))
    assert gfp[0] <= gfp[2] <= gfp[3] <= gfp[1]
    assert info.scale == (1.0, 1.0, Z_STEP, *PIXEL)
    assert info.unit == "micrometer"
    assert list(info.level_shapes) == level_shapes(SHAPE, n_levels)
    assert info.n_levels == n_levels
    assert info.n_fields == SHAPE[0]
    assert info.n_channels == SHAPE[1]

    second_info = store.well_info("C05")
    assert [ch.label for ch in second_info.channels] == ["Hoechst", "Actin"]
    assert dict(second_info.plane_names) == {name: key for key, name in names.items()}
    for key, name in names.items():
        assert store.plane_key("C05", name) == key

    above = first
    for level in range(1, n_levels):
        got = store.read_well("B02", level=level)
        assert got.shape == level_shapes(SHAPE, n_levels)[level]
        assert_is_2x2_mean(got, above)
        assert np.array_equal(store.read_plane("B02", 1, 0, 2, level=level), got[1, 0, 2])
        above = got

    # What is on disk: the configured chunks, shards and codec.
    for array in image_arrays(root, "B/02", fields == "stacked", SHAPE[0], n_levels):
        expected_chunks, expected_shards = cfg.chunking(array.shape)
        assert array.chunks == expected_chunks
        assert array.shards == expected_shards
        assert codec_summary(list(array.compressors)) == codec_summary(cfg.zarr_compressors())
        assert array.metadata.zarr_format == cfg.zarr_format


@pytest.mark.parametrize(
    "dtype",
    [
        "uint8",
        "int8",
        "uint16",
        "int16",
        "uint32",
        "int32",
        "uint64",
        "int64",
        "float32",
        "float64",
    ],
)
def test_every_supported_dtype_round_trips(
    make_plate: Callable[..., Path],
    pixels: Callable[..., np.ndarray],
    ngff_version: str,
    dtype: str,
) -> None:
    data = pixels((1, 2, 1, 16, 24), dtype)
    root = make_plate({"A01": data}, ngff_version=ngff_version, pyramid_levels=2)
    store = PlateStore.open(root)
    back = store.read_well("A01")
    assert back.dtype == np.dtype(dtype)
    assert np.array_equal(back, data)
    assert_is_2x2_mean(store.read_well("A01", level=1), data)


@pytest.mark.parametrize("dtype", [">u2", ">i4", ">f4"])
def test_non_native_byte_order_round_trips(
    tmp_path: Path, pixels: Callable[..., np.ndarray], dtype: str
) -> None:
    # Big-endian pixels (raw camera dumps, FITS, Java tools) are the same numbers.
    data = pixels((1, 2, 1, 8, 8), dtype.lstrip(">")).astype(dtype)
    root = tmp_path / "p.zarr"
    with PlateStore.create(root) as store:
        store.write_well("A01", data)
        store.write_planes("A02", [((0, 0, 0), data[0, 0, 0]), ((0, 1, 0), data[0, 1, 0])])
    store = PlateStore.open(root)
    for well in ("A01", "A02"):
        back = store.read_well(well)
        assert back.dtype.kind == data.dtype.kind
        assert back.dtype.itemsize == data.dtype.itemsize
        assert np.array_equal(back, data)


def test_strided_and_fortran_arrays_round_trip(
    make_plate: Callable[..., Path], pixels: Callable[..., np.ndarray], ngff_version: str
) -> None:
    wide = pixels((2, 2, 3, 8, 32))
    strided = wide[..., ::2]
    fortran = np.asfortranarray(wide)
    transposed = pixels((2, 2, 3, 16, 8)).swapaxes(-1, -2)
    wells = {"A01": strided, "A02": fortran, "A03": transposed}
    store = PlateStore.open(make_plate(wells, ngff_version=ngff_version))
    for well, data in (("A01", strided), ("A02", fortran), ("A03", transposed)):
        assert np.array_equal(store.read_well(well), data)


def test_float_wells_with_nan_and_inf_round_trip(
    make_plate: Callable[..., Path], pixels: Callable[..., np.ndarray], ngff_version: str
) -> None:
    data = pixels((1, 2, 1, 16, 24), "float32")
    data[0, 0, 0, 0, :3] = [np.nan, np.inf, -np.inf]
    root = make_plate({"A01": data}, ngff_version=ngff_version)
    back = PlateStore.open(root).read_well("A01")
    assert np.array_equal(back, data, equal_nan=True)


@pytest.mark.parametrize("chunks", ["well", "plane"])
def test_time_series_per_field(
    tmp_path: Path,
    rng: np.random.Generator,
    pixels: Callable[..., np.ndarray],
    ngff_version: str,
    chunks: str,
) -> None:
    shape = (2, 3, 2, 2, 16, 24)  # field, t, c, z, y, x
    cfg = StorageConfig(
        ngff_version=ngff_version, chunks=chunks, fields="per-field", pyramid_levels=2
    )
    series = pixels(shape, "uint16")
    other = pixels(shape, "uint16")
    root = tmp_path / "ts.zarr"
    with PlateStore.create(root, cfg) as store:
        store.write_well("D01", series, pixel_size=0.5, z_step=1.5)
        shuffled = planes_of(other)
        rng.shuffle(shuffled)  # type: ignore[arg-type]
        assert store.write_planes("D02", shuffled) == []
    store = PlateStore.open(root)
    for well, data in (("D01", series), ("D02", other)):
        info = store.well_info(well)
        assert info.axes == ("field", "t", "c", "z", "y", "x")
        assert info.shape == shape
        assert np.array_equal(store.read_well(well), data)
        for key, plane in planes_of(data)[::5]:
            assert np.array_equal(store.read_plane(well, key.field, key.c, key.z, key.t), plane)
        keys = [key for key, _ in planes_of(data)]
        for key, plane in zip(keys, store.read_planes(well, keys), strict=True):
            assert np.array_equal(plane, data[key.field, key.t, key.c, key.z])
    assert store.well_info("D01").scale == (1.0, 1.0, 1.0, 1.5, 0.5, 0.5)
    assert list(store.well_info("D01").level_shapes) == level_shapes(shape, 2)


def test_time_series_refused_when_stacked(
    tmp_path: Path, pixels: Callable[..., np.ndarray], ngff_version: str
) -> None:
    root = tmp_path / "ts.zarr"
    store = PlateStore.create(root, StorageConfig(ngff_version=ngff_version, fields="stacked"))
    with pytest.raises(WellDataError) as err:
        store.write_well("D01", pixels((2, 3, 1, 1, 8, 8)))
    assert "D01" in str(err.value)
    assert "per-field" in str(err.value)
    with pytest.raises(WellDataError, match="per-field"):
        store.write_planes("D01", [((0, 0, 0, 1), pixels((8, 8)))])
    store.close()
    assert "D01" not in store
    assert not (root / "D" / "01").exists()
    with pytest.raises(WellNotFoundError, match="D01"):
        PlateStore.open(root).read_well("D01")


def test_time_plane_in_a_well_without_time_is_refused(
    make_plate: Callable[..., Path], pixels: Callable[..., np.ndarray]
) -> None:
    root = make_plate({"A01": pixels((1, 1, 1, 8, 8))})
    with pytest.raises(WellDataError, match="t=1"):
        PlateStore.open(root).read_plane("A01", 0, 0, 0, t=1)


def test_write_planes_fills_missing_planes_with_zero(
    tmp_path: Path, pixels: Callable[..., np.ndarray]
) -> None:
    root = tmp_path / "p.zarr"
    plane = pixels((8, 8))
    with PlateStore.create(root) as store:
        missing = store.write_planes("A01", [((1, 1, 0), plane)], shape=(2, 2, 1))
    assert sorted(missing) == sorted(
        PlaneKey(f, c, 0) for f in range(2) for c in range(2) if (f, c) != (1, 1)
    )
    back = PlateStore.open(root).read_well("A01")
    assert back.shape == (2, 2, 1, 8, 8)
    assert np.array_equal(back[1, 1, 0], plane)
    back[1, 1, 0] = 0
    assert not back.any()


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    ngff_versions,
    st.tuples(st.integers(1, 3), st.integers(1, 3), st.integers(1, 3)),
    st.data(),
)
def test_planes_land_by_coordinate_never_by_order(
    version: str, dims: tuple[int, int, int], data: st.DataObject
) -> None:
    keys = [PlaneKey(f, c, z) for f, c, z in np.ndindex(dims)]
    chosen = data.draw(st.lists(st.sampled_from(keys), min_size=1, unique=True))
    chosen = data.draw(st.permutations(chosen))
    rng = np.random.default_rng(len(chosen))
    planes = {key: rng.integers(1, 60000, (4, 6), dtype="u2") for key in chosen}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "p.zarr"
        with PlateStore.create(root, StorageConfig(ngff_version=version)) as store:
            missing = store.write_planes("B02", [(k, planes[k]) for k in chosen], shape=dims)
        assert set(missing) == set(keys) - set(chosen)
        back = PlateStore.open(root).read_well("B02")
        assert back.shape == (*dims, 4, 6)
        for key in keys:
            expected = planes.get(key, np.zeros((4, 6), "u2"))
            assert np.array_equal(back[key.field, key.c, key.z], expected)


def test_session_wells_are_listed_on_flush(
    tmp_path: Path, pixels: Callable[..., np.ndarray]
) -> None:
    root = tmp_path / "p.zarr"
    store = PlateStore.create(root, StorageConfig(plate=24))
    store.write_well("A02", pixels((1, 1, 1, 8, 8)))
    assert "A02" in store
    assert store.wells() == ["A02"]
    store.flush()
    assert PlateStore.open(root).wells() == ["A02"]
    store.write_well("A01", pixels((1, 1, 1, 8, 8)))
    store.close()
    assert PlateStore.open(root).wells() == ["A01", "A02"]
    assert "Z99" not in store
    assert 3 not in store  # type: ignore[operator]


def test_reopened_plate_keeps_its_config_for_new_wells(
    make_plate: Callable[..., Path], pixels: Callable[..., np.ndarray]
) -> None:
    cfg = StorageConfig(
        ngff_version="0.4", compressor="zlib", level=2, chunks="well", fields="per-field", plate=12
    )
    root = make_plate(config=cfg)
    data = pixels((2, 1, 2, 8, 8))
    with PlateStore.open(root, "r+") as store:
        assert store.config == cfg
        store.write_well("C4", data)
    store = PlateStore.open(root)
    assert store.wells() == ["C04"]
    assert np.array_equal(store.read_well("c4"), data)
    assert not store.well_info("C04").stacked
    (array,) = image_arrays(root, "C/04", False, 1, 1)
    assert codec_summary(list(array.compressors)) == [{"id": "zlib", "level": 2}]
    assert array.chunks == (1, 2, 8, 8)


def test_read_planes_sharing_one_chunk(
    make_plate: Callable[..., Path], pixels: Callable[..., np.ndarray], ngff_version: str
) -> None:
    data = pixels((3, 2, 2, 8, 8))
    store = PlateStore.open(make_plate({"A01": data}, ngff_version=ngff_version, chunks="well"))
    keys = [PlaneKey(2, 1, 0), PlaneKey(0, 0, 1), PlaneKey(2, 1, 0)]
    got = store.read_planes("A01", keys)
    assert [np.array_equal(g, data[k.field, k.c, k.z]) for g, k in zip(got, keys, strict=True)] == [
        True
    ] * 3
    assert math.prod(got[0].shape) == 64
