"""The well-chunked OME-Zarr plate store."""

from __future__ import annotations

import dataclasses
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Literal, TypeVar

from napari_wellzarr.errors import (
    MetadataError,
    PlateExistsError,
    PlateNotFoundError,
    StoreReadOnlyError,
    WellNameError,
    WellNotFoundError,
    WellZarrError,
)
from napari_wellzarr.storage import fsio, remotefetch
from napari_wellzarr.storage import overview as overviews
from napari_wellzarr.storage._spec import OVERVIEW_KEY, WELLZARR_KEY
from napari_wellzarr.storage.acquisition import PROJECTIONS_PATH, Acquisition
from napari_wellzarr.storage.axes import PlaneKey, plane_key
from napari_wellzarr.storage.config import StorageConfig
from napari_wellzarr.storage.geometry import Well, row_letters
from napari_wellzarr.storage.locations import (
    RemoteLocation,
    is_url,
    open_location,
    refuse_url,
    writable_url,
)
from napari_wellzarr.storage.metadata import Channel, PlateMeta, PlateWell
from napari_wellzarr.storage.placing import build_and_place, prepare_remote
from napari_wellzarr.storage.plates import (
    foreign_config,
    lookup,
    parse_root,
    scan_unlisted,
    write_plate_doc,
)
from napari_wellzarr.storage.reading import OpenWell, WellInfo, open_well
from napari_wellzarr.storage.records import LayoutRecords, UploadedWell
from napari_wellzarr.storage.templates import TemplateCache, well_record
from napari_wellzarr.storage.writing import (
    assemble_planes,
    build_acquisitions,
    build_well,
    prepare_acquisitions,
    prepare_well,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping, Sequence
    from types import TracebackType

    import numpy as np

__all__ = ["LIST_EVERY_S", "PlateStore", "WellInfo"]

# How often a writer brings the well list up to date (after its first well, then at most
# this often, and at the end): other readers see progress, and each listing costs one write.
LIST_EVERY_S: Final = 5.0

_T = TypeVar("_T")


@dataclass(frozen=True)
class _Target:
    well: Well
    name: str
    path: str


class PlateStore:
    """One HCS plate in OME-Zarr: create it with :meth:`create`, open it with :meth:`open`.

    Use it as a context manager (or call :meth:`close`) so that the wells written in a
    session are listed in the plate metadata.
    """

    def __init__(
        self,
        root: Path | RemoteLocation,
        plate: PlateMeta,
        *,
        version: str,
        zarr_format: int,
        config: StorageConfig | None,
        read_only: bool,
        ours: bool,
    ) -> None:
        #: Where the plate is: a local folder or a :class:`RemoteLocation` (a URL).
        self.location = root
        self.ngff_version = version
        self.zarr_format = zarr_format
        self.read_only = read_only
        self._plate = plate
        self._config = config
        self._ours = ours  # written by napari-wellzarr: every chunk is on disk
        # A foreign plate's level names (ome-zarr-py: s0, s1, ...), for wells added to it.
        self._dataset_paths: tuple[str, ...] | None = None
        self._lock = threading.Lock()  # guards the session's well list across threads
        self._session: dict[str, PlateWell] = {}
        # Complete wells found on disk but not listed (unlisted_wells): readable, not listed.
        self._found: set[str] = set()
        # The listed wells' paths, for the plate's current well tuple (O(1) membership).
        self._listed: tuple[tuple[PlateWell, ...] | None, frozenset[str]] = (None, frozenset())
        self._wells: dict[str, OpenWell] = {}
        self._acquired: dict[tuple[str, int], OpenWell] = {}  # wells opened per acquisition
        # Layout records (ours, sharded): wells that share one layout are read through a
        # clone of one opened "template" well, without reading their own metadata.
        self._records = LayoutRecords()  # this session's wells
        self._disk_records: LayoutRecords | None = None  # the plate's, read at first need
        self._templates = TemplateCache(root, zarr_format)
        # The acquisitions block this session set (kept when the well list is rewritten).
        self._acquisitions_set: tuple[dict[str, Any], ...] | None = None
        self._overview: object = None  # the overview record in the plate's block, if any
        self._new_wells = False  # this session listed wells: close() rebuilds the overview
        #: Wells put into an object store, by path (by this process, or handed back by dask
        #: workers): the overview's build reads back only what a listing does not confirm.
        self.uploaded: dict[str, UploadedWell] = {}

    # -- opening and creating ---------------------------------------------------------

    @classmethod
    def create(
        cls,
        path: str | os.PathLike[str],
        config: StorageConfig | None = None,
        *,
        name: str | None = None,
        overwrite: bool = False,
        exist_ok: bool = False,
    ) -> PlateStore:
        """Create an empty plate at ``path`` listing every physical row and column.

        Raises :class:`PlateExistsError` if ``path`` is not an empty directory, unless
        ``overwrite=True`` (deletes what is there) or ``exist_ok=True`` (an existing plate
        opens in mode ``r+``; a directory without zarr data becomes a plate around it).
        ``path`` may be an ``s3://`` URL; other URLs raise :class:`RemoteWriteError`.
        """
        refuse_url(path, "a plate", s3_ok=True)
        config = config or StorageConfig()
        if writable_url(path):
            remote = open_location(os.fspath(path), fresh=True)
            if prepare_remote(remote, overwrite=overwrite, exist_ok=exist_ok):
                return cls.open(os.fspath(path), "r+")
            return cls._new(remote, config, name)
        root = Path(path)
        if exist_ok and root.is_dir() and not overwrite:
            with fsio.plate_lock(root):  # one process turns the directory into a plate
                if fsio.detect_zarr_format(root) is not None:
                    return cls.open(root, "r+")
                return cls._new(root, config, name)
        if root.exists() and (root.is_file() or any(root.iterdir())):
            if not overwrite:
                raise PlateExistsError(
                    f"{root} already exists; pass overwrite=True to replace it, or open it "
                    "with PlateStore.open(path, mode='r+') to add wells"
                )
            if root.is_file() or fsio.detect_zarr_format(root) is None:
                # overwrite replaces a zarr store, never an arbitrary folder or file
                raise PlateExistsError(
                    f"{root} exists and is not a zarr store; overwrite=True will not delete it"
                )
            fsio.remove_tree(root)
        return cls._new(root, config, name)

    @classmethod
    def _new(
        cls, root: Path | RemoteLocation, config: StorageConfig, name: str | None
    ) -> PlateStore:
        if isinstance(root, Path):
            root.mkdir(parents=True, exist_ok=True)
        geometry = config.plate
        plate = PlateMeta(geometry.row_names, geometry.column_names, name=name or root.name)
        store = cls(
            root,
            plate,
            version=config.ngff_version.value,
            zarr_format=config.zarr_format,
            config=config,
            read_only=False,
            ours=True,
        )
        store._write_plate(plate)
        return store

    @classmethod
    def open(
        cls,
        path: str | os.PathLike[str],
        mode: Literal["r", "r+"] = "r",
        *,
        config: StorageConfig | None = None,
    ) -> PlateStore:
        """Open the plate at ``path``; ``mode='r'`` never writes anything.

        New wells are stored as the plate's saved configuration says; for a plate written
        by other software, as ``config`` says (default: this project's defaults for its
        OME-NGFF version).  ``path`` may be a URL (``https://``, ``s3://``, ...): read-only,
        but an ``s3://`` plate may be opened ``r+`` (see ``docs/architecture.md``).
        """
        if mode not in ("r", "r+"):
            raise ValueError(f"mode={mode!r}; use 'r' or 'r+'")
        root: Path | RemoteLocation
        if is_url(path):
            if mode != "r":
                refuse_url(path, "wells (mode='r+')", s3_ok=True)
            root = open_location(os.fspath(path), fresh=True)
        else:
            root = Path(path)
            if not root.is_dir():
                raise PlateNotFoundError(f"no plate at {root}: not a directory")
        zarr_format = fsio.detect_zarr_format(root)
        if zarr_format is None:
            raise PlateNotFoundError(f"no plate at {root}: not a zarr group")
        attrs = fsio.read_attrs(root, zarr_format)
        marker = attrs.get(WELLZARR_KEY)
        saved = marker.get("config") if isinstance(marker, dict) else None
        if isinstance(saved, dict):
            config = StorageConfig.from_dict(saved)
        plate, version = parse_root(root, attrs, config if isinstance(saved, dict) else None)
        version = version or ("0.5" if zarr_format == 3 else "0.4")
        dataset_paths = None
        if config is None and mode == "r+":
            config, dataset_paths = foreign_config(root, plate, zarr_format)
        if config is not None and config.zarr_format != zarr_format:
            raise MetadataError(
                f"{root} is zarr v{zarr_format}, but its configuration says OME-NGFF "
                f"{config.ngff_version.value}"
            )
        if mode == "r+" and isinstance(root, Path):
            if not os.access(root, os.W_OK):  # a read-only mount, or not the user's
                raise StoreReadOnlyError(
                    f"{root} is not writable (read-only file system or permissions); "
                    "open it with mode='r' to read it"
                )
            fsio.clean_stale_staging(root)
        store = cls(
            root,
            plate,
            version=version,
            zarr_format=zarr_format,
            config=config,
            read_only=mode == "r",
            ours=isinstance(saved, dict),
        )
        store._dataset_paths = dataset_paths
        store._overview = marker.get(OVERVIEW_KEY) if isinstance(marker, dict) else None
        remotefetch.fetch_ahead(root, ours=isinstance(saved, dict) and mode == "r")
        return store

    def __enter__(self) -> PlateStore:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        mode = "r" if self.read_only else "r+"
        return f"PlateStore({str(self.location)!r}, mode={mode!r}, ngff={self.ngff_version})"

    # -- the plate --------------------------------------------------------------------

    @property
    def config(self) -> StorageConfig | None:
        """How this plate stores wells (``None`` for a foreign plate opened read-only)."""
        return self._config

    @property
    def plate(self) -> PlateMeta:
        """The plate metadata as this session sees it (listed wells + this session's)."""
        return self._plate.with_wells([*self._plate.wells, *self._session.values()])

    @property
    def rows(self) -> tuple[str, ...]:
        """Every physical row name."""
        return self._plate.rows

    @property
    def columns(self) -> tuple[str, ...]:
        """Every physical column name."""
        return self._plate.columns

    def wells(self) -> list[str]:
        """Names (``B03``) of the wells the plate lists, in plate order."""
        return [self._name(w.row_index, w.column_index) for w in self.plate.wells]

    def __contains__(self, well: object) -> bool:
        if not isinstance(well, str | Well):
            return False
        try:
            target = self._target(well)
        except WellNameError:
            return False
        return self._is_listed(target.path)

    def _is_listed(self, path: str) -> bool:
        if path in self._session:
            return True
        wells = self._plate.wells  # a tuple: replaced, never changed, when wells are added
        if self._listed[0] is not wells:
            self._listed = (wells, frozenset(w.path for w in wells))
        return path in self._listed[1]

    def well_path(self, well: str | Well) -> str:
        """The folder of ``well`` inside the plate (``B/03``), whether it is written or not."""
        return self._target(well).path

    def _name(self, row: int, column: int) -> str:
        return f"{self._plate.rows[row]}{self._plate.columns[column]}"

    def _target(self, well: str | Well) -> _Target:
        """Find a well by its name: ``B03`` is row ``B``, column 3.

        Whatever the plate's column names look like (``03``, ``3``); else by position.
        """
        pos = well if isinstance(well, Well) else Well.parse(well)
        rows, columns = self._plate.rows, self._plate.columns
        r = lookup(rows, row_letters(pos.row) if pos.row < 702 else "", pos.row, str.isalpha)
        c = lookup(columns, str(pos.column + 1), pos.column, str.isdigit)
        if r is None or c is None:
            raise WellNameError(
                f"well {well!r} is not on this {len(rows)}x{len(columns)} plate ({self.location}; "
                f"rows {rows[0]}..{rows[-1]}, columns {columns[0]}..{columns[-1]})"
            )
        return _Target(Well(r, c), self._name(r, c), self._plate.well_path(r, c))

    # -- writing ----------------------------------------------------------------------

    @property
    def root(self) -> Path:
        """The plate's local folder (a remote plate has none: see :attr:`location`)."""
        if not isinstance(self.location, Path):
            refuse_url(self.location.url, "to a plate")
            raise AssertionError  # refuse_url raised
        return self.location

    @property
    def is_remote(self) -> bool:
        """Whether the plate was opened from a URL (written only when ``s3://``)."""
        return not isinstance(self.location, Path)

    def _dest(self) -> Path | RemoteLocation:
        """Where the plate is written: its folder, or its ``s3://`` location."""
        if isinstance(self.location, RemoteLocation) and self.location.writable:
            return self.location
        return self.root

    def _writable_config(self) -> StorageConfig:
        if self.read_only or self._config is None:
            raise StoreReadOnlyError(f"{self.location} was opened read-only (mode='r')")
        return self._config

    def write_well(
        self,
        well: str | Well,
        data: object,
        *,
        channels: Sequence[str | Channel] | None = None,
        pixel_size: float | tuple[float, float] | None = None,
        z_step: float | None = None,
        plane_names: Mapping[str, PlaneKey | Sequence[int]] | None = None,
        labels: Mapping[str, object] | None = None,
        overwrite: bool = False,
        acquisition: Acquisition | None = None,
        projections: object | None = None,
        projection_names: Mapping[str, PlaneKey | Sequence[int]] | None = None,
    ) -> WellInfo:
        """Write a whole well from a ``(field, c, z, y, x)`` (or ``(field, t, c, z, y, x)``) array.

        Everything is checked before anything is written; the well appears on disk
        only once it is complete, and in the plate's well list at :meth:`flush`.

        Parameters
        ----------
        well
            ``B03``, ``B3``, ``r02c03`` or a :class:`Well`.
        data
            The well's pixels; NumPy, CuPy, PyTorch, JAX or anything array-like.
        channels
            Channel names or :class:`Channel` objects (colour, display window).
        pixel_size, z_step
            Pixel size (``(y, x)`` or one number) and z step, in micrometres.
        plane_names
            Original file names -> (field, c, z[, t]); stored as ``openhcs_filename_map``.
        labels
            OME label images by name: integer arrays ``(field, [t,] z, y, x)``.
        overwrite
            Replace the well if it is already complete.
        acquisition
            Field positions, conditions, time interval and projection methods (the
            well's ``wellzarr`` block; positions also as per-field ``translation``).
        projections, projection_names
            The well's projections (MIP, best focus; the well's shape with one z) and
            their file names: a second image, in the well's ``projections`` group.
        """
        config = self._writable_config()
        target = self._target(well)
        payload = prepare_well(
            target.name,
            data,
            config,
            channels=channels,
            pixel_size=pixel_size,
            z_step=z_step,
            plane_names=plane_names,
            labels=labels,
            acquisition=acquisition,
            projections=projections,
            projection_names=projection_names,
        )
        return self._write_payload(
            target,
            lambda stage: build_well(
                stage, payload, config, self.ngff_version, self._dataset_paths
            ),
            overwrite,
        )

    def write_acquisitions(
        self,
        well: str | Well,
        images: Mapping[int, Mapping[str, Any]],
        *,
        overwrite: bool = False,
    ) -> WellInfo:
        """Write a well holding the images of several acquisitions (imaging rounds).

        Parameters
        ----------
        well
            ``B03``, ``B3``, ``r02c03`` or a :class:`Well`.
        images
            ``acquisition id -> {"data": ..., "channels": ..., ...}``: :meth:`write_well`'s
            arguments per acquisition (ids from :meth:`set_acquisitions`' block, if any).
        overwrite
            Replace the well if it is already complete.

        Returns the first acquisition's :class:`WellInfo`.
        """
        config = self._writable_config()
        target = self._target(well)
        known = [ident for ident, _ in self.acquisitions()]
        parts = prepare_acquisitions(target.name, images, config, known)
        version, paths = self.ngff_version, self._dataset_paths
        return self._write_payload(
            target,
            lambda stage: build_acquisitions(stage, parts, config, version, paths),
            overwrite,
        )

    def set_acquisitions(self, acquisitions: Sequence[Mapping[str, Any]]) -> None:
        """Set the plate's ``acquisitions`` block (``{"id": 0, "name": "round1", ...}``).

        Written at once (and kept by every later listing of wells).
        """
        self._writable_config()
        with fsio.plate_lock(self._dest()):
            with self._lock:
                self._plate = self._plate.with_acquisitions(acquisitions)
                self._acquisitions_set = self._plate.acquisitions
            self._write_plate(self._plate)

    def _write_payload(
        self, target: _Target, build: Callable[[Path], None], overwrite: bool
    ) -> WellInfo:
        try:
            return self._build_in_place(target, build, overwrite)
        except OSError as err:
            if isinstance(err, WellZarrError) or err.errno is None:
                raise
            # "No space left on device" alone does not say which well failed
            raise OSError(err.errno, f"well {target.name}: {err.strerror}", err.filename) from err

    def _build_in_place(
        self, target: _Target, build: Callable[[Path], None], overwrite: bool
    ) -> WellInfo:
        where = (target.path, target.name)
        staged, files, put = build_and_place(
            self._dest(), where, build, self.zarr_format, overwrite, self._ours, self._stale
        )
        with self._lock:
            if put is not None:  # (a stale one is harmless: its tags no longer list)
                self.uploaded[target.path] = put
            self._session[target.path] = PlateWell(target.path, target.well.row, target.well.column)
            if files is not None:
                self._records.add(target.path, staged.layout_key(), files, pending=True)
            self._wells.pop(target.path, None)
            self._acquired = {k: v for k, v in self._acquired.items() if k[0] != target.path}
            self._templates.forget(target.path)
        return dataclasses.replace(staged.info, path=target.path)

    def _stale(self) -> None:  # wells change: the overview goes first
        if self._overview is not None:
            self._overview = None
            overviews.forget_overview(self._dest(), self.zarr_format)

    def write_planes(
        self,
        well: str | Well,
        planes: Iterable[tuple[PlaneKey | Sequence[int], object]],
        *,
        names: Sequence[str] | None = None,
        shape: Sequence[int] | None = None,
        strict: bool = False,
        **metadata: Any,
    ) -> list[PlaneKey]:
        """Write a well from 2D planes, each with its own ``(field, c, z[, t])`` coordinate.

        A plane's place is its coordinate, never its position in ``planes``.  ``shape``
        is ``(fields, channels, z[, t])`` (default: the largest coordinate + 1).  Missing
        planes are 0 and returned, or refused with ``strict=True``.  ``names`` (one per
        plane) become the file-name map; other keywords go to :meth:`write_well`.
        """
        self._writable_config()
        target = self._target(well)
        array, plane_names, missing = assemble_planes(target.name, planes, names, shape, strict)
        self.write_well(target.well, array, plane_names=plane_names, **metadata)
        return missing

    # -- the plate's well list ----------------------------------------------------------

    def flush(self) -> None:
        """List the wells this session wrote in the plate metadata (one write, locked)."""
        with self._lock:
            pending = dict(self._session)
            records = self._records.pending()
        if self.read_only or not pending:
            return
        dest = self._dest()
        with fsio.plate_lock(dest):  # none on S3: there the client is the only writer
            attrs = fsio.read_attrs(dest, self.zarr_format)
            current, _ = parse_root(dest, attrs, self._config if self._ours else None)
            merged = current.with_wells([*current.wells, *pending.values()])
            if self._acquisitions_set is not None:
                merged = merged.with_acquisitions(self._acquisitions_set)
            if isinstance(dest, RemoteLocation):  # the rows' groups: written by the client
                for row in sorted({w.path.split("/")[0] for w in pending.values()}):
                    if not fsio.is_group(dest / row, self.zarr_format):
                        fsio.write_group(dest / row, {}, self.zarr_format)
            self._write_plate(merged)
            if records.to_json():
                on_disk = LayoutRecords.load(dest)
                on_disk.update(records)
                on_disk.save(dest)
                self._disk_records = on_disk
        with self._lock:
            self._plate, self._overview, self._new_wells = merged, None, True
            for path in pending:
                self._session.pop(path, None)
            self._records.done(records)

    def close(self) -> None:
        """Flush the well list, build the plate overview if wells were listed, forget arrays."""
        self.flush()
        if self._new_wells and self._ours and not self.read_only:
            self._new_wells = False
            overviews.build_overview(self)
        self._wells.clear()
        self._acquired.clear()
        self._templates.clear()

    def recover(self) -> list[str]:
        """List complete wells that are on disk but not in the metadata (after a crash).

        This and :meth:`unlisted_wells` are the calls that scan the plate; it returns the
        wells it adopted.
        """
        self._writable_config()
        found = []
        for r, c, path in self._scan_unlisted():
            name = self._name(r, c)
            record = (
                well_record(self.location, path, name, self.zarr_format) if self._ours else None
            )
            with self._lock:
                self._session[path] = PlateWell(path, r, c)
                if record is not None:
                    self._records.add(path, *record, pending=True)
            found.append(name)
        self.flush()
        return found

    def unlisted_wells(self) -> list[str]:
        """Complete wells on disk that the plate metadata does not list (yet), in plate order.

        A writer killed before :meth:`flush` leaves complete wells no reader sees; found
        without writing (listings of the plate and of rows with a position not listed),
        they read in this session like listed ones; :meth:`recover` lists them.
        """
        found = self._scan_unlisted()
        with self._lock:
            self._found.update(path for _, _, path in found)
        return [self._name(r, c) for r, c, _ in found]

    def _scan_unlisted(self) -> list[tuple[int, int, str]]:
        """``(row, column, path)`` of each complete well folder not listed, in plate order."""
        with self._lock:
            wells = [*self._plate.wells, *self._session.values()]
        return scan_unlisted(self.location, self._plate, wells)

    def _write_plate(self, plate: PlateMeta) -> None:
        config = self._config if self._ours else None
        write_plate_doc(self._dest(), plate, self.ngff_version, self.zarr_format, config)

    # -- reading ----------------------------------------------------------------------

    def _open(self, well: str | Well, acquisition: int | None = None) -> OpenWell:
        target = self._target(well)
        if acquisition is not None:
            return self._open_acquisition(target, acquisition)
        cached = self._wells.get(target.path)
        if cached is not None:
            return cached
        if not self._is_listed(target.path) and target.path not in self._found:
            raise WellNotFoundError(f"well {target.name} is not in the plate {self.location}")
        opened = open_well(self.location, target.path, target.name, self.zarr_format)
        self._wells[target.path] = opened
        return opened

    def _open_acquisition(self, target: _Target, acquisition: int) -> OpenWell:
        key = (target.path, acquisition)
        if key in self._acquired:
            return self._acquired[key]
        if not self._is_listed(target.path) and target.path not in self._found:
            raise WellNotFoundError(f"well {target.name} is not in the plate {self.root}")
        self._acquired[key] = open_well(
            self.root, target.path, target.name, self.zarr_format, acquisition
        )
        return self._acquired[key]

    def acquisitions(self) -> list[tuple[int, str]]:
        """The plate's ``acquisitions`` block as ``(id, name)`` (see ``PlateMeta``)."""
        return self._plate.acquisition_names()

    def _pixels(self, well: str | Well, read: Callable[[OpenWell], _T]) -> _T:
        """``read(well)`` through the well's recorded layout when the plate has one.

        A clone of a template well reads the pixels without this well's own metadata;
        if anything does not match (the well was rewritten, damaged...), the read is
        done again from the well's own metadata, which reports any real damage.
        """
        target = self._target(well)
        if target.path not in self._wells:
            clone = self._clone(target)
            if clone is not None:
                try:
                    return read(clone)
                except WellZarrError:
                    self._templates.forget(target.path)
        return read(self._open(well))

    def _clone(self, target: _Target) -> OpenWell | None:
        if not self._is_listed(target.path) or not self._ours:
            listed = self._is_listed(target.path)
            return self._templates.foreign_clone(target.path, target.name) if listed else None
        records = self._records_of(target.path)
        return self._templates.clone(target.path, target.name, records, self._is_listed)

    def _records_of(self, path: str) -> LayoutRecords:
        """The session's layout records if they have ``path``, else the plate's (read once)."""
        if self._records.get(path):
            return self._records
        if self._disk_records is None:
            self._disk_records = LayoutRecords.load(self.location)
        return self._disk_records

    def overview(self) -> overviews.OverviewRecord | None:
        """The plate overview, if one was built from the wells the plate holds now."""
        cached = (self._overview, self._records_of("") if self._ours else None)
        paths = [w.path for w in self.plate.wells]
        return overviews.overview_of(self.location, self.zarr_format, cached, paths)

    def well_info(self, well: str | Well, acquisition: int | None = None) -> WellInfo:
        """Shape, dtype, axes, channels, scales, levels and file names of a well.

        ``acquisition``: the images of that acquisition (see :func:`open_well`).
        """
        return self._open(well, acquisition).info

    def layout_info(self, well: str | Well, acquisition: int | None = None) -> WellInfo:
        """Shape, dtype, axes and levels that reads of ``well`` give, as cheaply as possible.

        From the layout records while the well's documents are unchanged (none of its
        metadata read), else its own: the layout :meth:`read_plane` reads it with.  Its
        channels, file names, labels may be another well's (:meth:`well_info`: its own).
        """
        if acquisition is not None:
            return self._open(well, acquisition).info
        target = self._target(well)
        opened = self._wells.get(target.path) or self._clone(target)
        return (opened or self._open(well)).info

    def layout_groups(self, wells: Iterable[str]) -> list[list[str]]:
        """``wells`` grouped by the on-disk layout the plate's records give them.

        Only the record each :meth:`flush` keeps (``.wellzarr-layouts.json``) is read, no
        well's metadata: a well rewritten since stays in its old group.  Wells without a
        record (foreign or 0.4 plates, wells not listed) are left out.  Returns the
        groups, most wells first (ties, and each group: in the order of ``wells``).
        """
        groups: dict[str, list[str]] = {}
        if not self._ours:
            return []
        for well in wells:
            path = self._target(well).path
            record = self._records_of(path).get(path) if self._is_listed(path) else None
            if record is not None:
                groups.setdefault(record[0], []).append(well)
        return sorted(groups.values(), key=len, reverse=True)

    def read_well(self, well: str | Well, level: int = 0) -> np.ndarray[Any, Any]:
        """Read a whole well as a ``(field, [t,] c, z, y, x)`` array."""
        return self._pixels(well, lambda w: w.read_all(level))

    def read_plane(
        self,
        well: str | Well,
        field: int = 0,
        c: int = 0,
        z: int = 0,
        t: int = 0,
        *,
        level: int = 0,
        acquisition: int | None = None,
    ) -> np.ndarray[Any, Any]:
        """Read one 2D plane, decoding only the chunk(s) it lives in."""
        key = PlaneKey(field, c, z, t)
        if acquisition is not None:
            return self._open(well, acquisition).read_planes([key], level)[0]
        return self._pixels(well, lambda w: w.read_planes([key], level)[0])

    def read_planes(
        self,
        well: str | Well,
        keys: Iterable[PlaneKey | Sequence[int]],
        *,
        level: int = 0,
        acquisition: int | None = None,
    ) -> list[np.ndarray[Any, Any]]:
        """Read several planes of a well; each chunk is decoded at most once."""
        parsed = [plane_key(k, f"well {well}") for k in keys]
        if acquisition is not None:
            return self._open(well, acquisition).read_planes(parsed, level)
        return self._pixels(well, lambda w: w.read_planes(parsed, level))

    def read_labels(
        self, well: str | Well, name: str, *, level: int = 0, acquisition: int | None = None
    ) -> np.ndarray[Any, Any]:
        """Read the OME label image ``name`` of a well as ``(field, [t,] z, y, x)``."""
        return self._open(well, acquisition).read_labels(name, level)

    def plane_key(self, well: str | Well, name: str) -> PlaneKey:
        """The coordinate that an original file name maps to in a well."""
        return self._open(well).plane_key(name)

    def field_positions(self, well: str | Well) -> dict[int, tuple[float, float]]:
        """``field -> (y, x)``: where each field was imaged, in micrometres (empty if unknown).

        One origin for the well's fields (its centre for MetaXpress and Harmony exports).
        """
        return dict(self.well_info(well).acquisition.field_positions)

    def instrument_metadata(self, well: str | Well) -> Acquisition:
        """A well's instrument metadata: field positions, conditions, projection methods."""
        return self.well_info(well).acquisition

    def acquisition(self, well: str | Well) -> Acquisition:
        """Deprecated name of :meth:`instrument_metadata` (next to :meth:`acquisitions`)."""
        import warnings

        message = "PlateStore.acquisition(well) is now PlateStore.instrument_metadata(well)"
        warnings.warn(message, DeprecationWarning, stacklevel=2)
        return self.instrument_metadata(well)

    def projection_info(self, well: str | Well) -> WellInfo | None:
        """The well's projection image (MIP, best focus; one z plane), or ``None``."""
        return None if (opened := self._projections(well)) is None else opened.info

    def read_projections(self, well: str | Well, level: int = 0) -> np.ndarray[Any, Any] | None:
        """The well's projections as a ``(field, [t,] c, 1, y, x)`` array, or ``None``."""
        opened = self._projections(well)
        return None if opened is None else opened.read_all(level)

    def _projections(self, well: str | Well) -> OpenWell | None:
        opened = self._open(well)
        if not opened.info.has_projections:
            return None
        path = f"{opened.info.path}/{PROJECTIONS_PATH}"
        return open_well(self.root, path, f"{opened.info.name} projections", self.zarr_format)
