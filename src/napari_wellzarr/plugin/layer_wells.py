"""Turning napari layers into the wells of a plate, checked before anything is written."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

import numpy as np

from napari_wellzarr.errors import WellDataError, WellNameError, WellZarrError
from napari_wellzarr.plugin import mosaic
from napari_wellzarr.plugin.view import META_KEY
from napari_wellzarr.storage.config import FieldArrangement, NgffVersion, StorageConfig
from napari_wellzarr.storage.geometry import STANDARD_FORMATS, PlateGeometry, Well
from napari_wellzarr.storage.metadata import Channel

if TYPE_CHECKING:
    import threading
    from collections.abc import Callable, Generator, Mapping, Sequence
    from pathlib import Path

    from napari_wellzarr.convert.engine import WellEvent
    from napari_wellzarr.storage.store import PlateStore

__all__ = ["LayerMapping", "MappedWell", "label_name", "map_layers", "write_plate"]

LayerTuple = tuple[Any, dict[str, Any], str]
# "B03", "B3", "B03_DAPI", "AF48 GFP": capital row letters of a plate of at most 1536
# wells, so that channel names like "Cy5" or "H2B" are not taken for wells.
_WELL_PREFIX: Final = re.compile(
    r"^\s*((?:[A-Z]|A[A-F])(?:0?[1-9]|[1-3]\d|4[0-8]))(?:[\s_\-:]+(.*))?$"
)
_AXIS_NAMES: Final = {
    "field": "field", "fields": "field", "fov": "field", "site": "field", "position": "field",
    "t": "t", "time": "t", "z": "z", "y": "y", "x": "x",
}  # fmt: skip
_DEFAULT_AXES: Final = {
    2: ("y", "x"),
    3: ("z", "y", "x"),
    4: ("field", "z", "y", "x"),
    5: ("field", "t", "z", "y", "x"),
}
_PYRAMID_FROM: Final = 1024  # planes at least this large get overview levels by default


@dataclass
class MappedWell:
    """One well to write: ``(field, [t,] c, z, y, x)`` pixels, channels and labels."""

    name: str
    data: np.ndarray[Any, Any]
    channels: list[Channel]
    labels: dict[str, np.ndarray[Any, Any]] = field(default_factory=dict)


@dataclass
class LayerMapping:
    """Everything the writer needs; built only when every layer could be mapped.

    A plate of several acquisitions has one mapping per acquisition in ``rounds``
    (with its entry of the plate's ``acquisitions`` block); ``wells``, ``pixel_size``
    and ``z_step`` are then the first acquisition's.
    """

    config: StorageConfig
    wells: list[MappedWell]
    pixel_size: tuple[float, float] | None
    z_step: float | None
    rounds: tuple[tuple[dict[str, Any], LayerMapping], ...] = ()

    def well_names(self) -> list[str]:
        """Every well to write (of any acquisition), in order."""
        if not self.rounds:
            return [w.name for w in self.wells]
        names = {w.name: None for _, m in self.rounds for w in m.wells}
        return sorted(names, key=lambda name: Well.parse(name))

    def write(self, store: PlateStore, well: MappedWell | str) -> int:
        """Write one planned well into ``store`` with the plan's scale; return its bytes."""
        if self.rounds:
            name = well if isinstance(well, str) else well.name
            images = {}
            for entry, mapping in self.rounds:
                mapped = next((w for w in mapping.wells if w.name == name), None)
                if mapped is not None:
                    images[int(entry["id"])] = mapping.arguments(mapped)
            store.write_acquisitions(name, images)
            return sum(int(a["data"].nbytes) for a in images.values())
        mapped = well if isinstance(well, MappedWell) else self._well(well)
        store.write_well(mapped.name, **self.arguments(mapped))
        return int(mapped.data.nbytes)

    def arguments(self, well: MappedWell) -> dict[str, Any]:
        """The keyword arguments of :meth:`PlateStore.write_well` for ``well``."""
        return {
            "data": well.data,
            "channels": well.channels,
            "pixel_size": self.pixel_size,
            "z_step": self.z_step,
            "labels": well.labels or None,
        }

    def _well(self, name: str) -> MappedWell:
        return next(w for w in self.wells if w.name == name)


def write_plate(
    mapping: LayerMapping,
    dest: Path,
    config: StorageConfig | None = None,
    *,
    name: str | None = None,
    overwrite: bool = False,
    cancel: threading.Event | None = None,
) -> Generator[WellEvent, None, tuple[str, ...]]:
    """Create the plate ``dest`` and write the mapped wells into it, one event per well.

    Parameters
    ----------
    mapping
        From :func:`map_layers`.
    dest
        The plate to create (see :meth:`PlateStore.create` for ``name`` and ``overwrite``).
    config
        How to store it; ``None``: the mapping's own configuration.
    cancel
        Once set, no further well is started.

    Returns
    -------
    tuple of str
        The wells written, in order (the generator's return value).
    """
    from napari_wellzarr.convert.engine import WellEvent
    from napari_wellzarr.storage.store import PlateStore

    written: list[str] = []
    names = mapping.well_names()
    with PlateStore.create(dest, config or mapping.config, name=name, overwrite=overwrite) as store:
        if mapping.rounds:
            store.set_acquisitions([entry for entry, _ in mapping.rounds])
        for well in names:
            if cancel is not None and cancel.is_set():
                break
            start = time.perf_counter()
            nbytes = mapping.write(store, well)
            written.append(well)
            seconds = time.perf_counter() - start
            yield WellEvent(well, "written", len(written), len(names), nbytes, seconds)
    return tuple(written)


def _level0(data: Any, meta: dict[str, Any]) -> Any:
    # A multiscale layer's data is a list of levels (napari: MultiScaleData): keep level 0.
    return data[0] if meta.get("multiscale") else data


def _wz(meta: dict[str, Any]) -> dict[str, Any]:
    value = (meta.get("metadata") or {}).get(META_KEY)
    return value if isinstance(value, dict) else {}


def _hex_colour(meta: dict[str, Any]) -> str | None:
    colormap = meta.get("colormap")
    if isinstance(colormap, dict):
        colours = np.asarray(colormap.get("colors", []), dtype=float)
        if colours.ndim == 2 and len(colours):
            return "".join(f"{round(v * 255):02X}" for v in np.clip(colours[-1, :3], 0, 1))
    if isinstance(colormap, str) and re.fullmatch(r"#?[0-9A-Fa-f]{6}", colormap):
        return colormap.lstrip("#").upper()
    return None


def _channel(meta: dict[str, Any], label: str, dtype: np.dtype[Any], index: int) -> Channel:
    window = _wz(meta).get("window")
    limits = meta.get("contrast_limits")
    lo, hi = (window[0], window[1]) if window else _dtype_range(dtype, limits)
    start_end = tuple(limits) if limits is not None else (window[2], window[3]) if window else None
    full = (float(lo), float(hi), *(float(v) for v in start_end)) if start_end else None
    palette = ("0000FF", "00FF00", "FF0000", "FF00FF", "00FFFF", "FFFF00", "FFFFFF")
    colour = _hex_colour(meta) or palette[index % len(palette)]
    return Channel(label, colour, full, bool(meta.get("visible", True)))  # type: ignore[arg-type]


def _dtype_range(dtype: np.dtype[Any], limits: Any) -> tuple[float, float]:
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        return float(info.min), float(info.max)
    return (float(limits[0]), float(limits[1])) if limits is not None else (0.0, 1.0)


def label_name(name: str) -> str:
    """A layer name as an OME label name: letters, digits and ``_``."""
    clean = re.sub(r"[^A-Za-z0-9_]+", "_", name).strip("_")
    return clean or "labels"


class _Problems(list[str]):
    def add(self, meta: dict[str, Any], layer_type: str, why: str) -> None:
        self.append(f"{layer_type} layer {meta.get('name', '?')!r}: {why}")

    def raise_if_any(self) -> None:
        if self:
            raise WellDataError(
                "cannot save these layers as a plate (nothing was written):\n  - "
                + "\n  - ".join(self)
            )


def map_layers(layers: Sequence[LayerTuple]) -> LayerMapping:
    """Map ``(data, meta, layer_type)`` tuples to wells, or raise listing every problem."""
    problems = _Problems()
    kept: list[LayerTuple] = []
    for data, meta, layer_type in layers:
        if _wz(meta).get("kind") in ("plate_map", "roi_table"):
            continue  # the reader's plate map and ROI tables are views of the plate, not data
        if layer_type not in ("image", "labels"):
            problems.add(meta, layer_type, "only image and labels layers can be saved as a plate")
        elif meta.get("rgb"):
            problems.add(meta, layer_type, "RGB images cannot be stored as plate channels")
        elif _wz(meta).get("fields") == "placed":
            problems.add(
                meta,
                layer_type,
                "its wells show their fields placed at their positions (one canvas per "
                "well); switch Plugins > WellZarr > Plate fields to the field slider to save "
                "the fields as fields",
            )
        else:
            kept.append((_level0(data, meta), meta, layer_type))
    if not any(t == "image" for _, _, t in kept) and not problems:
        problems.append("no image layer: a plate needs at least one image layer")
    rounds = {
        tuple(_wz(m)["acquisition"]) for _, m, _ in kept if _wz(m).get("acquisition") is not None
    }
    layout = next((_wz(m) for _, m, t in kept if _wz(m).get("kind") in ("image", "labels")), None)
    if len(rounds) > 1:
        plan = _from_acquisitions(kept, problems)
    else:
        one = tuple(layout["acquisition"]) if layout and layout.get("acquisition") else None
        acquisition = (int(one[0]), str(one[1])) if one else None
        plan = (
            _from_plate(kept, layout, problems, acquisition)
            if layout
            else _from_layers(kept, problems)
        )
    problems.raise_if_any()
    assert plan is not None
    return plan


def _from_acquisitions(layers: list[LayerTuple], problems: _Problems) -> LayerMapping | None:
    """The layers of a plate of several acquisitions: one mapping per acquisition.

    Layers made in napari (no acquisition in their metadata) join the first
    acquisition whose mosaic has their shape.
    """
    groups: dict[tuple[int, str], list[LayerTuple]] = {}
    shapes: dict[tuple[int, str], tuple[int, ...]] = {}
    for data, meta, layer_type in layers:
        acquisition = _wz(meta).get("acquisition")
        if acquisition is not None:
            key = (int(acquisition[0]), str(acquisition[1]))
            groups.setdefault(key, []).append((data, meta, layer_type))
            shapes.setdefault(key, tuple(data.shape))
    for data, meta, layer_type in layers:
        if _wz(meta).get("acquisition") is None:
            match = next((k for k, s in shapes.items() if s == tuple(data.shape)), None)
            if match is None:
                shown = ", ".join(f"{n} {s}" for (_, n), s in shapes.items())
                problems.add(
                    meta, layer_type, f"shape {data.shape} is no acquisition's mosaic ({shown})"
                )
            else:
                groups[match].append((data, meta, layer_type))
    rounds = []
    for (ident, name), members in groups.items():
        layout = next(_wz(m) for _, m, _ in members if _wz(m).get("acquisition") is not None)
        mapping = _from_plate(members, layout, problems, (ident, name))
        if mapping is not None:
            rounds.append((_acquisition_entry(layout, ident, name), mapping))
    if problems or not rounds:
        return None
    first = rounds[0][1]
    return LayerMapping(first.config, first.wells, first.pixel_size, first.z_step, tuple(rounds))


def _acquisition_entry(layout: dict[str, Any], ident: int, name: str) -> dict[str, Any]:
    """The source plate's ``acquisitions`` entry (times, description...), or id and name."""
    store = _source_store(layout)
    listed = store.plate.acquisitions if store is not None else ()
    return next((dict(a) for a in listed if a.get("id") == ident), {"id": ident, "name": name})


def _source_store(layout: dict[str, Any]) -> PlateStore | None:
    """The plate the layers were read from, when it still opens."""
    from napari_wellzarr.storage.store import PlateStore

    if not layout.get("source") or layout.get("kind_of_source") != "plate":
        return None
    try:
        return PlateStore.open(layout["source"])
    except (WellZarrError, OSError):
        return None


def _scale(
    meta: dict[str, Any], axes: Sequence[str]
) -> tuple[tuple[float, float] | None, float | None]:
    """Pixel size (y, x) and z step in micrometres from a layer's scale and units.

    Unitless (``pixel``) scales of 1 mean "no physical size": they are not written.
    """
    scale = [float(s) for s in meta.get("scale") or [1.0] * len(axes)]
    units = list(meta.get("units") or ["pixel"] * len(axes))
    sizes = [_micrometres(v, u) for v, u in zip(scale, units, strict=True)]
    pixel_size = None if sizes[-2] is None or sizes[-1] is None else (sizes[-2], sizes[-1])
    return pixel_size, sizes[axes.index("z")] if "z" in axes else None


def _micrometres(value: float, unit: object) -> float | None:
    name = str(unit or "pixel")
    if name in ("pixel", "px", "dimensionless", ""):
        return None if value == 1.0 else value
    if name in ("micrometer", "micron", "µm", "um"):
        return value
    import pint

    registry: Any = getattr(unit, "_REGISTRY", None) or pint.get_application_registry()  # type: ignore[no-untyped-call]
    try:
        return float(registry.Quantity(value, name).to("micrometer").magnitude)
    except (pint.errors.PintError, AttributeError, ValueError):
        return value


def _from_plate(
    layers: list[LayerTuple],
    layout: dict[str, Any],
    problems: _Problems,
    acquisition: tuple[int, str] | None = None,
) -> LayerMapping | None:
    """The layers of one plate mosaic (``acquisition``: one acquisition of several)."""
    (th, tw), (py, px) = layout["tile"], layout["pitch"]
    geometry = mosaic.MosaicGeometry(
        len(layout["rows"]), len(layout["columns"]), (int(th), int(tw)), (int(py), int(px)), 1
    )
    axes = tuple(layout["axes"])
    wells = {name: (int(r), int(c)) for name, (r, c) in layout["wells"].items()}
    images: list[tuple[int, Any, dict[str, Any]]] = []
    labels: list[tuple[Any, dict[str, Any]]] = []
    # Layers made in napari over the plate (a painted labels layer, a filtered image)
    # join it when they have the mosaic's shape.
    shape = next(tuple(d.shape) for d, m, _ in layers if _wz(m).get("source"))
    for data, meta, layer_type in layers:
        source = _wz(meta).get("source")
        if source not in (None, layout["source"]):
            problems.add(meta, layer_type, f"comes from another plate ({source})")
            continue
        if tuple(data.shape) != shape:
            problems.add(meta, layer_type, f"shape {data.shape} is not the plate mosaic's {shape}")
            continue
        if layer_type == "image":
            order = _wz(meta).get("channel", len(layers) + len(images))
            images.append((int(order), data, meta))
        else:
            labels.append((data, meta))
    if problems or not images:
        return None
    images.sort(key=lambda item: item[0])
    first = images[0][2]
    dtypes = {np.dtype(d.dtype) for _, d, _ in images}
    if len(dtypes) > 1:
        problems.add(first, "image", f"channels have different dtypes {sorted(map(str, dtypes))}")
        return None
    dtype = dtypes.pop()
    prefix = f"{acquisition[1]}: " if acquisition else ""

    def unprefixed(meta: dict[str, Any]) -> str:
        name = str(meta["name"])
        return name[len(prefix) :] if prefix and name.startswith(prefix) else name

    channels = [_channel(m, unprefixed(m), dtype, i) for i, (_, _, m) in enumerate(images)]
    blocks = [_read_tiles(d, wells, geometry) for _, d, _ in images]
    label_blocks = {label_name(unprefixed(m)): _read_tiles(d, wells, geometry) for d, m in labels}
    origins = {label_name(unprefixed(m)): _wz(m).get("label") for _, m in labels}
    c_axis = 2 if "t" in axes else 1
    ident = acquisition[0] if acquisition else None
    source = _source_store(layout)
    if source is not None and ident is not None:
        wells = {name: at for name, at in wells.items() if _has(source, name, ident)}
    kept = _source_channels(source, images, channels, ident)
    planned = [
        MappedWell(
            name,
            np.stack([block(name) for block in blocks], axis=c_axis),
            [kept(name, c, ch) for c, ch in enumerate(channels)],
            _well_labels(name, label_blocks, origins, source, ident),
        )
        for name in wells
    ]
    pixel_size, z_step = _scale(first, axes)
    return LayerMapping(_plate_config(layout, wells, planned), planned, pixel_size, z_step)


def _well_labels(
    well: str,
    blocks: Mapping[str, Callable[[str], np.ndarray[Any, Any]]],
    origins: Mapping[str, str | None],
    source: PlateStore | None,
    acquisition: int | None,
) -> dict[str, np.ndarray[Any, Any]]:
    """``well``'s label images.

    A label read from the plate is left out of the wells that did not have it, unless
    something was painted there.
    """
    out = {}
    own: tuple[str, ...] | None = None
    for label, block in blocks.items():
        tile = block(well)
        origin = origins[label]
        if origin is not None and source is not None and not tile.any():
            if own is None:
                try:
                    own = source.well_info(well, acquisition).labels
                except (WellZarrError, OSError, ValueError):
                    own = ()
            if origin not in own:
                continue
        out[label] = tile
    return out


def _has(store: PlateStore, well: str, acquisition: int) -> bool:
    """Whether ``well`` of the source plate has images of ``acquisition`` (else: not saved)."""
    try:
        return acquisition in store.well_info(well).acquisition_ids
    except (WellZarrError, OSError, ValueError):
        return True  # shown blank or as the reader could: saved as shown


def _source_channels(
    store: PlateStore | None,
    images: list[tuple[int, Any, dict[str, Any]]],
    channels: list[Channel],
    acquisition: int | None = None,
) -> Callable[[str, int, Channel], Channel]:
    """Per-well channel metadata: the source well's own, for channels left as they were read.

    Wells of one plate may carry different display windows; the layer shows the first
    well's.  A channel whose layer settings still equal what was read keeps each
    well's own settings, so a plate saved unchanged keeps every well's metadata.
    """
    unchanged = {
        c: int(_wz(m)["channel"])
        for c, ((_, _, m), ch) in enumerate(zip(images, channels, strict=True))
        if _wz(m).get("reference") == [ch.label, ch.color, list(ch.window or ()), ch.active]
    }

    def channel(well: str, c: int, default: Channel) -> Channel:
        source_c = unchanged.get(c)
        if store is None or source_c is None:
            return default
        try:
            own = store.well_info(well, acquisition).channels
        except (WellZarrError, OSError, ValueError):
            return default
        return own[source_c] if source_c < len(own) else default

    return channel


def _plate_config(
    layout: dict[str, Any], wells: dict[str, tuple[int, int]], planned: list[MappedWell]
) -> StorageConfig:
    if layout.get("config"):
        return StorageConfig.from_dict(layout["config"])
    version = layout.get("ngff_version") or "0.5"
    if layout.get("kind_of_source") == "well":  # a well on its own: put it on a 96-well plate
        return _default_config(_smallest_plate(planned), planned, version)
    positions = [Well.parse(name) for name in wells]
    rows = max([len(layout["rows"]), *(p.row + 1 for p in positions)])
    columns = max([len(layout["columns"]), *(p.column + 1 for p in positions)])
    return _default_config((rows, columns), planned, version)


def _default_config(
    plate: tuple[int, int], planned: list[MappedWell], version: str = "0.5"
) -> StorageConfig:
    shape = planned[0].data.shape
    levels = 1
    while max(shape[-2:]) / 2 ** (levels - 1) >= _PYRAMID_FROM and levels < 6:
        levels += 1
    return StorageConfig(
        ngff_version=NgffVersion(version),
        plate=PlateGeometry(*plate),
        fields=FieldArrangement.PER_FIELD if len(shape) == 6 else FieldArrangement.STACKED,
        pyramid_levels=levels,
    )


def _axes_of(meta: dict[str, Any], ndim: int) -> tuple[str, ...] | None:
    declared = _wz(meta).get("axes") or meta.get("axis_labels")
    if declared and len(declared) == ndim:
        named = tuple(_AXIS_NAMES.get(str(a).strip().lower(), "?") for a in declared)
        if "?" not in named and named[-2:] == ("y", "x") and len(set(named)) == ndim:
            return named
    return _DEFAULT_AXES.get(ndim)


def _to_well_order(data: Any, axes: tuple[str, ...]) -> np.ndarray[Any, Any]:
    """Reorder to ``(field, [t,] z, y, x)`` adding missing field and z axes."""
    array = np.asarray(data)
    order = [a for a in ("field", "t", "z", "y", "x") if a in axes or a in ("field", "z")]
    for missing in ("field", "z"):
        if missing not in axes:
            array, axes = array[np.newaxis], (missing, *axes)
    return np.transpose(array, [axes.index(a) for a in order])


def _split_well(meta: dict[str, Any], problems: _Problems, layer_type: str) -> tuple[Well, str]:
    """The well a layer belongs to and its channel (or label) name."""
    name = str(meta.get("name", ""))
    declared = (meta.get("metadata") or {}).get("well") or _wz(meta).get("well")
    match = _WELL_PREFIX.match(name)
    well, rest = (str(declared), name) if declared else ("A01", name)
    if match and not declared:
        well, rest = match.group(1), match.group(2) or name
    try:
        return Well.parse(well), rest
    except WellNameError as err:
        problems.add(meta, layer_type, str(err))
        return Well(0, 0), rest


@dataclass
class _Group:
    axes: tuple[str, ...]
    images: list[tuple[str, np.ndarray[Any, Any], dict[str, Any]]] = field(default_factory=list)
    labels: list[tuple[str, np.ndarray[Any, Any], dict[str, Any]]] = field(default_factory=list)


def _from_layers(layers: list[LayerTuple], problems: _Problems) -> LayerMapping | None:
    groups: dict[Well, _Group] = {}
    for data, meta, layer_type in layers:
        axes = _axes_of(meta, len(data.shape))
        if axes is None:
            problems.add(
                meta,
                layer_type,
                f"{len(data.shape)}-d data; 2 to 5 axes (field, t, z, y, x) fit a well",
            )
            continue
        well, label = _split_well(meta, problems, layer_type)
        group = groups.setdefault(well, _Group(axes))
        (group.images if layer_type == "image" else group.labels).append(
            (label, _to_well_order(data, axes), meta)
        )
    planned = [
        p for well, group in sorted(groups.items()) if (p := _map_well(well, group, problems))
    ]
    if problems or not planned:
        return None
    if len({(p.data.shape, p.data.dtype, len(p.channels)) for p in planned}) > 1:
        problems.append(
            "wells "
            + ", ".join(f"{p.name} {p.data.shape} {p.data.dtype}" for p in planned)
            + " do not share one shape, dtype and channel count"
        )
        return None
    group = groups[Well.parse(planned[0].name)]
    pixel_size, z_step = _scale(group.images[0][2], group.axes)
    carried = next((_wz(m)["config"] for _, m, _ in layers if _wz(m).get("config")), None)
    try:
        config = (
            StorageConfig.from_dict(carried)
            if carried
            else _default_config(_smallest_plate(planned), planned)
        )
    except WellZarrError as err:
        problems.append(f"the storage configuration in the layers' metadata: {err}")
        return None
    return LayerMapping(config, planned, pixel_size, z_step)


def _map_well(well: Well, group: _Group, problems: _Problems) -> MappedWell | None:
    name = well.label
    if not group.images:
        for _, _, meta in group.labels:
            problems.add(meta, "labels", f"well {name} has no image layer for these labels")
        return None
    shape, dtype = group.images[0][1].shape, group.images[0][1].dtype
    for _, array, meta in group.images[1:]:
        if array.shape != shape or array.dtype != dtype:
            problems.add(
                meta,
                "image",
                f"{array.shape} {array.dtype} differs from the other channels of well {name} "
                f"({shape} {dtype})",
            )
    for _, array, meta in group.labels:
        if array.shape != shape:
            problems.add(
                meta, "labels", f"shape {array.shape} is not the images' {shape} of well {name}"
            )
        elif array.dtype.kind not in "iu":
            problems.add(meta, "labels", f"dtype {array.dtype} is not an integer type")
    if problems:
        return None
    channels = [_channel(m, label, dtype, i) for i, (label, _, m) in enumerate(group.images)]
    data = np.stack([a for _, a, _ in group.images], axis=2 if len(shape) == 5 else 1)
    labels = {label_name(n): a for n, a, _ in group.labels}
    return MappedWell(name, data, channels, labels)


def _smallest_plate(planned: list[MappedWell]) -> tuple[int, int]:
    positions = [Well.parse(p.name) for p in planned]
    rows = max(p.row for p in positions) + 1
    columns = max(p.column for p in positions) + 1
    # The core's default 96-well plate, or the smallest standard plate the wells fit.
    for size in sorted(n for n in STANDARD_FORMATS if n >= 96):
        r, c = STANDARD_FORMATS[size]
        if rows <= r and columns <= c:
            return r, c
    return rows, columns


def _read_tiles(
    data: Any, wells: Mapping[str, tuple[int, int]], geometry: mosaic.MosaicGeometry
) -> Callable[[str], np.ndarray[Any, Any]]:
    """A function returning well ``name``'s ``(field, [t,] z, y, x)`` block of level-0 ``data``."""
    h, w = geometry.tile

    def block(name: str) -> np.ndarray[Any, Any]:
        y0, x0 = geometry.origin(*wells[name])
        return np.asarray(data[..., y0 : y0 + h, x0 : x0 + w])

    return block
