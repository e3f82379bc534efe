"""What a folder is (plate, well, or not ours) and how its layers are built.

Opening reads the plate metadata and the metadata of two or three wells (the first,
middle and last): every well is assumed to share the dtype, plane shape and channels
most wells have (counted over the plate's layout records when those wells disagree);
a well that does not is shown blank with a warning when its tiles are first drawn,
before any of its pixels are read.  Nothing here reads pixels; the layers' data are
:class:`~napari_wellzarr._mosaic.LazyMosaic` levels.

A plate whose writer was interrupted still opens: complete wells on disk that its
metadata does not list yet are shown like listed ones, and a plate with no wells at
all as an empty plate map, with an :class:`UnfinishedPlateWarning`.
"""

from __future__ import annotations

import warnings
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import numpy as np

from . import _mosaic
from ._reader import classify
from .core import (
    MetadataError,
    PlaneKey,
    PlateNotFoundError,
    PlateStore,
    Well,
    WellNameError,
    WellZarrError,
)
from .core.geometry import column_number, row_index, row_letters

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator, Sequence

    from .core import OpenWell, StorageConfig, WellInfo

__all__ = ["EmptyPlateView", "PlateView", "UnfinishedPlateWarning", "open_view", "plate_map"]

META_KEY: Final = "wellzarr"
LayerTuple = tuple[Any, dict[str, Any], str]
#: The tile of a plate with no well to take one from (its plate map only), in pixels.
EMPTY_TILE: Final = (64, 64)
#: Wells named in a warning before "and N more".
_NAMED: Final = 24
#: Wells whose metadata opening reads first: the first, middle and last ones.
_SAMPLE: Final = 3
#: Wells without layout records read when the first ones disagree.
_CENSUS_SAMPLE: Final = 9
_READ_ERRORS: Final = (WellZarrError, OSError, ValueError)
#: What every well must share with the plate: its dtype and each level's (y, x) plane.
_Signature = tuple[np.dtype[Any], tuple[tuple[int, ...], ...]]


class UnfinishedPlateWarning(UserWarning):
    """A plate's writer did not finish: complete wells on disk are not listed yet.

    They are shown anyway (a plate with no well at all as an empty plate map), but
    other readers do not see them until the plate is finished: the same ``wellzarr
    convert ... --resume``, or ``PlateStore.open(path, mode="r+").recover()``.
    """


class _StoreSource:
    def __init__(self, store: PlateStore) -> None:
        self.store = store

    def read_plane(self, well: str, key: PlaneKey, level: int) -> np.ndarray[Any, Any]:
        return self.store.read_plane(well, key.field, key.c, key.z, key.t, level=level)

    def read_labels(self, well: str, name: str, level: int) -> np.ndarray[Any, Any]:
        return self.store.read_labels(well, name, level=level)

    def well_info(self, well: str) -> WellInfo:
        return self.store.layout_info(well)


class _WellSource:
    def __init__(self, well: OpenWell) -> None:
        self.well = well

    def read_plane(self, well: str, key: PlaneKey, level: int) -> np.ndarray[Any, Any]:
        return self.well.read_planes([key], level)[0]

    def read_labels(self, well: str, name: str, level: int) -> np.ndarray[Any, Any]:
        return self.well.read_labels(name, level)

    def well_info(self, well: str) -> WellInfo:
        return self.well.info


