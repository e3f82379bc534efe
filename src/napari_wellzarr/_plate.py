"""What a folder is (plate, well, or not ours) and how its layers are built.

Opening reads the plate metadata and ONE well's metadata: like ome-zarr-py, every
well is assumed to share that well's shape, dtype and channels; a well that does not
is shown blank with a warning when its tiles are first drawn.  Nothing here reads
pixels; the layers' data are :class:`~napari_wellzarr._mosaic.LazyMosaic` levels.
"""

from __future__ import annotations

import warnings
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
from .core.geometry import row_letters

if TYPE_CHECKING:
    from collections.abc import Sequence

    from .core import OpenWell, StorageConfig, WellInfo

__all__ = ["PlateView", "open_view"]

META_KEY: Final = "wellzarr"
LayerTuple = tuple[Any, dict[str, Any], str]


class _StoreSource:
    def __init__(self, store: PlateStore) -> None:
        self.store = store

    def read_plane(self, well: str, key: PlaneKey, level: int) -> np.ndarray[Any, Any]:
        return self.store.read_plane(well, key.field, key.c, key.z, key.t, level=level)

    def read_labels(self, well: str, name: str, level: int) -> np.ndarray[Any, Any]:
        return self.store.read_labels(well, name, level=level)


class _WellSource:
    def __init__(self, well: OpenWell) -> None:
        self.well = well

    def read_plane(self, well: str, key: PlaneKey, level: int) -> np.ndarray[Any, Any]:
        return self.well.read_planes([key], level)[0]

    def read_labels(self, well: str, name: str, level: int) -> np.ndarray[Any, Any]:
        return self.well.read_labels(name, level)


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
        geometry = self.reader.geometry
        h, w = geometry.tile
        names, centres, present = [], [], []
        for r, row in enumerate(self.rows):
            for c, column in enumerate(self.columns):
                y0, x0 = geometry.origin(r, c)
                names.append(f"{row}{column}")
                centres.append((y0 + h / 2, x0 + w / 2))
                present.append(names[-1] in self.wells)
        colours = np.where(np.array(present)[:, None], [[1, 1, 1, 1]], [[0.5, 0.5, 0.5, 0.6]])
        kwargs = {
            "name": "plate map",
            "symbol": "square",
            "size": max(h, w),
            "face_color": "transparent",
            "border_color": colours,
            "border_width": 0.02,
            "features": {"well": names, "present": present},
            "text": {
                "string": "{well}",
                "anchor": "center",
                "translation": [-0.38 * h, 0],
                "size": 8 if len(names) <= 96 else 6,
                "color": "white",
            },
            "scale": self._common()["scale"][-2:],
            "units": self._common()["units"][-2:],
            "metadata": {META_KEY: {"kind": "plate_map", "source": str(self.path)}},
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
        parsed = {name: Well.parse(name) for name in wells}
    except WellNameError:
        parsed = {}
    if not parsed or len(set(parsed.values())) != len(parsed):
        return tuple(rows), tuple(columns), {name: listed[name] for name in wells}
    n_rows = max(len(rows), *(p.row + 1 for p in parsed.values()))
    n_columns = max(len(columns), *(p.column + 1 for p in parsed.values()))
    width = max((len(c) for c in columns if c.isdigit()), default=2)
    physical_rows = tuple(row_letters(i) for i in range(n_rows))
    physical_columns = tuple(f"{j + 1:0{width}d}" for j in range(n_columns))
    return physical_rows, physical_columns, {n: (p.row, p.column) for n, p in parsed.items()}


def _reference(store: PlateStore, wells: list[str], fail: dict[str, str]) -> WellInfo:
    """The first well whose metadata reads; the others that fail are recorded."""
    for name in wells:
        try:
            return store.well_info(name)
        except (WellZarrError, OSError, ValueError) as err:
            fail[name] = f"{type(err).__name__}: {err}"
            warnings.warn(
                f"well {name} cannot be shown and is left blank: {fail[name]}",
                _mosaic.DamagedWellWarning,
                stacklevel=4,
            )
    raise MetadataError(
        f"{store.root}: none of its {len(wells)} well(s) can be read"
        + (f"; first failure: {next(iter(fail.items()))}" if fail else "")
    )


def open_view(path: str | Path) -> PlateView:
    """Open a plate or a single well folder for display (metadata only)."""
    root = Path(path)
    kind = classify(root)
    failed: dict[str, str] = {}
    if kind == "well":
        from .core import open_well_dir

        well = open_well_dir(root)
        info = well.info
        source: _mosaic.PlaneSource = _WellSource(well)
        rows: Sequence[str] = (root.parent.name,)
        columns: Sequence[str] = (root.name,)
        wells = {info.name: (0, 0)}
        config, version = None, "0.5" if (root / "zarr.json").is_file() else "0.4"
    elif kind == "plate":
        store = PlateStore.open(root)
        rows, columns, wells = physical_layout(store.rows, store.columns, store.wells())
        if not wells:
            raise MetadataError(f"{root} is an HCS plate that lists no wells: nothing to show")
        info = _reference(store, list(wells), failed)
        source = _StoreSource(store)
        config, version = store.config, store.ngff_version
    else:
        raise PlateNotFoundError(f"{root} is not an OME-Zarr HCS plate or well")
    stored = [tuple(s[-2:]) for s in info.level_shapes]
    geometry = _mosaic.MosaicGeometry.plan(len(rows), len(columns), (stored[0][0], stored[0][1]))
    plans = _mosaic.plan_levels([(h, w) for h, w in stored], geometry.n_levels)
    label_dtype = _label_dtype(source, info, plans[-1].source) if info.labels else None
    reader = _mosaic.TileReader(source, wells, geometry, plans, info.dtype, label_dtype=label_dtype)
    for name, why in failed.items():
        reader.fail(name, why, reported=True)
    return PlateView(root, tuple(rows), tuple(columns), wells, info, config, version, reader, kind)


def _label_dtype(source: _mosaic.PlaneSource, info: WellInfo, level: int) -> np.dtype[Any]:
    # WellInfo does not carry label dtypes: read the reference well's coarsest labels once.
    return np.dtype(source.read_labels(info.name, info.labels[0], level).dtype)
