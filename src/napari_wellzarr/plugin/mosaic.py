"""Lazy plate mosaics: every well of a plate side by side, read one tile at a time."""

from __future__ import annotations

import contextlib
import math
import os
import threading
import warnings
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, Protocol

import numpy as np

from napari_wellzarr.errors import AcquisitionNotFoundError, PlaneNotFoundError, WellZarrError
from napari_wellzarr.plugin import mosaic_index
from napari_wellzarr.storage.axes import PlaneKey, WellAxes, shrink
from napari_wellzarr.storage.geometry import well_gap, whole_plate_levels

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from concurrent.futures import ThreadPoolExecutor

    from napari_wellzarr.storage.overview import OverviewPlanes
    from napari_wellzarr.storage.reading import WellInfo

__all__ = [
    "DamagedWellWarning",
    "LazyMosaic",
    "LevelTiles",
    "MosaicGeometry",
    "MosaicView",
    "PlaneSource",
    "TileReader",
    "shrink",
]

CACHE_BYTES: Final = 512 * 2**20
#: A well whose planes at a stored level take at most this many bytes is read whole:
#: one file read, and every field, z and time step after it is in the cache.
WHOLE_WELL_BYTES: Final = 256 * 2**10
_READ_ERRORS: Final = (WellZarrError, OSError, ValueError, KeyError, IndexError)

_Plane = np.ndarray[Any, Any]


class DamagedWellWarning(UserWarning):
    """A well could not be read (or does not match the plate) and is shown blank."""


class PlaneSource(Protocol):
    """Where tiles come from: a plate (or a single well) opened by the storage core."""

    def well_info(self, well: str) -> WellInfo:
        """The shape, dtype and levels that reads of ``well`` give (metadata only)."""
        ...

    def read_plane(self, well: str, key: PlaneKey, level: int) -> _Plane:
        """One 2D plane of ``well`` at stored resolution ``level``."""
        ...

    def read_planes(self, well: str, keys: Sequence[PlaneKey], level: int) -> list[_Plane]:
        """Several planes of ``well`` at stored ``level``, each chunk decoded once."""
        ...

    def read_labels(self, well: str, name: str, level: int) -> _Plane:
        """Label image ``name`` of ``well`` as ``(field, [t,] z, y, x)``."""
        ...


@dataclass(frozen=True)
class LevelTiles:
    """How display level ``level`` is made: stored level ``source`` halved ``halvings`` times."""

    level: int
    source: int
    halvings: int
    shape: tuple[int, int]


def level_tiles(stored: Sequence[tuple[int, int]], n_levels: int) -> tuple[LevelTiles, ...]:
    """Plan ``n_levels`` display levels from a well's stored level plane shapes (y, x)."""
    h0, w0 = stored[0]
    by_factor: dict[int, int] = {}
    for index, (h, w) in enumerate(stored):
        factor = round(h0 / h) if h else 0
        exact = factor > 0 and factor & (factor - 1) == 0
        if exact and abs(h - h0 / factor) < 1 and abs(w - w0 / factor) < 1:
            by_factor.setdefault(factor.bit_length() - 1, index)
    plans = []
    for level in range(n_levels):
        base = max(k for k in by_factor if k <= level)
        h, w = stored[by_factor[base]]
        for _ in range(level - base):
            h, w = math.ceil(h / 2), math.ceil(w / 2)
        plans.append(LevelTiles(level, by_factor[base], level - base, (h, w)))
    return tuple(plans)


def _round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


