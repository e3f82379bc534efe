"""Hostile or broken zarr array documents and chunks: refused with the project's own error.

A plate can come from anywhere: its array documents may declare any shape, data type,
chunking or codec, and its chunks may hold anything.  Whatever they say, a read returns
the pixels that were written, or raises a :class:`WellZarrError` naming the array, before
allocating more memory than the machine has; it never returns uninitialised memory, and
the plate's other wells still read exactly.

Base plates are written once per module (``plates``) and copied per test.
"""

from __future__ import annotations

import copy
import json
import re
import shutil
import struct
import tracemalloc
import warnings
from typing import TYPE_CHECKING, Any

import numcodecs
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from napari_wellzarr.core import PlateStore, StorageConfig
from napari_wellzarr.errors import CorruptDataError, MetadataError, WellZarrError
from napari_wellzarr.storage import memory
from napari_wellzarr.storage.validation import check_plate
from napari_wellzarr.testing.strategies import DELETE, array_document_mutations

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

SHAPE = (2, 1, 1, 16, 16)  # (field, c, z, y, x)
_RNG = np.random.default_rng(20261124)
GOOD = _RNG.integers(0, 2**16, SHAPE, dtype="u2")  # well A01
VICTIM = _RNG.integers(0, 2**16, SHAPE, dtype="u2")  # well B02, the one damaged
ARRAY = "B/02/0/0"  # B02's level-0 array, as error messages name it


# (ngff_version, chunks): the three roads a plane read takes.
SHARDED = ("0.5", "sharded")  # the core's direct shard reader (ShardGrid)
PLANE_V3 = ("0.5", "plane")  # zarr-python, zarr v3
PLANE_V2 = ("0.4", "plane")  # zarr-python, zarr v2


# -- base plates, written once ---------------------------------------------------------------


@pytest.fixture(scope="module")
def plates(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., Path]:
    """``plates(ngff, chunks, compressor="blosc-lz4", labels=False)``: a clean base plate.

    A01 holds ``GOOD``, B02 holds ``VICTIM``; each configuration is written once per
    module.  Tests must copy it (``copy_plate``) before damaging anything.
    """
    made: dict[tuple[Any, ...], Path] = {}
    base = tmp_path_factory.mktemp("base-plates")

    def make(ngff: str, chunks: str, compressor: str = "blosc-lz4", labels: bool = False) -> Path:
        key = (ngff, chunks, compressor, labels)
        if key not in made:
            root = base / f"{ngff}-{chunks}-{compressor}-{labels}.zarr"
            config = StorageConfig(
                plate=24, ngff_version=ngff, chunks=chunks, compressor=compressor
            )
            with PlateStore.create(root, config) as store:
                store.write_well("A01", GOOD)
                cells = {"cells": (VICTIM[:, 0] % 7).astype("u2")} if labels else None
                store.write_well("B02", VICTIM, labels=cells)
            made[key] = root
        return made[key]

    return make


def copy_plate(source: Path, tmp_path: Path) -> Path:
    root = tmp_path / "plate.zarr"
    shutil.copytree(source, root)
    return root


def doc_path(root: Path, ngff: str, array: str = ARRAY) -> Path:
    return root / array / ("zarr.json" if ngff == "0.5" else ".zarray")


def edit_doc(
    root: Path, ngff: str, edit: Callable[[dict[str, Any]], Any], array: str = ARRAY
) -> None:
    path = doc_path(root, ngff, array)
    doc = json.loads(path.read_text())
    edit(doc)
    path.write_text(json.dumps(doc))


def assert_good_well_reads(store: PlateStore) -> None:
    """A01, untouched, still reads exactly: plane by plane and whole."""
    np.testing.assert_array_equal(store.read_plane("A01", 1, 0, 0), GOOD[1, 0, 0])
    np.testing.assert_array_equal(store.read_well("A01"), GOOD)


# -- crafted shards: zarr's sharding_indexed layout, chunks then index then crc32c ------------


def _crc32c(data: bytes) -> bytes:
    import google_crc32c

    return int(google_crc32c.value(data)).to_bytes(4, "little")


