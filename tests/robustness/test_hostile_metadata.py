"""Hostile or broken metadata documents: parsed, or refused with the project's own error.

Hypothesis builds JSON-like documents that look like OME blocks with every field allowed
to be of the wrong kind; the parsers must either accept them (and then the result must
rebuild the same block) or raise ``WellZarrError`` with a message, never anything else.
"""

from __future__ import annotations

import os
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from napari_wellzarr.errors import WellZarrError
from napari_wellzarr.storage.metadata import ome_attrs, parse_image, parse_plate, parse_well
from napari_wellzarr.testing.strategies import (
    image_blocks,
    ngff_versions,
    node_indices,
    node_names,
    or_json,
    plate_blocks,
)
from tests.helpers import write_plate

SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _parse(parser: Any, attrs: dict[str, Any]) -> Any:
    """The parsed block, or None after checking the refusal is ours and says something."""
    try:
        parsed, _ = parser(attrs, "hostile")
    except WellZarrError as err:
        refusal: WellZarrError | None = err
    else:
        return parsed
    assert refusal is not None
    assert str(refusal)
    return None


def _wrapped(version: str, key: str, block: Any) -> dict[str, Any]:
    if version == "0.5":
        return {"ome": {"version": "0.5", key: block}}
    return {key: block}


@SETTINGS
@given(block=or_json(plate_blocks), version=ngff_versions)
def test_plate_blocks_parse_or_raise_our_error(block: Any, version: str) -> None:
    plate = _parse(parse_plate, _wrapped(version, "plate", block))
    if plate is None:
        return
    # Accepted: every well path stays inside the plate and agrees with its indices.
    for well in plate.wells:
        row, column = well.path.split("/")
        assert ".." not in (row, column)
        assert "" not in (row, column)
        assert plate.rows[well.row_index] == row
        assert plate.columns[well.column_index] == column
    again, _ = parse_plate(ome_attrs(version, {"plate": plate.to_block()}), "again")
    assert again == plate


@SETTINGS
@given(
    block=or_json(
        st.fixed_dictionaries(
            {
                "images": or_json(
                    st.lists(
                        st.fixed_dictionaries(
                            {"path": node_names}, optional={"acquisition": node_indices}
                        ),
                        max_size=4,
                    )
                )
            }
        )
    ),
    version=ngff_versions,
)
def test_well_blocks_parse_or_raise_our_error(block: Any, version: str) -> None:
    well = _parse(parse_well, _wrapped(version, "well", block))
    if well is None:
        return
    assert well.images
    assert all("/" not in p and p not in (".", "..") for p in well.images)


@SETTINGS
@given(block=or_json(st.lists(image_blocks, max_size=2)), version=ngff_versions)
def test_image_blocks_parse_or_raise_our_error(block: Any, version: str) -> None:
    image = _parse(parse_image, _wrapped(version, "multiscales", block))
    if image is None:
        return
    multiscale = image.multiscale
    assert multiscale.datasets
    for dataset in multiscale.datasets:
        assert "/" not in dataset.path
        assert dataset.path not in (".", "..")
        assert len(dataset.scale) == len(multiscale.axes)


@pytest.mark.parametrize(
    "path",
    ["../../etc", "/abs/olute", "A/../../x", "A//01", "A/01/02", "A\\01", "A\x00/01", "A/01\x00"],
)
def test_well_paths_that_leave_the_plate_are_refused(path: str) -> None:
    block = {
        "rows": [{"name": "A"}],
        "columns": [{"name": "01"}],
        "wells": [{"path": path, "rowIndex": 0, "columnIndex": 0}],
    }
    with pytest.raises(WellZarrError, match="path"):
        parse_plate({"plate": block}, "hostile")


# -- memory bombs: refused before anything is allocated ---------------------------------------


