"""The OpenHCS-compatible path-based backend (core.openhcs) and file-name parsing (core.naming)."""

from __future__ import annotations

import gc
import hashlib
import json
import os
import random
import re
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest

from napari_wellzarr.convert.naming import (
    ParsedName,
    RegexScheme,
    parse_filename,
    register_scheme,
    registered_schemes,
    unregister_scheme,
)
from napari_wellzarr.core import (
    FieldArrangement,
    MetadataError,
    PlaneNotFoundError,
    PlateStore,
    StorageConfig,
    StoreReadOnlyError,
    SymlinkCycleError,
    WellDataError,
    WellExistsError,
    WellNameError,
)
from napari_wellzarr.openhcs import index as openhcs_index
from napari_wellzarr.openhcs.backend import SYMLINKS_FILE, ZarrStorageBackend, split_path

if TYPE_CHECKING:
    from collections.abc import Callable

DATA = Path(__file__).parents[1] / "data"
SHAPE = (6, 7)


def plane(value: int) -> np.ndarray:
    """A plane that encodes ``value`` and exposes flips and transposes."""
    ramp = np.arange(SHAPE[0] * SHAPE[1], dtype=np.uint16).reshape(SHAPE)
    return (ramp + np.uint16(value)).astype(np.uint16)


def code(f: int, c: int, z: int, well: int = 0) -> int:
    return 1000 + 1000 * f + 100 * c + 10 * z + well


def ix_name(well: str, f: int, c: int, z: int) -> str:
    return f"plate1_{well}_s{f + 1}_w{c + 1}_z{z + 1:03d}.tif"


def opera_name(row: int, col: int, f: int, c: int, z: int) -> str:
    return f"r{row:02d}c{col:02d}f{f + 1:02d}p{z + 1:02d}-ch{c + 1}sk1fk1fl1.tiff"


def write_well(
    backend: ZarrStorageBackend,
    store: Path,
    well: str,
    coords: list[tuple[int, int, int]],
    index: int = 0,
) -> dict[str, np.ndarray]:
    files = {ix_name(well, *k): plane(code(*k, index)) for k in coords}
    backend.save_batch(list(files.values()), [store / n for n in files])
    return files


def snapshot(root: Path) -> dict[str, tuple[bool, int, int]]:
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in [*dirnames, *filenames, "."]:
            path = Path(dirpath) / name
            st = os.lstat(path)
            out[str(path.relative_to(root))] = (path.is_dir(), st.st_size, st.st_mtime_ns)
    return out


def plate_attrs(store: Path) -> dict[str, Any]:
    doc = store / "zarr.json"
    if doc.exists():
        return json.loads(doc.read_text())["attributes"]
    return json.loads((store / ".zattrs").read_text())


def plate_block(store: Path) -> dict[str, Any]:
    """The plate block; a plate whose well list was never flushed has none yet."""
    attrs = plate_attrs(store)
    if "ome" in attrs and "plate" in attrs["ome"]:
        return attrs["ome"]["plate"]
    return attrs.get("plate", {"wells": []})


@pytest.fixture
def backend():
    with ZarrStorageBackend() as b:
        yield b


# -- naming ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "well", "key"),
    [
        ("A01_s1_w2_z001.tif", (0, 0), (0, 1, 0, 0)),
        ("My Plate_B10_s3_w1.TIF", (1, 9), (2, 0, 0, 0)),
        ("x_AA12_s2_w4_z010_t003.tif", (26, 11), (1, 3, 9, 2)),
        ("r02c10f03p04-ch2sk5fk1fl1.tiff", (1, 9), (2, 1, 3, 4)),
    ],
)
def test_parse_filename_schemes(name: str, well: tuple[int, int], key: tuple[int, ...]) -> None:
    parsed = parse_filename(name)
    assert (parsed.well.row, parsed.well.column) == well
    assert tuple(parsed.key) == key


def test_parse_filename_refuses_with_the_file_name() -> None:
    with pytest.raises(WellNameError, match=r"'notes_A1\.tif'"):
        parse_filename("notes_A1.tif")
    with pytest.raises(ValueError, match=r"A01_s0_w1\.tif"):
        parse_filename("A01_s0_w1.tif")


def test_scheme_registry_takes_user_patterns() -> None:
    scheme = RegexScheme("dash", r"(?P<well>[A-P]\d\d)-f(?P<field>\d+)-c(?P<channel>\d+)\.png")
    register_scheme(scheme)
    try:
        assert registered_schemes()[-1] is scheme
        assert parse_filename("C07-f2-c3.png") == ParsedName(
            parse_filename("C07_s2_w3.tif").well, 1, 2
        )
        with pytest.raises(WellNameError, match="already registered"):
            register_scheme(scheme)
    finally:
        unregister_scheme("dash")
    with pytest.raises(WellNameError, match="matches no naming scheme"):
        parse_filename("C07-f2-c3.png")
    with pytest.raises(WellNameError, match="needs a"):
        RegexScheme("bad", r"(?P<field>\d+)")


