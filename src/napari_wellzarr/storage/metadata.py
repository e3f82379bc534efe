"""OME-NGFF metadata as data classes, built and parsed once for 0.4 and 0.5."""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

from napari_wellzarr.errors import MetadataError

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

__all__ = [
    "Axis",
    "Channel",
    "Dataset",
    "ImageMeta",
    "Multiscale",
    "PlateMeta",
    "PlateWell",
    "WellMeta",
    "find_block",
    "ome_attrs",
    "parse_image",
    "parse_plate",
    "parse_well",
]

SPACE_UNIT: Final = "micrometer"
TIME_UNIT: Final = "second"
# Spec: row, column and well-image names are alphanumeric.  Dataset paths are a
# little freer (ome-zarr-py writes "s0"), but may never walk out of their group.
_NAME = re.compile(r"^[A-Za-z0-9]+$")
_SEGMENT = re.compile(r"^[A-Za-z0-9_\-.]+$")
_COLOR = re.compile(r"^[0-9A-Fa-f]{6}$")
# A palette in the order microscopists load channels (nuclear stain first).
DEFAULT_COLORS: Final = ("0000FF", "00FF00", "FF0000", "FF00FF", "00FFFF", "FFFF00", "FFFFFF")


def _safe_path(value: object, what: str, *, segments: int | None = None) -> str:
    """Return ``value`` if it is a relative path that stays inside its group."""
    if not isinstance(value, str) or not value:
        raise MetadataError(f"{what} {value!r} is not a non-empty string")
    parts = value.split("/")
    bad = [p for p in parts if p in ("", ".", "..") or not _SEGMENT.match(p)]
    if bad or (segments is not None and len(parts) != segments):
        raise MetadataError(f"{what} {value!r} is not a safe relative path inside the plate")
    return value


