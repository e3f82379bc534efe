"""Plates converted to S3 (moto on localhost) get the plate overview, as folders do."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pytest

from napari_wellzarr.storage.store import PlateStore
from tests.remote.servers import CountingS3, serving
from tests.remote.test_remote_round_trips import _first_screen

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

BUCKET = "plates"


@pytest.fixture(scope="module")
def s3_counted() -> Iterator[CountingS3]:
    """One moto server (behind a request-counting forwarder) for the module's plates."""
    import boto3

    with serving(CountingS3(), WELLZARR_REMOTE_TIMEOUT="10") as server:
        boto3.client("s3", endpoint_url=server.endpoint).create_bucket(Bucket=BUCKET)
        yield server


@pytest.fixture(scope="module")
def converted(
    s3_counted: CountingS3, tmp_path_factory: pytest.TempPathFactory
) -> dict[int, tuple[str, Path]]:
    """Plates of 24 and 96 wells converted to ``s3://`` and to folders, from one source each."""
    from napari_wellzarr.convert.engine import convert, scan_source
    from napari_wellzarr.storage.config import StorageConfig
    from tests.convert.helpers import ix_set

    out = {}
    for n, rows in ((24, "ABCD"), (96, "ABCDEFGH")):
        base = tmp_path_factory.mktemp(f"s3-overview-{n}")
        wells = tuple(f"{r}{c:02d}" for r in rows for c in range(1, 13))[:n]
        ix_set(base / "src", np.random.default_rng(n), wells=wells, fields=1, shape=(16, 16))
        plan = scan_source(base / "src")
        url = f"s3://{BUCKET}/p{n}.ome.zarr"
        assert convert(plan, url, StorageConfig(plate=96)).complete
        assert convert(plan, base / "p.ome.zarr", StorageConfig(plate=96)).complete
        out[n] = (url, base / "p.ome.zarr")
    return out


def test_a_plate_converted_to_s3_has_the_overview_a_folder_has(
    converted: dict[int, tuple[str, Path]],
) -> None:
    for url, folder in converted.values():
        remote, local = PlateStore.open(url).overview(), PlateStore.open(folder).overview()
        assert remote is not None
        assert local is not None
        assert remote.to_json() == local.to_json()  # the same array, level and tiles
        assert remote.n_wells == len(PlateStore.open(url).wells())


def test_the_first_screen_of_an_s3_plate_comes_from_its_overview(
    s3_counted: CountingS3, converted: dict[int, tuple[str, Path]]
) -> None:
    counts, ranged = {}, {}
    for n, (url, folder) in converted.items():
        s3_counted.reset()
        planes = _first_screen(url)
        counts[n] = s3_counted.requests
        ranged[n] = {path for method, path in s3_counted.log if ".wellzarr-overview" in path}
        local = _first_screen(str(folder))
        assert len(planes) == len(local) >= 2
        for remote_plane, local_plane in zip(planes, local, strict=True):
            assert np.array_equal(remote_plane, local_plane)
    # the overview's shard is what the pixels come from, and requests do not grow
    assert all(len(paths) == 1 for paths in ranged.values()), ranged
    assert counts[96] <= counts[24] + 2, counts


def test_a_well_rewritten_on_s3_is_never_shown_from_the_old_overview(
    s3_counted: CountingS3, tmp_path: Path
) -> None:
    from napari_wellzarr.storage.config import StorageConfig

    url = f"s3://{BUCKET}/rewritten.ome.zarr"
    config = StorageConfig(plate=24)
    with PlateStore.create(url, config) as store:
        for well in ("A01", "A02", "B01"):
            store.write_well(well, np.full((1, 1, 1, 16, 16), 7, "u2"))
    assert PlateStore.open(url).overview() is not None
    store = PlateStore.open(url, "r+", config=config)
    store.write_well("A02", np.full((1, 1, 1, 16, 16), 9, "u2"), overwrite=True)
    # the session that rewrote it rebuilds it at close; until then none is shown
    assert PlateStore.open(url).overview() is None
    store.close()
    record = PlateStore.open(url).overview()
    assert record is not None
    plane = _first_screen(url)[0]  # the rebuilt overview: the new pixels of A02
    assert (plane == 9).sum() == 16 * 16
    assert (plane == 7).sum() == 2 * 16 * 16


