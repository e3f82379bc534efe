"""Opera Phenix / Operetta (Harmony) exports: ``Index.idx.xml`` / ``Index.xml`` + TIFFs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from napari_wellzarr.convert.instrument import (
    ChannelInfo,
    InstrumentMetadata,
    SkippedFile,
    wavelength_color,
)
from napari_wellzarr.convert.srcfs import SourcePath, as_source
from napari_wellzarr.convert.vendors.listing import (
    ListedImage,
    build_plan,
    dense_rank,
    image_files,
    median_interval,
    median_step,
)
from napari_wellzarr.convert.vendors.xmlread import (
    local_name,
    namespace,
    parse_xml,
    read_records,
    to_float,
    to_int,
)
from napari_wellzarr.errors import MetadataError
from napari_wellzarr.storage.axes import PlaneKey
from napari_wellzarr.storage.geometry import Well

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from xml.etree.ElementTree import Element

    from napari_wellzarr.convert.plan import ConversionPlan

__all__ = ["NAME", "HarmonyIndex", "detect", "find_index", "read_index", "scan"]

NAME: Final = "harmony"
INDEX_NAMES: Final = ("index.idx.xml", "index.xml")
_SPELLED: Final = ("Index.idx.xml", "Index.xml")  # as Harmony writes them
NAMESPACE_PREFIX: Final = "http://www.perkinelmer.com/PEHH/Harmony"
#: Largest plate a Harmony index may describe (1536 wells) and image side accepted.
MAX_ROWS, MAX_COLUMNS, MAX_SIDE = 32, 48, 1 << 16
_REQUIRED: Final = ("URL", "Row", "Col", "FieldID", "PlaneID", "TimepointID", "ChannelID")
#: The fields of an ``<Image>`` that are read (the others are skipped while parsing).
_KEEP: Final = frozenset(
    {
        *_REQUIRED,
        "id",
        "ChannelName",
        "ImageResolutionX",
        "ImageResolutionY",
        "ImageSizeX",
        "ImageSizeY",
        "MainExcitationWavelength",
        "MainEmissionWavelength",
        "PositionX",
        "PositionY",
        "PositionZ",
        "AbsTime",
    }
)
_SHOW: Final = 5


@dataclass(frozen=True)
class HarmonyIndex:
    """What a Harmony index says: the images it lists and the instrument metadata."""

    index: SourcePath
    root: SourcePath  # the folder the plan's relative paths start from (the index's folder)
    images: tuple[ListedImage, ...]
    channel_names: tuple[str, ...]
    instrument: InstrumentMetadata
    #: ``(index name, ImageSizeY, ImageSizeX)`` of the first channel, when given.
    index_shape: tuple[str, float, float] | None = None


def find_index(folder: SourcePath) -> SourcePath | None:
    """The index file of an export: in ``folder`` or its ``Images`` sub-folder."""
    for place in (folder, *_children(folder, "images")):
        for spelled in _SPELLED:  # cheap: an Images folder lists every image file
            if (place / spelled).is_file():
                return place / spelled
        for name in INDEX_NAMES:
            for found in _children(place, name):
                if found.is_file():
                    return found
    return None


def detect(folder: SourcePath) -> bool:
    """Whether ``folder`` is a Harmony export (holds an index, cheap: no parsing)."""
    return folder.is_dir() and find_index(folder) is not None


def scan(
    folder: SourcePath, *, progress: Callable[[int, int], None] | None = None
) -> ConversionPlan:
    """Scan a Harmony export into a conversion plan with its instrument metadata.

    Parameters
    ----------
    folder
        The export folder (holding ``Images/``) or its ``Images`` folder.
    progress
        Called as ``progress(done, total)`` while TIFF headers are read.

    Raises
    ------
    MetadataError
        No index, or an index that is malformed, hostile (entities), lists no image,
        lists the same plane twice or none of whose files exists (named in the message).
    WellDataError
        A TIFF cannot be read or the planes differ in shape or dtype.
    """
    parsed = read_index(folder)
    files, other = image_files(parsed.root)
    listed = {im.path for im in parsed.images}
    skipped = [
        SkippedFile(f, f"not listed in {parsed.index.name}") for f in files if f not in listed
    ]
    return build_plan(
        parsed.root,
        parsed.index,
        parsed.images,
        parsed.channel_names,
        parsed.instrument,
        skipped,
        on_disk=files,
        other_files=other,
        progress=progress,
        index_shape=parsed.index_shape,
    )


def read_index(folder: SourcePath) -> HarmonyIndex:
    """Read a Harmony export's index (and ``Assaylayout``) without touching its TIFFs.

    Raises
    ------
    MetadataError
        As :func:`scan`, for the index alone.
    """
    folder = as_source(folder)
    index = find_index(folder)
    if index is None:
        raise MetadataError(
            f"no Harmony index (Index.idx.xml or Index.xml) in {str(folder)!r} or its Images folder"
        )
    root, records = read_records(index, "Image", _KEEP)
    ns = namespace(root.tag)
    warnings: list[str] = []
    if local_name(root.tag) != "EvaluationInputData":
        raise MetadataError(
            f"{str(index)!r} is not a Harmony index: its root element is "
            f"<{local_name(root.tag)}>, not <EvaluationInputData>"
        )
    if not ns.startswith(NAMESPACE_PREFIX):
        warnings.append(
            f"{index.name} has the namespace {ns!r}, not a Harmony one ({NAMESPACE_PREFIX}V5, "
            "V6...): read by element names"
        )
    maps = _channel_maps(root, ns)
    raw = [_fields(image, maps) for image in records]
    if not raw:
        raise MetadataError(f"{str(index)!r} lists no image (no <Images><Image> element)")
    images, channels = _images(index, raw)
    plate, plate_format = _plate(root, ns, index, images, warnings)
    instrument = InstrumentMetadata(
        vendor=NAME,
        plate_name=plate,
        plate_format=plate_format,
        channels=tuple(_channel_info(ch) for ch in channels),
        pixel_size_um=_pixel_size(index, channels, warnings),
        z_step_um=median_step(
            ((im.well, im.key.field, im.key.c, im.key.t), im.key.z, _um(r.get("PositionZ")))
            for r, im in zip(raw, images, strict=True)
        ),
        time_interval_s=median_interval(
            (im.key.t, r.get("AbsTime", "")) for r, im in zip(raw, images, strict=True)
        ),
        field_positions_um=_positions(index, raw, images, warnings),
        conditions=_conditions(index.parent, warnings),
        warnings=tuple(warnings),
    )
    names = tuple(ch.get("ChannelName") or f"ch{i + 1}" for i, ch in enumerate(channels))
    y, x = (to_float(channels[0].get(k)) for k in ("ImageSizeY", "ImageSizeX"))
    shape = (index.name, y, x) if y is not None and x is not None else None
    return HarmonyIndex(index, index.parent, tuple(images), names, instrument, shape)


def _um(metres: str | None) -> float | None:
    value = to_float(metres)
    return None if value is None else value * 1e6


def _children(folder: SourcePath, name: str) -> list[SourcePath]:
    """Entries of ``folder`` called ``name``, ignoring case (sorted)."""
    try:
        return sorted(p for p in folder.iterdir() if p.name.lower() == name)
    except OSError:
        return []


def _all(root: Element, ns: str, parent: str, child: str) -> list[Element]:
    q = f"{{{ns}}}" if ns else ""
    return root.findall(f"{q}{parent}/{q}{child}")


def _text(element: Element) -> dict[str, str]:
    """``{local name: text}`` of an element's children (the first of each name)."""
    # reversed: the first child of a name is written last and wins
    return {
        c.tag[c.tag.rfind("}") + 1 :]: c.text.strip() if c.text else "" for c in reversed(element)
    }


