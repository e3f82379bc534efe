"""StorageConfig: every option validated, defaults, zarr codecs, chunk layouts, serialisation.

The rules the tests state independently of the implementation:
- OME-NGFF 0.4 is zarr v2, 0.5 is zarr v3; sharding exists only in zarr v3.
- zarr v3 defines blosc, zstd, gzip (and no compression); zlib and lz4 exist only as
  numcodecs extensions, so 0.5 refuses them.
- Levels: blosc 0..9, zlib/gzip 0..9, zstd -131072..22, lz4 is an *acceleration* 1..65537
  (higher = faster and larger); no compression has no level.
- Shuffle is a blosc option only.
- Standard plates: 6 (2x3), 12 (3x4), 24 (4x6), 48 (6x8), 96 (8x12), 384 (16x24), 1536 (32x48).
"""

from __future__ import annotations

import itertools
import json
from typing import Any

import numcodecs
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from zarr.codecs import BloscCodec, GzipCodec, ZstdCodec

from napari_wellzarr.core import (
    ChunkStrategy,
    Compressor,
    ConfigError,
    FieldArrangement,
    NgffVersion,
    PlateGeometry,
    Shuffle,
    StorageConfig,
)
from napari_wellzarr.storage.config import OVERVIEW_FROM_FULL_RESOLUTION_BYTES

VERSIONS = ("0.4", "0.5")
COMPRESSORS = ("blosc-zstd", "blosc-lz4", "zstd", "zlib", "gzip", "lz4", "none")
BLOSC = ("blosc-zstd", "blosc-lz4")
V3_ONLY_REFUSED = ("zlib", "lz4")
LEVEL_RANGE = {
    "blosc-zstd": (0, 9),
    "blosc-lz4": (0, 9),
    "zstd": (-131072, 22),
    "zlib": (0, 9),
    "gzip": (0, 9),
    "lz4": (1, 65537),
}
PLATES = {6: (2, 3), 12: (3, 4), 24: (4, 6), 48: (6, 8), 96: (8, 12), 384: (16, 24), 1536: (32, 48)}


def version_for(compressor: str) -> str:
    """A version on which ``compressor`` is allowed."""
    return "0.4" if compressor in V3_ONLY_REFUSED else "0.5"


# -- defaults -------------------------------------------------------------------------


def test_defaults_resolve() -> None:
    cfg = StorageConfig()
    assert cfg.compressor is Compressor.BLOSC_LZ4
    assert cfg.ngff_version is NgffVersion.V05
    assert cfg.zarr_format == 3
    assert cfg.chunks is ChunkStrategy.SHARDED
    assert cfg.chunk_strategy is ChunkStrategy.SHARDED
    assert cfg.shuffle is Shuffle.BIT
    assert cfg.level is not None
    assert LEVEL_RANGE["blosc-lz4"][0] <= cfg.level <= LEVEL_RANGE["blosc-lz4"][1]
    assert (cfg.plate.rows, cfg.plate.columns) == PLATES[96]
    assert cfg.fields is FieldArrangement.STACKED
    assert cfg.pyramid_levels is None  # automatic: a sparse whole-plate pyramid
    # 96 wells of 2048 x 2048: drawn whole 16x smaller, via an 8x level
    assert cfg.level_factors((2048, 2048)) == [1, 8, 16]
    assert cfg.level_shapes((4, 3, 1, 2048, 2050))[1:] == [(4, 3, 1, 256, 257), (4, 3, 1, 128, 129)]


@pytest.mark.parametrize(
    ("plate", "plane", "factors"),
    [
        (24, (512, 512), [1]),  # shown at full resolution: no level
        (96, (512, 512), [1, 4]),
        (384, (512, 512), [1, 8]),
        (1536, (2048, 2048), [1, 8, 64]),
        (384, (2160, 2560), [1, 8, 32]),
    ],
)
def test_automatic_pyramid_stores_the_whole_plate_level(
    plate: int, plane: tuple[int, int], factors: list[int]
) -> None:
    from napari_wellzarr.plugin.mosaic import MosaicGeometry

    cfg = StorageConfig(plate=plate)
    assert cfg.level_factors(plane) == factors
    rows, columns = cfg.plate.rows, cfg.plate.columns
    # the viewer's coarsest whole-plate level is the last one written
    assert 2 ** (MosaicGeometry.for_plate(rows, columns, plane).n_levels - 1) == factors[-1]
    assert StorageConfig(plate=plate, pyramid_levels=3).level_factors(plane) == [1, 2, 4]