def test_an_s3_plate_whose_4x_level_is_not_stored_gets_its_overview_from_full_resolution(
    s3_counted: CountingS3, tmp_path: Path
) -> None:
    """96 wells of 512 x 512: the finisher reads the wells back, with or without the level."""
    from unittest import mock

    from napari_wellzarr.storage import config as config_module
    from napari_wellzarr.storage.config import StorageConfig

    rng = np.random.default_rng(8)
    wells = {w: rng.integers(0, 4000, (2, 2, 1, 512, 512), "u2") for w in ("A01", "B03", "H12")}
    import zarr

    records, screens = [], []
    for where in (f"s3://{BUCKET}/full4x.ome.zarr", tmp_path / "full4x.ome.zarr"):
        with PlateStore.create(where, StorageConfig(plate=96)) as store:
            for i, (name, data) in enumerate(wells.items()):
                limit = 0 if i == 1 else 2**40  # B03 keeps its 4x level (a plate written before)
                with mock.patch.object(config_module, "OVERVIEW_FROM_FULL_RESOLUTION_BYTES", limit):
                    store.write_well(name, data)
        opened = PlateStore.open(str(where))
        assert [len(opened.well_info(w).level_shapes) for w in wells] == [1, 2, 1]
        record = opened.overview()
        assert record is not None
        assert (record.level, record.halvings, record.tile) == (0, 2, (128, 128))
        records.append(record.to_json())
        screens.append(_first_screen(str(where)))
    assert records[0] == records[1]
    for remote_plane, local_plane in zip(*screens, strict=True):
        assert np.array_equal(remote_plane, local_plane)
    overview = zarr.open_array(tmp_path / "full4x.ome.zarr" / records[1]["path"], mode="r")
    rows, columns = "ABCDEFGH", [f"{c:02d}" for c in range(1, 13)]
    for name, data in wells.items():
        y, x = rows.index(name[0]) * 128, columns.index(name[1:]) * 128
        want = data[1, 1, 0].reshape(128, 4, 128, 4).mean(axis=(1, 3))
        got = overview[1, 1, 0, y : y + 128, x : x + 128].astype(float)
        assert np.abs(got - want).max() <= 0.5, name


def test_a_shard_larger_than_a_part_goes_up_in_parts(
    s3_counted: CountingS3, tmp_path: Path
) -> None:
    """An overview shard is streamed from its file (multipart), never read into memory whole."""
    import boto3

    from napari_wellzarr.storage.locations import UPLOAD_PART_BYTES, open_location

    data = np.random.default_rng(0).bytes(2 * UPLOAD_PART_BYTES + 12345)
    (tmp_path / "shard").write_bytes(data)
    location = open_location(f"s3://{BUCKET}/parts/c/0/0/0/0/0")
    s3_counted.reset()
    location.upload(str(tmp_path / "shard"))
    assert s3_counted.requests >= 3 + 2  # start, 3 parts, complete
    got = boto3.client("s3", endpoint_url=s3_counted.endpoint).get_object(
        Bucket=BUCKET, Key="parts/c/0/0/0/0/0"
    )
    assert got["ETag"].strip('"').endswith("-3")  # S3's mark of a 3-part upload
    assert got["Body"].read() == data


def _well_gets(log: list[tuple[str, str]], plate: str) -> list[str]:
    """Paths of the objects inside wells (``<row>/<column>/...``) read from ``plate``."""
    prefix = f"/{BUCKET}/{plate}/"
    out = []
    for method, path in log:
        if method != "GET" or not path.startswith(prefix) or "?" in path:
            continue
        inside = path[len(prefix) :]
        if not inside.startswith((".", "zarr.json")) and inside.count("/") >= 2:
            out.append(inside)
    return out