def _channel_maps(root: Element, ns: str) -> dict[str, dict[str, str]]:
    """``ChannelID -> {field: text}`` from the ``Maps`` section (V6/V7 keep channels there)."""
    out: dict[str, dict[str, str]] = {}
    q = f"{{{ns}}}" if ns else ""
    for entry in root.findall(f"{q}Maps/{q}Map/{q}Entry"):
        channel = entry.get("ChannelID")
        if channel is None:
            continue
        fields = out.setdefault(channel.strip(), {})
        for name, text in _text(entry).items():
            fields.setdefault(name, text)
    return out


def _fields(fields: dict[str, str], maps: Mapping[str, Mapping[str, str]]) -> dict[str, str]:
    for name, text in maps.get(fields.get("ChannelID", ""), {}).items():
        fields.setdefault(name, text)  # the image's own value wins
    return fields


def _images(
    index: SourcePath, raw: list[dict[str, str]]
) -> tuple[list[ListedImage], list[dict[str, str]]]:
    """The listed images with 0-based dense coordinates, and one field dict per channel."""
    ids: list[tuple[str, int, int, int, int, int, int]] = []  # name, row, col, f, c, z, t
    for n, fields in enumerate(raw):
        where = f"{index} image {fields.get('id') or n + 1}"
        lacking = [k for k in _REQUIRED if not fields.get(k)]
        if lacking:
            raise MetadataError(f"{where} has no {', '.join(lacking)}")
        url = fields["URL"].replace("\\", "/")
        name = url.rstrip("/").rpartition("/")[2]  # a file name only: never outside the folder
        if not name or name in {".", ".."}:
            raise MetadataError(f"{where}: URL {fields['URL']!r} names no file")
        ids.append(
            (
                name,
                to_int(fields["Row"], "Row", where, 1, MAX_ROWS),
                to_int(fields["Col"], "Col", where, 1, MAX_COLUMNS),
                to_int(fields["FieldID"], "FieldID", where),
                to_int(fields["ChannelID"], "ChannelID", where),
                to_int(fields["PlaneID"], "PlaneID", where),
                to_int(fields["TimepointID"], "TimepointID", where),
            )
        )
    # IDs count from 1 (timepoints from 0 in V5): the plate's axes are their ranks
    ranks = [dense_rank(int(i[k]) for i in ids) for k in range(3, 7)]
    images = [
        ListedImage(
            Well(row - 1, col - 1),
            PlaneKey(ranks[0][f], ranks[1][c], ranks[2][p], ranks[3][t]),
            name,
        )
        for name, row, col, f, c, p, t in ids
    ]
    channels: dict[int, dict[str, str]] = {}
    for (_, _, _, _, c, _, _), fields in zip(ids, raw, strict=True):
        channels.setdefault(ranks[1][c], fields)
    return images, [channels[i] for i in range(len(channels))]