def _plate_with_doc(tmp_path: Any, edit: Any) -> Any:
    import json

    import numpy as np

    wells = {"A01": np.ones((2, 1, 1, 16, 16), "u2"), "B02": np.full((2, 1, 1, 16, 16), 7, "u2")}
    root = write_plate(tmp_path / "plate.zarr", wells, plate=24)
    doc_path = root / "B" / "02" / "0" / "0" / "zarr.json"
    doc = json.loads(doc_path.read_text())
    edit(doc)
    doc_path.write_text(json.dumps(doc))
    return root


def test_a_well_claiming_more_than_a_tebibyte_is_refused_on_open(tmp_path: Any) -> None:
    from napari_wellzarr.core import MetadataError, PlateStore

    root = _plate_with_doc(tmp_path, lambda d: d.update(shape=[2, 1, 1, 10**7, 10**7]))
    store = PlateStore.open(root)
    with pytest.raises(MetadataError, match=r"B/02/0/0.*1 TiB"):
        store.well_info("B02")
    assert store.read_plane("A01", 1, 0, 0).sum() == 16 * 16  # the rest still reads


def test_reading_a_well_larger_than_free_memory_is_refused(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from napari_wellzarr.core import MetadataError, PlateStore
    from napari_wellzarr.storage import memory

    # The machine's real free memory moves between two reads of it (and a container's limit
    # can sit far below it): a test sized from it could allocate gigabytes for real. Pretend
    # 1 MiB is free and claim a 32 MiB well: the refusal is the same code path.
    monkeypatch.setattr(memory, "available_memory", lambda: 2**20)
    root = _plate_with_doc(tmp_path, lambda d: d.update(shape=[2, 1, 1, 4096, 2048]))
    store = PlateStore.open(root)
    assert store.well_info("B02").shape == (2, 1, 1, 4096, 2048)
    with pytest.raises(MetadataError, match=r"B02.*33,554,432 bytes.*1,048,576 bytes"):
        store.read_well("B02")
    assert store.read_well("A01").shape == (2, 1, 1, 16, 16)  # small wells still read


def test_available_memory_counts_reclaimable_memory_and_cgroup_limits(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from napari_wellzarr.storage import memory

    available = memory.available_memory()
    assert available is not None
    assert 0 < available <= os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    # A cgroup limit below the machine's free memory wins.
    monkeypatch.setattr(memory, "cgroup_headroom", lambda: 12345)
    assert memory.available_memory() == 12345


@pytest.mark.parametrize(
    ("membership", "files", "expected"),
    [
        ("0::/job\n", {"job/memory.max": "1000\n", "job/memory.current": "400\n"}, 600),
        ("0::/job\n", {"job/memory.max": "max\n", "job/memory.current": "400\n"}, None),
        ("0::/\n", {"memory.max": "100", "memory.current": "400"}, 0),
        (
            "4:memory,foo:/a/b\n0::/\n",
            {
                "memory/a/b/memory.limit_in_bytes": "5000",
                "memory/a/b/memory.usage_in_bytes": "1000",
            },
            4000,
        ),
        ("4:memory:/hidden\n", {}, None),  # the group's folder is not mounted here
        ("garbage\n", {}, None),
    ],
)
def test_cgroup_headroom(
    tmp_path: Any, membership: str, files: dict[str, str], expected: Any
) -> None:
    from napari_wellzarr.storage.memory import cgroup_headroom as _cgroup_headroom

    (tmp_path / "self-cgroup").write_text(membership)
    for name, text in files.items():
        (tmp_path / "fs" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "fs" / name).write_text(text)
    assert _cgroup_headroom(tmp_path / "self-cgroup", tmp_path / "fs") == expected


def test_a_chunk_shape_that_is_a_memory_bomb_is_refused(tmp_path: Any) -> None:
    from napari_wellzarr.core import MetadataError, PlateStore

    def bomb(doc: dict[str, Any]) -> None:
        doc["chunk_grid"]["configuration"]["chunk_shape"] = [1, 1, 1, 10**6, 10**6]

    store = PlateStore.open(_plate_with_doc(tmp_path, bomb))
    with pytest.raises(MetadataError, match="chunks of shape"):
        store.well_info("B02")


@pytest.mark.parametrize("size", [0, 10, 99, 100, 101, 5000])
@pytest.mark.parametrize("kind", ["file", "pipe"])
def test_read_bounded_reads_at_most_one_byte_past_the_limit(
    tmp_path: Any, size: int, kind: str
) -> None:
    from napari_wellzarr.storage import fsio

    data = (bytes(range(256)) * 20)[:size]
    if kind == "file":
        (tmp_path / "doc").write_bytes(data)
        fh = open(tmp_path / "doc", "rb")
    else:  # fstat says 0 bytes: like a file that grew after fstat, it is read on
        read_end, write_end = os.pipe()
        os.write(write_end, data)
        os.close(write_end)
        fh = os.fdopen(read_end, "rb")
    with fh:
        assert fsio.read_bounded(fh, 100) == data[:101]


# -- paths outside the plate: every open of the whole process is watched -----------------------


def test_the_audit_reports_every_open_outside_the_plate(tmp_path: Any) -> None:
    import threading

    from tests.audit import OpensOutside

    plate, beside = tmp_path / "plate", tmp_path / "beside"
    plate.mkdir()
    beside.mkdir()
    (plate / "zarr.json").write_text("{}")
    (beside / "x.json").write_text("{}")
    os.symlink(beside / "x.json", plate / "link.json")

    def elsewhere() -> None:  # another thread, as zarr's event loop reads
        (beside / "x.json").read_text()
        os.listdir(tmp_path)

    with OpensOutside(plate) as outside:
        (plate / "zarr.json").read_text()
        (plate / "link.json").read_text()  # inside by name, outside once resolved
        thread = threading.Thread(target=elsewhere)
        thread.start()
        thread.join()
        with open("/proc/self/status", "rb"):  # the memory probe's kind of read: allowed
            pass
        __import__("colorsys")  # a lazy import of the interpreter's own: allowed
    assert sorted(outside) == sorted(
        [str(plate / "link.json"), str(beside / "x.json"), str(tmp_path)]
    )


def _secret_array(where: Any) -> None:
    import numpy as np
    import zarr

    array = zarr.create_array(
        str(where), shape=(2, 1, 1, 16, 16), chunks=(1, 1, 1, 16, 16), dtype="u2", zarr_format=3
    )
    array[...] = np.full((2, 1, 1, 16, 16), 666, "u2")


ESCAPES = ["../../../secret", "../../../../secret", "/abs/secret", "0/../../../../secret"]


@pytest.mark.parametrize("escape", ESCAPES)
@pytest.mark.parametrize("where", ["dataset", "image", "well"])
def test_hostile_paths_open_nothing_outside_the_plate(
    tmp_path: Any, escape: str, where: str
) -> None:
    import json

    import numpy as np

    from napari_wellzarr.core import PlateStore
    from tests.audit import OpensOutside

    root = _plate_with_doc(tmp_path, lambda d: None)
    _secret_array(tmp_path / "secret")
    doc, key = {
        "dataset": (root / "B" / "02" / "0" / "zarr.json", "multiscales"),
        "image": (root / "B" / "02" / "zarr.json", "well"),
        "well": (root / "zarr.json", "plate"),
    }[where]
    attrs = json.loads(doc.read_text())
    block = attrs["attributes"]["ome"][key]
    if where == "dataset":
        block[0]["datasets"][0]["path"] = escape
    elif where == "image":
        block["images"][0]["path"] = escape
    else:
        block["wells"][1]["path"] = escape
    doc.write_text(json.dumps(attrs))
    read: list[Any] = []
    refused: list[str] = []
    with OpensOutside(root) as outside:
        try:
            store = PlateStore.open(root)
            for well in [*store.wells(), *store.unlisted_wells()]:
                read.append(store.read_well(well))
        except (WellZarrError, OSError) as err:  # refused: fine, with a message
            refused.append(str(err))
    assert not outside, outside
    assert all(refused)
    assert all(int(np.max(a)) != 666 for a in read)