# -- save_batch / load_batch -----------------------------------------------------------------


def test_round_trip_sparse_shuffled_lands_by_name(
    tmp_path: Path, backend: ZarrStorageBackend
) -> None:
    store = tmp_path / "out" / "images"
    coords = [(f, c, z) for f in (0, 2) for c in range(2) for z in range(2)]  # field 1 missing
    files = {ix_name("B03", *k): plane(code(*k)) for k in coords}
    order = list(files)
    random.Random(1).shuffle(order)
    missing = backend.save_batch([files[n] for n in order], [store / n for n in order])
    assert sorted(missing) == [(1, c, z, 0) for c in range(2) for z in range(2)]
    back = list(reversed(order))
    for name, got in zip(back, backend.load_batch([store / n for n in back]), strict=True):
        np.testing.assert_array_equal(got, files[name])
    backend.flush()
    with PlateStore.open(store) as ps:
        info = ps.well_info("B03")
        assert info.shape[:3] == (3, 2, 2)
        assert dict(info.plane_names) == {ix_name("B03", *k): (*k, 0) for k in coords}
        assert not ps.read_plane("B03", field=1, c=1, z=1).any()


@pytest.mark.parametrize("scheme", ["imagexpress", "opera"])
def test_mis_sorted_names_of_both_schemes(
    tmp_path: Path, backend: ZarrStorageBackend, scheme: str
) -> None:
    coords = [(f, c, z) for f in range(2) for c in range(3) for z in range(2)]
    names = {
        k: ix_name("C05", *k) if scheme == "imagexpress" else opera_name(3, 5, *k) for k in coords
    }
    items = sorted(coords, key=lambda k: (k[2], -k[1], k[0]))  # any order but (field, c, z)
    backend.save_batch([plane(code(*k)) for k in items], [tmp_path / "p" / names[k] for k in items])
    backend.flush()
    with PlateStore.open(tmp_path / "p") as ps:
        assert ps.wells() == ["C05"]
        for k in coords:
            np.testing.assert_array_equal(ps.read_plane("C05", *k), plane(code(*k)))
    got = backend.load(tmp_path / "p" / names[(1, 2, 0)])
    np.testing.assert_array_equal(got, plane(code(1, 2, 0)))


def test_explicit_coords_and_well(tmp_path: Path, backend: ZarrStorageBackend) -> None:
    names = ["cell_a.tif", "cell_b.tif", "cell_c.tif"]
    coords = [(0, 1, 0), (1, 0, 0), (0, 0, 0)]
    backend.save_batch(
        [plane(code(*k)) for k in coords],
        [tmp_path / "p" / n for n in names],
        row="D",
        col="11",
        coords=coords,
        n_fields=2,
        n_channels=3,
    )
    with PlateStore.open(tmp_path / "p") as ps:
        assert ps.wells() == ["D11"]  # a plate's first well is listed at once
        assert ps.well_info("D11").shape[:3] == (2, 3, 1)
    fresh = ZarrStorageBackend()
    for name, k in zip(names, coords, strict=True):
        np.testing.assert_array_equal(fresh.load(tmp_path / "p" / name), plane(code(*k)))


def test_duplicate_coordinates_name_both_files(tmp_path: Path, backend: ZarrStorageBackend) -> None:
    names = ["A01_s1_w1.tif", "A01_s1_w1_z001.tif"]  # both field 0, channel 0, z 0
    with pytest.raises(
        WellDataError, match=r"A01_s1_w1\.tif.*A01_s1_w1_z001\.tif|A01_s1_w1_z001.*A01_s1_w1\.tif"
    ):
        backend.save_batch([plane(1), plane(2)], [tmp_path / "p" / n for n in names])
    assert not (tmp_path / "p" / "A").exists()


def test_batch_errors_name_the_file(tmp_path: Path, backend: ZarrStorageBackend) -> None:
    p = tmp_path / "p"
    with pytest.raises(WellDataError, match=r"'A02_s1_w1\.tif'.*A02"):
        backend.save_batch([plane(1), plane(2)], [p / "A01_s1_w1.tif", p / "A02_s1_w1.tif"])
    with pytest.raises(WellDataError, match=r"'A01_s3_w1\.tif'.*n_fields=2"):
        backend.save_batch(
            [plane(1), plane(2)], [p / "A01_s1_w1.tif", p / "A01_s3_w1.tif"], n_fields=2
        )
    with pytest.raises(WellDataError, match=r"'A01_s1_w1_z003\.tif'.*n_z=2"):
        backend.save_batch([plane(1)], [p / "A01_s1_w1_z003.tif"], n_z=2)
    with pytest.raises(WellNameError, match=r"'scan\.tif'"):
        backend.save_batch([plane(1)], [p / "scan.tif"])
    with pytest.raises(WellDataError, match="2 planes, 1 paths"):
        backend.save_batch([plane(1), plane(2)], [p / "A01_s1_w1.tif"])
    with pytest.raises(WellNameError, match="row= and col="):
        backend.save_batch([plane(1)], [p / "x.tif"], row="B", coords=[(0, 0, 0)])
    with pytest.raises(WellDataError, match="not in the store"):
        backend.save_batch(
            [plane(1), plane(2)], [p / "A01_s1_w1.tif", tmp_path / "q" / "A01_s2_w1.tif"]
        )
    assert backend.save_batch([], []) == []