def _plate(
    root: Element, ns: str, index: SourcePath, images: list[ListedImage], warnings: list[str]
) -> tuple[str | None, tuple[int, int] | None]:
    plates = _all(root, ns, "Plates", "Plate")
    if not plates:
        return None, None
    fields = _text(plates[0])
    name = fields.get("Name") or fields.get("PlateID") or None
    rows = to_float(fields.get("PlateRows"))
    cols = to_float(fields.get("PlateColumns"))
    if rows is None or cols is None:
        return name, None
    fmt = (int(rows), int(cols))
    need = (max(im.well.row for im in images) + 1, max(im.well.column for im in images) + 1)
    whole = rows == fmt[0] and cols == fmt[1]
    if not (whole and need[0] <= fmt[0] <= MAX_ROWS and need[1] <= fmt[1] <= MAX_COLUMNS):
        warnings.append(
            f"{index.name} gives a plate of {fields.get('PlateRows')}x"
            f"{fields.get('PlateColumns')} wells, which cannot hold its wells: ignored"
        )
        return name, None
    return name, fmt


def _channel_info(fields: Mapping[str, str]) -> ChannelInfo:
    def nm(key: str) -> float | None:
        value = to_float(fields.get(key))
        return value if value is not None and value > 0 else None

    emission = nm("MainEmissionWavelength")
    return ChannelInfo(
        name=fields.get("ChannelName") or "",
        excitation_nm=nm("MainExcitationWavelength"),
        emission_nm=emission,
        color=wavelength_color(emission),
    )