@dataclass
class PlateView:
    """An opened plate (or single well) and the shared tile reader of its layers."""

    path: Path
    rows: tuple[str, ...]
    columns: tuple[str, ...]
    wells: dict[str, tuple[int, int]]
    info: WellInfo
    config: StorageConfig | None
    ngff_version: str
    reader: _mosaic.TileReader
    kind: str = "plate"

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

    def _common(self) -> dict[str, Any]:
        axes = (*self.lead_axes, "y", "x")
        scale = [s for a, s in zip(self.info.axes, self.info.scale, strict=True) if a != "c"]
        unit = self.info.unit or "pixel"
        units = ["pixel" if a in ("field", "t") else unit for a in axes]
        # One plane at a time: napari 0.9's default "mean" would average over fields.
        return {"scale": scale, "axis_labels": axes, "units": units, "projection_mode": "none"}

    def layout(self) -> dict[str, Any]:
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
        }

    def layers(self) -> list[LayerTuple]:
        """One image layer per channel, one labels layer per label image, the plate map."""
        out = [self._channel(c) for c in range(self.info.n_channels)]
        out += [self._labels(name) for name in self.info.labels]
        out.append(self._plate_map())
        return out

    def _channel(self, c: int) -> LayerTuple:
        channel = self.info.channels[c]
        data = _mosaic.mosaic_levels(self.reader, self.lead_shape, channel=c)
        kwargs: dict[str, Any] = {
            "name": channel.label,
            "colormap": f"#{channel.color}",
            "blending": "additive",
            "visible": channel.active,
            "multiscale": len(data) > 1,
            "metadata": {
                META_KEY: {
                    **self.layout(),
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
            **self._common(),
        }
        if channel.window is not None:
            start, end = channel.window[2:]
            kwargs["contrast_limits"] = (start, end if end > start else start + 1)
        return (data if len(data) > 1 else data[0], kwargs, "image")

    def _labels(self, name: str) -> LayerTuple:
        data = _mosaic.mosaic_levels(self.reader, self.lead_shape, label=name)
        meta = {META_KEY: {**self.layout(), "kind": "labels", "label": name}}
        kwargs = {"name": name, "multiscale": len(data) > 1, "metadata": meta, **self._common()}
        return (data if len(data) > 1 else data[0], kwargs, "labels")

    def _plate_map(self) -> LayerTuple:
        common = self._common()
        scale, units = common["scale"][-2:], common["units"][-2:]
        geometry = self.reader.geometry
        return plate_map(
            self.path, self.rows, self.columns, set(self.wells), geometry, scale, units
        )


@dataclass
class EmptyPlateView:
    """A plate with no well yet: its plate map alone, drawn on a nominal tile."""

    path: Path
    rows: tuple[str, ...]
    columns: tuple[str, ...]

    def layers(self) -> list[LayerTuple]:
        """The plate map, with every well shown absent."""
        geometry = _mosaic.MosaicGeometry.plan(len(self.rows), len(self.columns), EMPTY_TILE)
        scale, units = [1.0, 1.0], ["pixel", "pixel"]
        return [plate_map(self.path, self.rows, self.columns, set(), geometry, scale, units)]


def plate_map(
    path: Path,
    rows: Sequence[str],
    columns: Sequence[str],
    present: set[str],
    geometry: _mosaic.MosaicGeometry,
    scale: list[float],
    units: list[str],
) -> LayerTuple:
    """The "plate map" points layer: every well's outline and name, ``present`` ones bright."""
    h, w = geometry.tile
    names, centres, here = [], [], []
    for r, row in enumerate(rows):
        for c, column in enumerate(columns):
            y0, x0 = geometry.origin(r, c)
            names.append(f"{row}{column}")
            centres.append((y0 + h / 2, x0 + w / 2))
            here.append(names[-1] in present)
    colours = np.where(np.array(here)[:, None], [[1, 1, 1, 1]], [[0.5, 0.5, 0.5, 0.6]])
    kwargs = {
        "name": "plate map",
        "symbol": "square",
        "size": max(h, w),
        "face_color": "transparent",
        "border_color": colours,
        "border_width": 0.02,
        "features": {"well": names, "present": here},
        "text": {
            "string": "{well}",
            "anchor": "center",
            "translation": [-0.38 * h, 0],
            "size": 8 if len(names) <= 96 else 6,
            "color": "white",
        },
        "scale": scale,
        "units": units,
        "metadata": {META_KEY: {"kind": "plate_map", "source": str(path)}},
    }
    return (np.array(centres, dtype=float).reshape(-1, 2), kwargs, "points")


def physical_layout(
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


def _signature(info: WellInfo) -> _Signature:
    return info.dtype.newbyteorder("="), tuple(tuple(s[-2:]) for s in info.level_shapes)


def _spread(names: Sequence[str], k: int) -> list[str]:
    """Up to ``k`` of ``names``, spread evenly over them (the first and last included)."""
    if len(names) <= k:
        return list(names)
    step = (len(names) - 1) / (k - 1)
    return [names[i] for i in dict.fromkeys(round(j * step) for j in range(k))]


def _infos(
    read: Callable[[str], WellInfo], names: Iterable[str], failed: dict[str, str]
) -> Iterator[tuple[str, WellInfo]]:
    """``(name, read(name))`` of each well whose metadata reads; the others are reported."""
    for name in names:
        if name in failed:
            continue
        try:
            info = read(name)
        except _READ_ERRORS as err:
            failed[name] = f"{type(err).__name__}: {err}"
            warnings.warn(
                f"well {name} cannot be shown and is left blank: {failed[name]}",
                _mosaic.DamagedWellWarning,
                stacklevel=7,
            )
            continue
        yield name, info


def _until_two_agree(infos: Iterator[tuple[str, WellInfo]], k: int) -> list[tuple[str, WellInfo]]:
    """The first ``k`` of ``infos``, or fewer: up to the first one that repeats a signature."""
    out: list[tuple[str, WellInfo]] = []
    seen: set[_Signature] = set()
    for name, info in infos:
        out.append((name, info))
        signature = _signature(info)
        if signature in seen or len(out) == k:
            break
        seen.add(signature)
    return out


def _majority(infos: Sequence[tuple[str, WellInfo]]) -> _Signature:
    """The most common signature among ``infos`` (ties: the first one seen)."""
    return Counter(_signature(info) for _, info in infos).most_common(1)[0][0]


def _reference(store: PlateStore, wells: list[str], failed: dict[str, str]) -> WellInfo:
    """The metadata of a well that has what most wells have: the plate's dtype and planes.

    The first, middle and last wells' metadata is read, stopping as soon as two agree
    (wells that do not read are replaced by the next ones); only when they disagree are
    the other wells counted (:func:`_census`).  No pixel is read.  Wells whose metadata
    does not read are reported and recorded in ``failed``.
    """
    first = _spread(wells, _SAMPLE)
    order = [*first, *(w for w in wells if w not in first)]
    sample = _until_two_agree(_infos(store.well_info, order, failed), _SAMPLE)
    if not sample:
        raise MetadataError(
            f"{store.root}: none of its {len(wells)} well(s) can be read"
            + (f"; first failure: {next(iter(failed.items()))}" if failed else "")
        )
    if len({_signature(info) for _, info in sample}) == 1:
        return sample[0][1]
    best, names = _census(store, wells, sample, failed)
    chosen = next((info for _, info in sample if _signature(info) == best), None)
    if chosen is None:  # a well's own metadata (channels, labels), not its layout record
        read = {name for name, _ in sample}
        others = _infos(store.well_info, [n for n in names if n not in read], failed)
        chosen = next((info for _, info in others if _signature(info) == best), None)
    return chosen or sample[0][1]


def _census(
    store: PlateStore, wells: list[str], sample: list[tuple[str, WellInfo]], failed: dict[str, str]
) -> tuple[_Signature, list[str]]:
    """The signature most ``wells`` have, and some wells that have it (metadata only).

    Wells that the plate's layout records group together count for their group's
    majority (among up to three of them, spread over the group); the other wells count
    through up to nine of them spread over the plate.
    """
    votes: dict[_Signature, float] = {}
    names: dict[_Signature, list[str]] = {}
    grouped: set[str] = set()
    for group in store.layout_groups(wells):
        grouped.update(group)
        members = _until_two_agree(_infos(store.layout_info, _spread(group, 3), failed), 3)
        if members:
            signature = _majority(members)
            votes[signature] = votes.get(signature, 0.0) + len(group)
        for name, info in members:
            names.setdefault(_signature(info), []).append(name)
    rest = [w for w in wells if w not in grouped]
    sampled = list(_infos(store.layout_info, _spread(rest, _CENSUS_SAMPLE), failed))
    for name, info in sampled:
        signature = _signature(info)
        votes[signature] = votes.get(signature, 0.0) + len(rest) / len(sampled)
        names.setdefault(signature, []).append(name)
    if not votes:
        return _majority(sample), []
    best = max(votes, key=votes.__getitem__)  # ties: the first counted
    return best, names[best]


# -- opening ----------------------------------------------------------------------------


def open_view(path: str | Path) -> PlateView | EmptyPlateView:
    """Open a plate or a single well folder for display (metadata only).

    Raises
    ------
    PlateNotFoundError
        When ``path`` is neither an HCS plate nor a well.
    MetadataError
        When the plate has wells but none of them can be read.
    """
    root = Path(path)
    kind = classify(root)
    if kind == "well":
        return _well_view(root)
    if kind == "plate":
        return _plate_view(root)
    raise PlateNotFoundError(f"{root} is not an OME-Zarr HCS plate or well")


def _well_view(root: Path) -> PlateView:
    from .core import open_well_dir

    well = open_well_dir(root)
    version = "0.5" if (root / "zarr.json").is_file() else "0.4"
    layout = ((root.parent.name,), (root.name,), {well.info.name: (0, 0)})
    return _view(root, layout, well.info, _WellSource(well), (None, version, "well"), {})


def _plate_view(root: Path) -> PlateView | EmptyPlateView:
    store = PlateStore.open(root)
    listed = store.wells()
    # Only plates written here are scanned: their wells are listed once per session.
    unlisted = store.unlisted_wells() if store.config is not None else []
    rows, columns, wells = physical_layout(store.rows, store.columns, [*listed, *unlisted])
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
    failed: dict[str, str] = {}
    info = _reference(store, list(wells), failed)
    what = (store.config, store.ngff_version, "plate")
    return _view(root, (rows, columns, wells), info, _StoreSource(store), what, failed)


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
    root: Path,
    layout: tuple[Sequence[str], Sequence[str], dict[str, tuple[int, int]]],
    info: WellInfo,
    source: _mosaic.PlaneSource,
    what: tuple[StorageConfig | None, str, str],
    failed: dict[str, str],
) -> PlateView:
    """The view of ``layout`` (rows, columns, well positions), tiled like ``info``'s well."""
    rows, columns, wells = layout
    stored = [tuple(s[-2:]) for s in info.level_shapes]
    geometry = _mosaic.MosaicGeometry.plan(len(rows), len(columns), (stored[0][0], stored[0][1]))
    plans = _mosaic.plan_levels([(h, w) for h, w in stored], geometry.n_levels)
    label_dtype = _label_dtype(source, info, plans[-1].source) if info.labels else None
    reader = _mosaic.TileReader(source, wells, geometry, plans, info.dtype, label_dtype=label_dtype)
    for name, why in failed.items():
        reader.fail(name, why, reported=True)
    config, version, kind = what
    return PlateView(root, tuple(rows), tuple(columns), wells, info, config, version, reader, kind)


def _label_dtype(source: _mosaic.PlaneSource, info: WellInfo, level: int) -> np.dtype[Any]:
    # WellInfo does not carry label dtypes: read the reference well's coarsest labels once.
    return np.dtype(source.read_labels(info.name, info.labels[0], level).dtype)
