"""Opening a plate or a well folder for display: its layers, built on lazy mosaics."""

from __future__ import annotations

import math
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import numpy as np

from napari_wellzarr.errors import MetadataError, PlateNotFoundError, WellNameError, WellZarrError
from napari_wellzarr.plugin import mosaic
from napari_wellzarr.plugin.census import READ_ERRORS, reference_sample, reference_well
from napari_wellzarr.plugin.placed import FieldLayout, PlacedSource
from napari_wellzarr.storage import fsio
from napari_wellzarr.storage._spec import WELLZARR_KEY
from napari_wellzarr.storage.geometry import Well, column_number, row_index, row_letters
from napari_wellzarr.storage.kinds import classify
from napari_wellzarr.storage.locations import RemoteLocation, is_url, open_location, redact
from napari_wellzarr.storage.overview import OverviewPlanes
from napari_wellzarr.storage.remotefetch import fetch_wells
from napari_wellzarr.storage.store import PlateStore

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence

    from napari_wellzarr.storage.axes import PlaneKey
    from napari_wellzarr.storage.config import StorageConfig
    from napari_wellzarr.storage.reading import OpenWell, WellInfo

__all__ = [
    "EmptyPlateView",
    "PlateView",
    "UnfinishedPlateWarning",
    "export_view",
    "open_view",
    "plate_map",
]

META_KEY: Final = WELLZARR_KEY
LayerTuple = tuple[Any, dict[str, Any], str]
#: The tile of a plate with no well to take one from (its plate map only), in pixels.
EMPTY_TILE: Final = (64, 64)
#: Plates of at most this many wells show their plate map at first (larger: hidden).
PLATE_MAP_SHOWN: Final = 96
#: Wells named in a warning before "and N more".
_NAMED: Final = 24
#: Wells whose metadata is read to find the acquisitions of a plate that lists none.
_PROBE: Final = 3


class UnfinishedPlateWarning(UserWarning):
    """A plate's writer did not finish: complete wells on disk are not listed yet.

    They are shown anyway (a plate with no well at all as an empty plate map), but
    other readers do not see them until the plate is finished: the same ``wellzarr
    convert ... --resume``, or ``PlateStore.open(path, mode="r+").recover()``.
    """


class _StoreSource:
    def __init__(self, store: PlateStore, acquisition: int | None = None) -> None:
        self.store = store
        self.acquisition = acquisition

    def read_plane(self, well: str, key: PlaneKey, level: int) -> np.ndarray[Any, Any]:
        return self.store.read_plane(
            well, key.field, key.c, key.z, key.t, level=level, acquisition=self.acquisition
        )

    def read_planes(
        self, well: str, keys: Sequence[PlaneKey], level: int
    ) -> list[np.ndarray[Any, Any]]:
        return self.store.read_planes(well, keys, level=level, acquisition=self.acquisition)

    def read_labels(self, well: str, name: str, level: int) -> np.ndarray[Any, Any]:
        return self.store.read_labels(well, name, level=level, acquisition=self.acquisition)

    def well_info(self, well: str) -> WellInfo:
        return self.store.layout_info(well, self.acquisition)


class _WellSource:
    def __init__(self, well: OpenWell) -> None:
        self.well = well

    def read_plane(self, well: str, key: PlaneKey, level: int) -> np.ndarray[Any, Any]:
        return self.well.read_planes([key], level)[0]

    def read_planes(
        self, well: str, keys: Sequence[PlaneKey], level: int
    ) -> list[np.ndarray[Any, Any]]:
        return self.well.read_planes(keys, level)

    def read_labels(self, well: str, name: str, level: int) -> np.ndarray[Any, Any]:
        return self.well.read_labels(name, level)

    def well_info(self, well: str) -> WellInfo:
        return self.well.info