def _int(value: object, what: str, *, low: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise MetadataError(f"{what} {value!r} is not an integer >= {low}")
    return value


def _list(value: object, what: str) -> list[Any]:
    if not isinstance(value, list):
        raise MetadataError(f"{what} is not a list: {value!r:.80}")
    return value


def _dict(value: object, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise MetadataError(f"{what} is not an object: {value!r:.80}")
    return value


def find_block(attrs: Mapping[str, Any], key: str) -> tuple[Any, str | None]:
    """Return ``(block, version)`` for an OME block (``plate``, ``well``, ``multiscales``...).

    Looks under ``ome`` first (0.5), then at the top level (0.4); ``block`` is ``None``
    when absent.  The version comes from ``ome.version`` or the block's own ``version``.
    """
    ome = attrs.get("ome")
    if isinstance(ome, dict) and key in ome:
        version = ome.get("version")
        return ome[key], version if isinstance(version, str) else None
    block = attrs.get(key)
    version = None
    if isinstance(block, dict):
        version = block.get("version")
    elif isinstance(block, list) and block and isinstance(block[0], dict):
        version = block[0].get("version")
    if version is None and isinstance(ome, dict):
        version = ome.get("version")
    return block, version if isinstance(version, str) else None


def ome_attrs(version: str, blocks: Mapping[str, Any]) -> dict[str, Any]:
    """Wrap OME blocks the way ``version`` wants them in a group's attributes."""
    if version == "0.5":
        # 0.5 keeps ome.version, and its plate block still MUST carry its own version.
        ome = {k: ({**b, "version": "0.5"} if k == "plate" else b) for k, b in blocks.items()}
        return {"ome": {"version": "0.5", **ome}}
    out: dict[str, Any] = {}
    for key, block in blocks.items():
        if key in ("plate", "well") and isinstance(block, dict):
            block = {**block, "version": version}
        elif key == "multiscales" and isinstance(block, list):
            block = [{**b, "version": version} for b in block]
        out[key] = block
    return out


# -- plate ---------------------------------------------------------------------------


@dataclass(frozen=True)
class PlateWell:
    """One entry of ``plate.wells``."""

    path: str
    row_index: int
    column_index: int


@dataclass(frozen=True)
class PlateMeta:
    """The ``plate`` block: every physical row and column, and the wells present."""

    rows: tuple[str, ...]
    columns: tuple[str, ...]
    wells: tuple[PlateWell, ...] = ()
    name: str | None = None
    field_count: int | None = None
    acquisitions: tuple[dict[str, Any], ...] = ()

    def acquisition_names(self) -> list[tuple[int, str]]:
        """The ``acquisitions`` as ``(id, name)``; unnamed ones are ``"acq<id>"``."""
        out: dict[int, str] = {}
        for entry in self.acquisitions:
            ident = entry.get("id")
            if isinstance(ident, int) and not isinstance(ident, bool) and ident not in out:
                name = entry.get("name")
                out[ident] = name if isinstance(name, str) and name else f"acq{ident}"
        return list(out.items())

    def to_block(self) -> dict[str, Any]:
        """Return the JSON ``plate`` block (without version)."""
        block: dict[str, Any] = {
            "rows": [{"name": r} for r in self.rows],
            "columns": [{"name": c} for c in self.columns],
            "wells": [
                {"path": w.path, "rowIndex": w.row_index, "columnIndex": w.column_index}
                for w in self.wells
            ],
        }
        if self.name is not None:
            block["name"] = self.name
        if self.field_count is not None:
            block["field_count"] = self.field_count
        if self.acquisitions:
            block["acquisitions"] = [dict(a) for a in self.acquisitions]
        return block

    def with_wells(self, wells: Sequence[PlateWell]) -> PlateMeta:
        """Return a copy listing ``wells`` (deduplicated by path, in plate order)."""
        unique = {w.path: w for w in wells}
        ordered = sorted(unique.values(), key=lambda w: (w.row_index, w.column_index))
        return PlateMeta(
            self.rows, self.columns, tuple(ordered), self.name, self.field_count, self.acquisitions
        )

    def with_acquisitions(self, acquisitions: Sequence[Mapping[str, Any]]) -> PlateMeta:
        """Return a copy with this ``acquisitions`` block (each entry's ``id`` its own)."""
        entries = tuple(dict(a) for a in acquisitions)
        ids = [a.get("id") for a in entries]
        bad = [i for i in ids if isinstance(i, bool) or not isinstance(i, int) or i < 0]
        if bad or len(set(ids)) != len(ids):
            raise MetadataError(f"acquisitions {list(entries)}: each needs its own id >= 0")
        return dataclasses.replace(self, acquisitions=entries)

    def well_path(self, row_index: int, column_index: int) -> str:
        """The group path a well at these indices has (``<row>/<column>``)."""
        return f"{self.rows[row_index]}/{self.columns[column_index]}"


def parse_plate(attrs: Mapping[str, Any], where: str = "plate") -> tuple[PlateMeta, str | None]:
    """Parse a plate group's attributes into ``(PlateMeta, version)``."""
    block, version = find_block(attrs, "plate")
    if block is None:
        raise MetadataError(f"{where}: no OME 'plate' metadata")
    block = _dict(block, f"{where}: plate")
    rows = tuple(
        _named(r, f"{where}: plate.rows") for r in _list(block.get("rows"), f"{where}: plate.rows")
    )
    cols = tuple(
        _named(c, f"{where}: plate.columns")
        for c in _list(block.get("columns"), f"{where}: plate.columns")
    )
    wells = []
    for raw in _list(block.get("wells", []), f"{where}: plate.wells"):
        entry = _dict(raw, f"{where}: plate.wells[]")
        path = _safe_path(entry.get("path"), f"{where}: well path", segments=2)
        row_name, col_name = path.split("/")
        r_idx, c_idx = entry.get("rowIndex"), entry.get("columnIndex")
        if r_idx is None and row_name in rows:  # 0.3-era plates omit the indices
            r_idx = rows.index(row_name)
        if c_idx is None and col_name in cols:
            c_idx = cols.index(col_name)
        r = _int(r_idx, f"{where}: rowIndex of well {path!r}")
        c = _int(c_idx, f"{where}: columnIndex of well {path!r}")
        if r >= len(rows) or c >= len(cols) or rows[r] != row_name or cols[c] != col_name:
            raise MetadataError(
                f"{where}: well {path!r} has rowIndex={r}, columnIndex={c}, which do not "
                f"name row {row_name!r} and column {col_name!r} of the plate"
            )
        wells.append(PlateWell(path, r, c))
    name = block.get("name")
    count = block.get("field_count")
    acq = block.get("acquisitions", [])
    return (
        PlateMeta(
            rows,
            cols,
            tuple(wells),
            name if isinstance(name, str) else None,
            count if isinstance(count, int) and not isinstance(count, bool) else None,
            tuple(a for a in acq if isinstance(a, dict)) if isinstance(acq, list) else (),
        ),
        version,
    )


def _named(entry: object, what: str) -> str:
    name = _dict(entry, what).get("name")
    if not isinstance(name, str) or not _NAME.match(name):
        raise MetadataError(f"{what}: name {name!r} is not alphanumeric")
    return name


# -- well ----------------------------------------------------------------------------


@dataclass(frozen=True)
class WellMeta:
    """The ``well`` block: the image groups (fields) of a well."""

    images: tuple[str, ...]
    acquisitions: tuple[int | None, ...] = ()

    def to_block(self) -> dict[str, Any]:
        """Return the JSON ``well`` block (without version), with the images' acquisition ids."""
        ids = self.acquisitions or (None,) * len(self.images)
        return {
            "images": [
                {"path": p} if a is None else {"acquisition": a, "path": p}
                for p, a in zip(self.images, ids, strict=True)
            ]
        }


def parse_well(attrs: Mapping[str, Any], where: str) -> tuple[WellMeta, str | None]:
    """Parse a well group's attributes into ``(WellMeta, version)``."""
    block, version = find_block(attrs, "well")
    if block is None:
        raise MetadataError(f"well {where}: no OME 'well' metadata")
    images, acquisitions = [], []
    for raw in _list(_dict(block, f"well {where}").get("images"), f"well {where}: images"):
        entry = _dict(raw, f"well {where}: images[]")
        images.append(_safe_path(entry.get("path"), f"well {where}: image path", segments=1))
        acq = entry.get("acquisition")
        acquisitions.append(acq if isinstance(acq, int) and not isinstance(acq, bool) else None)
    if not images:
        raise MetadataError(f"well {where}: the 'images' list is empty")
    return WellMeta(tuple(images), tuple(acquisitions)), version


# -- image ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Axis:
    """One ``multiscales.axes`` entry."""

    name: str
    type: str | None = None
    unit: str | None = None

    def to_json(self) -> dict[str, str]:
        """Return the JSON axis."""
        out = {"name": self.name}
        if self.type is not None:
            out["type"] = self.type
        if self.unit is not None:
            out["unit"] = self.unit
        return out


@dataclass(frozen=True)
class Dataset:
    """One resolution level: its path and its scale per axis."""

    path: str
    scale: tuple[float, ...]
    translation: tuple[float, ...] | None = None

    def to_json(self) -> dict[str, Any]:
        """Return the JSON dataset."""
        transforms: list[dict[str, Any]] = [{"type": "scale", "scale": list(self.scale)}]
        if self.translation is not None:
            transforms.append({"type": "translation", "translation": list(self.translation)})
        return {"path": self.path, "coordinateTransformations": transforms}


@dataclass(frozen=True)
class Multiscale:
    """One ``multiscales`` entry: axes and resolution levels, high to low."""

    axes: tuple[Axis, ...]
    datasets: tuple[Dataset, ...]
    name: str | None = None

    def to_json(self) -> dict[str, Any]:
        """Return the JSON multiscale."""
        out: dict[str, Any] = {
            "axes": [a.to_json() for a in self.axes],
            "datasets": [d.to_json() for d in self.datasets],
        }
        if self.name is not None:
            out["name"] = self.name
        return out


@dataclass(frozen=True)
class Channel:
    """Display settings of one channel (the ``omero`` block)."""

    label: str
    color: str = "FFFFFF"
    window: tuple[float, float, float, float] | None = None  # min, max, start, end
    active: bool = True

    def __post_init__(self) -> None:
        if not isinstance(self.label, str):
            raise MetadataError(f"channel label {self.label!r} is not a string")
        color = self.color.lstrip("#") if isinstance(self.color, str) else self.color
        if not isinstance(color, str) or not _COLOR.match(color):
            raise MetadataError(f"channel {self.label!r}: color {self.color!r} is not 6 hex digits")
        object.__setattr__(self, "color", color.upper())

    def to_json(self) -> dict[str, Any]:
        """Return the JSON ``omero.channels`` entry."""
        out: dict[str, Any] = {"label": self.label, "color": self.color, "active": self.active}
        if self.window is not None:
            lo, hi, start, end = self.window
            out["window"] = {"min": lo, "max": hi, "start": start, "end": end}
        return out


@dataclass(frozen=True)
class ImageMeta:
    """An image group's metadata: its multiscale and its channels."""

    multiscale: Multiscale
    channels: tuple[Channel, ...] = field(default=())

    def blocks(self) -> dict[str, Any]:
        """Return the OME blocks to pass to :func:`ome_attrs`."""
        blocks: dict[str, Any] = {"multiscales": [self.multiscale.to_json()]}
        if self.channels:
            blocks["omero"] = {"channels": [c.to_json() for c in self.channels]}
        return blocks


def parse_image(attrs: Mapping[str, Any], where: str) -> tuple[ImageMeta, str | None]:
    """Parse an image group's attributes into ``(ImageMeta, version)`` (first multiscale)."""
    block, version = find_block(attrs, "multiscales")
    multis = _list(block, f"image {where}: multiscales") if block is not None else []
    if not multis:
        raise MetadataError(f"image {where}: no OME 'multiscales' metadata")
    ms = _dict(multis[0], f"image {where}: multiscales[0]")
    axes = tuple(_parse_axis(a, where) for a in _list(ms.get("axes"), f"image {where}: axes"))
    if not 2 <= len(axes) <= 6:
        raise MetadataError(f"image {where}: {len(axes)} axes; 2 to 5 (6 with fields) expected")
    datasets = []
    for raw in _list(ms.get("datasets"), f"image {where}: datasets"):
        entry = _dict(raw, f"image {where}: datasets[]")
        path = _safe_path(entry.get("path"), f"image {where}: dataset path", segments=1)
        datasets.append(_parse_dataset(path, entry, len(axes), where))
    if not datasets:
        raise MetadataError(f"image {where}: the 'datasets' list is empty")
    name = ms.get("name")
    omero, _ = find_block(attrs, "omero")
    channels = _parse_channels(omero) if isinstance(omero, dict) else ()
    multiscale = Multiscale(axes, tuple(datasets), name if isinstance(name, str) else None)
    return ImageMeta(multiscale, channels), version


def _parse_axis(raw: object, where: str) -> Axis:
    if isinstance(raw, str):  # 0.3 plates list bare names
        return Axis(raw, {"t": "time", "c": "channel"}.get(raw, "space" if raw in "zyx" else None))
    entry = _dict(raw, f"image {where}: axis")
    name, kind, unit = entry.get("name"), entry.get("type"), entry.get("unit")
    if not isinstance(name, str) or not name:
        raise MetadataError(f"image {where}: axis name {name!r} is not a string")
    return Axis(
        name, kind if isinstance(kind, str) else None, unit if isinstance(unit, str) else None
    )


def _parse_dataset(path: str, entry: dict[str, Any], n_axes: int, where: str) -> Dataset:
    scale: tuple[float, ...] = (1.0,) * n_axes
    translation = None
    for raw in entry.get("coordinateTransformations", []) or []:
        transform = _dict(raw, f"image {where}: coordinateTransformations[]")
        for key in ("scale", "translation"):
            if transform.get("type") != key:
                continue
            values = _list(transform.get(key), f"image {where}: {key}")
            if len(values) != n_axes or not all(
                isinstance(v, int | float) and not isinstance(v, bool) for v in values
            ):
                raise MetadataError(
                    f"image {where}: dataset {path!r} {key} {values!r} does not have "
                    f"{n_axes} numbers"
                )
            if key == "scale":
                scale = tuple(float(v) for v in values)
            else:
                translation = tuple(float(v) for v in values)
    return Dataset(path, scale, translation)


def _parse_channels(omero: dict[str, Any]) -> tuple[Channel, ...]:
    channels = []
    for i, raw in enumerate(omero.get("channels", []) or []):
        if not isinstance(raw, dict):
            continue
        label = raw.get("label")
        color = raw.get("color")
        window = raw.get("window")
        parsed_window: tuple[float, float, float, float] | None = None
        if isinstance(window, dict):
            values = [window.get(k) for k in ("min", "max", "start", "end")]
            if all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
                lo, hi, start, end = (float(v) for v in values)  # type: ignore[arg-type]
                parsed_window = (lo, hi, start, end)
        fallback = DEFAULT_COLORS[i % len(DEFAULT_COLORS)]
        try:
            channel = Channel(
                label if isinstance(label, str) else f"Channel {i}",
                color if isinstance(color, str) else fallback,
                parsed_window,
                bool(raw.get("active", True)),
            )
        except MetadataError:  # a malformed colour: keep the channel, default its colour
            channel = Channel(
                label if isinstance(label, str) else f"Channel {i}", fallback, parsed_window
            )
        channels.append(channel)
    return tuple(channels)


def default_channels(n: int, labels: Sequence[str] | None = None) -> tuple[Channel, ...]:
    """Channels named ``labels`` (or ``Channel 0``...) coloured from the default palette."""
    if labels is not None and len(labels) != n:
        raise MetadataError(f"{len(labels)} channel names given for {n} channels: {list(labels)}")
    names = list(labels) if labels is not None else [f"Channel {i}" for i in range(n)]
    return tuple(
        Channel(name, DEFAULT_COLORS[i % len(DEFAULT_COLORS)]) for i, name in enumerate(names)
    )