def shard_file(doc: dict[str, Any], chunks: list[bytes]) -> bytes:
    """A shard file of ``doc``'s layout holding the encoded ``chunks`` in index order."""
    sharding = doc["codecs"][0]["configuration"]
    chunk_crc = sharding["codecs"][-1]["name"] == "crc32c"
    body, index = b"", []
    for chunk in chunks:
        stored = chunk + _crc32c(chunk) if chunk_crc else chunk
        index.append((len(body), len(stored)))
        body += stored
    tail = np.asarray(index, "<u8").tobytes()
    if sharding["index_codecs"][-1]["name"] == "crc32c":
        tail += _crc32c(tail)
    return body + tail


ENCODERS: dict[str, Callable[[bytes], bytes]] = {
    "blosc-lz4": lambda raw: bytes(numcodecs.Blosc("lz4", 9, 2, typesize=2).encode(raw)),
    "blosc-zstd": lambda raw: bytes(numcodecs.Blosc("zstd", 3, 2, typesize=2).encode(raw)),
    "zstd": lambda raw: bytes(numcodecs.Zstd(3).encode(raw)),
    "gzip": lambda raw: bytes(numcodecs.GZip(6).encode(raw)),
    "none": lambda raw: raw,
}


def zstd_raw_frame(payload: bytes, *, declare_size: bool) -> bytes:
    """A zstd frame storing ``payload`` in one raw block, with or without its content size."""
    magic = struct.pack("<I", 0xFD2FB528)
    if declare_size:  # single segment, 4-byte content size
        header = bytes([0xA0]) + struct.pack("<I", len(payload))
    else:  # no content size: a 1 KiB window descriptor instead
        header = bytes([0x00, 0x00])
    block = ((len(payload) << 3) | 1).to_bytes(3, "little")  # last block, raw
    return magic + header + block + payload


PLANE_BYTES = VICTIM[0, 0, 0].tobytes()
SHORT = np.array([7], "<u2").tobytes()  # 2 bytes where the plane holds 512


def _read_b02_plane_0(root: Path) -> np.ndarray:
    return PlateStore.open(root).read_plane("B02", 0, 0, 0)


def open_and_read_b02(store: PlateStore) -> tuple[Any, np.ndarray]:
    """B02's ``well_info`` and its first plane."""
    return store.well_info("B02"), store.read_plane("B02", 0, 0, 0)


# -- 1. a chunk that decodes to another size than its plane ----------------------------------


@pytest.mark.parametrize("size", ["short", "long"])
@pytest.mark.parametrize("compressor", ["blosc-lz4", "blosc-zstd", "zstd", "gzip", "none"])
def test_a_sharded_chunk_decoding_to_another_size_is_refused(
    plates: Callable[..., Path], tmp_path: Path, compressor: str, size: str
) -> None:
    # Before: a chunk that decodes to 2 bytes left 510 bytes of np.empty as "pixels".
    root = copy_plate(plates(*SHARDED, compressor), tmp_path)
    doc = json.loads(doc_path(root, "0.5").read_text())
    encode = ENCODERS[compressor]
    damaged = SHORT if size == "short" else PLANE_BYTES + SHORT
    shard = shard_file(doc, [encode(damaged), encode(VICTIM[1, 0, 0].tobytes())])
    (root / ARRAY / "c.0.0.0.0.0").write_bytes(shard)

    store = PlateStore.open(root)
    with pytest.raises(CorruptDataError) as err:
        store.read_plane("B02", 0, 0, 0)
    message = str(err.value)
    assert ARRAY in message
    assert "c.0.0.0.0.0" in message
    assert "inner chunk (0, 0, 0)" in message
    with pytest.raises(CorruptDataError, match=ARRAY):
        store.read_well("B02")
    # The shard's other chunk is whole: its plane still reads, and so does the other well.
    np.testing.assert_array_equal(store.read_plane("B02", 1, 0, 0), VICTIM[1, 0, 0])
    assert_good_well_reads(store)


