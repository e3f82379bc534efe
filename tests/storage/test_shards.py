"""The direct shard road (core/shards.py) against zarr-python, both ways.

Shards written by the core must be ordinary zarr v3 shards, and the direct reader must
read what zarr writes (several shards, partial edge shards, other key encodings), fall
back to zarr for layouts it does not know, and report damage instead of returning it.
"""

from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest

from napari_wellzarr.core import PlateStore, StorageConfig
from napari_wellzarr.errors import CorruptDataError
from napari_wellzarr.storage.records import LAYOUT_FILE
from napari_wellzarr.storage.shards import ShardGrid, ShardReader
from tests.helpers import write_plate

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

SHAPE = (3, 2, 2, 24, 20)


def level0(root: Path, well: str = "B/02") -> Path:
    return root / well / "0" / "0"


@pytest.mark.parametrize("compressor", ["blosc-zstd", "blosc-lz4", "zstd", "gzip", "none"])
@pytest.mark.parametrize("checksum", [True, False])
@pytest.mark.parametrize("dtype", ["u1", ">u2", "i4", "<f4", "f8", "u8"])
def test_core_shards_are_zarr_shards(
    make_plate: Callable[..., Path],
    pixels: Callable[..., np.ndarray],
    compressor: str,
    checksum: bool,
    dtype: str,
) -> None:
    import zarr

    data = pixels(SHAPE, dtype.lstrip("<>")).astype(dtype)  # '>u2': a big-endian source
    config = StorageConfig(compressor=compressor, checksum=checksum, plate=24)
    cells = (data[:, 0] % 7).astype("u2")
    root = make_plate({"B02": data}, config, write={"labels": {"cells": cells}})
    doc = json.loads((level0(root) / "zarr.json").read_text())
    assert ShardGrid.parse(doc) is not None, "the core's own layout must take the direct road"
    # zarr's reader, knowing nothing of the direct road, reads the pixels and the labels
    np.testing.assert_array_equal(zarr.open_array(level0(root), mode="r")[...], data)
    labels = zarr.open_array(root / "B/02/0/labels/cells/0", mode="r")[...]
    np.testing.assert_array_equal(labels[:, 0], cells)
    store = PlateStore.open(root)
    np.testing.assert_array_equal(store.read_well("B02"), data)
    plane = store.read_plane("B02", 2, 1, 1)
    np.testing.assert_array_equal(plane, data[2, 1, 1])
    assert plane.flags.writeable, "a read plane is the caller's to modify"


def test_per_field_wells_and_pyramids_take_the_direct_road(
    make_plate: Callable[..., Path], pixels: Callable[..., np.ndarray]
) -> None:
    import zarr

    data = pixels(SHAPE)
    root = make_plate({"B02": data}, fields="per-field", pyramid_levels=3, plate=24)
    store = PlateStore.open(root)
    for level in range(3):
        expected = np.stack(
            [zarr.open_array(root / f"B/02/{f}/{level}", mode="r")[...] for f in range(3)]
        )
        np.testing.assert_array_equal(store.read_well("B02", level), expected)
        np.testing.assert_array_equal(
            store.read_plane("B02", 1, 0, 1, level=level), expected[1, 0, 1]
        )


def zarr_sharded(
    path: Path, data: np.ndarray, shards: tuple[int, ...], **kwargs: Any
) -> dict[str, Any]:
    import zarr

    array = zarr.create_array(
        store=str(path),
        shape=data.shape,
        dtype=data.dtype,
        chunks=(1,) * (data.ndim - 2) + data.shape[-2:],
        shards=shards,
        fill_value=0,
        zarr_format=3,
        **kwargs,
    )
    array[...] = data
    return json.loads((path / "zarr.json").read_text())  # type: ignore[no-any-return]


