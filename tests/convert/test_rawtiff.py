"""Plain TIFFs read without tifffile: the scan's pixel spans, checked against tifffile."""

from __future__ import annotations

import dataclasses
import os
import pickle
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest
import tifffile

from napari_wellzarr.convert.engine import convert, scan_source
from napari_wellzarr.convert.plaintiff import read_plain
from napari_wellzarr.convert.plan import SourcePlane
from napari_wellzarr.convert.tiffio import read_header, read_raw_into, read_stacks, tifffile_header
from napari_wellzarr.convert.welljob import WellJob, assemble
from napari_wellzarr.errors import WellDataError
from napari_wellzarr.storage.axes import PlaneKey
from napari_wellzarr.storage.config import StorageConfig
from tests.convert.helpers import plate_digest

if TYPE_CHECKING:
    from collections.abc import Iterator

    from napari_wellzarr.convert.plan import ConversionPlan

DATA = Path(__file__).resolve().parents[1] / "data"
TIFFS = sorted(p for p in DATA.rglob("*") if p.suffix.lower() in (".tif", ".tiff"))


def _plane(shape: tuple[int, int] = (48, 40), dtype: Any = np.uint16, seed: int = 0) -> Any:
    rng = np.random.default_rng(seed)
    info = np.iinfo(dtype) if np.dtype(dtype).kind in "iu" else None
    high = min(info.max, 60000) if info is not None else 1.0
    if info is None:
        return rng.random(shape).astype(dtype)
    return rng.integers(0, high, shape, dtype=dtype)


def _without_spans(plan: ConversionPlan) -> ConversionPlan:
    """The same plan as the previous version made it: no pixel spans, tifffile reads all."""
    wells = tuple(
        dataclasses.replace(
            w,
            planes=tuple(dataclasses.replace(p, span=None) for p in w.planes),
            projections=tuple(dataclasses.replace(p, span=None) for p in w.projections),
        )
        for w in plan.wells
    )
    return dataclasses.replace(plan, wells=wells)


def _job(planes: tuple[SourcePlane, ...], shape: tuple[int, ...], dtype: str) -> WellJob:
    return WellJob("unused", "run", "A01", 0, 0, planes, shape, dtype, ("c1",))


# --- every TIFF of the real exports ------------------------------------------------------


@pytest.mark.parametrize("path", TIFFS, ids=lambda p: str(p.relative_to(DATA)))
def test_every_real_tiff_reads_the_same_pixels_as_tifffile(path: Path) -> None:
    header = read_header(str(path))
    with tifffile.TiffFile(path) as tif:
        compression = tif.pages.first.compression
        expected = tif.series[0].asarray().reshape(-1, *header.plane_shape)
    if header.span is None:
        # only files tifffile must decode go without a span
        assert compression != tifffile.COMPRESSION.NONE, path
        return
    assert compression == tifffile.COMPRESSION.NONE
    out = np.full((header.pages, *header.plane_shape), 7, dtype=header.dtype)
    assert read_raw_into(str(path), header.span, [(i, out[i]) for i in range(header.pages)])
    np.testing.assert_array_equal(out, expected)
    assert out.dtype == expected.dtype.newbyteorder("=")


def test_the_real_exports_hold_files_of_both_kinds() -> None:
    spans = [read_header(str(p)).span is not None for p in TIFFS]
    assert any(spans)  # (the MetaXpress exports: uncompressed)
    assert not all(spans)  # (CV8000, Operetta, Phenix: deflate and LZW)


@pytest.mark.parametrize("export", ["ixm_exported"])  # (the other exports: compressed)
def test_a_real_export_converts_to_the_same_plate_as_through_tifffile(
    export: str, tmp_path: Path
) -> None:
    plan = scan_source(DATA / export)
    spans = [p.span for w in plan.wells for p in (*w.planes, *w.projections)]
    assert any(s is not None for s in spans)
    config = StorageConfig()
    raw, parsed = tmp_path / "raw" / "plate.zarr", tmp_path / "tifffile" / "plate.zarr"
    assert convert(plan, raw, config).complete
    assert convert(_without_spans(plan), parsed, config).complete
    assert plate_digest(raw) == plate_digest(parsed)  # byte for byte