@dataclass
class PlateView:
    """An opened plate (or single well) and the shared tile reader of its layers."""

    path: Path | RemoteLocation
    rows: tuple[str, ...]
    columns: tuple[str, ...]
    wells: dict[str, tuple[int, int]]
    info: WellInfo
    config: StorageConfig | None
    ngff_version: str
    reader: mosaic.TileReader
    kind: str = "plate"
    #: The fields placed at their stage positions (one canvas per well), not on a slider.
    placed: bool = False
    #: ``well -> "name: value; ..."``: the wells' conditions (compound, dose...), if any.
    conditions: dict[str, str] | None = None
    #: ``(id, name)`` of the acquisition shown, in a plate of several (else None).
    acquisition: tuple[int, str] | None = None
    #: The views of the plate's other acquisitions, at the same well positions.
    others: tuple[PlateView, ...] = ()
    #: The opened plate (None for a well folder on its own).
    store: PlateStore | None = None

    @property
    def lead_axes(self) -> tuple[str, ...]:
        """The leading (slider) axes of every layer: field, [t,] z."""
        return tuple(a for a in self.info.axes[:-2] if a != "c")

    @property
    def lead_shape(self) -> tuple[int, ...]:
        """Sizes of the leading axes."""
        return tuple(
            s for a, s in zip(self.info.axes, self.info.shape, strict=True) if a in self.lead_axes
        )

    def common_kwargs(self) -> dict[str, Any]:
        """Scale, axis labels, units and projection shared by this acquisition's layers."""
        axes = (*self.lead_axes, "y", "x")
        scale = [s for a, s in zip(self.info.axes, self.info.scale, strict=True) if a != "c"]
        unit = self.info.unit or "pixel"
        units = ["pixel" if a in ("field", "t") else unit for a in axes]
        # One plane at a time: napari 0.9's default "mean" would average over fields.
        return {"scale": scale, "axis_labels": axes, "units": units, "projection_mode": "none"}

    def describe(self) -> dict[str, Any]:
        """The JSON-ready description of the mosaic that layer metadata carries."""
        geometry = self.reader.geometry
        return {
            "source": str(self.path),
            "kind_of_source": self.kind,
            "rows": list(self.rows),
            "columns": list(self.columns),
            "wells": {name: list(pos) for name, pos in self.wells.items()},
            "tile": list(geometry.tile),
            "pitch": list(geometry.pitch),
            "axes": [*self.lead_axes, "y", "x"],
            "config": self.config.to_dict() if self.config else None,
            "ngff_version": self.ngff_version,
            "fields": "placed" if self.placed else "slider",
            "conditions": self.conditions,
            "acquisition": list(self.acquisition) if self.acquisition else None,
        }

    @property
    def prefix(self) -> str:
        """What layer names start with: ``"round1: "`` in a plate of several acquisitions."""
        return f"{self.acquisition[1]}: " if self.acquisition else ""

    def layers(
        self,
        *,
        conditions: dict[str, str] | None = None,
        extra: Sequence[LayerTuple] = (),
        tables: Sequence[dict[str, str]] = (),
    ) -> list[LayerTuple]:
        """One image layer per channel, one labels layer per label image, the plate map.

        ``extra`` layers (ROI shapes) go before the plate map; ``conditions`` (well ->
        text) label the plate map's wells; ``tables`` are listed in its metadata.
        """
        out = self.data_layers()
        for other in self.others:
            out += other.data_layers()
        out += extra
        out.append(self._plate_map(conditions or {}, tables))
        return out

    def data_layers(self) -> list[LayerTuple]:
        """The layers of this acquisition: one per channel, one per label image."""
        out = [self._channel(c) for c in range(self.info.n_channels)]
        out += [self._labels(name) for name in self.info.labels]
        return out

    def _channel(self, c: int) -> LayerTuple:
        channel = self.info.channels[c]
        data = mosaic.mosaic_levels(self.reader, self.lead_shape, channel=c)
        kwargs: dict[str, Any] = {
            "name": f"{self.prefix}{channel.label}",
            "colormap": f"#{channel.color}",
            "blending": "additive",
            "visible": channel.active,
            "multiscale": len(data) > 1,
            "metadata": {
                META_KEY: {
                    **self.describe(),
                    "kind": "image",
                    "channel": c,
                    "window": list(channel.window) if channel.window else None,
                    "reference": [
                        channel.label,
                        channel.color,
                        list(channel.window or ()),
                        channel.active,
                    ],
                }
            },
            **self.common_kwargs(),
        }
        if channel.window is not None:
            start, end = channel.window[2:]
            kwargs["contrast_limits"] = (start, end if end > start else start + 1)
        return (data if len(data) > 1 else data[0], kwargs, "image")

    def _labels(self, name: str) -> LayerTuple:
        data = mosaic.mosaic_levels(self.reader, self.lead_shape, label=name)
        meta = {META_KEY: {**self.describe(), "kind": "labels", "label": name}}
        kwargs = {
            "name": f"{self.prefix}{name}",
            "multiscale": len(data) > 1,
            "metadata": meta,
            **self.common_kwargs(),
        }
        return (data if len(data) > 1 else data[0], kwargs, "labels")

    def _plate_map(
        self, conditions: dict[str, str], tables: Sequence[dict[str, str]]
    ) -> LayerTuple:
        common = self.common_kwargs()
        scale, units = common["scale"][-2:], common["units"][-2:]
        geometry = self.reader.geometry
        return plate_map(
            self.path, self.rows, self.columns, set(self.wells), geometry, scale, units,
            conditions={**(self.conditions or {}), **conditions}, tables=tables,
        )  # fmt: skip


