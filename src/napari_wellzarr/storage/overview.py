"""The plate overview: every well's coarsest stored level side by side, in one sharded array."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Protocol

import numpy as np

from napari_wellzarr.errors import WellZarrError
from napari_wellzarr.storage import fsio
from napari_wellzarr.storage._spec import OVERVIEW_DIR, OVERVIEW_KEY, WELLZARR_KEY
from napari_wellzarr.storage.axes import PlaneKey, shrink
from napari_wellzarr.storage.geometry import whole_plate_levels
from napari_wellzarr.storage.locations import RemoteLocation
from napari_wellzarr.storage.reading import open_well
from napari_wellzarr.storage.records import LayoutRecords, UploadedWell
from napari_wellzarr.storage.shards import ShardGrid, ShardReader
from napari_wellzarr.storage.templates import well_record
from napari_wellzarr.storage.writing import sharded_v3_metadata

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator, Mapping, Sequence

    from napari_wellzarr.storage.config import StorageConfig
    from napari_wellzarr.storage.metadata import PlateMeta
    from napari_wellzarr.storage.reading import OpenWell, WellInfo

__all__ = [
    "OverviewPlanes",
    "OverviewRecord",
    "build_overview",
    "current_overview",
    "forget_overview",
    "overview_level",
    "overview_of",
    "parse_record",
    "strip_grids",
    "wells_key",
]

#: An overview larger than this (raw bytes) is not built: per-well reads serve the plate.
MAX_OVERVIEW_BYTES: Final = 2**30
#: A plate small enough to be shown at full resolution gets an overview (a copy of its
#: pixels) only when a plane of it takes at most this many bytes: 4096 x 4096 uint16,
#: every 8- and 16-bit plate shown at full resolution (its mosaic is under 4096 px).
FULL_RESOLUTION_PLANE_BYTES: Final = 32 * 2**20
#: Most bytes of wells' planes an overview build reads at once (a row of wells).
STRIP_READ_BYTES: Final = 64 * 2**20
_BUILD_ERRORS: Final = (WellZarrError, OSError, ValueError, KeyError, IndexError)
#: Wells of a remote plate read at once while its overview is built (requests in flight).
REMOTE_WELLS_AT_ONCE: Final = 16
#: Wells of a local plate read (and shrunk to their tiles) at once while its overview is built.
LOCAL_WELLS_AT_ONCE: Final = 2
#: Errors of the disk written to, which the writer finishing the plate must report.
_WRITE_FAULTS: Final = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EIO})


class _Plate(Protocol):
    """What building an overview needs of a plate (a :class:`PlateStore`)."""

    location: Path | RemoteLocation
    zarr_format: int
    uploaded: dict[str, UploadedWell]

    @property
    def config(self) -> StorageConfig | None: ...

    @property
    def plate(self) -> PlateMeta: ...

    def wells(self) -> list[str]: ...

    def well_info(self, well: str, acquisition: int | None = None) -> WellInfo: ...

    def read_planes(
        self, well: str, keys: Iterable[PlaneKey], *, level: int = 0
    ) -> list[np.ndarray[Any, Any]]: ...


@dataclass(frozen=True)
class OverviewRecord:
    """Where a plate's overview is and what it was built from.

    What it is (``path``, levels, tile, grid, the array's document) is kept in the
    plate's ``wellzarr`` block; its version in the plate's layout record file (hidden,
    beside the other file identities): ``key`` digests every listed well's path and the
    identity (size, mtime) of its group document, so a well rewritten since (a resumed
    conversion swaps in a new folder) changes it and the overview is never shown; and
    ``shard``, its shard file's identity.  The plate's documents stay free of file times.
    """

    path: str
    level: int
    halvings: int
    tile: tuple[int, int]
    grid: tuple[int, int]
    n_wells: int
    array: dict[str, Any]
    key: str = ""
    #: The shard file's ``(size, mtime_ns, *chunk sizes)`` (see ``ShardReader.identity``).
    shard: tuple[int, ...] = ()

    def to_json(self) -> dict[str, Any]:
        """The JSON kept in the plate's ``wellzarr`` block."""
        return {
            "path": self.path,
            "level": self.level,
            "halvings": self.halvings,
            "tile": list(self.tile),
            "grid": list(self.grid),
            "wells": self.n_wells,
            "array": self.array,
        }

    def version(self) -> dict[str, Any]:
        """The JSON kept in the layout record file."""
        return {"key": self.key, "shard": list(self.shard)}


def parse_record(raw: object, version: object) -> OverviewRecord | None:
    """An :class:`OverviewRecord` from the plate's block and the record file's version.

    None when either is absent or malformed.
    """
    if not isinstance(raw, dict) or not isinstance(version, dict):
        return None
    try:
        path, array = raw["path"], raw["array"]
        tile = tuple(int(v) for v in raw["tile"])
        grid = tuple(int(v) for v in raw["grid"])
        if (
            not isinstance(path, str)
            or not path.startswith(f"{OVERVIEW_DIR}/")
            or ".." in path.split("/")
            or not isinstance(array, dict)
            or len(tile) != 2
            or len(grid) != 2
        ):
            return None
        level, halvings, n_wells = int(raw["level"]), int(raw["halvings"]), int(raw["wells"])
        key, shard = str(version["key"]), tuple(int(v) for v in version["shard"])
        return OverviewRecord(
            path, level, halvings, (tile[0], tile[1]), (grid[0], grid[1]), n_wells, array,
            key, shard,
        )  # fmt: skip
    except (KeyError, TypeError, ValueError):
        return None


def wells_key(identities: Iterable[tuple[str, Sequence[int]]]) -> str:
    """The digest of ``(well path, identity of its group document)`` pairs (any order)."""
    doc = sorted((path, [int(v) for v in ident]) for path, ident in identities)
    return hashlib.sha1(json.dumps(doc).encode(), usedforsecurity=False).hexdigest()[:16]


def _identities(
    root: Path | RemoteLocation, paths: Sequence[str], records: LayoutRecords | None
) -> list[tuple[str, Sequence[int]]] | None:
    """Each well's documents (well, images, arrays) with their (size, mtime), or None.

    The documents are those the layout record lists for the well; their identities come from
    ``stat`` locally (what is on disk now), from the record remotely.  None when a well
    has no record or a file is missing: its version cannot be told.
    """
    out: list[tuple[str, Sequence[int]]] = []
    for path in paths:
        record = records.get(path) if records is not None else None
        if record is None:
            return None
        idents: list[int] = []
        for name, ident in sorted(record[1].items()):
            if not name.endswith("zarr.json"):
                continue  # an array: the record holds its shard's identity, not the folder's
            if isinstance(root, Path):
                try:
                    stat = os.stat(root / path / name)
                except OSError:
                    return None
                ident = (stat.st_size, stat.st_mtime_ns)
            idents += [len(name), *ident[:2]]
        out.append((path, idents))
    return out


def current_overview(
    root: Path | RemoteLocation,
    record: OverviewRecord | None,
    wells: Sequence[str],
    records: LayoutRecords | None,
) -> OverviewRecord | None:
    """``record`` when it was built from exactly the wells ``wells`` (paths) now hold."""
    if record is None or record.n_wells != len(wells):
        return None
    found = _identities(root, wells, records)
    if found is None or wells_key(found) != record.key:
        return None
    return record


def overview_level(info: WellInfo, n_rows: int, n_columns: int) -> tuple[int, int]:
    """``(stored level, halvings)`` that give the tile a viewer draws the whole plate with.

    That is the coarsest display level of :func:`whole_plate_levels`: the stored level
    with the largest power-of-two factor not above it, halved the rest of the way.
    """
    h0, w0 = info.level_shapes[0][-2:]
    target = whole_plate_levels(n_rows, n_columns, (h0, w0)) - 1
    best = (0, 0)
    for index, shape in enumerate(info.level_shapes):
        h, w = shape[-2:]
        factor = round(h0 / h) if h else 0
        exact = factor > 0 and factor & (factor - 1) == 0
        k = factor.bit_length() - 1
        if exact and k <= target and abs(h - h0 / factor) < 1 and abs(w - w0 / factor) < 1:
            best = max(best, (k, index))
    return best[1], target - best[0]


def _complete_records(
    root: Path, wells: Sequence[tuple[str, Any]], zarr_format: int
) -> LayoutRecords:
    """The plate's layout records, with a record made for each well that has none.

    A run stopped while the records were written (a full disk) leaves complete wells
    without one; the run that finishes the plate records them, as a clean run would have.
    """
    records = LayoutRecords.load(root)
    missing = [(name, w.path) for name, w in wells if records.get(w.path) is None]
    for name, path in missing:
        made = well_record(root, path, name, zarr_format)
        if made is not None:
            records.add(path, *made)
    if missing:
        records.save(root)
    return records


def build_overview(store: _Plate, *, report_disk_errors: bool = False) -> OverviewRecord | None:
    """Write the plate's overview from its wells' coarsest stored level, and record it.

    Done once, by the one writer that finishes the plate (the conversion's client, or
    :meth:`PlateStore.close` of a session that wrote wells): only the wells' own stored
    levels are read, never anything another writer is still writing.  Returns None (and
    records nothing) for plates it does not serve: zarr v2, not written here, no wells,
    wells of different shapes or a well that does not read (per-well reads then show
    the plate and report the well).  ``report_disk_errors``: a full or read-only disk
    raises its ``OSError`` instead (the overview is a cache: ``close`` goes on without).
    An ``s3://`` plate's wells are read back from the bucket (many at once) and its
    overview goes up as one object (streamed from a local file).
    """
    root = store.location
    config = store.config
    if store.zarr_format != 3 or config is None:
        return None
    if isinstance(root, RemoteLocation) and not root.writable:
        return None
    plate = store.plate
    wells = list(zip(store.wells(), plate.wells, strict=True))
    if not wells:
        return None
    paths = [w.path for _, w in wells]
    try:
        first = store.well_info(wells[0][0])
        grid = (len(plate.rows), len(plate.columns))
        level, halvings = overview_level(first, *grid)
        lead = first.shape[:-2]
        sh, sw = first.level_shapes[level][-2:]
        th, tw = -(-sh // 2**halvings), -(-sw // 2**halvings)
        shape = (*lead, grid[0] * th, grid[1] * tw)
        plane_bytes = shape[-2] * shape[-1] * first.dtype.itemsize
        if plane_bytes * np.prod(lead) > MAX_OVERVIEW_BYTES:
            return None
        if (level, halvings) == (0, 0) and plane_bytes > FULL_RESOLUTION_PLANE_BYTES:
            return None  # a plate shown at full resolution: the overview would copy it
        opened: dict[str, OpenWell] = {}
        if isinstance(root, RemoteLocation):
            records, opened = _remote_records(root, wells, store.uploaded)
        else:
            records = _complete_records(root, wells, store.zarr_format)
        identities = _identities(root, paths, records)
        if identities is None:
            return None  # wells without a layout record (not sharded): no version to key
        path = f"{OVERVIEW_DIR}/plate"
        axes = [*first.axes[:-2], "y", "x"]
        places = [(name, w.row_index * th, w.column_index * tw) for name, w in wells]
        reader = _RemoteWells(opened, paths, wells) if opened else _LocalWells(store)
        strips = _strips(reader, places, first, (th, tw), grid)
        if isinstance(root, RemoteLocation):
            doc, shard = _upload_array(root, path, strips, shape, th, first.dtype, config, axes)
            unchanged = _remote_unchanged(root, paths, records)
        else:
            doc, shard = _write_array(root, path, strips, shape, th, first.dtype, config, axes)
            unchanged = identities == _identities(root, paths, records)
        if not unchanged:
            return None  # a well was rewritten while it was read
    except (_Mismatch, *_BUILD_ERRORS) as err:
        if report_disk_errors and isinstance(err, OSError) and err.errno in _WRITE_FAULTS:
            raise  # the disk, not the wells: reported, and a resume builds it again
        return None
    key = wells_key(identities)
    record = OverviewRecord(path, level, halvings, (th, tw), grid, len(wells), doc, key, shard)
    _set_record(root, record)
    return record


def _remote_records(
    root: RemoteLocation,
    wells: Sequence[tuple[str, Any]],
    uploaded: Mapping[str, UploadedWell],
) -> tuple[LayoutRecords, dict[str, OpenWell]]:
    """The layout records of a remote plate's wells, each made from the well read back.

    The wells' objects are listed once (their size and last-modified time stand for a
    local file's size and mtime); each well's documents and shard indexes are read,
    ``REMOTE_WELLS_AT_ONCE`` wells at a time, except what the listing confirms of the
    wells this run put (``uploaded``: every object listed with the entity tag its put
    returned): their documents are the bytes put and their shard indexes follow from the
    chunk sizes written, so no request reads them back.  Returns the records (saved in
    the plate) and the wells opened, by path, for the overview's reads.
    """
    listed = root.listed()
    records = LayoutRecords.load(root)

    def one(item: tuple[str, Any]) -> tuple[str, OpenWell, tuple[str, Any] | None]:
        name, well = item
        prefix = f"{well.path}/"
        own = {k[len(prefix) :]: v for k, v in listed.items() if k.startswith(prefix)}
        put = uploaded.get(well.path)
        confirmed = put.verified(own) if put is not None else None
        if put is not None and confirmed is not None:
            for doc, data in put.docs.items():
                (root / well.path / doc).seed(data)
            images = {doc.split("/")[0] for doc in put.docs if doc.count("/") == 1}
            for image in images:  # opening a well looks for its images' labels
                if f"{image}/labels/zarr.json" not in own:
                    (root / well.path / image / "labels" / "zarr.json").seed(None)
            opened = open_well(root, well.path, name, 3)  # from the seeded documents
            record = (opened.layout_key(), confirmed)
            return well.path, opened.clone(name, well.path, confirmed), record
        opened = open_well(root, well.path, name, 3)
        stamps = {k: (size, mtime) for k, (size, mtime, _) in own.items()}
        files = opened.shard_files(stamps)
        return well.path, opened, (opened.layout_key(), files) if files is not None else None

    opened: dict[str, OpenWell] = {}
    changed = False
    with ThreadPoolExecutor(REMOTE_WELLS_AT_ONCE, thread_name_prefix="wellzarr-ov") as pool:
        for path, well, made in pool.map(one, wells):
            opened[path] = well
            if made is not None and records.get(path) != made:
                records.add(path, *made)
                changed = True
    if changed:
        records.save(root)
    return records, opened


def _remote_unchanged(root: RemoteLocation, paths: Sequence[str], records: LayoutRecords) -> bool:
    """Whether every well's documents are still the ones recorded (one more listing)."""
    stamps = root.stamps()
    for path in paths:
        record = records.get(path)
        if record is None:
            return False
        for name, ident in record[1].items():
            if name.endswith("zarr.json") and stamps.get(f"{path}/{name}") != tuple(ident[:2]):
                return False
    return True


class _LocalWells:
    """Reads the wells of a plate on this machine (a few at once: decoding overlaps shrinking)."""

    at_once: int = LOCAL_WELLS_AT_ONCE

    def __init__(self, store: _Plate) -> None:
        self._store = store

    def info(self, name: str) -> WellInfo:
        return self._store.well_info(name)

    def read(self, name: str, keys: Sequence[PlaneKey], level: int) -> list[np.ndarray[Any, Any]]:
        return self._store.read_planes(name, keys, level=level)


class _RemoteWells:
    """Reads many remote wells at once (the wells opened for their records)."""

    at_once: int = REMOTE_WELLS_AT_ONCE

    def __init__(
        self, opened: Mapping[str, OpenWell], paths: Sequence[str], wells: Sequence[Any]
    ) -> None:
        self._by_name = {name: opened[path] for (name, _), path in zip(wells, paths, strict=True)}

    def info(self, name: str) -> WellInfo:
        return self._by_name[name].info

    def read(self, name: str, keys: Sequence[PlaneKey], level: int) -> list[np.ndarray[Any, Any]]:
        return self._by_name[name].read_planes(keys, level)


class _Mismatch(ValueError):
    """A well of another shape, dtype or tile than the reference well's: no overview."""


def _source(info: WellInfo, first: WellInfo, grid: tuple[int, int], name: str) -> tuple[int, int]:
    """``(stored level, halvings)`` of a well's whole-plate tile; its own levels decide.

    Wells written before and after a change of the default (a 4x level stored or not)
    give the same tile: stored levels are the block means a halving computes.
    """
    if info.level_shapes[0] != first.level_shapes[0] or info.dtype != first.dtype:
        raise _Mismatch(name)
    return overview_level(info, *grid)


def _strips(
    wells: _LocalWells | _RemoteWells,
    places: Sequence[tuple[str, int, int]],
    first: WellInfo,
    tile: tuple[int, int],
    grid: tuple[int, int],
) -> Iterator[tuple[int, np.ndarray[Any, Any]]]:
    """The overview's chunks as ``(slot, strip)``: a row of wells of a plane each.

    A field (and time point) at a time, a row of wells at a time: each well's channels
    and z planes of that field are read together (``wells.at_once`` wells at a time, at
    most ``STRIP_READ_BYTES`` of planes in flight) and shrunk to their tiles; only the
    row's tiles and one strip are in memory at once.
    """
    lead = first.shape[:-2]
    has_time = len(lead) == 4
    th, tw = tile
    outer = lead[:2] if has_time else lead[:1]
    inner = lead[-2:]  # c, z
    by_row: dict[int, list[tuple[str, int]]] = {}
    for name, y, x in places:
        by_row.setdefault(y // th, []).append((name, x))
    infos = {name: wells.info(name) for name, _, _ in places}
    sources = {name: _source(info, first, grid, name) for name, info in infos.items()}
    plane_bytes = {name: _plane_bytes(infos[name], sources[name][0]) for name in infos}
    planes_in = list(np.ndindex(*inner))

    def tiles(name: str, keys: list[PlaneKey]) -> list[np.ndarray[Any, Any]]:
        level, halvings = sources[name]
        out = [shrink(plane, halvings) for plane in wells.read(name, keys, level)]
        if any(t.shape != tile or t.dtype != first.dtype for t in out):
            raise _Mismatch(name)
        return out

    with ThreadPoolExecutor(wells.at_once, thread_name_prefix="wellzarr-ov") as pool:
        for at in np.ndindex(*outer):
            field, t = at[0], at[1] if has_time else 0
            for row in range(grid[0]):
                members = by_row.get(row, [])
                names = [name for name, _ in members]
                largest = max((plane_bytes[name] for name in names), default=1)
                in_flight = max(1, min(len(names), wells.at_once)) * largest
                step = max(1, STRIP_READ_BYTES // in_flight)
                for start in range(0, len(planes_in), step):
                    batch = planes_in[start : start + step]
                    keys = [PlaneKey(field, c, z, t) for c, z in batch]
                    read = list(pool.map(lambda name, k=keys: tiles(name, k), names))
                    for n, (c, z) in enumerate(batch):
                        strip = np.zeros((th, grid[1] * tw), dtype=first.dtype)
                        for (_, x), planes in zip(members, read, strict=True):
                            strip[:, x : x + tw] = planes[n]
                        yield int(np.ravel_multi_index((*at, c, z, row), (*lead, grid[0]))), strip
                        del strip  # one strip in memory at a time
                    del read


def _plane_bytes(info: WellInfo, level: int) -> int:
    h, w = info.level_shapes[level][-2:]
    return int(h * w * info.dtype.itemsize)


def strip_grids(doc: Mapping[str, Any]) -> tuple[ShardGrid, ShardGrid] | None:
    """``(array, strips)`` of an overview array document, None unless it is one.

    The overview is one shard whose chunks are strips of its planes (a row of wells
    each; plane chunks in overviews written before).  ``strips`` reads it as the
    array with one more axis, of strips: the same shard, byte for byte, each strip a
    plane of it (``(..., y, x)`` -> ``(..., strip, y in strip, x)``).
    """
    whole = ShardGrid.parse(doc)
    if whole is not None:
        return whole, whole
    try:
        shape = [int(v) for v in doc["shape"]]
        sharding = doc["codecs"][0]["configuration"]
        chunk = [int(v) for v in sharding["chunk_shape"]]
        one_shard = [int(v) for v in doc["chunk_grid"]["configuration"]["chunk_shape"]] == shape
    except (KeyError, IndexError, TypeError, ValueError, AttributeError):
        return None
    if (
        not one_shard
        or len(shape) < 3
        or len(chunk) != len(shape)
        or any(c != 1 for c in chunk[:-2])
        or chunk[-1] != shape[-1]
        or not 0 < chunk[-2] < shape[-2]
        or shape[-2] % chunk[-2]
    ):
        return None
    tall = [*shape[:-2], shape[-2] // chunk[-2], chunk[-2], shape[-1]]
    codec = {**doc["codecs"][0], "configuration": {**sharding, "chunk_shape": [1, *chunk]}}
    grid = {"name": "regular", "configuration": {"chunk_shape": tall}}
    strips = _StripGrid.parse({**doc, "shape": tall, "chunk_grid": grid, "codecs": [codec]})
    if strips is None:
        return None
    real = {"shape": tuple(shape), "shard_shape": tuple(shape), "chunk_shape": tuple(chunk)}
    return ShardGrid(**{**vars(strips), **real}), strips


class _StripGrid(ShardGrid):
    """An overview read as planes of strips: its one shard file has the array's key."""

    @property
    def plane_chunks(self) -> int:
        """Strips that make one plane of the overview."""
        return self.chunks_per_shard[-1]

    def shard_key(self, shard: Sequence[int]) -> str:
        """The key of the overview's shard (the strip axis is not the array's)."""
        return super().shard_key(tuple(shard)[:-1])


def _one_shard_array(
    shape: tuple[int, ...],
    strip: int,
    dtype: np.dtype[Any],
    config: StorageConfig,
    axes: list[str],
    target: Path | RemoteLocation,
) -> tuple[dict[str, Any], ShardGrid]:
    """The overview array's document (one shard of ``strip``-row chunks), its strip grid."""
    chunks = (1,) * (len(shape) - 2) + (strip, shape[-1])
    doc = sharded_v3_metadata(shape, dtype, (chunks, shape), config, axes).to_dict()
    grids = strip_grids(doc)
    if grids is None:
        raise ValueError(f"the overview array of {target} cannot be written shard by shard")
    return doc, grids[1]


def _write_array(
    root: Path,
    path: str,
    strips: Iterator[tuple[int, np.ndarray[Any, Any]]],
    shape: tuple[int, ...],
    strip: int,
    dtype: np.dtype[Any],
    config: StorageConfig,
    axes: list[str],
) -> tuple[dict[str, Any], tuple[int, ...]]:
    """Write the overview at ``root / path``: a zarr v3 array of strip chunks in one shard.

    Built in the plate's staging folder and swapped in whole (under the plate lock).
    Returns the array's document and its shard's identity (size, mtime, chunk sizes:
    a reader that has them reads no shard index).
    """
    target = root / path
    doc, layout = _one_shard_array(shape, strip, dtype, config, axes, target)
    stage = fsio.staging_dir(root, "overview")
    spill = fsio.staging_dir(root, "overview")  # its own: a killed writer's is swept
    try:
        layout.write_one_shard_from(stage, strips, spill / "chunks")
        fsio.remove_tree(spill)
        fsio.write_staged_file(stage / "zarr.json", json.dumps(doc, indent=2).encode())
        target.parent.mkdir(exist_ok=True)
        with fsio.plate_lock(root):
            _drop_version(root)  # no reader pairs the old version with the new array
            if target.exists():
                fsio.remove_tree(target)
            os.rename(stage, target)
    finally:
        fsio.remove_tree(stage)
        fsio.remove_tree(spill)
    shard = ShardReader(target, layout, str(target)).identity()
    if shard is None:
        raise ValueError(f"the overview shard of {target} cannot be described")
    return json.loads(json.dumps(doc)), shard  # plain JSON types


def _upload_array(
    root: RemoteLocation,
    path: str,
    strips: Iterator[tuple[int, np.ndarray[Any, Any]]],
    shape: tuple[int, ...],
    strip: int,
    dtype: np.dtype[Any],
    config: StorageConfig,
    axes: list[str],
) -> tuple[dict[str, Any], tuple[int, ...]]:
    """:func:`_write_array` to an object store: the shard is put as one object.

    Built in a local temporary folder, then streamed up from the file (a multipart
    upload when large: :meth:`RemoteLocation.upload`), its document after it.
    """
    target = root / path
    doc, layout = _one_shard_array(shape, strip, dtype, config, axes, target)
    stage = Path(tempfile.mkdtemp(prefix="wellzarr-overview-"))
    try:
        layout.write_one_shard_from(stage, strips, stage / "spill")
        (stage / "spill").unlink()
        key = layout.shard_key((0,) * len(layout.shape))
        shard = ShardReader(stage, layout, str(target)).identity()
        if shard is None:
            raise ValueError(f"the overview shard of {target} cannot be described")
        _drop_version(root)  # no reader pairs the old version with the new array
        stale = [name for name in target.keys() if name not in (key, "zarr.json")]
        (target / key).upload(os.fspath(stage / key))
        (target / "zarr.json").write(json.dumps(doc, indent=2).encode())
        if stale:
            target.delete(stale)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    return json.loads(json.dumps(doc)), shard  # plain JSON types


def _drop_version(root: Path | RemoteLocation) -> None:
    records = LayoutRecords.load(root)
    if records.overview is not None:
        records.overview = None
        records.save(root)


def _set_record(root: Path | RemoteLocation, record: OverviewRecord | None) -> None:
    """Put ``record`` in (or take the overview out of) the plate's block and record file."""
    with fsio.plate_lock(root):
        _drop_version(root)
        attrs = fsio.read_attrs(root, 3)
        block = attrs.get(WELLZARR_KEY)
        if not isinstance(block, dict):
            return
        wanted = record.to_json() if record is not None else None
        if block.get(OVERVIEW_KEY) != wanted:
            if wanted is None:
                block.pop(OVERVIEW_KEY)
            else:
                block[OVERVIEW_KEY] = wanted
            fsio.write_group(root, attrs, 3)
        if record is not None:
            records = LayoutRecords.load(root)
            records.overview = record.version()
            records.save(root)
        elif isinstance(root, RemoteLocation):
            stale = (root / OVERVIEW_DIR).keys()
            if stale:
                (root / OVERVIEW_DIR).delete(stale)
        elif (root / OVERVIEW_DIR).exists():
            fsio.remove_tree(root / OVERVIEW_DIR)  # stale pixels: the space back


def forget_overview(root: Path | RemoteLocation, zarr_format: int) -> None:
    """Take the overview out of the plate (before a well is written or rewritten)."""
    if zarr_format == 3:
        _set_record(root, None)


def overview_of(
    root: Path | RemoteLocation,
    zarr_format: int,
    cached: tuple[object, LayoutRecords | None],
    wells: Sequence[str],
) -> OverviewRecord | None:
    """The plate's current overview: built from exactly the wells ``wells`` (paths) hold.

    A local plate's documents are read again (another process may have rebuilt or
    dropped it); a remote plate's are those ``cached`` (plate block, layout records)
    from its opening.
    """
    block, records = cached
    if isinstance(root, Path) and zarr_format == 3:
        try:
            marker = fsio.read_attrs(root, 3).get(WELLZARR_KEY)
        except (OSError, ValueError):
            return None
        block = marker.get(OVERVIEW_KEY) if isinstance(marker, dict) else None
        records = LayoutRecords.load(root)
    version = records.overview if records is not None else None
    return current_overview(root, parse_record(block, version), wells, records)


class OverviewPlanes:
    """Reads whole-plate planes of a plate's overview (local or remote, through its shard)."""

    def __init__(
        self,
        root: Path | RemoteLocation,
        record: OverviewRecord,
        positions: Mapping[str, tuple[int, int]],
    ) -> None:
        grids = strip_grids(record.array)
        if grids is None:
            raise ValueError(f"{record.path}: not an overview array this reader takes")
        self.record = record
        #: The overview array (its shape and data type); read through its strips.
        self.layout, self._strips = grids
        #: Each well's (row, column) in the overview's grid.
        self.positions = dict(positions)
        where = f"plate overview {record.path}"
        self._reader = ShardReader(root / record.path, self._strips, where, record.shard or None)

    @property
    def level(self) -> int:
        """The wells' stored level the overview was made from."""
        return self.record.level

    @property
    def halvings(self) -> int:
        """How many times that level was halved (see :func:`overview_level`)."""
        return self.record.halvings

    def origin(self, well: str) -> tuple[int, int] | None:
        """Top-left pixel of ``well``'s tile in an overview plane (None: not in it)."""
        at = self.positions.get(well)
        if at is None:
            return None
        return at[0] * self.record.tile[0], at[1] * self.record.tile[1]

    def read(self, keys: Sequence[PlaneKey]) -> list[np.ndarray[Any, Any]]:
        """The whole-plate planes at ``keys`` (one read of the shard's chunks)."""
        has_time = len(self.layout.shape) == 6
        planes = [(k.field, k.t, k.c, k.z) if has_time else (k.field, k.c, k.z) for k in keys]
        for plane in planes:
            if any(not 0 <= i < n for i, n in zip(plane, self.layout.shape, strict=False)):
                raise IndexError(f"plane {plane} is outside the overview {self.layout.shape}")
        out = np.empty((len(planes), *self.layout.shape[-2:]), self.layout.dtype.newbyteorder("="))
        if isinstance(self._strips, _StripGrid):  # each plane as its strips, in order
            rows = self._strips.plane_chunks
            planes = [(*plane, row) for plane in planes for row in range(rows)]
        if not self._reader.read(planes, out.reshape(len(planes), *self._strips.shape[-2:])):
            raise WellZarrError(f"plate overview {self.record.path}: a chunk is missing")
        return list(out)