@pytest.mark.parametrize(
    ("frames", "ok"),
    [
        ([(SHORT, True)], False),  # declares 2 bytes
        ([(SHORT, False)], False),  # declares nothing, holds 2 bytes
        ([(PLANE_BYTES, False)], True),  # declares nothing, holds the plane
        ([(PLANE_BYTES[:2], True), (PLANE_BYTES[2:], True)], True),  # 2 + 510 declared
        ([(PLANE_BYTES[:2], True), (PLANE_BYTES[2:], False)], True),
        ([(SHORT, True), (SHORT, True)], False),  # 2 + 2 declared
        ([(PLANE_BYTES, True), (SHORT, True)], False),  # one frame too many
    ],
)
def test_zstd_frames_are_read_only_when_they_fill_the_plane_exactly(
    plates: Callable[..., Path], tmp_path: Path, frames: list[tuple[bytes, bool]], ok: bool
) -> None:
    root = copy_plate(plates(*SHARDED, "zstd"), tmp_path)
    doc = json.loads(doc_path(root, "0.5").read_text())
    chunk = b"".join(zstd_raw_frame(p, declare_size=d) for p, d in frames)
    other = ENCODERS["zstd"](VICTIM[1, 0, 0].tobytes())
    (root / ARRAY / "c.0.0.0.0.0").write_bytes(shard_file(doc, [chunk, other]))
    store = PlateStore.open(root)
    if ok:
        np.testing.assert_array_equal(store.read_plane("B02", 0, 0, 0), VICTIM[0, 0, 0])
    else:
        with pytest.raises(CorruptDataError, match=rf"{ARRAY}.*inner chunk \(0, 0, 0\)"):
            store.read_plane("B02", 0, 0, 0)
    np.testing.assert_array_equal(store.read_plane("B02", 1, 0, 0), VICTIM[1, 0, 0])


def test_a_blosc_frame_whose_header_lies_about_its_length_is_refused(
    plates: Callable[..., Path], tmp_path: Path
) -> None:
    # No crc32c to catch it (a foreign plate): blosc 1 would read past the chunk's end.
    root = copy_plate(plates(*SHARDED), tmp_path)

    def no_crc(doc: dict[str, Any]) -> None:
        sharding = doc["codecs"][0]["configuration"]
        sharding["codecs"] = [c for c in sharding["codecs"] if c["name"] != "crc32c"]

    edit_doc(root, "0.5", no_crc)
    doc = json.loads(doc_path(root, "0.5").read_text())
    frame = ENCODERS["blosc-lz4"](PLANE_BYTES)
    chunks = [frame[: len(frame) - 8], ENCODERS["blosc-lz4"](VICTIM[1, 0, 0].tobytes())]
    (root / ARRAY / "c.0.0.0.0.0").write_bytes(shard_file(doc, chunks))
    with pytest.raises(CorruptDataError, match="blosc header"):
        _read_b02_plane_0(root)


def test_deep_validation_reports_a_chunk_that_decodes_short(
    plates: Callable[..., Path], tmp_path: Path
) -> None:
    root = copy_plate(plates(*SHARDED), tmp_path)
    doc = json.loads(doc_path(root, "0.5").read_text())
    encode = ENCODERS["blosc-lz4"]
    shard = shard_file(doc, [encode(SHORT), encode(VICTIM[1, 0, 0].tobytes())])
    (root / ARRAY / "c.0.0.0.0.0").write_bytes(shard)
    check = check_plate(root, deep=True)
    assert not check.ok
    assert any("B02" in p and ARRAY in p and "decodes to 2 bytes" in p for p in check.problems)