@pytest.mark.parametrize(
    ("shards", "kwargs"),
    [
        ((2, 2, 1, 24, 20), {}),  # partial edge shards on the field axis
        ((1, 1, 1, 24, 20), {"compressors": None}),  # one plane per shard, uncompressed
        ((4, 2, 2, 24, 20), {"chunk_key_encoding": {"name": "default", "separator": "."}}),
        ((3, 2, 2, 24, 20), {"chunk_key_encoding": {"name": "v2", "separator": "/"}}),
        ((2, 1, 2, 24, 20), {"compressors": {"name": "gzip", "configuration": {"level": 1}}}),
    ],
)
def test_direct_reader_reads_what_zarr_wrote(
    tmp_path: Path, pixels: Callable[..., np.ndarray], shards: tuple[int, ...], kwargs: Any
) -> None:
    data = pixels(SHAPE, "u2")
    doc = zarr_sharded(tmp_path / "a", data, shards, **kwargs)
    layout = ShardGrid.parse(doc)
    assert layout is not None
    reader = ShardReader(tmp_path / "a", layout, "test array")
    planes = list(np.ndindex(SHAPE[:-2]))
    out = np.empty((len(planes), *SHAPE[-2:]), "u2")
    assert reader.read(planes, out)
    np.testing.assert_array_equal(out.reshape(SHAPE), data)
    one = np.empty((1, *SHAPE[-2:]), "u2")
    assert reader.read([(2, 1, 0)], one)
    np.testing.assert_array_equal(one[0], data[2, 1, 0])


def test_a_missing_shard_or_chunk_goes_back_to_zarr(
    tmp_path: Path, pixels: Callable[..., np.ndarray]
) -> None:
    data = pixels(SHAPE, "u2")
    data[2] = 0  # zarr stores no all-fill-value chunks by default: field 2's shard is absent
    doc = zarr_sharded(tmp_path / "a", data, (1, 2, 2, 24, 20))
    layout = ShardGrid.parse(doc)
    assert layout is not None
    reader = ShardReader(tmp_path / "a", layout, "test array")
    out = np.empty((1, *SHAPE[-2:]), "u2")
    assert reader.read([(0, 1, 1)], out)
    assert not reader.read([(2, 0, 0)], out), "no shard file: zarr knows the fill value"


@pytest.mark.parametrize(
    "change",
    [
        lambda d: d["codecs"].insert(0, {"name": "transpose", "configuration": {"order": [0]}}),
        lambda d: d["codecs"][0]["configuration"].update(index_location="start"),
        lambda d: d["codecs"][0]["configuration"].update(chunk_shape=[1, 1, 1, 12, 20]),
        lambda d: d["codecs"][0]["configuration"]["codecs"].insert(
            1, {"name": "numcodecs.zlib", "configuration": {"level": 1}}
        ),
        lambda d: d["codecs"][0]["configuration"]["index_codecs"].pop(0),
        lambda d: d.update(chunk_key_encoding={"name": "custom"}),
        lambda d: d.update(data_type="bool"),
        lambda d: d.update(shape=[3, 2, 2, 24]),
    ],
)
def test_unknown_layouts_are_left_to_zarr(
    tmp_path: Path, pixels: Callable[..., np.ndarray], change: Callable[[dict[str, Any]], None]
) -> None:
    doc = zarr_sharded(tmp_path / "a", pixels(SHAPE, "u2"), SHAPE)
    assert ShardGrid.parse(doc) is not None
    change(doc)
    assert ShardGrid.parse(doc) is None


def flip_byte(path: Path, at: int) -> None:
    data = bytearray(path.read_bytes())
    data[at] ^= 0x10
    path.write_bytes(bytes(data))


def test_one_flipped_bit_is_reported_by_the_checksums(
    make_plate: Callable[..., Path], pixels: Callable[..., np.ndarray]
) -> None:
    data = pixels(SHAPE)
    root = make_plate({"B02": data, "B03": data}, plate=24)
    shard = level0(root) / "c.0.0.0.0.0"
    size = shard.stat().st_size
    flip_byte(shard, 100)  # inside the first plane's compressed bytes
    store = PlateStore.open(root)
    with pytest.raises(CorruptDataError, match=r"B/02/0/0 chunk c\.0\.0\.0\.0\.0.*checksum"):
        store.read_plane("B02", 0, 0, 0)
    np.testing.assert_array_equal(store.read_plane("B02", 0, 1, 0), data[0, 1, 0])
    flip_byte(shard, 100)
    flip_byte(shard, size - 10)  # inside the index
    store = PlateStore.open(root)
    with pytest.raises(CorruptDataError, match="shard index crc32c"):
        store.read_plane("B02", 0, 1, 0)
    np.testing.assert_array_equal(store.read_well("B03"), data)