@pytest.mark.parametrize(
    ("options", "well_bytes", "factors"),
    [
        ({}, 12 * 512 * 512 * 2, [1]),  # the plate overview, built from full resolution
        ({}, None, [1, 4]),  # the well's size not given: stored
        ({"ngff_version": "0.4"}, 12 * 512 * 512 * 2, [1, 4]),  # 0.4 plates get no overview
        ({"chunks": "plane"}, 12 * 512 * 512 * 2, [1, 4]),  # nor do unsharded ones
        ({}, OVERVIEW_FROM_FULL_RESOLUTION_BYTES // 96 + 1, [1, 4]),  # too large to read back
        ({}, OVERVIEW_FROM_FULL_RESOLUTION_BYTES // 96, [1]),
    ],
)
def test_a_4x_whole_plate_level_is_stored_only_where_no_overview_replaces_it(
    options: dict[str, Any], well_bytes: int | None, factors: list[int]
) -> None:
    """96 wells of 512 x 512: the level and an overview built from it add 1/16 each."""
    cfg = StorageConfig(plate=96, **options)
    assert cfg.level_factors((512, 512), well_bytes) == factors
    assert len(cfg.level_shapes((4, 3, 1, 512, 512), well_bytes)) == len(factors)
    # other factors do not depend on it: 8x and more add at most 1/63
    assert StorageConfig(plate=384).level_factors((512, 512), 1) == [1, 8]


def test_default_chunks_on_04_are_planes() -> None:
    cfg = StorageConfig(ngff_version="0.4")
    assert cfg.chunks is ChunkStrategy.PLANE
    assert cfg.zarr_format == 2


@pytest.mark.parametrize("compressor", [c for c in COMPRESSORS if c != "none"])
def test_default_level_lies_in_the_codec_range(compressor: str) -> None:
    cfg = StorageConfig(compressor=compressor, ngff_version=version_for(compressor))
    low, high = LEVEL_RANGE[compressor]
    assert cfg.level is not None
    assert low <= cfg.level <= high


def test_none_compressor_has_no_level_nor_shuffle() -> None:
    cfg = StorageConfig(compressor="none")
    assert cfg.level is None
    assert cfg.shuffle is None
    assert cfg.zarr_compressors() is None


@pytest.mark.parametrize("compressor", ["zstd", "zlib", "gzip", "lz4"])
def test_non_blosc_shuffle_resolves_to_none(compressor: str) -> None:
    cfg = StorageConfig(compressor=compressor, ngff_version="0.4", shuffle="none")
    assert cfg.shuffle is None


def test_enum_values_are_coerced_from_loose_strings() -> None:
    cfg = StorageConfig(
        compressor="BLOSC_LZ4", chunks="Plane", ngff_version=" 0.5 ", fields="PER_FIELD"
    )
    assert cfg.compressor is Compressor.BLOSC_LZ4
    assert cfg.chunks is ChunkStrategy.PLANE
    assert cfg.ngff_version is NgffVersion.V05
    assert cfg.fields is FieldArrangement.PER_FIELD


# -- refusals -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("option", "value", "allowed"),
    [
        ("compressor", "brotli", COMPRESSORS),
        ("compressor", "", COMPRESSORS),
        ("chunks", "tiles", ("well", "plane", "sharded")),
        ("ngff_version", "0.6", VERSIONS),
        ("ngff_version", 5, VERSIONS),
        ("fields", "mosaic", ("stacked", "per-field")),
        ("shuffle", "sideways", ("none", "byte", "bit")),
    ],
)
def test_unknown_enum_value_names_option_and_allowed_values(
    option: str, value: object, allowed: tuple[str, ...]
) -> None:
    with pytest.raises(ConfigError) as err:
        StorageConfig(**{option: value})
    message = str(err.value)
    assert option in message
    assert repr(value) in message
    for choice in allowed:
        assert repr(choice) in message, f"{choice!r} missing from: {message}"


def test_float_version_that_matches_is_accepted() -> None:
    # 0.4 as a number is what a JSON/YAML reader hands over for "0.4".
    assert StorageConfig(ngff_version=0.4).ngff_version is NgffVersion.V04  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("version", "compressor", "chunks"),
    list(itertools.product(VERSIONS, COMPRESSORS, ("well", "plane", "sharded"))),
)
def test_refused_combinations_are_exactly_the_spec_ones(
    version: str, compressor: str, chunks: str
) -> None:
    sharded_on_v2 = chunks == "sharded" and version == "0.4"
    numcodecs_on_v3 = compressor in V3_ONLY_REFUSED and version == "0.5"
    if not (sharded_on_v2 or numcodecs_on_v3):
        cfg = StorageConfig(ngff_version=version, compressor=compressor, chunks=chunks)
        assert cfg.chunks is ChunkStrategy(chunks)
        assert cfg.compressor is Compressor(compressor)
        return
    with pytest.raises(ConfigError) as err:
        StorageConfig(ngff_version=version, compressor=compressor, chunks=chunks)
    message = str(err.value)
    assert "ngff_version" in message
    if numcodecs_on_v3:
        assert "compressor" in message
        assert repr(compressor) in message
    else:
        assert "chunks" in message
        assert "sharded" in message