@pytest.mark.parametrize(
    ("ngff", "chunks", "compressor"),
    [("0.5", "plane", c) for c in ("blosc-lz4", "blosc-zstd", "zstd", "gzip", "none")]
    + [("0.4", "plane", c) for c in ("blosc-lz4", "zstd", "zlib", "gzip", "lz4", "none")],
)
def test_a_short_chunk_on_zarrs_road_is_refused(
    plates: Callable[..., Path], tmp_path: Path, ngff: str, chunks: str, compressor: str
) -> None:
    # Plane chunks (no sharding) are decoded by zarr-python: a short chunk must not
    # read either.  zarr v3 chunks end with their crc32c, as written here.
    root = copy_plate(plates(ngff, chunks, compressor), tmp_path)
    codecs = {
        "zlib": numcodecs.Zlib(),
        "lz4": numcodecs.LZ4(),
    }
    encoded = bytes(codecs[compressor].encode(SHORT)) if compressor in codecs else None
    encoded = ENCODERS[compressor](SHORT) if encoded is None else encoded
    if ngff == "0.5":
        codec_names = [c["name"] for c in json.loads(doc_path(root, ngff).read_text())["codecs"]]
        encoded += _crc32c(encoded) if codec_names[-1] == "crc32c" else b""
    key = "c.0.0.0.0.0" if ngff == "0.5" else "0/0/0/0/0"
    (root / ARRAY / key).write_bytes(encoded)
    store = PlateStore.open(root)
    with pytest.raises(CorruptDataError) as err:
        store.read_plane("B02", 0, 0, 0)
    assert ARRAY in str(err.value)
    assert key in str(err.value)
    np.testing.assert_array_equal(store.read_plane("B02", 1, 0, 0), VICTIM[1, 0, 0])
    assert_good_well_reads(store)


# -- 2. data types ----------------------------------------------------------------------------


@pytest.mark.parametrize(("ngff", "chunks"), [SHARDED, PLANE_V3, PLANE_V2])
@pytest.mark.parametrize("dtype", ["float64", "uint32", "uint8", "int64"])
def test_a_data_type_of_another_size_is_refused_when_read(
    plates: Callable[..., Path], tmp_path: Path, ngff: str, chunks: str, dtype: str
) -> None:
    root = copy_plate(plates(ngff, chunks), tmp_path)
    key = "data_type" if ngff == "0.5" else "dtype"
    value = dtype if ngff == "0.5" else np.dtype(dtype).str
    edit_doc(root, ngff, lambda d: d.update({key: value}))
    store = PlateStore.open(root)
    with pytest.raises((CorruptDataError, MetadataError)) as err:
        store.read_plane("B02", 0, 0, 0)
    assert ARRAY in str(err.value)
    with pytest.raises((CorruptDataError, MetadataError), match=ARRAY):
        store.read_well("B02")
    assert_good_well_reads(store)


V3_BAD_TYPES = [None, DELETE, {"name": "x"}, {"name": "uint16"}, "x", "", "uint16 ", "<u2"]
V3_BAD_TYPES += [["uint16"], 16, True, "float128", "r16", "string", "bytes"]
V2_BAD_TYPES = [None, DELETE, {"name": "x"}, "|O", "<U4", "<u3", "u2,u2", "<M8[s]", "<f16"]
V2_BAD_TYPES += [[["a", "<u2"]], "uint16", "a", "\x00", "<u2 ", 2]


@pytest.mark.parametrize(
    ("ngff", "value"),
    [("0.5", v) for v in V3_BAD_TYPES] + [("0.4", v) for v in V2_BAD_TYPES],
    ids=repr,
)
def test_a_data_type_that_is_not_a_pixel_type_is_refused_on_open(
    plates: Callable[..., Path], tmp_path: Path, ngff: str, value: Any
) -> None:
    # Before: null or a missing data_type read as float64 (NumPy's default), and
    # {"name": "x"} escaped as a builtin ValueError from np.dtype.
    root = copy_plate(plates(*(SHARDED if ngff == "0.5" else PLANE_V2)), tmp_path)
    key = "data_type" if ngff == "0.5" else "dtype"
    edit_doc(root, ngff, lambda d: d.pop(key) if value is DELETE else d.update({key: value}))
    store = PlateStore.open(root)
    with pytest.raises(MetadataError) as err:
        store.well_info("B02")
    assert str(doc_path(root, ngff)) in str(err.value)
    assert key in str(err.value)
    with pytest.raises(MetadataError):
        store.read_plane("B02", 0, 0, 0)
    assert_good_well_reads(store)