def halved(shape: tuple[int, int], halvings: int) -> tuple[int, int]:
    """The (y, x) shape of a plane averaged down ``halvings`` times (see :func:`shrink`)."""
    f = 2**halvings
    return -(-shape[0] // f), -(-shape[1] // f)


@dataclass(frozen=True)
class MosaicGeometry:
    """Where each well's tile sits in the mosaic, at every display level."""

    n_rows: int
    n_columns: int
    tile: tuple[int, int]
    pitch: tuple[int, int]
    n_levels: int

    @classmethod
    def for_plate(cls, n_rows: int, n_columns: int, tile: tuple[int, int]) -> MosaicGeometry:
        """Choose the gap between wells and the number of display levels for a plate."""
        h, w = tile
        gap = well_gap(tile)
        levels = whole_plate_levels(n_rows, n_columns, tile)
        # Pitches divisible by 2**(levels-1) make every level exactly 2x the next one.
        m = 2 ** (levels - 1)
        return cls(n_rows, n_columns, tile, (_round_up(h + gap, m), _round_up(w + gap, m)), levels)

    def shape(self, level: int) -> tuple[int, int]:
        """Mosaic (y, x) size at display ``level``."""
        return (self.n_rows * self.pitch[0]) >> level, (self.n_columns * self.pitch[1]) >> level

    def origin(self, row: int, column: int, level: int = 0) -> tuple[int, int]:
        """Top-left pixel of the tile of the well at ``(row, column)``."""
        return (row * self.pitch[0]) >> level, (column * self.pitch[1]) >> level


class TileReader:
    """Reads, checks, caches and reports the tiles of every layer of one plate."""

    def __init__(
        self,
        source: PlaneSource,
        wells: Mapping[str, tuple[int, int]],
        geometry: MosaicGeometry,
        plans: Sequence[LevelTiles],
        dtype: np.dtype[Any],
        *,
        label_dtypes: Mapping[str, np.dtype[Any]] | None = None,
        cache_bytes: int = CACHE_BYTES,
        remote: bool = False,
        overview: OverviewPlanes | None = None,
    ) -> None:
        self.source = source
        #: The plate's overview: whole-plate planes that serve the coarsest levels' tiles.
        self.overview = overview
        self.remote = remote  # tiles wait on the network: many in flight at once
        self.wells = dict(wells)
        self.geometry = geometry
        self.plans = tuple(plans)
        self.dtype = dtype
        #: Each label image's dtype (from the reference well).
        self.label_dtypes = dict(label_dtypes or {})
        self._cache: OrderedDict[tuple[Any, ...], _Plane] = OrderedDict()
        self._cache_bytes = 0
        self._cache_limit = cache_bytes
        self._lock = threading.Lock()
        self._failed: dict[str, str] = {}
        self._reported: set[str] = set()
        self._infos: dict[str, WellInfo] = {}

    @property
    def failed(self) -> dict[str, str]:
        """Wells shown blank, with the reason."""
        return dict(self._failed)

    def tiles(
        self, requests: Sequence[tuple[str, str | None, PlaneKey, int]], *, report: bool = True
    ) -> list[_Plane | None]:
        """Tiles for ``(well, label name or None, plane key, level)``; ``None`` = blank.

        ``report=False`` leaves the warnings about wells that fail to the next call.

        The missing tiles of one well are read together, one task per well on the read
        pool, with the planes the next slices will ask for (see :meth:`_wanted`).
        """
        out: list[_Plane | None] = [None] * len(requests)
        groups: dict[tuple[str, str | None, int], list[int]] = {}
        served = self._from_overview(requests, out) if self.overview is not None else set()
        for i, request in enumerate(requests):
            if i in served:
                continue
            if request[0] in self._failed or _label_key(request[0], request[1]) in self._failed:
                continue
            with self._lock:
                hit = self._cache.get(request)
                if hit is not None:
                    self._cache.move_to_end(request)
            if hit is None:
                well, label, _, level = request
                groups.setdefault((well, label, level), []).append(i)
            out[i] = hit
        todo = list(groups.items())

        def fetch(item: tuple[tuple[str, str | None, int], list[int]]) -> list[_Plane | None]:
            (well, label, level), members = item
            keys = [requests[i][2] for i in members]
            if label is not None:
                return [self._fetch(well, label, key, level) for key in keys]
            return self._fetch_images(well, keys, level)

        if len(todo) > 1:
            pool = _pool(REMOTE_WORKERS if self.remote else None)
            results = list(pool.map(fetch, todo))
        else:
            results = [fetch(t) for t in todo]
        for (_, members), tiles in zip(todo, results, strict=True):
            for i, tile in zip(members, tiles, strict=True):
                out[i] = tile
        if report:
            self._report()
        return out

    def _from_overview(
        self, requests: Sequence[tuple[str, str | None, PlaneKey, int]], out: list[_Plane | None]
    ) -> set[int]:
        """Fill ``out`` with the image tiles the plate overview holds; their indices."""
        overview = self.overview
        assert overview is not None
        by_level: dict[int, list[int]] = {}
        for i, (well, label, _, level) in enumerate(requests):
            plan = self.plans[level]
            if (
                label is None
                and plan.source == overview.level
                and plan.halvings == overview.halvings
                and well not in self._failed
                and overview.origin(well) is not None
            ):
                by_level.setdefault(level, []).append(i)
        served: set[int] = set()
        th, tw = overview.record.tile
        for level, members in by_level.items():
            plan = self.plans[level]
            planes = self._overview_planes({requests[i][2] for i in members})
            if planes is None:
                return served  # the overview did not read: per-well reads from now on
            for i in members:
                well, _, key, _ = requests[i]
                y, x = overview.origin(well) or (0, 0)
                tile = planes[key][y : y + th, x : x + tw]
                if tile.shape == plan.shape:
                    out[i] = tile
                    served.add(i)
        return served

    def _overview_planes(self, keys: set[PlaneKey]) -> dict[PlaneKey, _Plane] | None:
        """The overview's planes at ``keys`` (with every channel of their field, z and t)."""
        overview = self.overview
        assert overview is not None
        channels = overview.layout.shape[-4]
        wanted = sorted({PlaneKey(k.field, c, k.z, k.t) for k in keys for c in range(channels)})
        found: dict[PlaneKey, _Plane] = {}
        with self._lock:
            for key in wanted:
                hit = self._cache.get(("overview", key))
                if hit is not None:
                    found[key] = hit
        missing = [k for k in wanted if k not in found]
        if missing:
            try:
                planes = overview.read(missing)
            except _READ_ERRORS as err:
                self.overview = None
                warnings.warn(
                    f"the plate overview cannot be read ({type(err).__name__}: {err}); "
                    "wells are read one by one instead",
                    DamagedWellWarning,
                    stacklevel=5,
                )
                return None
            for key, plane in zip(missing, planes, strict=True):
                self._remember(("overview", key), plane)
                found[key] = plane
            self._prefetch_neighbours(wanted)
        return found

    def overview_mosaic(self, key: PlaneKey, level: int) -> _Plane | None:
        """The whole mosaic plane at ``key`` and ``level``, from the overview; None if not.

        One strided copy of the overview plane into the mosaic's grid (the wells' gaps
        zero), kept in the cache: napari's slices of it are then plain array slices.
        Only when the overview holds exactly this plate's wells at their mosaic positions.
        """
        overview, plan, geometry = self.overview, self.plans[level], self.geometry
        if (
            overview is None
            or self._failed
            or (plan.source, plan.halvings) != (overview.level, overview.halvings)
            or plan.shape != overview.record.tile
            or overview.record.grid != (geometry.n_rows, geometry.n_columns)
            or overview.positions != self.wells
        ):
            return None
        with self._lock:
            hit = self._cache.get(("mosaic", key, level))
        if hit is not None:
            return hit
        planes = self._overview_planes({key})
        if planes is None:
            return None
        (th, tw), (rows, columns) = plan.shape, overview.record.grid
        py, px = geometry.pitch[0] >> level, geometry.pitch[1] >> level
        out = np.zeros(geometry.shape(level), self.dtype)
        cells = out.reshape(rows, py, columns, px)[:, :th, :, :tw]
        cells[...] = planes[key].reshape(rows, th, columns, tw)
        self._remember(("mosaic", key, level), out)
        return out

    def _prefetch_neighbours(self, keys: Sequence[PlaneKey]) -> None:
        """Read the neighbouring fields' overview planes in the background (for steps)."""
        overview = self.overview
        assert overview is not None
        n_fields = overview.layout.shape[0]
        steps = ((k, (k.field + s) % n_fields) for k in keys for s in (1, -1))
        around = {PlaneKey(f, k.c, k.z, k.t) for k, f in steps}
        with self._lock:
            todo = sorted(k for k in around if ("overview", k) not in self._cache)
        if not todo:
            return

        def fetch() -> None:
            with contextlib.suppress(*_READ_ERRORS):
                for key, plane in zip(todo, overview.read(todo), strict=True):
                    self._remember(("overview", key), plane)

        _pool().submit(fetch)

    def _fetch_images(self, well: str, keys: list[PlaneKey], level: int) -> list[_Plane | None]:
        """Image tiles of ``well`` at ``keys``, read in one go with the planes worth reading."""
        plan = self.plans[level]
        blank: list[_Plane | None] = [None] * len(keys)
        try:
            mismatch = self._mismatch(well, plan)
            if mismatch is not None:
                self._fail(well, mismatch)
                return blank
            wanted = self._wanted(well, keys, plan)
            planes = self.source.read_planes(well, wanted, plan.source)
        except AcquisitionNotFoundError:
            return blank  # a well not imaged in this acquisition: blank, as expected
        except _READ_ERRORS as err:
            self._fail(well, f"{type(err).__name__}: {err}")
            return blank
        got: dict[PlaneKey, _Plane] = {}
        for key, plane in zip(wanted, planes, strict=True):
            tile = shrink(plane, plan.halvings)
            if tile.shape != plan.shape or tile.dtype != self.dtype:
                self._fail(
                    well,
                    f"its image planes are {tile.shape} {tile.dtype} at level {level}, "
                    f"the plate's are {plan.shape} {self.dtype}",
                )
                return blank
            self._remember((well, None, key, level), tile)
            got[key] = tile
        return [got[key] for key in keys]

    def _wanted(self, well: str, keys: list[PlaneKey], plan: LevelTiles) -> list[PlaneKey]:
        """``keys`` and the planes of ``well`` likely asked for next, when they cost little.

        Every channel of each requested (field, z, t): napari slices the channel layers
        one after the other.  And every plane of the well when the whole well at the
        stored level is at most :data:`WHOLE_WELL_BYTES` (an overview level): the next
        field, z or time step is then in the cache.  Keys outside the well are kept, so
        that the read reports them.
        """
        with self._lock:
            info = self._infos[well]
        every = WellAxes("t" in info.axes).keys(info.shape)
        if not set(keys) <= set(every):
            return keys
        stored = info.level_shapes[plan.source]
        plane_bytes = stored[-2] * stored[-1] * info.dtype.itemsize
        if len(every) * plane_bytes <= WHOLE_WELL_BYTES:
            wanted = every
        else:
            leads = {(k.field, k.z, k.t) for k in keys}
            wanted = [k for k in every if (k.field, k.z, k.t) in leads]
        with self._lock:
            cached = {k for k in wanted if (well, None, k, plan.level) in self._cache}
        return [k for k in wanted if k not in cached or k in keys]

    def _fetch(self, well: str, label: str, key: PlaneKey, level: int) -> _Plane | None:
        plan = self.plans[level]
        try:
            mismatch = self._mismatch(well, plan)
            if mismatch is not None:
                self._fail(well, mismatch)
                return None
            plane = self._label_plane(well, label, key, plan)
        except AcquisitionNotFoundError:
            return None  # a well not imaged in this acquisition: blank, as expected
        except PlaneNotFoundError as err:
            if "has no label image" in str(err):
                return None  # labels exist on some wells only
            self._fail(_label_key(well, label), f"{type(err).__name__}: {err}")
            return None
        except _READ_ERRORS as err:
            self._fail(_label_key(well, label), f"{type(err).__name__}: {err}")
            return None
        expected = self.label_dtypes.get(label)
        if plane.shape != plan.shape or (expected is not None and plane.dtype != expected):
            self._fail(
                _label_key(well, label),
                f"its label {label} planes are {plane.shape} {plane.dtype} at level {level}, "
                f"the plate's are {plan.shape} {expected}",
            )
            return None
        self._remember((well, label, key, level), plane)
        return plane

    def _mismatch(self, well: str, plan: LevelTiles) -> str | None:
        """Why ``well``'s metadata says its tiles at ``plan`` cannot be the plate's, or None.

        Checked before any pixel of the well is read: a well that declares a huge or
        otherwise different plane, or another dtype, is never allocated.  A level the
        well does not have is left to the read to report.
        """
        with self._lock:
            info = self._infos.get(well)
        if info is None:
            info = self.source.well_info(well)
            with self._lock:
                self._infos[well] = info
        if plan.source >= len(info.level_shapes):
            return None
        stored = info.level_shapes[plan.source]
        shape = halved((stored[-2], stored[-1]), plan.halvings)
        if shape == plan.shape and info.dtype.newbyteorder("=") == self.dtype.newbyteorder("="):
            return None
        return (
            f"its image planes are {shape} {info.dtype} at level {plan.level}, "
            f"the plate's are {plan.shape} {self.dtype}"
        )

    def _label_plane(self, well: str, label: str, key: PlaneKey, plan: LevelTiles) -> _Plane:
        source, step = plan.source, 2**plan.halvings
        try:
            stack = self.source.read_labels(well, label, source)
        except PlaneNotFoundError:
            # Labels may have fewer stored levels than the image: subsample level 0.
            if source == 0:
                raise
            stack, step = self.source.read_labels(well, label, 0), 2**plan.level
        index = (key.field, key.t, key.z) if stack.ndim == 5 else (key.field, key.z)
        plane: _Plane = stack[index]
        return plane[::step, ::step] if step > 1 else plane

    def _remember(self, request: tuple[Any, ...], plane: _Plane) -> None:
        with self._lock:
            if request not in self._cache:
                self._cache[request] = plane
                self._cache_bytes += plane.nbytes
            while self._cache_bytes > self._cache_limit and len(self._cache) > 1:
                _, old = self._cache.popitem(last=False)
                self._cache_bytes -= old.nbytes

    def _fail(self, well: str, why: str) -> None:
        with self._lock:
            self._failed.setdefault(well, why)

    def fail(self, well: str, why: str, *, reported: bool = False) -> None:
        """Show ``well`` blank from now on (``reported``: its warning was already issued)."""
        self._fail(well, why)
        if reported:
            with self._lock:
                self._reported.add(well)

    def _report(self) -> None:
        # Warnings are issued here, on the caller's thread, never from the read pool.
        with self._lock:
            new = [w for w in self._failed if w not in self._reported]
            self._reported.update(new)
        for well in new:
            what = well.replace("\n", " label ", 1)
            warnings.warn(
                f"well {what} cannot be shown and is left blank: {self._failed[well]}",
                DamagedWellWarning,
                stacklevel=4,
            )


def _label_key(well: str, label: str | None) -> str:
    """What a failure is recorded under: the well, or one label image of it."""
    return well if label is None else f"{well}\n{label}"


_POOLS: dict[int | None, ThreadPoolExecutor] = {}
_POOL_LOCK = threading.Lock()
#: Tiles of a remote plate fetched at once (each mostly waits for its byte range).
REMOTE_WORKERS: Final = 48


def _pool(workers: int | None = None) -> ThreadPoolExecutor:
    """The tile threads: ``workers`` of them, or two per core (at most 8) for local plates."""
    with _POOL_LOCK:
        pool = _POOLS.get(workers)
        if pool is None:
            from concurrent.futures import ThreadPoolExecutor

            n = workers or min(8, 2 * (os.cpu_count() or 1))
            pool = _POOLS[workers] = ThreadPoolExecutor(n, thread_name_prefix="wellzarr-tiles")
        return pool


class _ArrayLike:
    """``ndim``, ``size`` and ``len`` from ``shape``, as napari's layer data protocol asks."""

    shape: tuple[int, ...]

    @property
    def ndim(self) -> int:
        """Number of axes."""
        return len(self.shape)

    @property
    def size(self) -> int:
        """Number of pixels."""
        return math.prod(self.shape)

    def __len__(self) -> int:
        return self.shape[0]


class LazyMosaic(_ArrayLike):
    """One channel (or label image) of a plate at one display level, as an array-like.

    Axes: the well's ``field, [t,] z`` then the mosaic's ``y, x``.
    """

    def __init__(
        self,
        reader: TileReader,
        lead_shape: tuple[int, ...],
        level: int,
        *,
        channel: int = 0,
        label: str | None = None,
        edits: dict[tuple[str, tuple[int, ...]], _Plane] | None = None,
    ) -> None:
        self.reader = reader
        self.level = level
        self.channel = channel
        self.label = label
        self._placed: dict[tuple[range, range], list[tuple[str, slice, slice, slice, slice]]] = {}
        self.has_time = len(lead_shape) == 3
        self.shape: tuple[int, ...] = (*lead_shape, *reader.geometry.shape(level))
        dtype = reader.dtype if label is None else reader.label_dtypes[label]
        self.dtype: np.dtype[Any] = np.dtype(dtype)
        #: Edited tiles of a label mosaic at level 0: ``(well, lead index) -> whole tile``;
        #: shared by its lower levels, which show them subsampled.
        self.edits: dict[tuple[str, tuple[int, ...]], _Plane] = {} if edits is None else edits
        self._cells = {pos: well for well, pos in reader.wells.items()}

    def edited_wells(self) -> list[str]:
        """The wells with edited tiles, in plate order."""
        touched = {well for well, _ in self.edits}
        return [w for w in self.reader.wells if w in touched]

    def edited_tiles(self, well: str) -> dict[PlaneKey, _Plane]:
        """The edited tiles of ``well`` by plane key (channel 0)."""
        return {self._key(lead): t for (w, lead), t in self.edits.items() if w == well}

    def __repr__(self) -> str:
        what = f"label {self.label!r}" if self.label else f"channel {self.channel}"
        return f"<LazyMosaic {what} level {self.level} shape={self.shape} dtype={self.dtype}>"

    def __array__(self, dtype: Any = None, copy: bool | None = None) -> _Plane:
        out = self.read([range(s) for s in self.shape], [True] * self.ndim)
        return out if dtype is None else out.astype(dtype)

    def _key(self, lead: tuple[int, ...]) -> PlaneKey:
        if self.has_time:
            return PlaneKey(lead[0], self.channel, lead[2], lead[1])
        return PlaneKey(lead[0], self.channel, lead[1])

    def __getitem__(self, key: Any) -> _Plane | MosaicView:
        """Pixels for ``key``; a lazy :class:`MosaicView` while it spans several planes.

        napari first cuts the displayed region with every leading axis whole, then
        picks the plane: reading on the first cut would read every field and z.
        """
        fancy = mosaic_index.fancy(key, self.ndim)
        if fancy is not None:
            return self._gather(fancy)
        items = mosaic_index.normalise(key, self.ndim)
        spans = [mosaic_index.span(i, s) for i, s in zip(items, self.shape, strict=True)]
        return _select([r for r, _ in spans], [k for _, k in spans], self)

    def __setitem__(self, key: Any, value: Any) -> None:
        """Edit a label mosaic in memory: only the touched tiles are read and kept.

        Takes what napari's painting, filling and undo use: integers and slices, or one
        integer array per axis.  Pixels between wells hold no data and stay 0.
        """
        if self.label is None or self.level != 0:
            what = "an image mosaic" if self.label is None else f"level {self.level}"
            raise TypeError(f"{self!r}: {what} is read-only; only level 0 of labels is editable")
        fancy = mosaic_index.fancy(key, self.ndim)
        if fancy is not None:
            values = np.broadcast_to(np.asarray(value, dtype=self.dtype), fancy[0].shape)
            for tile, cell, where in self._cells_of(fancy, edit=True):
                tile[cell] = values[where]
            return
        items = mosaic_index.normalise(key, self.ndim)
        spans = [mosaic_index.span(i, s) for i, s in zip(items, self.shape, strict=True)]
        ranges = [r for r, _ in spans]
        full = tuple(len(r) for r in ranges)
        kept_shape = tuple(n for n, (_, k) in zip(full, spans, strict=True) if k)
        data = np.broadcast_to(np.asarray(value, dtype=self.dtype), kept_shape).reshape(full)
        placements = self._placements(ranges[-2], ranges[-1])
        for lead_out in np.ndindex(*full[:-2]) if full[:-2] else [()]:
            lead = tuple(r[i] for r, i in zip(ranges[:-2], lead_out, strict=True))
            for well, out_y, out_x, tile_y, tile_x in placements:
                edit = self._tile(well, lead, edit=True)
                if edit is not None:
                    edit[tile_y, tile_x] = data[(*lead_out, out_y, out_x)]

    def _edited(self, well: str, lead: tuple[int, ...]) -> _Plane | None:
        """The edited tile of ``well`` at ``lead`` at this level (level 0's, subsampled)."""
        edited = self.edits.get((well, lead)) if self.edits else None
        if edited is None or self.level == 0:
            return edited
        h, w = self.reader.plans[self.level].shape
        step = 2**self.level  # as labels' lower levels are made: nearest neighbour
        out = np.zeros((h, w), self.dtype)
        sub = edited[::step, ::step][:h, :w]
        out[: sub.shape[0], : sub.shape[1]] = sub
        return out

    def _tile(self, well: str, lead: tuple[int, ...], *, edit: bool) -> _Plane | None:
        """The (edited) tile of ``well`` at ``lead``; ``edit``: keep a writable copy."""
        edited = self._edited(well, lead)
        if edited is not None:
            return edited
        read = self.reader.tiles([(well, self.label, self._key(lead), self.level)])[0]
        if not edit:
            return read
        shape = self.reader.plans[self.level].shape
        tile = np.zeros(shape, self.dtype) if read is None else np.array(read, dtype=self.dtype)
        self.edits[(well, lead)] = tile
        return tile

    def _cells_of(self, index: tuple[_Plane, ...], *, edit: bool) -> list[tuple[_Plane, Any, Any]]:
        """``(tile, index in tile, positions in index)`` for the wells fancy ``index`` hits."""
        geometry, (th, tw) = self.reader.geometry, self.reader.plans[self.level].shape
        ys, xs = index[-2], index[-1]
        rows, oy = np.divmod(ys, geometry.pitch[0] >> self.level)
        columns, ox = np.divmod(xs, geometry.pitch[1] >> self.level)
        inside = (oy < th) & (ox < tw)
        for axis, size in zip(index, self.shape, strict=True):
            inside &= (axis >= 0) & (axis < size)
        leads = np.stack([*index[:-2], rows, columns], axis=-1).reshape(-1, self.ndim)
        groups: dict[tuple[int, ...], list[int]] = {}
        for n in np.flatnonzero(inside.reshape(-1)):
            groups.setdefault(tuple(int(v) for v in leads[n]), []).append(int(n))
        out = []
        for group, members in groups.items():
            well = self._cells.get((group[-2], group[-1]))
            tile = None if well is None else self._tile(well, group[:-2], edit=edit)
            if tile is not None:
                where = np.unravel_index(np.asarray(members), ys.shape)
                out.append((tile, (oy[where], ox[where]), where))
        return out

    def _gather(self, index: tuple[np.ndarray[Any, Any], ...]) -> _Plane:
        out = np.zeros(index[0].shape, dtype=self.dtype)
        for tile, cell, where in self._cells_of(index, edit=False):
            out[where] = tile[cell]
        return out

    def read(self, ranges: Sequence[range], kept: Sequence[bool]) -> _Plane:
        """Read the pixels at ``ranges`` (one per axis); drop the axes not ``kept``."""
        ys, xs = ranges[-2], ranges[-1]
        full = tuple(len(r) for r in ranges)
        out = np.zeros(full, dtype=self.dtype)
        if self.label is None and self.reader.overview is not None and self._whole(ranges, out):
            return out[tuple(slice(None) if k else 0 for k in kept)]
        placements = self._placements(ys, xs)
        leads = list(np.ndindex(*full[:-2])) if full[:-2] else [()]
        requests, targets = [], []
        for lead_out in leads:
            lead = tuple(r[i] for r, i in zip(ranges[:-2], lead_out, strict=True))
            for well, out_y, out_x, tile_y, tile_x in placements:
                edited = self._edited(well, lead)
                if edited is not None:
                    out[(*lead_out, out_y, out_x)] = edited[tile_y, tile_x]
                    continue
                requests.append((well, self.label, self._key(lead), self.level))
                targets.append((lead_out, out_y, out_x, tile_y, tile_x))
        for tile, (lead_out, out_y, out_x, tile_y, tile_x) in zip(
            self.reader.tiles(requests), targets, strict=True
        ):
            if tile is not None:
                out[(*lead_out, out_y, out_x)] = tile[tile_y, tile_x]
        return out[tuple(slice(None) if k else 0 for k in kept)]

    def _whole(self, ranges: Sequence[range], out: _Plane) -> bool:
        """Fill ``out`` from whole mosaic planes of the overview; whether it could."""
        if ranges[-2].step < 1 or ranges[-1].step < 1:
            return False
        leads = list(np.ndindex(*out.shape[:-2])) if out.ndim > 2 else [()]
        yx = (_slice(ranges[-2]), _slice(ranges[-1]))
        for lead_out in leads:
            lead = tuple(r[i] for r, i in zip(ranges[:-2], lead_out, strict=True))
            plane = self.reader.overview_mosaic(self._key(lead), self.level)
            if plane is None:
                return False
            out[lead_out] = plane[yx]
        return True

    def _placements(self, ys: range, xs: range) -> list[tuple[str, slice, slice, slice, slice]]:
        # napari slices the same region at every field, z or time step: computed once.
        key = (ys, xs)
        found = self._placed.get(key)
        if found is None:
            found = self._place(ys, xs)
            if len(self._placed) >= 64:
                self._placed.clear()
            self._placed[key] = found
        return found

    def _place(self, ys: range, xs: range) -> list[tuple[str, slice, slice, slice, slice]]:
        geometry = self.reader.geometry
        th, tw = self.reader.plans[self.level].shape
        found = []
        for well, (row, column) in self.reader.wells.items():
            y0, x0 = geometry.origin(row, column, self.level)
            in_y = mosaic_index.overlap(ys, y0, y0 + th)
            in_x = mosaic_index.overlap(xs, x0, x0 + tw) if in_y else None
            if in_y and in_x:
                found.append((well, in_y[0], in_x[0], in_y[1], in_x[1]))
        return found


class MosaicView(_ArrayLike):
    """A lazy selection of a :class:`LazyMosaic`: indexing composes, ``np.asarray`` reads."""

    def __init__(self, mosaic: LazyMosaic, ranges: list[range], kept: list[bool]) -> None:
        self.mosaic = mosaic
        self.ranges = ranges
        self.kept = kept
        self.shape: tuple[int, ...] = tuple(len(r) for r, k in zip(ranges, kept, strict=True) if k)
        self.dtype = mosaic.dtype

    def __repr__(self) -> str:
        return f"<MosaicView of {self.mosaic!r} shape={self.shape}>"

    def __array__(self, dtype: Any = None, copy: bool | None = None) -> _Plane:
        out = self.mosaic.read(self.ranges, self.kept)
        return out if dtype is None else out.astype(dtype)

    def __getitem__(self, key: Any) -> _Plane | MosaicView:
        items = iter(mosaic_index.normalise(key, self.ndim))
        ranges, kept = [], []
        for r, k in zip(self.ranges, self.kept, strict=True):
            if not k:
                ranges.append(r)
                kept.append(False)
                continue
            positions, keep = mosaic_index.span(next(items), len(r))
            ranges.append(r[positions.start : positions.stop : positions.step])
            kept.append(keep)
        return _select(ranges, kept, self.mosaic)


def _slice(positions: range) -> slice:
    return slice(positions.start, positions.start + len(positions) * positions.step, positions.step)


def _select(ranges: list[range], kept: list[bool], mosaic: LazyMosaic) -> _Plane | MosaicView:
    if math.prod(len(r) for r in ranges[:-2]) > 1:
        return MosaicView(mosaic, ranges, kept)
    return mosaic.read(ranges, kept)


def mosaic_levels(
    reader: TileReader, lead_shape: tuple[int, ...], **which: Any
) -> list[LazyMosaic]:
    """Every display level of one channel (``channel=``) or label image (``label=``).

    A label image's levels share its level-0 edits: the lower levels show them too.
    """
    edits: dict[tuple[str, tuple[int, ...]], _Plane] = {}
    return [
        LazyMosaic(reader, lead_shape, k, edits=edits, **which) for k in range(len(reader.plans))
    ]