@pytest.mark.parametrize("compressor", list(LEVEL_RANGE))
def test_level_bounds_per_codec(compressor: str) -> None:
    low, high = LEVEL_RANGE[compressor]
    version = version_for(compressor)
    assert StorageConfig(compressor=compressor, level=low, ngff_version=version).level == low
    assert StorageConfig(compressor=compressor, level=high, ngff_version=version).level == high
    for bad in (low - 1, high + 1):
        with pytest.raises(ConfigError) as err:
            StorageConfig(compressor=compressor, level=bad, ngff_version=version)
        message = str(err.value)
        assert "level" in message
        assert str(bad) in message
        assert compressor in message
        assert f"{low}..{high}" in message


def test_lz4_level_is_described_as_an_acceleration() -> None:
    with pytest.raises(ConfigError, match="acceleration"):
        StorageConfig(compressor="lz4", level=0, ngff_version="0.4")


@pytest.mark.parametrize("bad", [3.0, "3", True, [3]])
def test_level_must_be_an_integer(bad: object) -> None:
    with pytest.raises(ConfigError, match="level"):
        StorageConfig(compressor="zstd", level=bad)  # type: ignore[arg-type]


def test_level_with_no_compression_is_refused() -> None:
    with pytest.raises(ConfigError) as err:
        StorageConfig(compressor="none", level=1)
    assert "level" in str(err.value)
    assert "none" in str(err.value)


@pytest.mark.parametrize("compressor", ["zstd", "zlib", "gzip", "lz4", "none"])
@pytest.mark.parametrize("shuffle", ["byte", "bit"])
def test_shuffle_for_non_blosc_is_refused(compressor: str, shuffle: str) -> None:
    with pytest.raises(ConfigError) as err:
        StorageConfig(compressor=compressor, shuffle=shuffle, ngff_version="0.4")
    message = str(err.value)
    assert "shuffle" in message
    assert compressor in message
    assert "blosc" in message


@pytest.mark.parametrize("bad", [0, 13, -1, True, 1.5, "2"])
def test_pyramid_levels_out_of_range(bad: object) -> None:
    with pytest.raises(ConfigError) as err:
        StorageConfig(pyramid_levels=bad)  # type: ignore[arg-type]
    assert "pyramid_levels" in str(err.value)
    assert "1..12" in str(err.value)


# -- plate formats --------------------------------------------------------------------


@pytest.mark.parametrize("wells", list(PLATES))
def test_standard_plate_formats(wells: int) -> None:
    for given_as in (wells, str(wells)):
        geometry = StorageConfig(plate=given_as).plate  # type: ignore[arg-type]
        assert (geometry.rows, geometry.columns) == PLATES[wells]
        assert geometry.n_wells == wells


@pytest.mark.parametrize(
    ("text", "shape"),
    [("16x24", (16, 24)), ("2X3", (2, 3)), (" 1x1 ", (1, 1)), ("32x48", (32, 48))],
)
def test_rows_x_columns_plate_formats(text: str, shape: tuple[int, int]) -> None:
    geometry = StorageConfig(plate=text).plate  # type: ignore[arg-type]
    assert (geometry.rows, geometry.columns) == shape
    assert StorageConfig(plate=shape).plate == geometry  # type: ignore[arg-type]
    assert StorageConfig(plate=PlateGeometry(*shape)).plate == geometry


@pytest.mark.parametrize(
    "bad",
    [7, 0, -96, 100, 1537, "abc", "16x", "x24", "0x5", "5x0", "axb", "", True, 1.5, (1, 2, 3)],
)
def test_invalid_plate_formats_are_refused(bad: object) -> None:
    with pytest.raises(ConfigError) as err:
        StorageConfig(plate=bad)  # type: ignore[arg-type]
    assert "plate" in str(err.value)