@pytest.mark.parametrize(("ngff", "chunks"), [SHARDED, PLANE_V3, PLANE_V2])
def test_a_same_size_data_type_reads_the_stored_bytes_reinterpreted(
    plates: Callable[..., Path], tmp_path: Path, ngff: str, chunks: str
) -> None:
    # uint16 -> int16 changes no byte count: nothing can tell it from the truth. The
    # stored bytes come back, reinterpreted - never other memory.
    root = copy_plate(plates(ngff, chunks), tmp_path)
    key, value = ("data_type", "int16") if ngff == "0.5" else ("dtype", "<i2")
    edit_doc(root, ngff, lambda d: d.update({key: value}))
    plane = _read_b02_plane_0(root)
    assert plane.dtype == np.dtype("int16")
    np.testing.assert_array_equal(plane, VICTIM[0, 0, 0].view("int16"))


# -- 3. reads larger than the memory available -------------------------------------------------

# 4096 x 2048 uint16 = 16 MiB a plane: above the size from which reads are checked, and
# small enough that a test run without the guard allocates little for real.
BOMB_YX = (4096, 2048)
BOMB_PLANE = 4096 * 2048 * 2


def declare_plane(doc: dict[str, Any], yx: tuple[int, int]) -> None:
    """Make ``doc`` declare planes (and plane chunks, inner and outer) of ``yx`` pixels."""
    doc["shape"][-2:] = list(yx)
    if "chunks" in doc:  # zarr v2
        doc["chunks"][-2:] = list(yx)
        return
    grid = doc["chunk_grid"]["configuration"]["chunk_shape"]
    grid[-2:] = list(yx)
    for codec in doc["codecs"]:
        if codec["name"] == "sharding_indexed":
            codec["configuration"]["chunk_shape"][-2:] = list(yx)


@pytest.fixture
def one_mebibyte_free(monkeypatch: pytest.MonkeyPatch) -> None:
    """Pretend 1 MiB of memory is available (never size a real allocation from the machine)."""
    monkeypatch.setattr(memory, "available_memory", lambda: 2**20)


READS: dict[str, Callable[[PlateStore], Any]] = {
    "read_plane": lambda s: s.read_plane("B02", 0, 0, 0),
    "read_planes": lambda s: s.read_planes("B02", [(0, 0, 0), (1, 0, 0)]),
    "read_well": lambda s: s.read_well("B02"),
}


@pytest.mark.usefixtures("one_mebibyte_free")
@pytest.mark.parametrize("read", sorted(READS))
@pytest.mark.parametrize(
    ("ngff", "chunks"), [SHARDED, PLANE_V3, ("0.5", "well"), PLANE_V2, ("0.4", "well")]
)
def test_a_read_larger_than_free_memory_is_refused_before_allocating(
    plates: Callable[..., Path], tmp_path: Path, ngff: str, chunks: str, read: str
) -> None:
    # Before: only read_well was checked; read_plane of a plane declared as
    # 40000 x 40000 allocated 3.2 GB (6 GB peak) before finding the chunk was tiny.
    root = copy_plate(plates(ngff, chunks), tmp_path)
    edit_doc(root, ngff, lambda d: declare_plane(d, BOMB_YX))
    store = PlateStore.open(root)
    assert store.well_info("B02").shape[-2:] == BOMB_YX
    tracemalloc.start()
    try:
        with pytest.raises(MetadataError) as err:
            READS[read](store)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < BOMB_PLANE // 4, f"{peak:,} bytes allocated before the refusal"
    message = str(err.value)
    assert "B02" in message
    assert "1,048,576 bytes" in message
    assert re.search(r"needs [0-9,]+ bytes", message)
    if read != "read_well":  # read_well's own check names the level, not the array
        assert ARRAY in message
    assert_good_well_reads(store)  # small reads are not refused


@pytest.mark.usefixtures("one_mebibyte_free")
@pytest.mark.parametrize(("ngff", "chunks"), [SHARDED, PLANE_V2])
def test_a_label_image_larger_than_free_memory_is_refused(
    plates: Callable[..., Path], tmp_path: Path, ngff: str, chunks: str
) -> None:
    root = copy_plate(plates(ngff, chunks, labels=True), tmp_path)
    label = "B/02/0/labels/cells/0"
    edit_doc(root, ngff, lambda d: declare_plane(d, BOMB_YX), array=label)
    store = PlateStore.open(root)
    with pytest.raises(MetadataError, match=rf"B02.*'cells'.*{label}.*needs .* bytes.*1,048,576"):
        store.read_labels("B02", "cells")
    np.testing.assert_array_equal(store.read_plane("B02", 1, 0, 0), VICTIM[1, 0, 0])