def _pixel_size(
    index: SourcePath, channels: list[dict[str, str]], warnings: list[str]
) -> tuple[float, float] | None:
    sizes: list[tuple[float, float]] = []
    for fields in channels:
        y = to_float(fields.get("ImageResolutionY") or fields.get("ImageResolutionX"))
        x = to_float(fields.get("ImageResolutionX"))
        if y is None or x is None:
            continue
        if not (1e-9 <= y <= 1e-3 and 1e-9 <= x <= 1e-3):  # 1 nm .. 1 mm per pixel
            warnings.append(
                f"{index.name}: ImageResolution {x!r} x {y!r} m is not a plausible pixel "
                "size: ignored"
            )
            continue
        sizes.append((y * 1e6, x * 1e6))
    if not sizes:
        return None
    if len({(round(y, 9), round(x, 9)) for y, x in sizes}) > 1:
        warnings.append(
            f"{index.name}: the channels have different pixel sizes {sorted(set(sizes))}; "
            "the first channel's is used"
        )
    return sizes[0]


def _positions(
    index: SourcePath, raw: list[dict[str, str]], images: list[ListedImage], warnings: list[str]
) -> dict[tuple[str, int], tuple[float, float]]:
    """``(well, field) -> (y, x)`` um from PositionX/Y (metres, y up): field centres."""
    out: dict[tuple[str, int], tuple[float, float]] = {}
    bad = 0
    for fields, im in zip(raw, images, strict=True):
        key = (im.well.label, im.key.field)
        if key in out:
            continue
        x, y = to_float(fields.get("PositionX")), to_float(fields.get("PositionY"))
        if x is None or y is None:
            continue
        if abs(x) > 0.2 or abs(y) > 0.2:  # 20 cm: larger than any plate
            bad += 1
            continue
        # 0.0 - y: rows grow down, the stage's y up; no -0.0 for a centred field
        out[key] = (round(0.0 - y * 1e6, 6), round(x * 1e6, 6))
    if bad:
        warnings.append(f"{index.name}: {bad} field position(s) larger than a plate: ignored")
    return out


def _conditions(images_dir: SourcePath, warnings: list[str]) -> dict[str, dict[str, str]]:
    """Per-well values of every ``Assaylayout/*.xml`` layer (empty values left out)."""
    out: dict[str, dict[str, str]] = {}
    for base in (images_dir.parent, images_dir):
        for layout_dir in _children(base, "assaylayout"):
            found: list[SourcePath] = list(layout_dir.glob("*.xml"))
            for path in sorted(found, key=str):
                try:
                    root = parse_xml(path)
                except MetadataError as err:
                    warnings.append(f"assay layout ignored: {err}")
                    continue
                _read_layout(root, path, out, warnings)
        if out:
            break
    return out


def _read_layout(
    root: Element, path: SourcePath, out: dict[str, dict[str, str]], warnings: list[str]
) -> None:
    ns = namespace(root.tag)
    q = f"{{{ns}}}" if ns else ""
    for layer in root.findall(f"{q}Layer"):
        name = (layer.findtext(f"{q}Name") or "").strip() or path.stem
        for well in layer.findall(f"{q}Well"):
            fields = _text(well)
            value = fields.get("Value", "")
            if not value:
                continue
            try:
                where = f"{path.name} layer {name!r}"
                row = to_int(fields.get("Row"), "Row", where, 1, MAX_ROWS)
                col = to_int(fields.get("Col"), "Col", where, 1, MAX_COLUMNS)
            except MetadataError as err:
                warnings.append(f"assay layout well ignored: {err}")
                continue
            out.setdefault(Well(row - 1, col - 1).label, {})[name] = value