# --- kinds of files ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("dtype", "byteorder"),
    [("uint16", ">"), ("float32", ">"), ("int32", ">"), ("uint8", ">"), ("uint16", "<")],
)
def test_a_big_endian_file_is_swapped_into_native_order(
    tmp_path: Path, dtype: str, byteorder: str
) -> None:
    data = _plane(dtype=np.dtype(dtype), seed=3)
    path = tmp_path / "plane.tif"
    tifffile.imwrite(path, data, byteorder=byteorder)
    header = read_header(str(path))
    assert header.span is not None
    assert header.span.big_endian is (byteorder == ">")
    out = np.zeros(data.shape, dtype=header.dtype)
    assert read_raw_into(str(path), header.span, [(0, out)])
    np.testing.assert_array_equal(out, data)


@pytest.mark.parametrize(
    "options",
    [{"compression": "zlib"}, {"compression": "lzw"}, {"tile": (16, 16)}, {"predictor": True}],
    ids=["deflate", "lzw", "tiled", "predictor"],
)
def test_a_compressed_or_tiled_file_is_left_to_tifffile(
    tmp_path: Path, options: dict[str, Any]
) -> None:
    data = _plane((64, 64), seed=4)
    path = tmp_path / "plane.tif"
    if "predictor" in options:
        options = {"compression": "zlib", "predictor": True}
    tifffile.imwrite(path, data, **options)
    header = read_header(str(path))
    assert header.span is None
    plane = SourcePlane(str(path), "plane.tif", PlaneKey(0, 0, 0, 0), span=header.span)
    np.testing.assert_array_equal(
        assemble(_job((plane,), (1, 1, 1, 64, 64), "uint16"))[0, 0, 0], data
    )


def test_a_stacks_pages_are_read_into_their_z_planes(tmp_path: Path) -> None:
    stack = np.stack([_plane(seed=s) for s in range(5)])
    path = tmp_path / "stack.tif"
    tifffile.imwrite(path, stack, photometric="minisblack", rowsperstrip=7)
    header = read_header(str(path))
    assert header.span is not None
    assert header.pages == 5
    planes = tuple(
        SourcePlane(str(path), f"stack#{z + 1}", PlaneKey(0, 0, z, 0), z, header.span)
        for z in (4, 0, 2)  # some pages, out of order
    )
    well = assemble(_job(planes, (1, 1, 5, 48, 40), "uint16"))
    for z in (0, 2, 4):
        np.testing.assert_array_equal(well[0, 0, z], stack[z])
    assert not well[0, 0, 1].any()  # missing: fill value
    assert not well[0, 0, 3].any()


# --- files changed after the scan ---------------------------------------------------------


@pytest.fixture
def scanned(tmp_path: Path) -> tuple[Path, SourcePlane, Any]:
    data = _plane(seed=5)
    path = tmp_path / "plane.tif"
    tifffile.imwrite(path, data)
    header = read_header(str(path))
    assert header.span is not None
    return path, SourcePlane(str(path), path.name, PlaneKey(0, 0, 0, 0), span=header.span), data


def test_a_file_truncated_after_the_scan_is_named(scanned: tuple[Path, SourcePlane, Any]) -> None:
    path, plane, _ = scanned
    os.truncate(path, path.stat().st_size - 100)
    with pytest.raises(WellDataError, match=str(path)):
        assemble(_job((plane,), (1, 1, 1, 48, 40), "uint16"))


def test_a_file_truncated_before_the_scan_is_left_to_tifffile(tmp_path: Path) -> None:
    path = tmp_path / "plane.tif"
    tifffile.imwrite(path, _plane(seed=12))
    os.truncate(path, path.stat().st_size - 10)
    header = read_header(str(path))  # (tifffile reads the tags, not the pixels)
    assert header.span is None
    plane = SourcePlane(str(path), path.name, PlaneKey(0, 0, 0, 0), span=header.span)
    with pytest.raises(WellDataError, match=str(path)):
        assemble(_job((plane,), (1, 1, 1, 48, 40), "uint16"))


@pytest.mark.parametrize("page", [1, 5])
def test_a_page_beyond_the_span_is_named(scanned: tuple[Path, SourcePlane, Any], page: int) -> None:
    path, plane, _ = scanned
    assert plane.span is not None
    out = np.zeros((48, 40), np.uint16)
    with pytest.raises(WellDataError, match=f"{path}.*holds 1 plane"):
        read_raw_into(str(path), plane.span, [(page, out)])