def test_missing_files_raise_never_none(tmp_path: Path, backend: ZarrStorageBackend) -> None:
    store = tmp_path / "p"
    write_well(backend, store, "A01", [(0, 0, 0)])
    with pytest.raises(KeyError, match=r"A01_s9_w1\.tif"):
        backend.load(store / "A01_s9_w1.tif")
    with pytest.raises(PlaneNotFoundError, match=r"mystery\.tif"):
        backend.load_batch([store / ix_name("A01", 0, 0, 0), store / "mystery.tif"])
    with pytest.raises(FileNotFoundError, match="nowhere"):
        backend.load(tmp_path / "nowhere" / "A01_s1_w1.tif")
    with pytest.raises(FileNotFoundError):
        backend.load(store / "absent.json")


def test_save_never_overwrites(tmp_path: Path, backend: ZarrStorageBackend) -> None:
    store = tmp_path / "p"
    files = write_well(backend, store, "A01", [(0, 0, 0), (0, 1, 0)])
    with pytest.raises(WellExistsError, match="A01 already exists"):
        write_well(backend, store, "A01", [(1, 0, 0)])
    name = next(iter(files))
    with pytest.raises(FileExistsError, match=name):
        backend.save(plane(5), store / name)
    with pytest.raises(FileExistsError, match=name):  # same file name in another well
        backend.save_batch([plane(5)], [store / name], row="B", col="02", coords=[(0, 0, 0)])
    backend.save(plane(7), store / "flat.tif")
    with pytest.raises(FileExistsError):
        backend.save(plane(8), store / "flat.tif")
    np.testing.assert_array_equal(backend.load(store / "flat.tif"), plane(7))
    np.testing.assert_array_equal(backend.load(store / name), files[name])


# -- plain files ------------------------------------------------------------------------------


def test_passthrough_files(tmp_path: Path, backend: ZarrStorageBackend) -> None:
    d = tmp_path / "a" / "b"
    backend.save({"k": [1, 2]}, d / "meta.json")
    backend.save("x,y\n1,2\n", d / "t.csv")
    backend.save("hello", d / "n.txt")
    backend.save(b"PK\x03\x04", d / "r.roi.zip")
    assert json.loads((d / "meta.json").read_text()) == {"k": [1, 2]}
    assert backend.load(d / "meta.json") == {"k": [1, 2]}
    assert backend.load_batch([d / "t.csv", d / "n.txt"]) == ["x,y\n1,2\n", "hello"]
    assert backend.load(d / "r.roi.zip") == b"PK\x03\x04"
    assert backend.is_file(d / "n.txt")
    assert backend.stat(d / "n.txt")["type"] == "file"
    with pytest.raises(FileExistsError):
        backend.save("again", d / "n.txt")
    assert (d / "n.txt").read_text() == "hello"
    with pytest.raises(WellDataError, match=r"n2\.txt"):
        backend.save({"no": "json"}, d / "n2.txt")
    backend.delete(d / "n.txt")
    assert not backend.exists(d / "n.txt")


def test_plain_files_and_a_plate_share_a_directory(
    tmp_path: Path, backend: ZarrStorageBackend
) -> None:
    store = tmp_path / "images"
    backend.save({"plate": "x"}, store / "openhcs_metadata.json")
    files = write_well(backend, store, "B02", [(0, 0, 0)])
    backend.close()
    assert backend.load(store / "openhcs_metadata.json") == {"plate": "x"}
    assert backend.list_dir(store) == sorted([*files, "openhcs_metadata.json"])
    with PlateStore.open(store) as ps:
        assert ps.wells() == ["B02"]


# -- listing and queries ---------------------------------------------------------------------


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    with ZarrStorageBackend() as b:
        store = tmp_path / "images"
        write_well(b, store, "A01", [(0, c, 0) for c in range(2)])
        write_well(b, store, "B02", [(0, c, 0) for c in range(2)], 1)
        b.save(plane(9), store / "extra.TIF")
        b.save("a", store / "notes.txt")
        b.save("a", tmp_path / "sub" / "deep.txt")
        write_well(b, tmp_path / "sub" / "inner", "C03", [(0, 0, 0)])
    return tmp_path