@dataclass
class EmptyPlateView:
    """A plate with no well yet: its plate map alone, drawn on a nominal tile."""

    path: Path | RemoteLocation
    rows: tuple[str, ...]
    columns: tuple[str, ...]

    def layers(self) -> list[LayerTuple]:
        """The plate map, with every well shown absent."""
        geometry = mosaic.MosaicGeometry.for_plate(len(self.rows), len(self.columns), EMPTY_TILE)
        scale, units = [1.0, 1.0], ["pixel", "pixel"]
        return [plate_map(self.path, self.rows, self.columns, set(), geometry, scale, units)]


def plate_map(
    path: Path | RemoteLocation,
    rows: Sequence[str],
    columns: Sequence[str],
    present: set[str],
    geometry: mosaic.MosaicGeometry,
    scale: list[float],
    units: list[str],
    conditions: Mapping[str, str] | None = None,
    *,
    tables: Sequence[dict[str, str]] = (),
) -> LayerTuple:
    """The "plate map" points layer: every well's outline and name, ``present`` ones bright.

    Shown at first on plates of at most :data:`PLATE_MAP_SHOWN` wells; larger plates get
    it hidden (its eye in the layer list shows it): under a software OpenGL its squares
    and names cost more than the plate's images on every frame (README, issue 13).

    With ``conditions`` (well -> text), each well's conditions are written under its name
    and are a ``condition`` feature (shown in the status bar when the pointer is over the
    well, with the plate map selected).  ``tables`` are listed in its metadata.
    """
    h, w = geometry.tile
    names, centres, here, treated = [], [], [], []
    by_position = _by_position(conditions or {})
    for r, row in enumerate(rows):
        for c, column in enumerate(columns):
            y0, x0 = geometry.origin(r, c)
            names.append(f"{row}{column}")
            centres.append((y0 + h / 2, x0 + w / 2))
            here.append(names[-1] in present)
            treated.append(by_position.get((r, c), (conditions or {}).get(names[-1], "")))
    colours = np.where(np.array(here)[:, None], [[1, 1, 1, 1]], [[0.5, 0.5, 0.5, 0.6]])
    kwargs = {
        "name": "plate map",
        "symbol": "square",
        "size": max(h, w),
        "face_color": "transparent",
        "border_color": colours,
        "border_width": 0.02,
        "features": {
            "well": names,
            "present": here,
            **({"condition": treated} if any(treated) else {}),
        },
        "text": {
            "string": "{well}\n{condition}" if any(treated) else "{well}",
            "anchor": "center",
            "translation": [-0.38 * h, 0],
            "size": 8 if len(names) <= 96 else 6,
            "color": "white",
        },
        "scale": scale,
        "units": units,
        "visible": len(names) <= PLATE_MAP_SHOWN,
        "metadata": {META_KEY: {"kind": "plate_map", "source": str(path), "tables": list(tables)}},
    }
    return (np.array(centres, dtype=float).reshape(-1, 2), kwargs, "points")


def _by_position(conditions: Mapping[str, str]) -> dict[tuple[int, int], str]:
    out = {}
    for name, text in conditions.items():
        try:
            well = Well.parse(name)
        except WellNameError:
            continue
        out[(well.row, well.column)] = text
    return out