# -- 4. negative, zero and non-integer sizes ---------------------------------------------------

SIZES = [-16, 0, 16.5, 16.0, "16", True, None]
# (layout, which size): shape, the chunk grid (outer chunk or shard) or the inner chunk.
SIZE_FIELDS = [
    (SHARDED, "shape"),
    (SHARDED, "chunks"),
    (SHARDED, "inner"),
    (PLANE_V3, "shape"),
    (PLANE_V3, "chunks"),
    (PLANE_V2, "shape"),
    (PLANE_V2, "chunks"),
]


def set_size(doc: dict[str, Any], which: str, value: Any) -> None:
    """Set the y extent of ``doc``'s shape, chunk (or shard) shape or inner chunk shape."""
    if which == "shape":
        doc["shape"][-2] = value
    elif which == "chunks" and "chunks" in doc:
        doc["chunks"][-2] = value
    elif which == "chunks":
        doc["chunk_grid"]["configuration"]["chunk_shape"][-2] = value
    else:
        doc["codecs"][0]["configuration"]["chunk_shape"][-2] = value


@pytest.mark.parametrize("value", SIZES, ids=repr)
@pytest.mark.parametrize(("layout", "which"), SIZE_FIELDS, ids=lambda p: "-".join(map(str, p)))
def test_a_size_that_is_not_a_positive_integer_is_refused(
    plates: Callable[..., Path],
    tmp_path: Path,
    layout: tuple[str, str],
    which: str,
    value: Any,
) -> None:
    # A microscope well never has an empty axis: 0 is damage, like -16, 16.5, "16" ...
    ngff = layout[0]
    root = copy_plate(plates(*layout), tmp_path)
    edit_doc(root, ngff, lambda d: set_size(d, which, value))
    store = PlateStore.open(root)
    with pytest.raises(WellZarrError) as err:
        open_and_read_b02(store)
    assert ARRAY in str(err.value)
    assert_good_well_reads(store)


@pytest.mark.parametrize(("ngff", "chunks"), [SHARDED, PLANE_V3, PLANE_V2])
def test_another_fields_array_of_another_shape_is_refused(
    make_plate: Callable[..., Path], ngff: str, chunks: str
) -> None:
    # Per-field wells: only the first field's array makes well_info; another field's
    # array declaring 8 rows (its chunks as they are) must not read as an (8, 16) plane.
    config = StorageConfig(plate=24, ngff_version=ngff, chunks=chunks, fields="per-field")
    root = make_plate({"A01": GOOD, "B02": VICTIM}, config)
    edit_doc(root, ngff, lambda d: d["shape"].__setitem__(-2, 8), array="B/02/1/0")
    store = PlateStore.open(root)
    assert store.well_info("B02").shape == SHAPE
    with pytest.raises(MetadataError, match=r"B02.*B/02/1/0.*\(1, 1, 8, 16\)"):
        store.read_plane("B02", 1, 0, 0)
    np.testing.assert_array_equal(store.read_plane("B02", 0, 0, 0), VICTIM[0, 0, 0])
    assert_good_well_reads(store)


# -- 5. Hypothesis: any JSON value in any key of a level-0 array document ----------------------