def test_list_files_filters(tree: Path, backend: ZarrStorageBackend) -> None:
    store = tree / "images"
    names = [p.name for p in backend.list_files(store)]
    assert names == sorted(
        [*(ix_name(w, 0, c, 0) for w in ("A01", "B02") for c in range(2)), "extra.TIF", "notes.txt"]
    )
    assert all(p.parent == store for p in backend.list_files(store))
    assert [p.name for p in backend.list_files(store, pattern="*_w2_*")] == [
        ix_name("A01", 0, 1, 0),
        ix_name("B02", 0, 1, 0),
    ]
    assert len(backend.list_files(store, extensions={".tif"})) == 5  # case-insensitive
    assert [p.name for p in backend.list_files(store, extensions=[".TXT"])] == ["notes.txt"]
    flat = {p.relative_to(tree).as_posix() for p in backend.list_files(tree)}
    assert flat == set()
    deep = {p.relative_to(tree).as_posix() for p in backend.list_files(tree, recursive=True)}
    assert {"sub/deep.txt", f"sub/inner/{ix_name('C03', 0, 0, 0)}", "images/extra.TIF"} <= deep
    assert not any("/A/" in p or p.endswith("zarr.json") for p in deep)
    with pytest.raises(FileNotFoundError):
        backend.list_files(tree / "missing")


def test_list_dir(tree: Path, backend: ZarrStorageBackend) -> None:
    assert backend.list_dir(tree) == ["images", "sub"]
    assert backend.list_dir(tree / "sub") == ["deep.txt", "inner"]
    assert "zarr.json" not in backend.list_dir(tree / "images")
    assert "A" not in backend.list_dir(tree / "images")
    with pytest.raises(NotADirectoryError):
        backend.list_dir(tree / "images" / "extra.TIF")


def test_exists_is_file_is_dir_stat(tree: Path, backend: ZarrStorageBackend) -> None:
    store = tree / "images"
    f = store / ix_name("B02", 0, 1, 0)
    assert backend.exists(f)
    assert backend.is_file(f)
    assert not backend.is_dir(f)
    assert backend.exists(store)
    assert backend.is_dir(store)
    assert not backend.is_file(store)
    assert backend.stat(f) | {"store": None} == {
        "type": "file",
        "key": f.name,
        "store": None,
        "exists": True,
        "well": "B02",
        "plane": [0, 1, 0, 0],
    }
    assert backend.stat(store)["type"] == "directory"
    assert backend.stat(store / "extra.TIF")["type"] == "file"
    for missing in (
        store / "A01_s7_w1.tif",
        tree / "nope",
        tree / "nope" / "x.tif",
        store / "x.json",
    ):
        assert not backend.exists(missing)
        assert backend.stat(missing)["type"] == "missing"
        with pytest.raises(FileNotFoundError):
            backend.is_file(missing)
        with pytest.raises(FileNotFoundError):
            backend.is_dir(missing)
    assert split_path(store / "x.tif") == (store, "x.tif")
    assert split_path(store) == (store, "")


def test_read_only_calls_write_nothing(tree: Path) -> None:
    store = tree / "images"
    with ZarrStorageBackend() as b:
        b.create_symlink(store / "extra.TIF", store / "link.tif")
    before = snapshot(tree)
    fixtures = {p: snapshot(p) for p in DATA.glob("openhcs*plate") if p.is_dir()}
    time.sleep(0.01)
    b = ZarrStorageBackend()
    paths = [
        *(store / n for n in (ix_name("A01", 0, 1, 0), "link.tif", "extra.TIF", "notes.txt")),
        *(tree / n for n in ("images", "sub", "gone", "gone.json", "gone/x.tif")),
        *(store / n for n in ("gone.tif", "A/01")),
        *(p / "images" / "A01_s1_w1_z001.tif" for p in fixtures),
    ]
    for p in paths:
        b.exists(p)
        b.stat(p)
        b.is_symlink(p)
        for call in (b.is_file, b.is_dir, b.load):
            try:
                call(p)
            except (FileNotFoundError, KeyError, IsADirectoryError):
                pass
    b.load_batch([store / ix_name("B02", 0, 0, 0), store / "link.tif"])
    for d in (tree, store, tree / "sub", *(p / "images" for p in fixtures)):
        b.list_files(d, recursive=True)
        b.list_dir(d)
    b.close()
    del b
    gc.collect()
    assert snapshot(tree) == before
    assert {p: snapshot(p) for p in fixtures} == fixtures


def test_lookup_reads_only_the_wells_it_needs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = tmp_path / "p"
    with ZarrStorageBackend() as b:
        for i, well in enumerate(["A01", "A02", "B01", "B02", "C01", "C02"]):
            write_well(b, store, well, [(0, 0, 0), (0, 1, 0)], i)
        b.save_batch([plane(3)], [store / "odd.tif"], row="H", col="12", coords=[(0, 0, 0)])
    opened: list[str] = []
    real = PlateStore.well_info

    def counting(self: PlateStore, well: Any) -> Any:
        opened.append(str(well))
        return real(self, well)

    monkeypatch.setattr(PlateStore, "well_info", counting)
    b = ZarrStorageBackend()
    for _ in range(3):
        got = b.load_batch([store / ix_name("B02", 0, 1, 0), store / ix_name("B02", 0, 0, 0)])
        np.testing.assert_array_equal(got[0], plane(code(0, 1, 0, 3)))
    assert set(opened) == {"B02"}
    opened.clear()
    for _ in range(3):  # a name that says nothing about its well: one index, built once
        np.testing.assert_array_equal(b.load(store / "odd.tif"), plane(3))
    assert sorted(opened) == sorted({"A01", "A02", "B01", "C01", "C02", "H12"})