def well_positions(
    rows: Sequence[str], columns: Sequence[str], wells: Sequence[str]
) -> tuple[tuple[str, ...], tuple[str, ...], dict[str, tuple[int, int]]]:
    """Rows, columns and well positions as on the physical plate.

    Some writers list only occupied columns (OpenHCS) or list them in creation order
    (iohub); when every well name reads as a plate position (``B03``, ``B3``) the
    wells are laid out where they are on the plate, over at least the listed rows and
    columns.  Otherwise the metadata's order is kept.
    """
    listed = {f"{r}{c}": (i, j) for i, r in enumerate(rows) for j, c in enumerate(columns)}
    try:
        parsed = _positions(rows, columns, wells, listed)
    except WellNameError:
        parsed = {}
    if not parsed or len(set(parsed.values())) != len(parsed):
        return tuple(rows), tuple(columns), {name: listed[name] for name in wells}
    n_rows = max(len(rows), *(r + 1 for r, _ in parsed.values()))
    n_columns = max(len(columns), *(c + 1 for _, c in parsed.values()))
    width = max((len(c) for c in columns if c.isdigit()), default=2)
    physical_rows = tuple(row_letters(i) for i in range(n_rows))
    physical_columns = tuple(f"{j + 1:0{width}d}" for j in range(n_columns))
    return physical_rows, physical_columns, parsed


def _positions(
    rows: Sequence[str],
    columns: Sequence[str],
    wells: Sequence[str],
    listed: dict[str, tuple[int, int]],
) -> dict[str, tuple[int, int]]:
    """Each well's ``(row, column)`` on the physical plate, as :meth:`Well.parse` reads it.

    A name made of a listed row of letters and a listed numbered column is looked up
    from its row's and column's parsed names (1536 names in well under a millisecond);
    other names are parsed.  Raises :class:`WellNameError` for a name that is no
    plate position.
    """
    row_at = [_parsed(row_index, r) if r.isalpha() and len(r) <= 2 else None for r in rows]
    column_at = [
        _parsed(column_number, c) if c.isdigit() and len(c) <= 4 else None for c in columns
    ]
    out = {}
    for name in wells:
        at = listed.get(name)
        row = row_at[at[0]] if at is not None else None
        column = column_at[at[1]] if at is not None else None
        if row is None or column is None:
            well = Well.parse(name)
            row, column = well.row, well.column
        out[name] = (row, column)
    return out


def _parsed(parse: Callable[[str], int], name: str) -> int | None:
    if not name.isascii():
        return None
    try:
        return parse(name)
    except WellNameError:
        return None


# -- the plate's reference well: what most wells look like ------------------------------


# -- opening ----------------------------------------------------------------------------


def open_view(path: str | Path, *, placed: bool = True) -> PlateView | EmptyPlateView:
    """Open a plate or a single well folder for display (metadata only).

    With ``placed`` (default), a plate whose wells know their fields' stage positions
    shows each well's fields where they were imaged (later fields on top where they
    overlap); otherwise, and for wells without positions, fields are on a slider.

    Raises
    ------
    PlateNotFoundError
        When ``path`` is neither an HCS plate nor a well.
    MetadataError
        When the plate has wells but none of them can be read.
    """
    remote = is_url(path)
    root: Path | str = os.fspath(path) if remote else Path(path)
    kind = classify(root)
    if kind == "well":
        return _well_view(open_location(str(root), fresh=True) if remote else Path(root), placed)
    if kind == "plate":
        return _plate_view(root, placed)
    where = redact(str(root)) if remote else root
    raise PlateNotFoundError(f"{where} is not an OME-Zarr HCS plate or well")


def _well_view(root: Path | RemoteLocation, placed: bool) -> PlateView:
    from napari_wellzarr.storage.reading import open_well_dir

    well = open_well_dir(root)
    version = "0.5" if fsio.is_file(root / "zarr.json") else "0.4"
    layout = ((root.parent.name,), (root.name,), {well.info.name: (0, 0)})
    source, info = _placed(
        _WellSource(well), well.info, lambda _: well.info.acquisition.field_positions, placed
    )
    return _view(root, layout, info, source, (None, version, "well"), {})


def _placed(
    source: mosaic.PlaneSource,
    info: WellInfo,
    positions: Callable[[str], Any],
    placed: bool,
) -> tuple[mosaic.PlaneSource, WellInfo]:
    """The source and reference well with fields placed, when asked for and known."""
    layout = FieldLayout.from_reference(info, dict(info.acquisition.field_positions))
    if not placed or layout is None:
        return source, info
    wrapped = PlacedSource(source, layout, positions)
    return wrapped, wrapped.placed_info(info)