def test_a_well_replaced_by_another_writer_is_read_anew(
    make_plate: Callable[..., Path], pixels: Callable[..., np.ndarray]
) -> None:
    first, second = pixels(SHAPE), pixels(SHAPE)
    root = make_plate({"B02": first}, plate=24)
    reader = PlateStore.open(root)
    np.testing.assert_array_equal(reader.read_plane("B02", 1, 1, 1), first[1, 1, 1])
    with PlateStore.open(root, "r+") as writer:  # as another process would
        writer.write_well("B02", second, overwrite=True)
    # the cached shard index belonged to the old file: it must not be used for the new one
    np.testing.assert_array_equal(reader.read_plane("B02", 1, 1, 1), second[1, 1, 1])
    np.testing.assert_array_equal(reader.read_well("B02"), second)


# -- the plate's layout records: wells read through a template's layout ---------------------


def count_well_opens(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    from napari_wellzarr.storage import reading, store, templates

    opened: list[str] = []
    real = reading.open_well

    def spy(root: Path, path: str, name: str, zarr_format: int) -> Any:
        opened.append(path)
        return real(root, path, name, zarr_format)

    monkeypatch.setattr(store, "open_well", spy)
    monkeypatch.setattr(templates, "open_well", spy)
    return opened


WELLS = ("A01", "A02", "B05", "C03", "D12")


@pytest.fixture
def recorded(tmp_path: Path, pixels: Callable[..., np.ndarray]) -> tuple[Path, dict[str, Any]]:
    root = tmp_path / "p.zarr"
    data = {w: pixels(SHAPE) for w in WELLS}
    with PlateStore.create(root, StorageConfig(plate=96)) as store:
        for i, well in enumerate(WELLS):
            store.write_well(well, data[well])
            if i == 2:
                store.flush()  # records merge across flushes
    return root, data


def test_recorded_wells_read_without_their_own_metadata(
    recorded: tuple[Path, dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    root, data = recorded
    block = json.loads((root / LAYOUT_FILE).read_text())
    assert sorted(block["wells"]) == ["A/01", "A/02", "B/05", "C/03", "D/12"]
    assert len(block["layouts"]) == 1
    opened = count_well_opens(monkeypatch)
    store = PlateStore.open(root)
    for well in WELLS:
        np.testing.assert_array_equal(store.read_plane(well, 2, 1, 1), data[well][2, 1, 1])
        np.testing.assert_array_equal(store.read_well(well), data[well])
    assert len(opened) == 1, f"one template well opened, not each well: {opened}"
    # what a pixel read does not need still comes from the well's own metadata
    assert store.well_info("C03").name == "C03"
    assert len(opened) == 2


def test_a_rewritten_well_is_read_from_its_own_metadata(
    recorded: tuple[Path, dict[str, Any]], pixels: Callable[..., np.ndarray]
) -> None:
    root, data = recorded
    reader = PlateStore.open(root)
    np.testing.assert_array_equal(reader.read_plane("A02", 0, 0, 0), data["A02"][0, 0, 0])
    # Another writer replaces A02 (another shape) and A01, the template, and has not
    # flushed yet: the records on disk are stale for both.
    writer = PlateStore.open(root, "r+")
    bigger, other = pixels((4, 2, 2, 24, 20)), pixels((2, 3, 1, 16, 20))
    writer.write_well("A02", bigger, overwrite=True)
    writer.write_well("A01", other, overwrite=True)
    for store in (reader, PlateStore.open(root)):
        np.testing.assert_array_equal(store.read_plane("A02", 3, 1, 1), bigger[3, 1, 1])
        np.testing.assert_array_equal(store.read_well("A02"), bigger)
        np.testing.assert_array_equal(store.read_well("A01"), other)
        np.testing.assert_array_equal(store.read_well("B05"), data["B05"])
    writer.close()
    after = PlateStore.open(root)
    for well, expected in [("A01", other), ("A02", bigger), ("D12", data["D12"])]:
        np.testing.assert_array_equal(after.read_well(well), expected)


def test_damage_in_a_recorded_well_is_still_reported(
    recorded: tuple[Path, dict[str, Any]],
) -> None:
    root, data = recorded
    shard = level0(root, "C/03") / "c.0.0.0.0.0"
    blob = bytearray(shard.read_bytes())
    blob[50] ^= 1
    stat = shard.stat()
    shard.write_bytes(bytes(blob))
    os.utime(shard, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # same size, same mtime
    store = PlateStore.open(root)
    with pytest.raises(CorruptDataError, match=r"C/03/0/0 chunk c\.0\.0\.0\.0\.0"):
        store.read_plane("C03", 0, 0, 0)
    np.testing.assert_array_equal(store.read_plane("D12", 0, 0, 0), data["D12"][0, 0, 0])


@pytest.mark.parametrize(
    "hostile",
    [
        {"layouts": {"0123456789ab": {"template": "../../etc", "arrays": ["0/0"]}}},
        {"layouts": {"0123456789ab": {"template": "/abs/path", "arrays": ["0/0"]}}},
        {"layouts": {"0123456789ab": {"template": "A/01", "arrays": ["../../x"]}}},
        {"layouts": "nope", "wells": []},
        {"wells": {"A/01": ["0123456789ab", [-1, 5]]}},
        {"wells": {"A/01": ["0123456789ab", [1, 2], [3]]}},
        {"layouts": {"0123456789ab": {"template": "A/02", "arrays": ["0/0"]}}},  # wrong key
    ],
)
def test_hostile_layout_records_are_ignored(
    recorded: tuple[Path, dict[str, Any]], hostile: dict[str, Any]
) -> None:
    root, data = recorded
    block = json.loads((root / LAYOUT_FILE).read_text())
    for name, value in hostile.items():
        if isinstance(value, dict) and isinstance(block.get(name), dict):
            if name == "layouts":  # point every well at the hostile layout
                block["wells"] = {p: ["0123456789ab", *w[1:]] for p, w in block["wells"].items()}
            block[name] = value if name == "layouts" else {**block[name], **value}
        else:
            block[name] = value
    (root / LAYOUT_FILE).write_text(json.dumps(block))
    store = PlateStore.open(root)
    for well in WELLS:
        np.testing.assert_array_equal(store.read_well(well), data[well])


@pytest.mark.parametrize("content", [b"", b"{oops", b"[1, 2]", b"\xff\xfe", b"{}" + b" " * 100])
def test_a_damaged_record_file_is_ignored(
    recorded: tuple[Path, dict[str, Any]], content: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    root, data = recorded
    (root / LAYOUT_FILE).write_bytes(content)
    opened = count_well_opens(monkeypatch)
    store = PlateStore.open(root)
    for well in WELLS:
        np.testing.assert_array_equal(store.read_well(well), data[well])
    assert len(opened) == len(WELLS)  # every well read from its own metadata


def test_records_and_the_plate_documents(
    recorded: tuple[Path, dict[str, Any]], tmp_path: Path
) -> None:
    root, data = recorded
    # The record lives outside the plate's documents: they do not depend on file times.
    again = write_plate(tmp_path / "again" / root.name, {w: data[w] for w in WELLS}, plate=96)
    assert (root / "zarr.json").read_bytes() == (again / "zarr.json").read_bytes()
    # a read-only open never writes it
    (root / LAYOUT_FILE).unlink()
    store = PlateStore.open(root)
    store.read_well("A01")
    store.close()
    assert not (root / LAYOUT_FILE).exists()


def test_threads_reading_one_store_get_exact_planes(
    recorded: tuple[Path, dict[str, Any]],
) -> None:
    # napari reads tiles from a thread pool through one store: clones, templates and the
    # cached shard indexes are shared by every thread.
    from concurrent.futures import ThreadPoolExecutor

    root, data = recorded
    store = PlateStore.open(root)
    keys = [(w, f, c, z) for w in WELLS for f in range(3) for c in range(2) for z in range(2)]

    def read(key: tuple[str, int, int, int]) -> bool:
        well, f, c, z = key
        return bool(np.array_equal(store.read_plane(well, f, c, z), data[well][f, c, z]))

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(read, keys * 4))
    assert all(results), f"{results.count(False)} of {len(results)} planes read wrong"


def test_recovered_wells_get_layout_records(
    make_plate: Callable[..., Path],
    pixels: Callable[..., np.ndarray],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Conversion workers (and crashed sessions) never flush: recover() lists their wells,
    # and records their layouts so that they read as fast as the others.
    data = {w: pixels(SHAPE) for w in WELLS}
    root = make_plate(plate=96)
    worker = PlateStore.open(root, "r+")
    for well in WELLS:
        worker.write_well(well, data[well])
    del worker  # never flushed
    assert not (root / LAYOUT_FILE).exists()
    with PlateStore.open(root, "r+") as parent:
        assert parent.recover() == list(WELLS)
    block = json.loads((root / LAYOUT_FILE).read_text())
    assert sorted(block["wells"]) == sorted(f"{w[0]}/{w[1:]}" for w in WELLS)
    opened = count_well_opens(monkeypatch)
    store = PlateStore.open(root)
    for well in WELLS:
        np.testing.assert_array_equal(store.read_well(well), data[well])
    assert len(opened) == 1, opened