def test_reader_sees_wells_written_later_by_another_backend(tmp_path: Path) -> None:
    store = tmp_path / "p"
    writer, reader = ZarrStorageBackend(), ZarrStorageBackend()
    write_well(writer, store, "A01", [(0, 0, 0)])
    writer.flush()
    assert reader.exists(store / ix_name("A01", 0, 0, 0))
    assert not reader.exists(store / ix_name("A02", 0, 0, 0))
    files = write_well(writer, store, "A02", [(0, 0, 0)], 5)
    writer.close()
    [(name, data)] = files.items()
    np.testing.assert_array_equal(reader.load(store / name), data)


# -- delete, copy, move ----------------------------------------------------------------------


def test_delete_and_delete_all(tree: Path, backend: ZarrStorageBackend) -> None:
    store = tree / "images"
    plane_file = store / ix_name("A01", 0, 0, 0)
    with pytest.raises(PermissionError, match="well A01"):
        backend.delete(plane_file)
    with pytest.raises(StoreReadOnlyError):
        backend.delete_all(plane_file)
    assert backend.exists(plane_file)
    backend.delete(store / "extra.TIF")
    assert not backend.exists(store / "extra.TIF")
    (tree / "empty").mkdir()
    backend.delete(tree / "empty")
    assert not (tree / "empty").exists()
    with pytest.raises(IsADirectoryError):
        backend.delete(tree / "sub")
    with pytest.raises(StoreReadOnlyError, match="inside the plate"):
        backend.delete_all(store / "A" / "01")
    with pytest.raises(FileNotFoundError):
        backend.delete(store / "never.json")
    backend.delete_all(tree / "sub")
    assert not (tree / "sub").exists()
    backend.delete_all(store)
    assert not store.exists()
    assert not backend.exists(plane_file)


def test_copy_and_move(tree: Path, backend: ZarrStorageBackend) -> None:
    store, other = tree / "images", tree / "other"
    src = store / ix_name("B02", 0, 1, 0)
    backend.copy(src, store / "copy.tif")
    backend.copy(src, other / "elsewhere.tif")
    for dst in (store / "copy.tif", other / "elsewhere.tif"):
        np.testing.assert_array_equal(backend.load(dst), plane(code(0, 1, 0, 1)))
    with pytest.raises(FileExistsError):
        backend.copy(src, store / "copy.tif")
    with pytest.raises(PermissionError, match="copy it instead"):
        backend.move(src, store / "moved.tif")
    backend.move(store / "copy.tif", store / "renamed.tif")
    assert not backend.exists(store / "copy.tif")
    np.testing.assert_array_equal(backend.load(store / "renamed.tif"), plane(code(0, 1, 0, 1)))
    backend.move(store / "notes.txt", tree / "notes" / "n.txt")
    assert backend.load(tree / "notes" / "n.txt") == "a"
    assert not (store / "notes.txt").exists()
    backend.copy(store, tree / "copy_of_images")
    backend.move(tree / "copy_of_images", tree / "moved_images")
    with pytest.raises(FileExistsError):
        backend.copy(store, tree / "moved_images")
    got = backend.load_batch([tree / "moved_images" / ix_name(w, 0, 0, 0) for w in ("A01", "B02")])
    np.testing.assert_array_equal(got[1], plane(code(0, 0, 0, 1)))
    assert not (tree / "moved_images" / ".wellzarr.lock").exists()


# -- symlinks --------------------------------------------------------------------------------


def test_symlinks(tree: Path, backend: ZarrStorageBackend) -> None:
    store = tree / "images"
    target = store / ix_name("A01", 0, 1, 0)
    root_attrs = plate_attrs(store)
    backend.create_symlink(target, store / "l1.tif")
    backend.create_symlink(store / "l1.tif", store / "l2.tif")
    np.testing.assert_array_equal(backend.load(store / "l2.tif"), plane(code(0, 1, 0)))
    assert backend.is_symlink(store / "l2.tif")
    assert not backend.is_symlink(target)
    assert backend.stat(store / "l2.tif") | {"store": None} == {
        "type": "symlink", "key": "l2.tif", "target": "l1.tif", "store": None, "exists": True,
    }  # fmt: skip
    assert backend.is_file(store / "l2.tif")
    assert {"l1.tif", "l2.tif"} <= {p.name for p in backend.list_files(store)}
    assert plate_attrs(store) == root_attrs  # nothing in the OME metadata
    with pytest.raises(FileExistsError):
        backend.create_symlink(target, store / "l2.tif")
    with pytest.raises(FileExistsError, match="not a symlink"):
        backend.create_symlink(store / "extra.TIF", target, overwrite=True)
    backend.create_symlink(store / "extra.TIF", store / "l1.tif", overwrite=True)
    np.testing.assert_array_equal(backend.load(store / "l2.tif"), plane(9))
    with pytest.raises(SymlinkCycleError, match=r"l1\.tif -> l2\.tif -> l1\.tif"):
        backend.create_symlink(store / "l2.tif", store / "l1.tif", overwrite=True)
    np.testing.assert_array_equal(backend.load(store / "l1.tif"), plane(9))
    sub = re.escape(str(tree / "sub"))
    with pytest.raises(ValueError, match=f"{sub}.*{re.escape(str(store))}"):
        backend.create_symlink(target, tree / "sub" / "x.tif")
    with pytest.raises(KeyError, match=r"absent\.tif"):
        backend.create_symlink(store / "absent.tif", store / "l3.tif")
    backend.move(store / "l2.tif", store / "l2b.tif")
    np.testing.assert_array_equal(backend.load(store / "l2b.tif"), plane(9))
    backend.delete(store / "l2b.tif")
    assert not backend.exists(store / "l2b.tif")
    assert backend.exists(store / "l1.tif")