def _plate_view(path: Path | str, placed: bool) -> PlateView | EmptyPlateView:
    store = PlateStore.open(path)
    root = store.location
    listed = store.wells()
    # Only plates written here are scanned: their wells are listed once per session.
    unlisted = store.unlisted_wells() if store.config is not None else []
    rows, columns, wells = well_positions(store.rows, store.columns, [*listed, *unlisted])
    if unlisted:
        _warn_unfinished(
            f"{root}: {_named(unlisted)} complete on disk but not listed in the plate "
            "metadata yet (its writer was interrupted); shown here, but other readers "
            "see only the listed wells until the plate is finished"
        )
    if not wells:
        message = f"{root} has no wells yet; it is shown as an empty plate map"
        _warn_unfinished(message, ours=store.config is not None)
        return EmptyPlateView(root, rows, columns)
    what = (store.config, store.ngff_version, "plate")
    layout = (rows, columns, wells)
    # a remote plate: the documents read next (first and middle wells), fetched at once
    fetch_wells(root, [store.well_path(w) for w in reference_sample(list(wells))])
    acquisitions = _acquisitions(store, list(wells))
    if len(acquisitions) <= 1:
        failed: dict[str, str] = {}
        info = reference_well(store, list(wells), failed)
        source, info = _placed(_StoreSource(store), info, store.field_positions, placed)
        overview = None if isinstance(source, PlacedSource) else _overview(store)
        single = _view(root, layout, info, source, what, failed, overview=overview)
        single.conditions = (
            _conditions(store, list(wells), failed) if _has_conditions(info) else None
        )
        single.store = store
        return single
    parts = []
    for ident, name in acquisitions:
        failed = {}
        try:
            info = reference_well(store, list(wells), failed, ident)
        except MetadataError as err:
            warnings.warn(
                f"{root}: acquisition {name!r} (id {ident}) cannot be shown: {err}",
                mosaic.DamagedWellWarning,
                stacklevel=4,
            )
            continue
        parts.append(((ident, name), info, failed))
    if not parts:
        raise MetadataError(f"{root}: no acquisition of {acquisitions} can be read")
    geometries = aligned_geometries(len(rows), len(columns), [info for _, info, _ in parts])
    views = [
        _view(root, layout, info, _StoreSource(store, acq[0]), what, failed, geometry, acq)
        for (acq, info, failed), geometry in zip(parts, geometries, strict=True)
    ]
    views[0].others = tuple(views[1:])
    views[0].store = store
    return views[0]


def _overview(store: PlateStore) -> OverviewPlanes | None:
    """The plate's overview, when it was built from the wells the plate holds now."""
    if store.config is None:
        return None
    try:
        record = store.overview()
    except READ_ERRORS:
        return None
    if record is None:
        return None
    wells = zip(store.wells(), store.plate.wells, strict=True)
    positions = {n: (w.row_index, w.column_index) for n, w in wells}
    try:
        return OverviewPlanes(store.location, record, positions)
    except ValueError:
        return None


def _acquisitions(store: PlateStore, wells: Sequence[str]) -> list[tuple[int, str]]:
    """The acquisitions to show: the plate's block, else those the first readable well names."""
    listed = store.acquisitions()
    if len(listed) > 1:
        return listed
    names = dict(listed)
    for well in wells[:_PROBE]:
        try:
            ids = store.well_info(well).acquisition_ids
        except READ_ERRORS:
            continue  # reported when the well is read for display
        return [(a, names.get(a, f"acq{a}")) for a in ids if a is not None]
    return listed


def aligned_geometries(
    n_rows: int, n_columns: int, infos: Sequence[WellInfo]
) -> list[mosaic.MosaicGeometry]:
    """One mosaic geometry per acquisition, whose wells sit at the same physical places.

    The pitch between wells fits the largest tile of any acquisition (in the first
    acquisition's pixel size); each other acquisition's pitch is the same distance in
    its own pixels, so its wells overlay the first's (to within a pixel).
    """
    sizes = [_yx_scale(info) for info in infos]
    tiles = [(info.level_shapes[0][-2], info.level_shapes[0][-1]) for info in infos]
    (sy0, sx0) = sizes[0]
    span = (
        max(math.ceil(h * sy / sy0 - 1e-6) for (h, _), (sy, _) in zip(tiles, sizes, strict=True)),
        max(math.ceil(w * sx / sx0 - 1e-6) for (_, w), (_, sx) in zip(tiles, sizes, strict=True)),
    )
    first = mosaic.MosaicGeometry.for_plate(n_rows, n_columns, span)
    m = 2 ** (first.n_levels - 1)
    out = []
    for tile, (sy, sx) in zip(tiles, sizes, strict=True):
        pitch = (
            _round_up(max(tile[0] + 1, round(first.pitch[0] * sy0 / sy)), m),
            _round_up(max(tile[1] + 1, round(first.pitch[1] * sx0 / sx)), m),
        )
        out.append(mosaic.MosaicGeometry(n_rows, n_columns, tile, pitch, first.n_levels))
    return out