def test_a_file_replaced_after_the_scan_is_read_as_it_is_now(
    scanned: tuple[Path, SourcePlane, Any],
) -> None:
    path, plane, data = scanned
    other = _plane(seed=6)
    tifffile.imwrite(path, other, description="a longer description moves the pixels")
    well = assemble(_job((plane,), (1, 1, 1, 48, 40), "uint16"))
    np.testing.assert_array_equal(well[0, 0, 0], other)  # never the old offsets' bytes
    assert not np.array_equal(other, data)


def test_a_file_replaced_by_another_shape_is_named(
    scanned: tuple[Path, SourcePlane, Any],
) -> None:
    path, plane, _ = scanned
    tifffile.imwrite(path, _plane((40, 48), seed=7))
    with pytest.raises(WellDataError, match=f"{path}.*changed since the scan"):
        assemble(_job((plane,), (1, 1, 1, 48, 40), "uint16"))


def test_a_file_removed_after_the_scan_is_named(scanned: tuple[Path, SourcePlane, Any]) -> None:
    path, plane, _ = scanned
    path.unlink()
    with pytest.raises(WellDataError, match=str(path)):
        assemble(_job((plane,), (1, 1, 1, 48, 40), "uint16"))


# --- plans of the previous version ----------------------------------------------------------


def test_a_plane_pickled_before_spans_existed_reads_through_tifffile(
    scanned: tuple[Path, SourcePlane, Any],
) -> None:
    _, plane, data = scanned
    old = object.__new__(SourcePlane)  # as the previous version pickled it: no span at all
    for name in ("path", "name", "key", "page"):
        object.__setattr__(old, name, getattr(plane, name))
    assert "span" not in old.__dict__
    loaded = pickle.loads(pickle.dumps(old))
    assert loaded.span is None
    well = assemble(_job((loaded,), (1, 1, 1, 48, 40), "uint16"))
    np.testing.assert_array_equal(well[0, 0, 0], data)


# --- S3 sources: a ranged GET of the pixels alone -------------------------------------------


@pytest.fixture(scope="module")
def s3() -> Iterator[Any]:
    from tests.cluster.servers import S3
    from tests.remote.servers import serving

    with serving(S3()) as server:
        yield server


def _put(s3: Any, tmp_path: Path, name: str, data: Any, **options: Any) -> str:
    path = tmp_path / name
    tifffile.imwrite(path, data, **options)
    key = f"rawtiff/{uuid.uuid4().hex}/{name}"
    s3.client().put_object(Bucket="plates", Key=key, Body=path.read_bytes())
    return s3.url(key)


def test_an_s3_object_is_read_by_a_ranged_get_of_its_pixels(s3: Any, tmp_path: Path) -> None:
    from napari_wellzarr.convert.srcfs import fetched

    data = _plane(seed=8)
    url = _put(s3, tmp_path, "plane.tif", data, byteorder=">")
    header = read_header(url)
    assert header.span is not None
    assert header.span.etag
    before = fetched()
    [(_, stack)] = list(read_stacks([url], (48, 40), "uint16", [header.span]))
    objects, nbytes = (a - b for a, b in zip(fetched(), before, strict=True))
    assert objects == 1
    assert nbytes == data.nbytes < header.span.size  # the pixels, not the header
    np.testing.assert_array_equal(stack[0], data)


def test_an_s3_object_replaced_after_the_scan_is_read_whole_again(s3: Any, tmp_path: Path) -> None:
    from napari_wellzarr.convert.srcfs import fetched

    url = _put(s3, tmp_path, "plane.tif", _plane(seed=9))
    header = read_header(url)
    other = _plane(seed=10)
    path = tmp_path / "other.tif"
    tifffile.imwrite(path, other, description="moves the pixels")
    s3.client().put_object(
        Bucket="plates", Key=url.removeprefix("s3://plates/"), Body=path.read_bytes()
    )
    before = fetched()
    [(_, stack)] = list(read_stacks([url], (48, 40), "uint16", [header.span]))
    np.testing.assert_array_equal(stack[0], other)  # If-Match failed: read whole, parsed
    assert fetched()[1] - before[1] == path.stat().st_size


def test_an_s3_compressed_object_is_read_whole(s3: Any, tmp_path: Path) -> None:
    data = _plane(seed=11)
    url = _put(s3, tmp_path, "plane.tif", data, compression="zlib")
    header = read_header(url)
    assert header.span is None
    [(_, stack)] = list(read_stacks([url], (48, 40), "uint16", [header.span]))
    np.testing.assert_array_equal(stack[0], data)


# --- the scan's own tag reader: plain files, else tifffile ------------------------------------