def test_symlink_cycle_on_disk_is_reported(tree: Path, backend: ZarrStorageBackend) -> None:
    store = tree / "images"
    links = {"a.tif": "b.tif", "b.tif": "c.tif", "c.tif": "a.tif"}
    (store / SYMLINKS_FILE).write_text(json.dumps({"wellzarr_symlinks": links}))
    with pytest.raises(SymlinkCycleError, match=r"a\.tif -> b\.tif -> c\.tif -> a\.tif"):
        backend.load(store / "a.tif")
    with pytest.raises(OSError, match="cycle"):
        backend.is_file(store / "b.tif")


# -- GPU-like arrays -------------------------------------------------------------------------


class FakeCupy:
    """Looks like a CuPy array: only ``.get()`` returns host memory."""

    __module__ = "cupy._core.core"

    def __init__(self, host: np.ndarray) -> None:
        self._host = host
        self.shape, self.dtype = host.shape, host.dtype

    def get(self) -> np.ndarray:
        return self._host.copy()


class DLPackOnly:
    """A device-agnostic array that offers only the DLPack protocol."""

    def __init__(self, host: np.ndarray) -> None:
        self._host = host

    def __dlpack__(self, **kwargs: Any) -> Any:
        return self._host.__dlpack__(**kwargs)

    def __dlpack_device__(self) -> Any:
        return self._host.__dlpack_device__()


class ArrayLike:
    def __init__(self, host: np.ndarray) -> None:
        self._host = host

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        return self._host if dtype is None else self._host.astype(dtype)


@pytest.mark.parametrize("wrap", [FakeCupy, DLPackOnly, ArrayLike])
def test_gpu_like_arrays_are_saved(tmp_path: Path, backend: ZarrStorageBackend, wrap: type) -> None:
    store = tmp_path / "p"
    names = [ix_name("A01", 0, c, 0) for c in range(2)]
    backend.save_batch([wrap(plane(code(0, c, 0))) for c in range(2)], [store / n for n in names])
    backend.save(wrap(plane(77)), store / "single.tif")
    np.testing.assert_array_equal(backend.load(store / names[1]), plane(code(0, 1, 0)))
    np.testing.assert_array_equal(backend.load(store / "single.tif"), plane(77))


# -- plate metadata --------------------------------------------------------------------------


def test_plate_metadata_lists_wells_in_plate_order(tmp_path: Path, ngff_version: str) -> None:
    from ome_zarr_models import open_ome_zarr

    store = tmp_path / "plate"
    backend = ZarrStorageBackend(StorageConfig(ngff_version=ngff_version))
    for i, well in enumerate(["B10", "B02", "A01"]):
        write_well(backend, store, well, [(0, 0, 0), (1, 0, 0)], i)
    backend.save(plane(42), store / "flat.tif")  # a standalone array in a plate of this version
    backend.close()
    np.testing.assert_array_equal(ZarrStorageBackend().load(store / "flat.tif"), plane(42))
    block = plate_block(store)
    assert [w["path"] for w in block["wells"]] == ["A/01", "B/02", "B/10"]
    assert [(w["rowIndex"], w["columnIndex"]) for w in block["wells"]] == [(0, 0), (1, 1), (1, 9)]
    assert len(block["rows"]) == 8
    assert len(block["columns"]) == 12
    model = open_ome_zarr(store)
    assert type(model).__name__ == "HCS"
    assert type(model).__module__.endswith(f"v0{ngff_version[-1]}.hcs")


def test_1536_well_plate_rows_beyond_z(tmp_path: Path) -> None:
    from ome_zarr_models import open_ome_zarr

    store = tmp_path / "plate"
    with ZarrStorageBackend(StorageConfig(plate=1536)) as backend:
        write_well(backend, store, "AA05", [(0, 0, 0)])
        write_well(backend, store, "Z48", [(0, 0, 0)], 1)
        write_well(backend, store, "AF01", [(0, 0, 0)], 2)
    block = plate_block(store)
    assert [(w["path"], w["rowIndex"], w["columnIndex"]) for w in block["wells"]] == [
        ("Z/48", 25, 47),
        ("AA/05", 26, 4),
        ("AF/01", 31, 0),
    ]
    assert len(block["rows"]) == 32
    assert type(open_ome_zarr(store)).__name__ == "HCS"
    np.testing.assert_array_equal(
        ZarrStorageBackend().load(store / ix_name("AA05", 0, 0, 0)), plane(code(0, 0, 0))
    )