def _yx_scale(info: WellInfo) -> tuple[float, float]:
    sy, sx = info.scale[-2], info.scale[-1]
    ok = all(math.isfinite(s) and s > 0 for s in (sy, sx))
    return (sy, sx) if ok else (1.0, 1.0)


def _round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


def _has_conditions(info: WellInfo) -> bool:
    return bool(info.acquisition.conditions)


def _conditions(store: PlateStore, wells: Sequence[str], failed: dict[str, str]) -> dict[str, str]:
    """Each well's conditions as one line of text (each well's metadata is read once).

    Only plates whose reference well has conditions pay for it; wells that do not read
    are left out (they are shown blank and reported by the mosaic).
    """
    out = {}
    for well in wells:
        if well in failed:
            continue
        try:
            values = store.instrument_metadata(well).conditions
        except (WellZarrError, OSError):
            continue
        if values:
            out[well] = "; ".join(f"{k}: {v}" for k, v in values.items())
    return out


def _named(wells: Sequence[str]) -> str:
    """``"2 wells (B02, C03) are"``: at most ``_NAMED`` names, then how many more."""
    shown = ", ".join(wells[:_NAMED]) + (
        f" and {len(wells) - _NAMED} more" if len(wells) > _NAMED else ""
    )
    return f"1 well ({shown}) is" if len(wells) == 1 else f"{len(wells)} wells ({shown}) are"


def _warn_unfinished(message: str, *, ours: bool = True) -> None:
    advice = (
        ". To finish it, run the same `wellzarr convert ... --resume`, or "
        "PlateStore.open(path, mode='r+').recover() where the plate is writable."
    )
    warnings.warn(f"{message}{advice if ours else '.'}", UnfinishedPlateWarning, stacklevel=5)


def _view(
    root: Path | RemoteLocation,
    layout: tuple[Sequence[str], Sequence[str], dict[str, tuple[int, int]]],
    info: WellInfo,
    source: mosaic.PlaneSource,
    what: tuple[StorageConfig | None, str, str],
    failed: dict[str, str],
    geometry: mosaic.MosaicGeometry | None = None,
    acquisition: tuple[int, str] | None = None,
    *,
    overview: OverviewPlanes | None = None,
) -> PlateView:
    """The view of ``layout`` (rows, columns, well positions), tiled like ``info``'s well."""
    rows, columns, wells = layout
    stored = [tuple(s[-2:]) for s in info.level_shapes]
    if geometry is None:
        geometry = mosaic.MosaicGeometry.for_plate(
            len(rows), len(columns), (stored[0][0], stored[0][1])
        )
    tiles = mosaic.level_tiles([(h, w) for h, w in stored], geometry.n_levels)
    dtypes = {name: _label_dtype(source, info, name, tiles[-1].source) for name in info.labels}
    reader = mosaic.TileReader(
        source,
        wells,
        geometry,
        tiles,
        info.dtype,
        label_dtypes=dtypes,
        remote=isinstance(root, RemoteLocation),
        overview=overview,
    )
    for name, why in failed.items():
        reader.fail(name, why, reported=True)
    config, version, kind = what
    placed = isinstance(source, PlacedSource)
    return PlateView(
        root,
        tuple(rows),
        tuple(columns),
        wells,
        info,
        config,
        version,
        reader,
        kind,
        placed,
        acquisition=acquisition,
    )


def _label_dtype(
    source: mosaic.PlaneSource, info: WellInfo, name: str, level: int
) -> np.dtype[Any]:
    # WellInfo does not carry label dtypes: read the reference well's coarsest labels once.
    return np.dtype(source.read_labels(info.name, name, level).dtype)


def export_view(
    root: Path,
    layout: tuple[Sequence[str], Sequence[str], dict[str, tuple[int, int]]],
    info: WellInfo,
    source: mosaic.PlaneSource,
) -> PlateView:
    """The view of a raw instrument export (``source`` reads its files), like a plate's."""
    return _view(root, layout, info, source, (None, "", "export"), {})