@pytest.mark.parametrize("path", TIFFS, ids=lambda p: str(p.relative_to(DATA)))
def test_every_real_tiff_has_the_header_tifffile_gives(path: Path) -> None:
    assert read_header(str(path)) == tifffile_header(str(path))


_VARIANTS: dict[str, tuple[Any, dict[str, Any], bool]] = {
    # name: (data, tifffile.imwrite options, read without tifffile)
    "uint16": (_plane(), {}, True),
    "uint8": (_plane(dtype=np.uint8), {}, True),
    "int16 big-endian": (_plane(dtype=np.int16), {"byteorder": ">"}, True),
    "uint32": (_plane(dtype=np.uint32), {}, True),
    "float32": (_plane(dtype=np.float32), {}, True),
    "float64 big-endian": (_plane(dtype=np.float64), {"byteorder": ">"}, True),
    "many strips": (_plane(), {"rowsperstrip": 5}, True),
    "no description": (_plane(), {"metadata": None}, True),
    "shape description": (_plane(), {"metadata": {"shape": [1, 48, 40]}}, True),
    "text description": (_plane(), {"description": "hello", "metadata": None}, False),
    "imagej": (_plane(), {"imagej": True}, False),
    "imagej stack": (np.stack([_plane(seed=s) for s in range(4)]), {"imagej": True}, False),
    "stack": (np.stack([_plane(seed=s) for s in range(4)]), {"photometric": "minisblack"}, False),
    "bigtiff": (_plane(), {"bigtiff": True}, False),
    "deflate": (_plane(), {"compression": "zlib"}, False),
    "tiled": (_plane((64, 64)), {"tile": (16, 16)}, False),
    "rgb": (_plane((48, 40, 3), dtype=np.uint8), {"photometric": "rgb"}, False),
    "float16": (_plane(dtype=np.float16), {}, True),
    "ome": (_plane(), {"ome": True}, False),
}


@pytest.mark.parametrize("name", list(_VARIANTS))
def test_the_tag_reader_agrees_with_tifffile_or_leaves_the_file_to_it(
    name: str, tmp_path: Path
) -> None:
    data, options, plain = _VARIANTS[name]
    path = tmp_path / "file.tif"
    tifffile.imwrite(path, data, **options)
    assert (read_plain(str(path)) is not None) is plain
    if name in ("rgb", "float16"):  # refused by both, in the same words
        with pytest.raises(WellDataError, match="supported") as by_tifffile:
            tifffile_header(str(path))
        with pytest.raises(WellDataError) as ours:
            read_header(str(path))
        assert str(ours.value) == str(by_tifffile.value)
        return
    expected = tifffile_header(str(path))
    assert read_header(str(path)) == expected
    if expected.span is not None:
        out = np.zeros((expected.pages, *expected.plane_shape), expected.dtype)
        assert read_raw_into(str(path), expected.span, [(i, out[i]) for i in range(len(out))])
        np.testing.assert_array_equal(out.reshape(data.shape), data)


def test_strips_out_of_order_are_left_to_tifffile(tmp_path: Path) -> None:
    data = _plane()
    path = tmp_path / "file.tif"
    tifffile.imwrite(path, data, rowsperstrip=24, metadata=None)
    with tifffile.TiffFile(path) as tif:
        tag = tif.pages.first.tags["StripOffsets"]
        first, second = tag.value
        at, (nbytes, _) = tag.valueoffset, tif.pages.first.tags["StripByteCounts"].value
    raw = bytearray(path.read_bytes())
    # swap the two strips' bytes and their offsets: the same pixels, strips out of order
    a, b = raw[first : first + nbytes], raw[second : second + nbytes]
    raw[first : first + nbytes], raw[second : second + nbytes] = b, a
    raw[at : at + 8] = np.array([second, first], "<u4").tobytes()
    path.write_bytes(bytes(raw))
    assert read_plain(str(path)) is None
    assert tifffile_header(str(path)).span is None
    np.testing.assert_array_equal(tifffile.imread(path), data)


def test_a_damaged_file_is_named_by_tifffile(tmp_path: Path) -> None:
    path = tmp_path / "file.tif"
    path.write_bytes(b"II*\x00\xff\xff\xff\x00" + bytes(100))  # the IFD lies beyond the end
    assert read_plain(str(path)) is None
    with pytest.raises(WellDataError, match=str(path)) as ours:
        read_header(str(path))
    with pytest.raises(WellDataError) as by_tifffile:
        tifffile_header(str(path))
    assert str(ours.value) == str(by_tifffile.value)