def test_flush_policy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(openhcs_index, "LIST_EVERY_S", 3600.0)  # no second listing by time
    a, b = tmp_path / "a", tmp_path / "b"
    backend = ZarrStorageBackend()
    write_well(backend, a, "A01", [(0, 0, 0)])
    write_well(backend, a, "A02", [(0, 0, 0)])
    assert [w["path"] for w in plate_block(a)["wells"]] == ["A/01"]  # the first, not per well
    write_well(backend, b, "A01", [(0, 0, 0)])  # a batch for another store flushes the first
    assert [w["path"] for w in plate_block(a)["wells"]] == ["A/01", "A/02"]
    assert [w["path"] for w in plate_block(b)["wells"]] == ["A/01"]
    write_well(backend, b, "A02", [(0, 0, 0)])
    assert [w["path"] for w in plate_block(b)["wells"]] == ["A/01"]
    del backend  # forgotten: flushed when collected
    gc.collect()
    assert [w["path"] for w in plate_block(b)["wells"]] == ["A/01", "A/02"]


# -- concurrency -----------------------------------------------------------------------------


def test_threads_share_one_backend(tmp_path: Path) -> None:
    store = tmp_path / "p"
    backend = ZarrStorageBackend()
    wells = [f"{r}{c:02d}" for r in "ABCD" for c in (1, 2)]
    with ThreadPoolExecutor(4) as pool:
        written = list(
            pool.map(
                lambda i: write_well(backend, store, wells[i], [(0, 0, 0), (1, 1, 0)], i), range(8)
            )
        )
    backend.close()
    with PlateStore.open(store) as ps:
        assert ps.wells() == wells
    files = {k: v for w in written for k, v in w.items()}
    reader = ZarrStorageBackend()
    with ThreadPoolExecutor(4) as pool:
        loaded = list(pool.map(lambda n: reader.load(store / n), files))
    for got, want in zip(loaded, files.values(), strict=True):
        np.testing.assert_array_equal(got, want)


WRITER = """
import sys, time
from pathlib import Path
import numpy as np
from napari_wellzarr.openhcs.backend import ZarrStorageBackend
store, go, wells, close = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3].split(","), sys.argv[4]
backend = ZarrStorageBackend()
(go.parent / f"ready-{wells[0]}").touch()
while not go.exists():
    time.sleep(0.002)
for well in wells:
    coords = [(f, c) for f in range(2) for c in range(2)]
    names = [f"{well}_s{f + 1}_w{c + 1}.tif" for f, c in coords]
    data = [np.full((8, 8), 100 * int(well[1:]) + 10 * f + c, np.uint16) for f, c in coords]
    backend.save_batch(data, [store / n for n in names])
if close == "1":
    backend.close()
"""


def test_concurrent_writer_processes(tmp_path: Path) -> None:
    store, go = tmp_path / "plate" / "images", tmp_path / "go"
    groups = [["A01", "B02"], ["A03", "B04"], ["C05", "D06"], ["E07", "F08"]]
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, str(store), str(go), ",".join(g), str(i % 2)],
            stderr=subprocess.PIPE,
        )
        for i, g in enumerate(groups)
    ]
    deadline = time.monotonic() + 30
    while len(list(tmp_path.glob("ready-*"))) < len(procs) and time.monotonic() < deadline:
        time.sleep(0.01)
    go.touch()  # all writers start together
    errors = [p.communicate(timeout=60)[1].decode() for p in procs]
    assert [p.returncode for p in procs] == [0] * 4, errors
    wells = sorted(w for g in groups for w in g)
    with PlateStore.open(store) as ps:
        assert ps.wells() == wells
    backend = ZarrStorageBackend()
    names = [f"{w}_s{f + 1}_w{c + 1}.tif" for w in wells for f in range(2) for c in range(2)]
    assert sorted(p.name for p in backend.list_files(store)) == sorted(names)
    for name, got in zip(names, backend.load_batch([store / n for n in names]), strict=True):
        f, c = int(name.split("_s")[1][0]) - 1, int(name.split("_w")[1][0]) - 1
        assert got[0, 0] == 100 * int(name[1:3]) + 10 * f + c


# -- plates written by OpenHCS / polystore ---------------------------------------------------

FIXTURES = ["openhcs_plate", "openhcs_seed_plate"]