V3_KEYS = ["shape", "data_type", "chunk_grid", "codecs", "fill_value"]
V3_KEYS += ["chunk_key_encoding", "dimension_names", "zarr_format", "node_type"]
V2_KEYS = ["shape", "dtype", "chunks", "compressor", "fill_value", "zarr_format"]
V2_KEYS += ["filters", "order", "dimension_separator"]
FUZZ = settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def same_pixels(plane: np.ndarray, original: np.ndarray) -> bool:
    """``plane`` is ``original`` (or its top-left corner), possibly reinterpreted.

    A document that declares a smaller plane reads that corner; one that declares
    another type of the same size (uint16 -> int16, another byte order) reads the
    stored bytes reinterpreted.  Anything else is garbage.
    """
    if plane.ndim != 2 or any(p > o for p, o in zip(plane.shape, original.shape, strict=True)):
        return False
    want = original[: plane.shape[0], : plane.shape[1]]
    if plane.dtype.itemsize != want.dtype.itemsize:
        return False
    return (
        np.array_equal(plane, want)
        or plane.tobytes() == want.tobytes()
        or plane.byteswap().tobytes() == want.tobytes()
    )


def check_mutation(root: Path, ngff: str, original: str, key: str, value: Any) -> None:
    """Write the mutated document, read B02 and A01, then restore the document."""
    doc = json.loads(original)
    if value is DELETE:
        doc.pop(key, None)
    else:
        doc[key] = copy.deepcopy(value)
    path = doc_path(root, ngff)
    path.write_text(json.dumps(doc))
    try:
        with warnings.catch_warnings(), pytest.MonkeyPatch.context() as patch:
            # zarr warns about documents it reads all the same (an empty filter list...):
            # outside this suite's "warnings are errors" that is what users get.
            warnings.filterwarnings("ignore", module=r"zarr\.")
            # A declared shape of 2**31 pixels must be refused by the memory guard, never
            # allocated for real: pretend the machine has 64 MiB to spare.
            patch.setattr(memory, "available_memory", lambda: 2**26)
            read_b02_then_a01(root, key, value)
    finally:
        path.write_text(original)


def read_b02_then_a01(root: Path, key: str, value: Any) -> None:
    """B02 reads its own pixels or raises our error with a message; A01 reads exactly."""
    store = PlateStore.open(root)
    refusal: WellZarrError | None = None
    try:
        info, plane = open_and_read_b02(store)
    except WellZarrError as err:
        refusal = err
    if refusal is not None:
        assert str(refusal), f"{type(refusal).__name__} without a message"
    else:
        assert plane.shape == info.shape[-2:], (plane.shape, info.shape)
        assert same_pixels(plane, VICTIM[0, 0, 0]), f"{key}={value!r} read garbage"
    np.testing.assert_array_equal(store.read_plane("A01", 0, 0, 0), GOOD[0, 0, 0])


@pytest.fixture(scope="module")
def fuzz_plates(
    plates: Callable[..., Path], tmp_path_factory: pytest.TempPathFactory
) -> dict[tuple[str, str], Path]:
    """One private copy of each base plate, mutated and restored example by example."""
    base = tmp_path_factory.mktemp("fuzz")
    out = {}
    for layout in (SHARDED, PLANE_V3, PLANE_V2):
        out[layout] = base / "-".join(layout)
        shutil.copytree(plates(*layout), out[layout])
    return out


def _fuzz(fuzz_plates: dict[tuple[str, str], Path], layout: tuple[str, str], data: Any) -> None:
    root = fuzz_plates[layout]
    original = doc_path(root, layout[0]).read_text()
    keys = V3_KEYS if layout[0] == "0.5" else V2_KEYS
    key, value = data.draw(array_document_mutations(json.loads(original), keys), label="mutation")
    check_mutation(root, layout[0], original, key, value)


@FUZZ
@given(data=st.data())
def test_any_sharded_array_document_reads_exactly_or_raises_our_error(
    fuzz_plates: dict[tuple[str, str], Path], data: Any
) -> None:
    _fuzz(fuzz_plates, SHARDED, data)


@FUZZ
@given(data=st.data())
def test_any_v3_plane_array_document_reads_exactly_or_raises_our_error(
    fuzz_plates: dict[tuple[str, str], Path], data: Any
) -> None:
    _fuzz(fuzz_plates, PLANE_V3, data)


@FUZZ
@given(data=st.data())
def test_any_v2_array_document_reads_exactly_or_raises_our_error(
    fuzz_plates: dict[tuple[str, str], Path], data: Any
) -> None:
    _fuzz(fuzz_plates, PLANE_V2, data)
