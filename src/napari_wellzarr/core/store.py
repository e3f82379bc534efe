"""The well-chunked OME-Zarr plate store.

A :class:`PlateStore` is one plate on disk.  Writing a well builds it in a private
staging directory and renames it into place only when every byte is written, so a
reader sees a well whole or not at all; the plate's ``wells`` list is merged and
written once per session (on :meth:`PlateStore.flush` / close) under an inter-process
lock, never by rescanning the plate per well.
"""

from __future__ import annotations

import errno
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from . import fsio
from .arrays import to_host
from .config import FieldArrangement, StorageConfig
from .errors import (
    MetadataError,
    PlateExistsError,
    PlateNotFoundError,
    StoreReadOnlyError,
    WellDataError,
    WellExistsError,
    WellNameError,
    WellNotFoundError,
)
from .geometry import Well
from .metadata import Channel, PlateMeta, PlateWell, WellMeta, default_channels, ome_attrs, parse_plate
from .reading import OpenWell, WellInfo, open_well
from .well import ALLOWED_DTYPES, PlaneKey, WellAxes, downsample, image_meta_for, pyramid_shapes

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping, Sequence
    from types import TracebackType

    from zarr.storage import LocalStore

__all__ = ["PlateStore", "WellInfo"]

_PLANE_MAP = "openhcs_filename_map"  # the attribute names OpenHCS reads
_PLANE_PATHS = "openhcs_output_paths"
_PLANE_DIMS = "openhcs_dimensions"


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
        root: Path,
        plate: PlateMeta,
        *,
        version: str,
        zarr_format: int,
        config: StorageConfig | None,
        read_only: bool,
    ) -> None:
        self.root = root
        self.ngff_version = version
        self.zarr_format = zarr_format
        self.read_only = read_only
        self._plate = plate
        self._config = config
        self._session: dict[str, PlateWell] = {}
        self._wells: dict[str, OpenWell] = {}
        self._zstore: LocalStore | None = None

    # -- opening and creating ---------------------------------------------------------

    @classmethod
    def create(
        cls,
        path: str | os.PathLike[str],
        config: StorageConfig | None = None,
        *,
        name: str | None = None,
        overwrite: bool = False,
    ) -> PlateStore:
        """Create an empty plate at ``path`` listing every physical row and column.

        Raises :class:`PlateExistsError` if ``path`` exists and is not an empty
        directory, unless ``overwrite=True`` (which deletes what is there).
        """
        config = config or StorageConfig()
        root = Path(path)
        if root.exists() and (root.is_file() or any(root.iterdir())):
            if not overwrite:
                raise PlateExistsError(
                    f"{root} already exists; pass overwrite=True to replace it, or open it "
                    "with PlateStore.open(path, mode='r+') to add wells"
                )
            fsio.remove_tree(root)
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

        ``config`` sets how new wells are stored in ``r+`` mode when the plate was not
        written by napari-wellzarr (otherwise the plate's own configuration is used).
        """
        if mode not in ("r", "r+"):
            raise ValueError(f"mode={mode!r}; use 'r' or 'r+'")
        root = Path(path)
        if not root.is_dir():
            raise PlateNotFoundError(f"no plate at {root}: not a directory")
        zarr_format = fsio.detect_zarr_format(root)
        if zarr_format is None:
            raise PlateNotFoundError(f"no plate at {root}: not a zarr group")
        attrs = fsio.read_attrs(root, zarr_format)
        try:
            plate, version = parse_plate(attrs, where=str(root))
        except MetadataError as err:
            if "no OME 'plate' metadata" in str(err):
                raise PlateNotFoundError(f"{root} is a zarr group but not an HCS plate") from err
            raise
        version = version or ("0.5" if zarr_format == 3 else "0.4")
        saved = attrs.get("wellzarr", {}).get("config") if isinstance(attrs.get("wellzarr"), dict) else None
        if config is None and isinstance(saved, dict):
            config = StorageConfig.from_dict(saved)
        if config is None and mode == "r+":
            config = StorageConfig(
                ngff_version="0.5" if zarr_format == 3 else "0.4",
                plate=(len(plate.rows), len(plate.columns)),
            )
        if config is not None and config.zarr_format != zarr_format:
            raise MetadataError(
                f"{root} is zarr v{zarr_format}, but its configuration says OME-NGFF "
                f"{config.ngff_version.value}"
            )
        if mode == "r+":
            fsio.clean_stale_staging(root)
        return cls(root, plate, version=version, zarr_format=zarr_format, config=config, read_only=mode == "r")

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
        return f"PlateStore({str(self.root)!r}, mode={mode!r}, ngff={self.ngff_version})"

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
        return any(w.path == target.path for w in self.plate.wells)

    def _name(self, row: int, column: int) -> str:
        return f"{self._plate.rows[row]}{self._plate.columns[column]}"

    def _target(self, well: str | Well) -> _Target:
        pos = well if isinstance(well, Well) else Well.parse(well)
        if pos.row >= len(self._plate.rows) or pos.column >= len(self._plate.columns):
            raise WellNameError(
                f"well {well!r} is outside this {len(self._plate.rows)}x"
                f"{len(self._plate.columns)} plate ({self.root})"
            )
        return _Target(
            pos, self._name(pos.row, pos.column), self._plate.well_path(pos.row, pos.column)
        )

    # -- writing ----------------------------------------------------------------------

    def _writable_config(self) -> StorageConfig:
        if self.read_only or self._config is None:
            raise StoreReadOnlyError(f"{self.root} was opened read-only (mode='r')")
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
        overwrite: bool = False,
    ) -> WellInfo:
        """Write a whole well from a ``(field, c, z, y, x)`` (or ``(field, t, c, z, y, x)``) array.

        Parameters
        ----------
        well
            ``B03``, ``B3``, ``r02c03`` or a :class:`Well`.
        data
            The well's pixels; NumPy, CuPy, PyTorch, JAX or anything array-like.
        channels
            Channel names or :class:`Channel` objects (colour, display window).
        pixel_size
            Pixel size in micrometres, ``(y, x)`` or one number for both.
        z_step
            Distance between z planes in micrometres.
        plane_names
            Original file names -> (field, c, z[, t]); stored as ``openhcs_filename_map``.
        overwrite
            Replace the well if it is already complete.
        """
        config = self._writable_config()
        target = self._target(well)
        array = to_host(data, f"well {target.name}")
        axes = self._check_well_array(target, array, config)
        channel_meta = self._channels(target, array, axes, channels)
        names = self._plane_names(target, array.shape, axes, plane_names)
        py_px = None if pixel_size is None else _pair(pixel_size, target.name)
        stage = fsio.staging_dir(self.root, target.path.replace("/", "_"))
        try:
            self._build_well(stage, target, array, axes, config, channel_meta, py_px, z_step, names)
            self._move_into_place(stage, target, overwrite)
        finally:
            fsio.remove_tree(stage)
        entry = PlateWell(target.path, target.well.row, target.well.column)
        self._session[target.path] = entry
        self._wells.pop(target.path, None)
        return self.well_info(target.well)

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

        A plane's place comes from its coordinate, never from its position in
        ``planes``.  ``shape`` gives ``(fields, channels, z[, t])``; by default it is the
        largest coordinate + 1.  Missing planes are filled with 0 and returned, or
        refused with ``strict=True``.  ``names`` (one per plane) become the well's
        file-name map.  Other keyword arguments go to :meth:`write_well`.
        """
        target = self._target(well)
        keyed: dict[PlaneKey, np.ndarray[Any, Any]] = {}
        label: dict[PlaneKey, str] = {}
        for i, (coord, plane) in enumerate(planes):
            key = _plane_key(coord, f"well {target.name}: plane #{i}")
            what = names[i] if names is not None else f"plane {tuple(key)}"
            if key in keyed:
                raise WellDataError(
                    f"well {target.name}: {what!r} and {label[key]!r} both have coordinate "
                    f"(field={key.field}, c={key.c}, z={key.z}, t={key.t})"
                )
            keyed[key] = _plane_array(plane, what, target.name, next(iter(keyed.values()), None), label)
            label[key] = what
        if not keyed:
            raise WellDataError(f"well {target.name}: no planes given")
        has_time = any(k.t for k in keyed) or (shape is not None and len(shape) == 4)
        dims = _plane_dims(keyed, shape, has_time, target.name)
        first = next(iter(keyed.values()))
        axes = WellAxes(has_time)
        array = np.zeros((*dims, *first.shape), dtype=first.dtype)
        for key, plane in keyed.items():
            array[axes.plane_index(key)] = plane
        missing = [k for k in axes.keys(array.shape) if k not in keyed]
        if missing and strict:
            raise WellDataError(
                f"well {target.name}: {len(missing)} plane(s) missing, e.g. "
                f"{[tuple(k) for k in missing[:5]]} (strict mode)"
            )
        plane_names = dict(zip(names, keyed, strict=True)) if names is not None else None
        if names is not None and len(names) != len(keyed):
            raise WellDataError(f"well {target.name}: {len(names)} names for {len(keyed)} planes")
        self.write_well(target.well, array, plane_names=plane_names, **metadata)
        return missing

    def _check_well_array(self, target: _Target, array: np.ndarray[Any, Any], config: StorageConfig) -> WellAxes:
        if array.ndim not in (5, 6):
            raise WellDataError(
                f"well {target.name}: data has shape {array.shape}; expected "
                "(field, c, z, y, x) or (field, t, c, z, y, x)"
            )
        if 0 in array.shape:
            raise WellDataError(f"well {target.name}: data shape {array.shape} has an empty axis")
        if array.dtype not in ALLOWED_DTYPES:
            raise WellDataError(
                f"well {target.name}: dtype {array.dtype} is not supported; use an integer "
                "(8-64 bit) or float32/float64 array"
            )
        axes = WellAxes(array.ndim == 6)
        if axes.has_time and config.fields is FieldArrangement.STACKED:
            raise WellDataError(
                f"well {target.name}: a time series needs fields='per-field' (a stacked "
                "(field, t, c, z, y, x) image would have 6 axes; OME-NGFF allows 5)"
            )
        return axes

    def _channels(
        self,
        target: _Target,
        array: np.ndarray[Any, Any],
        axes: WellAxes,
        channels: Sequence[str | Channel] | None,
    ) -> tuple[Channel, ...]:
        n_c = array.shape[axes.names.index("c")]
        if channels is None:
            base = default_channels(n_c)
        else:
            if len(channels) != n_c:
                raise WellDataError(
                    f"well {target.name}: {len(channels)} channel(s) named "
                    f"{[getattr(c, 'label', c) for c in channels]} for {n_c} channel(s) of data"
                )
            defaults = default_channels(n_c)
            base = tuple(
                c if isinstance(c, Channel) else Channel(str(c), defaults[i].color)
                for i, c in enumerate(channels)
            )
        moved = np.moveaxis(array, axes.names.index("c"), 0).reshape(n_c, -1)
        low, high = moved.min(axis=1), moved.max(axis=1)
        info = np.iinfo(array.dtype) if array.dtype.kind in "iu" else None
        out = []
        for i, ch in enumerate(base):
            if ch.window is not None:
                out.append(ch)
                continue
            lo, hi = (float(info.min), float(info.max)) if info else (float(low[i]), float(high[i]))
            out.append(Channel(ch.label, ch.color, (lo, hi, float(low[i]), float(high[i])), ch.active))
        return tuple(out)

    def _plane_names(
        self,
        target: _Target,
        shape: tuple[int, ...],
        axes: WellAxes,
        plane_names: Mapping[str, PlaneKey | Sequence[int]] | None,
    ) -> dict[str, PlaneKey]:
        out: dict[str, PlaneKey] = {}
        seen: dict[PlaneKey, str] = {}
        for name, coord in (plane_names or {}).items():
            if not isinstance(name, str) or not name or "/" in name or name in (".", ".."):
                raise WellDataError(f"well {target.name}: plane name {name!r} is not a file name")
            key = _plane_key(coord, f"well {target.name}: plane {name!r}")
            index = axes.plane_index(key)
            if any(i >= s for i, s in zip(index, shape, strict=False)):
                raise WellDataError(
                    f"well {target.name}: plane {name!r} at {tuple(key)} is outside the well "
                    f"array of shape {shape}"
                )
            if key in seen:
                raise WellDataError(
                    f"well {target.name}: {name!r} and {seen[key]!r} map to the same plane {tuple(key)}"
                )
            seen[key] = name
            out[name] = key
        return out

    def _build_well(
        self,
        stage: Path,
        target: _Target,
        array: np.ndarray[Any, Any],
        axes: WellAxes,
        config: StorageConfig,
        channels: tuple[Channel, ...],
        pixel_size: tuple[float, float] | None,
        z_step: float | None,
        names: dict[str, PlaneKey],
    ) -> None:
        import zarr
        from zarr.storage import LocalStore

        stacked = config.fields is FieldArrangement.STACKED
        images = [array] if stacked else list(array)
        paths = [str(i) for i in range(len(images))]
        zstore = LocalStore(stage)
        for path, image in zip(paths, images, strict=True):
            shapes = pyramid_shapes(image.shape, config.pyramid_levels)
            meta = image_meta_for(
                stacked=stacked,
                has_time=axes.has_time,
                shapes=shapes,
                channels=channels,
                pixel_size=pixel_size,
                z_step=z_step,
                name=f"{target.name}" if stacked else f"{target.name} field {path}",
            )
            fsio.write_group(stage / path, ome_attrs(self.ngff_version, meta.blocks()), self.zarr_format)
            names_attrs = _openhcs_attrs(names, array.shape) if stacked and names else None
            level = image
            for index, level_shape in enumerate(shapes):
                if index:
                    level = downsample(level)
                assert level.shape == level_shape
                chunks, shards = config.chunk_layout(level_shape)
                zarr.create_array(
                    store=zstore,
                    name=f"{path}/{index}",
                    data=level,
                    chunks=chunks,
                    shards=shards,
                    compressors=config.zarr_compressors(),
                    fill_value=0,
                    zarr_format=self.zarr_format,  # type: ignore[arg-type]
                    attributes=names_attrs if index == 0 else None,
                    dimension_names=[a.name for a in meta.multiscale.axes]
                    if self.zarr_format == 3
                    else None,
                    chunk_key_encoding={"name": "v2", "separator": "/"}
                    if self.zarr_format == 2
                    else None,
                )
        well_attrs = ome_attrs(self.ngff_version, {"well": WellMeta(tuple(paths)).to_block()})
        if names and not stacked:
            well_attrs.update(_openhcs_attrs(names, array.shape))
        # The well's own metadata goes last: until it exists the well is not a well.
        fsio.write_group(stage, well_attrs, self.zarr_format)

    def _move_into_place(self, stage: Path, target: _Target, overwrite: bool) -> None:
        row_dir = self.root / target.path.split("/")[0]
        if not fsio.is_group(row_dir, self.zarr_format):
            fsio.write_group(row_dir, {}, self.zarr_format)
        final = self.root / target.path
        if final.exists():
            complete = fsio.detect_zarr_format(final) is not None
            if complete and not overwrite:
                raise WellExistsError(
                    f"well {target.name} already exists in {self.root}; pass overwrite=True "
                    "to replace it"
                )
            fsio.remove_tree(final)
        try:
            os.rename(stage, final)
        except OSError as err:
            if err.errno in (errno.ENOTEMPTY, errno.EEXIST):
                raise WellExistsError(
                    f"well {target.name} was written by another process at the same time; "
                    "kept that version"
                ) from err
            raise

    # -- the plate's well list ----------------------------------------------------------

    def flush(self) -> None:
        """List the wells this session wrote in the plate metadata (one write, locked)."""
        if self.read_only or not self._session:
            return
        with fsio.plate_lock(self.root):
            current, _ = parse_plate(fsio.read_attrs(self.root, self.zarr_format), str(self.root))
            merged = current.with_wells([*current.wells, *self._session.values()])
            self._write_plate(merged)
        self._plate = merged
        self._session.clear()

    def close(self) -> None:
        """Flush the well list and forget cached arrays."""
        self.flush()
        self._wells.clear()

    def recover(self) -> list[str]:
        """List complete wells that are on disk but not in the metadata (after a crash).

        This is the one call that scans the plate; it returns the wells it adopted.
        """
        self._writable_config()
        listed = {w.path for w in self.plate.wells}
        found = []
        for r, row in enumerate(self._plate.rows):
            if not (self.root / row).is_dir():
                continue
            for c, column in enumerate(self._plate.columns):
                path = f"{row}/{column}"
                if path not in listed and fsio.detect_zarr_format(self.root / path) is not None:
                    self._session[path] = PlateWell(path, r, c)
                    found.append(self._name(r, c))
        self.flush()
        return found

    def _write_plate(self, plate: PlateMeta) -> None:
        attrs = ome_attrs(self.ngff_version, {"plate": plate.to_block()})
        if self._config is not None:
            from .. import __version__

            attrs["wellzarr"] = {"version": __version__, "config": self._config.to_dict()}
        fsio.write_group(self.root, attrs, self.zarr_format)

    # -- reading ----------------------------------------------------------------------

    def _open(self, well: str | Well) -> OpenWell:
        target = self._target(well)
        cached = self._wells.get(target.path)
        if cached is not None:
            return cached
        if not any(w.path == target.path for w in self.plate.wells):
            raise WellNotFoundError(f"well {target.name} is not in the plate {self.root}")
        if self._zstore is None:
            from zarr.storage import LocalStore

            self._zstore = LocalStore(self.root, read_only=True)
        opened = open_well(self.root, target.path, target.name, self.zarr_format, self._zstore)
        self._wells[target.path] = opened
        return opened

    def well_info(self, well: str | Well) -> WellInfo:
        """Shape, dtype, axes, channels, scales, levels and file names of a well."""
        return self._open(well).info

    def read_well(self, well: str | Well, level: int = 0) -> np.ndarray[Any, Any]:
        """Read a whole well as a ``(field, [t,] c, z, y, x)`` array."""
        return self._open(well).read_all(level)

    def read_plane(
        self, well: str | Well, field: int = 0, c: int = 0, z: int = 0, t: int = 0, *, level: int = 0
    ) -> np.ndarray[Any, Any]:
        """Read one 2D plane, decoding only the chunk(s) it lives in."""
        return self._open(well).read_planes([PlaneKey(field, c, z, t)], level)[0]

    def read_planes(
        self, well: str | Well, keys: Iterable[PlaneKey | Sequence[int]], *, level: int = 0
    ) -> list[np.ndarray[Any, Any]]:
        """Read several planes of a well; each chunk is decoded at most once."""
        parsed = [_plane_key(k, f"well {well}") for k in keys]
        return self._open(well).read_planes(parsed, level)

    def plane_key(self, well: str | Well, name: str) -> PlaneKey:
        """The coordinate that an original file name maps to in a well."""
        return self._open(well).plane_key(name)


def _pair(value: float | tuple[float, float], well: str) -> tuple[float, float]:
    pair = (value, value) if isinstance(value, int | float) else tuple(value)
    if len(pair) != 2 or not all(isinstance(v, int | float) and v > 0 for v in pair):
        raise WellDataError(f"well {well}: pixel_size {value!r} is not a positive (y, x) pair")
    return float(pair[0]), float(pair[1])


def _plane_key(coord: object, what: str) -> PlaneKey:
    if isinstance(coord, PlaneKey):
        values: tuple[Any, ...] = tuple(coord)
    elif isinstance(coord, list | tuple) and len(coord) in (3, 4):
        values = tuple(coord)
    else:
        raise WellDataError(f"{what}: coordinate {coord!r} is not (field, c, z[, t])")
    if not all(isinstance(v, int | np.integer) and not isinstance(v, bool) and v >= 0 for v in values):
        raise WellDataError(f"{what}: coordinate {coord!r} must hold integers >= 0")
    return PlaneKey(*(int(v) for v in values))


def _plane_array(
    plane: object,
    what: str,
    well: str,
    first: np.ndarray[Any, Any] | None,
    labels: dict[PlaneKey, str],
) -> np.ndarray[Any, Any]:
    array = to_host(plane, f"well {well}: {what}")
    if array.ndim != 2:
        raise WellDataError(f"well {well}: {what!r} has shape {array.shape}; planes are 2D")
    if first is not None and (array.shape != first.shape or array.dtype != first.dtype):
        other = next(iter(labels.values()))
        raise WellDataError(
            f"well {well}: {what!r} is {array.shape} {array.dtype}, but {other!r} is "
            f"{first.shape} {first.dtype}"
        )
    return array


def _plane_dims(
    keyed: Mapping[PlaneKey, object], shape: Sequence[int] | None, has_time: bool, well: str
) -> tuple[int, ...]:
    needed = [
        max(k.field for k in keyed) + 1,
        max(k.c for k in keyed) + 1,
        max(k.z for k in keyed) + 1,
        max(k.t for k in keyed) + 1,
    ]
    if shape is None:
        f, c, z, t = needed
    else:
        given = [int(s) for s in shape] + ([1] if len(shape) == 3 else [])
        if len(given) != 4 or any(g < n for g, n in zip(given, needed, strict=True)):
            raise WellDataError(
                f"well {well}: shape {tuple(shape)} (fields, channels, z[, t]) is too small "
                f"for the planes' coordinates, which need at least {tuple(needed[: len(shape)])}"
            )
        f, c, z, t = given
    return (f, t, c, z) if has_time else (f, c, z)


def _openhcs_attrs(names: Mapping[str, PlaneKey], shape: tuple[int, ...]) -> dict[str, Any]:
    has_time = len(shape) == 6
    dims = {"n_fields": shape[0], "n_channels": shape[-4], "n_z": shape[-3]}
    if has_time:
        dims["n_t"] = shape[1]
    return {
        _PLANE_MAP: {n: list(k) if has_time else list(k[:3]) for n, k in names.items()},
        _PLANE_PATHS: list(names),
        _PLANE_DIMS: dims,
    }