@pytest.mark.parametrize("bad", [7, 100, "500"])
def test_non_standard_well_count_lists_the_standard_ones(bad: object) -> None:
    with pytest.raises(ConfigError) as err:
        StorageConfig(plate=bad)  # type: ignore[arg-type]
    for wells in PLATES:
        assert str(wells) in str(err.value)


# -- what zarr gets --------------------------------------------------------------------


@pytest.mark.parametrize("shuffle", ["none", "byte", "bit"])
@pytest.mark.parametrize("compressor", BLOSC)
@pytest.mark.parametrize("level", [0, 5, 9])
def test_v3_blosc_codec_carries_level_and_shuffle(
    compressor: str, shuffle: str, level: int
) -> None:
    cfg = StorageConfig(compressor=compressor, level=level, shuffle=shuffle, ngff_version="0.5")
    (codec,) = cfg.zarr_compressors()
    assert isinstance(codec, BloscCodec)
    assert codec.clevel == level
    assert codec.cname.value == compressor.removeprefix("blosc-")
    expected = {"none": "noshuffle", "byte": "shuffle", "bit": "bitshuffle"}[shuffle]
    assert codec.shuffle.value == expected


@pytest.mark.parametrize("shuffle", ["none", "byte", "bit"])
@pytest.mark.parametrize("compressor", BLOSC)
def test_v2_blosc_codec_carries_level_and_shuffle(compressor: str, shuffle: str) -> None:
    cfg = StorageConfig(compressor=compressor, level=7, shuffle=shuffle, ngff_version="0.4")
    codec = cfg.zarr_compressors()
    assert isinstance(codec, numcodecs.Blosc)
    expected = {
        "none": numcodecs.Blosc.NOSHUFFLE,
        "byte": numcodecs.Blosc.SHUFFLE,
        "bit": numcodecs.Blosc.BITSHUFFLE,
    }[shuffle]
    assert codec.get_config() == {
        "id": "blosc",
        "cname": compressor.removeprefix("blosc-"),
        "clevel": 7,
        "shuffle": expected,
        "blocksize": 0,
    }


@pytest.mark.parametrize(
    ("compressor", "level", "cls"),
    [("zstd", -7, ZstdCodec), ("zstd", 22, ZstdCodec), ("gzip", 4, GzipCodec)],
)
def test_v3_plain_codecs_carry_level(compressor: str, level: int, cls: type) -> None:
    (codec,) = StorageConfig(compressor=compressor, level=level).zarr_compressors()
    assert isinstance(codec, cls)
    assert codec.level == level


@pytest.mark.parametrize(
    ("compressor", "level", "config"),
    [
        ("zstd", 11, {"id": "zstd", "level": 11}),
        ("zlib", 2, {"id": "zlib", "level": 2}),
        ("gzip", 8, {"id": "gzip", "level": 8}),
        ("lz4", 300, {"id": "lz4", "acceleration": 300}),
    ],
)
def test_v2_plain_codecs_carry_level(
    compressor: str, level: int, config: dict[str, object]
) -> None:
    codec = StorageConfig(compressor=compressor, level=level, ngff_version="0.4").zarr_compressors()
    assert isinstance(codec, numcodecs.abc.Codec)
    assert {k: v for k, v in codec.get_config().items() if k in config} == config


def test_lz4_level_works_as_acceleration() -> None:
    # Higher acceleration must trade ratio for speed: the output may not shrink.
    data = np.repeat(np.random.default_rng(1).integers(0, 60000, 40000, dtype="u2"), 4).tobytes()
    sizes = []
    for level in (1, 64, 65537):
        codec = StorageConfig(compressor="lz4", level=level, ngff_version="0.4").zarr_compressors()
        encoded = codec.encode(data)
        assert codec.decode(encoded) == data
        sizes.append(len(encoded))
    assert sizes == sorted(sizes)
    assert sizes[0] < sizes[-1]


@pytest.mark.parametrize("compressor", [c for c in COMPRESSORS if c != "none"])
def test_codecs_round_trip_bytes(compressor: str) -> None:
    data = np.arange(4096, dtype="u2").tobytes()
    codec = StorageConfig(compressor=compressor, ngff_version="0.4").zarr_compressors()
    assert bytes(codec.decode(codec.encode(data))) == data