def test_converting_to_s3_reads_back_no_document_or_index_it_put(
    s3_counted: CountingS3, tmp_path: Path
) -> None:
    """The overview's build trusts what the listing confirms: one read per well, its tile."""
    from napari_wellzarr.convert.engine import convert, scan_source
    from napari_wellzarr.storage import overview as overviews
    from napari_wellzarr.storage.config import StorageConfig
    from napari_wellzarr.storage.locations import open_location
    from napari_wellzarr.storage.records import LayoutRecords
    from tests.convert.helpers import ix_set

    wells = tuple(f"{r}{c:02d}" for r in "ABCD" for c in range(1, 7))
    ix_set(tmp_path / "src", np.random.default_rng(5), wells=wells, fields=2, shape=(16, 16))
    url = f"s3://{BUCKET}/trusted.ome.zarr"
    s3_counted.reset()
    assert convert(scan_source(tmp_path / "src"), url, StorageConfig(plate=24)).complete
    reads = _well_gets(s3_counted.log, "trusted.ome.zarr")
    # The first well's documents are read once (the overview's shape and level come from
    # it); no other well's document or shard index is read back: one range read each.
    others = [r for r in reads if r.endswith("zarr.json") and not r.startswith("A/01/")]
    assert not others, reads
    assert len([r for r in reads if not r.endswith("zarr.json")]) == len(wells), reads
    built = PlateStore.open(url).overview()
    assert built is not None
    root = open_location(url)
    made = LayoutRecords.load(root).to_json()
    # A finisher that put nothing (every well read back) records exactly the same.
    again = overviews.build_overview(PlateStore.open(url, "r+"))
    assert again is not None
    assert again.to_json() == built.to_json()
    assert LayoutRecords.load(root).to_json() == made


def test_a_well_changed_after_its_put_is_read_back_for_the_overview(
    s3_counted: CountingS3,
) -> None:
    """An object whose entity tag is not the one its put returned is not trusted."""
    import boto3

    from napari_wellzarr.storage.config import StorageConfig
    from napari_wellzarr.storage.locations import open_location
    from napari_wellzarr.storage.records import LayoutRecords

    url = f"s3://{BUCKET}/changed.ome.zarr"
    client = boto3.client("s3", endpoint_url=s3_counted.endpoint)
    with PlateStore.create(url, StorageConfig(plate=24)) as store:
        for value, well in enumerate(("A01", "A02", "B01")):
            store.write_well(well, np.full((1, 1, 1, 16, 16), value + 1, "u2"))
        key = "changed.ome.zarr/B/01/zarr.json"
        changed = client.get_object(Bucket=BUCKET, Key=key)["Body"].read() + b"\n"
        client.put_object(Bucket=BUCKET, Key=key, Body=changed)  # same meaning, new bytes
        s3_counted.reset()
    reads = _well_gets(s3_counted.log, "changed.ome.zarr")
    assert "B/01/zarr.json" in reads, reads  # read back: its tag is not the put's
    assert not [r for r in reads if r.startswith("A/02/") and "zarr.json" in r], reads
    assert PlateStore.open(url).overview() is not None
    record = LayoutRecords.load(open_location(url)).get("B/01")
    assert record is not None
    assert record[1]["zarr.json"][0] == len(changed)  # the document as it is now
    plane = _first_screen(url)[0]
    assert sorted(np.unique(plane[plane > 0]).tolist()) == [1, 2, 3]


def test_an_uploaded_well_is_trusted_only_as_listed() -> None:
    from napari_wellzarr.storage.records import UploadedWell

    tags = {"zarr.json": '"t1"', "0/0/c/0/0/0/0/0": '"t2"'}
    files = {"zarr.json": (10, 1), "0/0": (300, 2, 100, 200)}  # (size, local mtime, chunks)
    put = UploadedWell.of("A/01", tags, files, {"zarr.json": b"{}"})
    assert put is not None
    listed = {"zarr.json": (10, 5, "t1"), "0/0/c/0/0/0/0/0": (300, 6, '"t2"')}
    assert put.verified(listed) == {"zarr.json": (10, 5), "0/0": (300, 6, 100, 200)}
    assert put.verified({**listed, "zarr.json": (10, 5, "other")}) is None  # replaced
    assert put.verified({"zarr.json": (10, 5, "t1")}) is None  # an object missing
    assert put.verified({**listed, "0/0/c/0/0/0/0/0": (301, 6, "t2")}) is None  # size
    untagged = UploadedWell.of("A/01", {"zarr.json": None}, {"zarr.json": (10, 1)}, {})
    assert untagged is not None
    assert untagged.verified({"zarr.json": (10, 5, None)}) is None  # no tag, no trust
    two = {**tags, "0/0/c/0/0/0/0/1": '"t3"'}  # an array of two shard objects: no record
    assert UploadedWell.of("A/01", two, files, {}) is None