@pytest.mark.parametrize("fixture", FIXTURES)
def test_reads_plates_written_by_openhcs(fixture: str) -> None:
    plate_dir = DATA / fixture
    if not (plate_dir / "expected.json").exists():
        pytest.skip(f"fixture {plate_dir} is absent (made by tests/data/make_openhcs_fixture.py)")
    expected = json.loads((plate_dir / "expected.json").read_text())
    store = plate_dir / expected["store"]
    backend = ZarrStorageBackend()
    names = list(expected["files"])
    random.Random(3).shuffle(names)
    for name, got in zip(names, backend.load_batch([store / n for n in names]), strict=True):
        rec = expected["files"][name]
        assert got.shape == tuple(expected["plane_shape"])
        assert str(got.dtype) == expected["dtype"]
        assert int(got[0, 0]) == rec["pixel_0_0"]
        assert hashlib.sha256(np.ascontiguousarray(got).tobytes()).hexdigest() == rec["sha256"], (
            name
        )
        stat = backend.stat(store / name)
        assert stat["well"] == rec["well"]
        assert stat["plane"][:3] == [
            rec["field"],
            rec["channel"],
            rec["z"],
        ]
    assert sorted(p.name for p in backend.list_files(store, extensions={".tif"})) == sorted(names)
    for well in expected["missing_wells"]:
        with pytest.raises(KeyError):
            backend.load(store / f"{well}_s1_w1_z001.tif")


@pytest.mark.parametrize("fixture", FIXTURES)
def test_plate_store_maps_the_file_names_of_openhcs_plates(fixture: str) -> None:
    # openhcs_filename_map (seed) and polystore_filename_map (one per field image) both
    # reach WellInfo.plane_names, so PlateStore knows every file without the backend.
    plate_dir = DATA / fixture
    if not (plate_dir / "expected.json").exists():
        pytest.skip(f"fixture {plate_dir} is absent (made by tests/data/make_openhcs_fixture.py)")
    expected = json.loads((plate_dir / "expected.json").read_text())
    store = PlateStore.open(plate_dir / expected["store"])
    for name, rec in expected["files"].items():
        key = store.plane_key(rec["well"], name)
        assert tuple(key) == (rec["field"], rec["channel"], rec["z"], 0), name
        plane = store.read_plane(rec["well"], *key)
        assert hashlib.sha256(np.ascontiguousarray(plane).tobytes()).hexdigest() == rec["sha256"]
    for well in expected["wells"]:
        names = {n for n, rec in expected["files"].items() if rec["well"] == well}
        assert set(store.well_info(well).plane_names) == names
        with pytest.raises(PlaneNotFoundError):
            store.plane_key(well, f"{well}_s9_w9_z009.tif")


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        ({"polystore_filename_map": {"A03_s2_w1_z001.tif": [0]}}, "does not match"),
        ({"polystore_filename_map": {"A03_s2_w1_z001.tif": [0, -1]}}, "does not match"),
        ({"polystore_filename_map": {"A03_s2_w1_z001.tif": [True, 0]}}, "does not match"),
        ({"polystore_filename_map": ["A03_s2_w1_z001.tif"]}, "are not JSON objects"),
        ({"polystore_dimensions": None}, "are not JSON objects"),
        ({"polystore_dimensions": {"q": {"size": 2, "role": "array"}}}, "not supported"),
        ({"polystore_filename_map": {"A03_s1_w1_z001.tif": [0, 0]}}, "maps 'A03_s1_w1_z001.tif'"),
    ],
)
def test_malformed_polystore_file_map_names_the_well(
    tmp_path: Path, edit: dict[str, object], message: str
) -> None:
    plate_dir = DATA / "openhcs_plate"
    if not (plate_dir / "expected.json").exists():
        pytest.skip(f"fixture {plate_dir} is absent (made by tests/data/make_openhcs_fixture.py)")
    root = tmp_path / "images"
    shutil.copytree(plate_dir / "images", root)
    attrs_file = root / "A" / "03" / "1" / "0" / ".zattrs"  # field 2 of well A03
    attrs = json.loads(attrs_file.read_text())
    attrs_file.write_text(json.dumps({**attrs, **edit}))
    store = PlateStore.open(root)
    with pytest.raises(MetadataError, match="well A03") as info:
        store.plane_key("A03", "A03_s2_w1_z001.tif")
    assert message in str(info.value)
    assert store.plane_key("A01", "A01_s2_w1_z001.tif") == (1, 0, 0, 0)


def test_plates_without_polystore_maps_read_no_field_array_attrs(
    make_plate: Callable[..., Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    # A per-field well with no openhcs_filename_map: only the first field's level-0
    # array (opened anyway) is looked at for a polystore map, no other field's.
    from napari_wellzarr.storage import reading

    config = StorageConfig(fields=FieldArrangement.PER_FIELD)
    root = make_plate({"B03": np.zeros((3, 1, 1, *SHAPE), np.uint16)}, config)
    read: list[Path] = []
    real = reading.fsio.read_attrs

    def spy(path: Path, zarr_format: int) -> dict[str, object]:
        read.append(Path(path))
        return real(path, zarr_format)

    monkeypatch.setattr(reading.fsio, "read_attrs", spy)
    info = PlateStore.open(root).well_info("B03")
    assert info.plane_names == {}
    assert not info.stacked
    assert info.n_fields == 3
    field_arrays = {root / info.path / image / "0" for image in info.image_paths}
    assert read
    assert not field_arrays & set(read)