# -- chunk layout ---------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(3, 2, 4, 32, 48), (2, 3, 1, 2, 5, 7), (1, 1, 1, 1, 1), (5, 9)])
@pytest.mark.parametrize("chunks", ["well", "plane", "sharded"])
def test_chunk_layout(chunks: str, shape: tuple[int, ...]) -> None:
    cfg = StorageConfig(chunks=chunks)
    got_chunks, got_shards = cfg.chunking(shape)
    plane = tuple(1 for _ in shape[:-2]) + shape[-2:]
    if chunks == "well":
        assert (got_chunks, got_shards) == (shape, None)
    elif chunks == "plane":
        assert (got_chunks, got_shards) == (plane, None)
    else:
        assert (got_chunks, got_shards) == (plane, shape)
    # A chunk is never larger than the array, and shards hold whole chunks.
    assert all(c <= s for c, s in zip(got_chunks, shape, strict=True))
    if got_shards is not None:
        assert all(s % c == 0 for s, c in zip(got_shards, got_chunks, strict=True))


@pytest.mark.parametrize("shape", [(7,), (), (2, -1, 4)])
def test_chunk_layout_refuses_non_images(shape: tuple[int, ...]) -> None:
    with pytest.raises(ConfigError, match="shape"):
        StorageConfig().chunking(shape)


def test_raw_bytes_per_chunk_follows_layout() -> None:
    shape = (2, 3, 4, 32, 48)
    assert StorageConfig(chunks="plane").raw_bytes_per_chunk(shape, 2) == 32 * 48 * 2
    assert StorageConfig(chunks="well").raw_bytes_per_chunk(shape, 2) == 2 * 3 * 4 * 32 * 48 * 2


# -- (de)serialisation ----------------------------------------------------------------


@st.composite
def valid_configs(draw: st.DrawFn) -> StorageConfig:
    version = draw(st.sampled_from(VERSIONS))
    allowed = [c for c in COMPRESSORS if version == "0.4" or c not in V3_ONLY_REFUSED]
    compressor = draw(st.sampled_from(allowed))
    level = None
    if compressor != "none":
        low, high = LEVEL_RANGE[compressor]
        level = draw(st.none() | st.integers(low, high))
    shuffle = (
        draw(st.none() | st.sampled_from(["none", "byte", "bit"])) if compressor in BLOSC else None
    )
    chunk_choices = ["well", "plane"] + (["sharded"] if version == "0.5" else [])
    chunks = draw(st.none() | st.sampled_from(chunk_choices))
    plate = draw(
        st.sampled_from(list(PLATES))
        | st.tuples(st.integers(1, 40), st.integers(1, 120)).map(lambda rc: f"{rc[0]}x{rc[1]}")
    )
    return StorageConfig(
        compressor=compressor,
        level=level,
        shuffle=shuffle,
        chunks=chunks,
        ngff_version=version,
        plate=plate,
        fields=draw(st.sampled_from(["stacked", "per-field"])),
        pyramid_levels=draw(st.integers(1, 12)),
    )


@settings(max_examples=100, deadline=None)
@given(valid_configs())
def test_to_dict_from_dict_round_trip(cfg: StorageConfig) -> None:
    as_json = json.loads(json.dumps(cfg.to_dict()))
    again = StorageConfig.from_dict(as_json)
    assert again == cfg
    assert again.to_dict() == as_json
    assert again.zarr_format == (2 if cfg.ngff_version is NgffVersion.V04 else 3)


@settings(max_examples=100, deadline=None)
@given(valid_configs(), st.integers(-200000, 200000))
def test_any_level_outside_the_codec_range_is_refused(cfg: StorageConfig, level: int) -> None:
    if cfg.compressor is Compressor.NONE:
        return
    low, high = LEVEL_RANGE[cfg.compressor.value]
    kwargs = {**cfg.to_dict(), "level": level}
    if low <= level <= high:
        assert StorageConfig.from_dict(kwargs).level == level
    else:
        with pytest.raises(ConfigError, match="level"):
            StorageConfig.from_dict(kwargs)


def test_from_dict_refuses_unknown_keys() -> None:
    data = {**StorageConfig().to_dict(), "chunk_size": 4}
    with pytest.raises(ConfigError) as err:
        StorageConfig.from_dict(data)
    assert "chunk_size" in str(err.value)


def test_from_dict_refuses_bad_values_naming_the_option() -> None:
    data = {**StorageConfig().to_dict(), "compressor": "rar"}
    with pytest.raises(ConfigError, match="compressor"):
        StorageConfig.from_dict(data)


def test_config_is_frozen() -> None:
    cfg = StorageConfig()
    with pytest.raises(AttributeError):
        cfg.level = 5  # type: ignore[misc]
