"""Decompression bombs on zarr-python's decode road: refused before anything is allocated.

A chunk is replaced by a small frame of the array's own codec that decodes to 64 MiB where a
chunk holds a few hundred bytes.  Reading must raise ``CorruptDataError`` naming the array and
the chunk, and the read may not allocate more than a few MiB (``tracemalloc`` sees numpy's and
the codecs' buffers).
"""

from __future__ import annotations

import json
import struct
import tracemalloc
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest

from napari_wellzarr.core import CorruptDataError, PlateStore, StorageConfig

if TYPE_CHECKING:
    from pathlib import Path

BOMB = 64 * 2**20
PEAK = 8 * 2**20  # what a refused read may allocate at most (the real chunks are tiny)
CASES = [
    ("0.4", "blosc-zstd"),
    ("0.4", "blosc-lz4"),
    ("0.4", "zstd"),
    ("0.4", "gzip"),
    ("0.4", "zlib"),
    ("0.4", "lz4"),
    ("0.5", "blosc-zstd"),
    ("0.5", "zstd"),
    ("0.5", "gzip"),
]


def zstd_without_size(total: int) -> bytes:
    """A zstd frame of RLE blocks that does not declare its content size (``total`` bytes)."""
    block = 128 * 1024
    head = struct.pack("<IBB", 0xFD2FB528, 0, (17 - 10) << 3)  # no size, 128 KiB window
    blocks = [
        ((1 if i == total // block - 1 else 0) | (1 << 1) | (block << 3)).to_bytes(3, "little")
        + b"\x07"
        for i in range(total // block)
    ]
    return head + b"".join(blocks)


def bomb_for(codec: dict[str, Any]) -> bytes:
    """A small frame of ``codec`` (a numcodecs/zarr codec document) that decodes to BOMB bytes."""
    import numcodecs

    config = dict(codec.get("configuration", codec))
    name = str(codec.get("name", codec.get("id"))).removeprefix("numcodecs.")
    config.pop("id", None)
    if name == "blosc" and "typesize" in config:  # a zarr v3 blosc document
        shuffle = {"noshuffle": 0, "shuffle": 1, "bitshuffle": 2}[config.get("shuffle", "shuffle")]
        config = {"cname": config["cname"], "clevel": config["clevel"], "shuffle": shuffle}
    config.pop("checksum", None)
    compressor = numcodecs.get_codec({"id": name, **config})
    return bytes(compressor.encode(np.zeros(BOMB, "u1")))


def chunk_files(array_dir: Path) -> list[Path]:
    docs = {".zarray", ".zattrs", "zarr.json"}
    return sorted(p for p in array_dir.rglob("*") if p.is_file() and p.name not in docs)


def bomb_of(array_dir: Path) -> bytes:
    """A bomb in the array's own encoding (its compressor, then any crc32c checksum)."""
    import numcodecs

    if (array_dir / ".zarray").is_file():
        return bomb_for(json.loads((array_dir / ".zarray").read_text())["compressor"])
    codecs = json.loads((array_dir / "zarr.json").read_text())["codecs"]
    checksums = 0
    while codecs[-1]["name"] == "crc32c":
        codecs, checksums = codecs[:-1], checksums + 1
    frame = bomb_for(codecs[-1])
    for _ in range(checksums):
        frame = bytes(numcodecs.CRC32C().encode(frame))
    return frame


def refused_within_budget(read: Any, array_dir: Path, chunk: Path) -> None:
    tracemalloc.start()
    try:
        with pytest.raises(CorruptDataError) as info:
            read()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < PEAK, f"the refused read allocated {peak / 2**20:.1f} MiB"
    message = str(info.value)
    assert array_dir.relative_to(array_dir.parents[3]).as_posix() in message, message
    assert "refused before decoding" in message, message


@pytest.mark.parametrize(("version", "compressor"), CASES)
@pytest.mark.parametrize("chunks", ["plane", "well"])
def test_a_bomb_chunk_of_our_plate_is_refused_before_allocating(
    tmp_path: Path, version: str, compressor: str, chunks: str
) -> None:
    root = tmp_path / "plate.zarr"
    config = StorageConfig(ngff_version=version, compressor=compressor, chunks=chunks, plate=24)
    with PlateStore.create(root, config) as store:
        store.write_well("A01", np.ones((2, 1, 1, 16, 16), "u2"))
        store.write_well("B02", np.full((2, 1, 1, 16, 16), 7, "u2"))
    array_dir = root / "B" / "02" / "0" / "0"
    chunk = chunk_files(array_dir)[0]
    chunk.write_bytes(bomb_of(array_dir))
    store = PlateStore.open(root)
    np.testing.assert_array_equal(store.read_well("A01"), 1)  # the other well still reads
    refused_within_budget(lambda: store.read_well("B02"), array_dir, chunk)
    refused_within_budget(lambda: store.read_plane("B02", 0, 0, 0), array_dir, chunk)


def test_a_zstd_frame_without_a_declared_size_is_decoded_bounded(tmp_path: Path) -> None:
    root = tmp_path / "plate.zarr"
    config = StorageConfig(ngff_version="0.4", compressor="zstd", chunks="plane", plate=24)
    with PlateStore.create(root, config) as store:
        store.write_well("B02", np.full((2, 1, 1, 16, 16), 7, "u2"))
    array_dir = root / "B" / "02" / "0" / "0"
    chunk = chunk_files(array_dir)[0]
    chunk.write_bytes(zstd_without_size(BOMB))
    store = PlateStore.open(root)
    refused_within_budget(lambda: store.read_well("B02"), array_dir, chunk)


@pytest.mark.parametrize("version", ["0.4", "0.5"])
def test_a_bomb_in_an_ome_zarr_py_plate_is_refused(tmp_path: Path, version: str) -> None:
    from tests.plugin.test_reader import write_ome_zarr_py

    root = write_ome_zarr_py(tmp_path / "foreign.zarr", version, "czyx")
    array_dir = root / "C" / "4" / "0" / "s0"
    chunk = chunk_files(array_dir)[0]
    chunk.write_bytes(bomb_of(array_dir))
    store = PlateStore.open(root)
    assert store.read_well("A2").size > 0
    refused_within_budget(lambda: store.read_well("C4"), array_dir, chunk)


@pytest.mark.parametrize(("version", "compressor"), CASES)
def test_whole_chunks_still_read_with_every_codec(
    tmp_path: Path, version: str, compressor: str
) -> None:
    root = tmp_path / "plate.zarr"
    data = np.arange(2 * 3 * 2 * 16 * 16, dtype="u2").reshape(2, 3, 2, 16, 16)
    config = StorageConfig(ngff_version=version, compressor=compressor, chunks="plane", plate=24)
    with PlateStore.create(root, config) as store:
        store.write_well("B02", data)
    store = PlateStore.open(root)
    np.testing.assert_array_equal(store.read_well("B02"), data)
    np.testing.assert_array_equal(store.read_plane("B02", 1, 2, 1), data[1, 2, 1])


def _sharded_with_bomb(root: Path, inner: int) -> tuple[Any, np.ndarray]:
    """A v3 array sharded by zarr-python (not by us) whose inner chunk ``inner`` is a bomb."""
    import numcodecs
    import zarr

    data = np.arange(4 * 64 * 64, dtype="u2").reshape(4, 64, 64)
    codecs = [zarr.codecs.ZstdCodec(), zarr.codecs.Crc32cCodec()]
    array = zarr.create_array(
        str(root / "a"),
        shape=data.shape,
        chunks=(1, 32, 32),
        shards=(2, 64, 64),
        dtype="u2",
        compressors=codecs,
    )
    array[...] = data
    shard = root / "a" / "c" / "0" / "0" / "0"
    raw = shard.read_bytes()
    n = 8
    index = np.frombuffer(raw[-(16 * n + 4) : -4], "<u8").reshape(n, 2)
    chunks = [raw[o : o + s] for o, s in index]
    chunks[inner] = bytes(numcodecs.CRC32C().encode(bomb_for({"id": "zstd", "level": 1})))
    offsets = np.cumsum([0, *map(len, chunks)])[:-1]
    new_index = np.stack([offsets, list(map(len, chunks))], axis=1).astype("<u8").tobytes()
    shard.write_bytes(b"".join(chunks) + bytes(numcodecs.CRC32C().encode(new_index)))
    return array, data


@pytest.mark.parametrize("whole", [True, False])
def test_a_bomb_inside_a_shard_written_by_others_is_refused(tmp_path: Path, whole: bool) -> None:
    import zarr

    from napari_wellzarr.storage.bounds import chunk_bound
    from napari_wellzarr.storage.zstore import expect_chunks, read_store

    _, data = _sharded_with_bomb(tmp_path, inner=4)  # inner chunk 4: plane 1, top left
    store = read_store(tmp_path, strict=False)
    array = zarr.open_array(store=store, path="a", mode="r")
    expect_chunks(store, "a", chunk_bound(array, "a"))
    np.testing.assert_array_equal(array[2:], data[2:])  # the other shard reads
    np.testing.assert_array_equal(array[1, 32:, 32:], data[1, 32:, 32:])  # other inner chunks
    tracemalloc.start()
    try:
        with pytest.raises(CorruptDataError, match=r"array a chunk a/c/0/0/0.*refused before"):
            array[0:2] if whole else array[1, :32, :32]  # the whole shard, or the one chunk
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < PEAK, f"the refused read allocated {peak / 2**20:.1f} MiB"


@pytest.mark.parametrize("codec", ["bz2", "lzma"])
def test_bz2_and_lzma_bombs_are_refused(tmp_path: Path, codec: str) -> None:
    import numcodecs
    import zarr

    from napari_wellzarr.storage.bounds import chunk_bound
    from napari_wellzarr.storage.zstore import expect_chunks, read_store

    compressor = numcodecs.get_codec({"id": codec})
    zarr.create_array(
        str(tmp_path / "v2"),
        shape=(2, 16, 16),
        chunks=(1, 16, 16),
        dtype="u2",
        zarr_format=2,
        compressors=compressor,
    )[...] = 5
    (tmp_path / "v2" / "0.0.0").write_bytes(compressor.encode(np.zeros(BOMB, "u1")))
    store = read_store(tmp_path, strict=False)
    array = zarr.open_array(store=store, path="v2", mode="r", zarr_format=2)
    expect_chunks(store, "v2", chunk_bound(array, "v2"))
    np.testing.assert_array_equal(array[1], 5)
    with pytest.raises(CorruptDataError, match=f"v2/0.0.0: its {codec} frame .* more than 512"):
        array[0]
