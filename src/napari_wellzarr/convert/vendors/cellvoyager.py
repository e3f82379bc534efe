"""Yokogawa CellVoyager exports (CV7000/CV8000/CQ1/CQ3000): ``.mlf`` + ``.mrf`` + TIFFs."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import TYPE_CHECKING, Any, Final

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

__all__ = ["NAME", "Measurement", "detect", "find_measurement", "read_measurement", "scan"]

NAME: Final = "cellvoyager"
DATA_FILE: Final = "MeasurementData.mlf"
DETAIL_FILE: Final = "MeasurementDetail.mrf"
NAMESPACE: Final = "http://www.yokogawa.co.jp/BTS/BTSSchema/1.0"
MAX_ROWS, MAX_COLUMNS = 32, 48
_FILTER = re.compile(r"(\d{3,4})(?:\s*/\s*\d+)?")  # BP445/45 -> 445
_REFERENCES: Final = {"SC_": "shading-correction reference", "DC_": "dark-current reference"}
_SHOW: Final = 5


@dataclass(frozen=True)
class Measurement:
    """What a CellVoyager measurement says: the images it lists and the metadata."""

    folder: SourcePath
    images: tuple[ListedImage, ...]
    channel_names: tuple[str, ...]
    instrument: InstrumentMetadata
    #: Autofocus failures (``Type="ERR"`` records), as the instrument wrote them.
    errors: tuple[str, ...]
    #: ``(well, field, t) -> why`` for the fields an ERR record says have no image.
    gaps: Mapping[tuple[str, int, int], str]
    #: ``(.mrf name, VerticalPixels, HorizontalPixels)`` of the first channel.
    index_shape: tuple[str, float, float] | None = None


def find_measurement(folder: SourcePath) -> SourcePath | None:
    """The folder holding ``MeasurementData.mlf``: ``folder`` or its only sub-folder with one."""
    if (folder / DATA_FILE).is_file():
        return folder
    try:
        found = [d for d in folder.iterdir() if d.is_dir() and (d / DATA_FILE).is_file()]
    except OSError:
        return None
    return found[0] if len(found) == 1 else None


def detect(folder: SourcePath) -> bool:
    """Whether ``folder`` is a CellVoyager export (holds ``MeasurementData.mlf``; no parsing)."""
    return folder.is_dir() and find_measurement(folder) is not None


def scan(
    folder: SourcePath, *, progress: Callable[[int, int], None] | None = None
) -> ConversionPlan:
    """Scan a CellVoyager export into a conversion plan with its instrument metadata.

    Autofocus failures (``ERR`` records) are reported in the plan's instrument warnings;
    shading and dark references (``SC_*``, ``DC_*``) in its skipped files.

    Raises
    ------
    MetadataError
        No ``MeasurementData.mlf``, a malformed or hostile one, no image record, two
        records for one plane, or none of the listed files exists.
    WellDataError
        A TIFF cannot be read or the planes differ in shape or dtype.
    """
    measurement = read_measurement(folder)
    files, other = image_files(measurement.folder)
    listed = {im.path for im in measurement.images}
    skipped = [SkippedFile(f, _skip_reason(f)) for f in files if f not in listed]
    return build_plan(
        measurement.folder,
        measurement.folder / DATA_FILE,
        measurement.images,
        measurement.channel_names,
        measurement.instrument,
        skipped,
        on_disk=files,
        other_files=other,
        progress=progress,
        gaps=measurement.gaps,
        index_shape=measurement.index_shape,
    )


def read_measurement(folder: SourcePath) -> Measurement:
    """Read a CellVoyager export's ``.mlf``, ``.mrf`` and ``.mes`` without its TIFFs.

    Raises
    ------
    MetadataError
        As :func:`scan`, for the metadata alone.
    """
    folder = as_source(folder)
    place = find_measurement(folder)
    if place is None:
        raise MetadataError(f"no {DATA_FILE} in {str(folder)!r} (or one sub-folder of it)")
    mlf = place / DATA_FILE
    root = parse_xml(mlf)
    warnings: list[str] = []
    if local_name(root.tag) != "MeasurementData":
        raise MetadataError(
            f"{str(mlf)!r} is not a CellVoyager measurement: its root element is "
            f"<{local_name(root.tag)}>, not <MeasurementData>"
        )
    ns = namespace(root.tag)
    if ns != NAMESPACE:
        warnings.append(f"{DATA_FILE} has the namespace {ns!r}, not {NAMESPACE!r}: read anyway")
    images, raw, errors, failed = _records(mlf, root, ns)
    detail = _detail(place, warnings)
    settings = _settings(place, detail.get("MeasurementSettingFileName"), warnings)
    channels = _channel_ids(raw)
    names, infos = _channels(channels, detail, settings)
    unused = sorted(set(detail.get("channels", {})) - {ch for _, ch in channels}, key=int)
    if unused:
        warnings.append(
            f"{DETAIL_FILE} lists channel(s) {', '.join('Ch' + c for c in unused)} that "
            "have no image (not acquired)"
        )
    projections = sorted({r["ZImageProcessing"] for r in raw if r.get("ZImageProcessing")})
    if projections:
        warnings.append(
            f"the images are z projections made by the instrument ({', '.join(projections)}; "
            "ZImageProcessing in the .mlf): each is stored as the well's single z plane"
        )
    if errors:
        warnings.extend(f"autofocus failure (ERR record, no image): {e}" for e in errors)
    status = detail.get("Status")
    if status not in (None, "", "0"):
        warnings.append(f"{DETAIL_FILE} reports Status={status} (the measurement had errors)")
    images = [
        ListedImage(im.well, im.key._replace(c=channels[(r["ActionIndex"], r["Ch"])]), im.path)
        for im, r in zip(images, raw, strict=True)
    ]
    instrument = InstrumentMetadata(
        vendor=NAME,
        plate_name=detail.get("PlateName") or detail.get("Title") or None,
        plate_format=_plate_format(detail, images, warnings),
        channels=infos,
        pixel_size_um=_pixel_size(detail, channels, warnings),
        z_step_um=median_step(
            ((im.well, im.key.field, im.key.c, im.key.t), im.key.z, to_float(r.get("Z")))
            for r, im in zip(raw, images, strict=True)
        ),
        time_interval_s=median_interval(
            (im.key.t, r.get("Time", "")) for r, im in zip(raw, images, strict=True)
        ),
        # a field whose autofocus failed still has its position in the ERR record
        field_positions_um=_positions(
            [*raw, *(a for *_, a in failed)],
            [*images, *(ListedImage(w, PlaneKey(f, 0, 0, t), "") for w, f, t, _ in failed)],
            warnings,
        ),
        warnings=tuple(warnings),
    )
    gaps = _gaps(failed)
    first = min(channels, key=lambda p: channels[p])[1]
    sizes = detail.get("channels", {}).get(first, {})
    y, x = (to_float(sizes.get(k)) for k in ("VerticalPixels", "HorizontalPixels"))
    shape = (DETAIL_FILE, y, x) if y is not None and x is not None else None
    return Measurement(place, tuple(images), names, instrument, tuple(errors), gaps, shape)


def _skip_reason(path: str) -> str:
    name = PurePosixPath(path).name
    for prefix, reason in _REFERENCES.items():
        if name.startswith(prefix):
            return reason
    return f"not listed in {DATA_FILE}"


def _attrs(element: Element, names: dict[str, str] | None = None) -> dict[str, str]:
    """``{local name: value}`` of ``element``'s attributes (``names`` caches local names)."""
    if names is None:
        return {local_name(k): v.strip() for k, v in element.attrib.items()}
    out = {}
    for key, value in element.attrib.items():
        name = names.get(key)
        if name is None:
            name = names[key] = local_name(key)
        out[name] = value.strip()
    return out


def _records(
    mlf: SourcePath, root: Element, ns: str
) -> tuple[
    list[ListedImage], list[dict[str, str]], list[str], list[tuple[Well, int, int, dict[str, str]]]
]:
    """Image records, their attributes, ERR texts and the fields ERR records name.

    The channel index of the records is still 0: it is set from the channel list.
    """
    images: list[ListedImage] = []
    raw: list[dict[str, str]] = []
    errors: list[str] = []
    failed: list[tuple[Well, int, int, dict[str, str]]] = []
    ids: list[tuple[int, int, int, int, int]] = []
    tag = f"{{{ns}}}MeasurementRecord" if ns else "MeasurementRecord"
    names: dict[str, str] = {}
    for n, record in enumerate(root.iter(tag)):
        a = _attrs(record, names)
        kind = a.get("Type", "IMG")
        if kind == "ERR":
            text = (record.text or "").strip() or "no message"
            errors.append(
                f"{text} (row {a.get('Row', '?')}, column {a.get('Column', '?')}, "
                f"field {a.get('FieldIndex', '?')}, timepoint {a.get('TimePoint', '?')})"
            )
            try:
                where = f"{mlf} ERR record {n + 1}"
                failed.append(
                    (
                        Well(
                            to_int(a.get("Row"), "Row", where, 1, MAX_ROWS) - 1,
                            to_int(a.get("Column"), "Column", where, 1, MAX_COLUMNS) - 1,
                        ),
                        to_int(a.get("FieldIndex"), "FieldIndex", where),
                        to_int(a.get("TimePoint") or a.get("TimePointIndex"), "TimePoint", where),
                        a,
                    )
                )
            except MetadataError:
                pass  # the failure is reported by its text; it just names no plane
            continue
        if kind != "IMG":
            continue
        where = f"{mlf} record {n + 1}"
        name = (record.text or "").strip().replace("\\", "/").rstrip("/").rpartition("/")[2]
        if not name or name in {".", ".."}:
            raise MetadataError(f"{where} names no image file")
        a.setdefault("ActionIndex", "1")
        a["Ch"] = str(to_int(a.get("Ch"), "Ch", where, 1, 99))
        a["ActionIndex"] = str(to_int(a.get("ActionIndex"), "ActionIndex", where, 0, 9999))
        row = to_int(a.get("Row"), "Row", where, 1, MAX_ROWS)
        col = to_int(a.get("Column"), "Column", where, 1, MAX_COLUMNS)
        ids.append(
            (
                row,
                col,
                to_int(a.get("FieldIndex"), "FieldIndex", where),
                to_int(a.get("ZIndex", "1"), "ZIndex", where),
                to_int(a.get("TimePoint") or a.get("TimePointIndex"), "TimePoint", where),
            )
        )
        raw.append(a)
        images.append(ListedImage(Well(row - 1, col - 1), PlaneKey(0, 0, 0), name))
    if not images:
        raise MetadataError(f"{str(mlf)!r} lists no image (no MeasurementRecord of type IMG)")
    ranks = [dense_rank(i[k] for i in ids) for k in (2, 3, 4)]
    images = [
        ListedImage(im.well, PlaneKey(ranks[0][f], 0, ranks[1][z], ranks[2][t]), im.path)
        for im, (_, _, f, z, t) in zip(images, ids, strict=True)
    ]
    # an ERR field/timepoint is placed where the IMG records put the same IDs
    failed = [
        (w, ranks[0][f], ranks[2][t], a) for w, f, t, a in failed if f in ranks[0] and t in ranks[2]
    ]
    return images, raw, errors, failed


def _gaps(failed: list[tuple[Well, int, int, dict[str, str]]]) -> dict[tuple[str, int, int], str]:
    return {(w.label, f, t): "autofocus failure (ERR record)" for w, f, t, _ in failed}


def _channel_ids(raw: list[dict[str, str]]) -> dict[tuple[str, str], int]:
    """``(ActionIndex, Ch) -> channel index``: by Ch, unless one Ch is in several actions."""
    pairs = sorted({(r["ActionIndex"], r["Ch"]) for r in raw}, key=lambda p: (int(p[0]), int(p[1])))
    chs = [ch for _, ch in pairs]
    if len(set(chs)) == len(chs):  # each channel acquired by one action: channel order
        pairs.sort(key=lambda p: int(p[1]))
    return {pair: i for i, pair in enumerate(pairs)}


def _detail(place: SourcePath, warnings: list[str]) -> dict[str, Any]:
    """The ``.mrf``: root attributes, plate name and ``channels {Ch: attributes}``."""
    path = place / DETAIL_FILE
    if not path.is_file():
        warnings.append(f"no {DETAIL_FILE}: pixel size and plate format unknown")
        return {}
    try:
        root = parse_xml(path)
    except MetadataError as err:
        warnings.append(f"{DETAIL_FILE} ignored: {err}")
        return {}
    out: dict[str, Any] = dict(_attrs(root))
    channels: dict[str, dict[str, str]] = {}
    for child in root:
        a = _attrs(child)
        if local_name(child.tag) == "MeasurementChannel" and a.get("Ch"):
            channels.setdefault(a["Ch"], a)
        elif local_name(child.tag) == "MeasurementSamplePlate" and a.get("Name"):
            out["PlateName"] = a["Name"]
    out["channels"] = channels
    return out


def _settings(
    place: SourcePath, name: str | None, warnings: list[str]
) -> dict[str, dict[str, str]]:
    """The ``.mes`` channel list: ``{Ch: attributes}`` (names, filters, colours)."""
    if not name:
        return {}
    path = place / PurePosixPath(name.replace("\\", "/")).name
    if not path.is_file():
        return {}
    try:
        root = parse_xml(path)
    except MetadataError as err:
        warnings.append(f"measurement settings ignored: {err}")
        return {}
    out: dict[str, dict[str, str]] = {}
    for element in root.iter():
        if local_name(element.tag) == "Channel":
            a = _attrs(element)
            if a.get("Ch"):
                out.setdefault(a["Ch"], a)
    return out


def _channels(
    channels: Mapping[tuple[str, str], int],
    detail: Mapping[str, Any],
    settings: Mapping[str, Mapping[str, str]],
) -> tuple[tuple[str, ...], tuple[ChannelInfo, ...]]:
    shared = len({ch for _, ch in channels}) < len(channels)
    names: list[str] = []
    infos: list[ChannelInfo] = []
    for (action, ch), _ in sorted(channels.items(), key=lambda kv: kv[1]):
        s = settings.get(ch, {})
        target, acquisition = s.get("Target", ""), s.get("Acquisition", "")
        name = s.get("Fluorophore") or (
            f"{target} {acquisition}".strip() if target.isdigit() else target
        )
        name = name or f"Ch{ch}"
        if shared:
            name = f"{name} (A{action})"
        emission = None
        found = _FILTER.search(acquisition)
        if found and s.get("Kind", "").endswith("Fluorescence"):
            emission = float(found.group(1))
        color = s.get("Color", "").lstrip("#")
        color = color[-6:].upper() if re.fullmatch(r"[0-9A-Fa-f]{6}|[0-9A-Fa-f]{8}", color) else ""
        names.append(name)
        infos.append(
            ChannelInfo(
                name=name,
                excitation_nm=float(target) if target.isdigit() else None,
                emission_nm=emission,
                color=color or wavelength_color(emission),
            )
        )
    return tuple(names), tuple(infos)


def _plate_format(
    detail: Mapping[str, Any], images: list[ListedImage], warnings: list[str]
) -> tuple[int, int] | None:
    rows, cols = detail.get("RowCount"), detail.get("ColumnCount")
    if rows is None or cols is None:
        return None
    need = (max(im.well.row for im in images) + 1, max(im.well.column for im in images) + 1)
    try:
        fmt = (int(rows), int(cols))
    except ValueError:
        fmt = (0, 0)
    if not (need[0] <= fmt[0] <= MAX_ROWS and need[1] <= fmt[1] <= MAX_COLUMNS):
        warnings.append(
            f"{DETAIL_FILE} gives a plate of {rows}x{cols} wells, which cannot hold its "
            "wells: ignored"
        )
        return None
    return fmt


def _pixel_size(
    detail: Mapping[str, Any], channels: Mapping[tuple[str, str], int], warnings: list[str]
) -> tuple[float, float] | None:
    known: Mapping[str, Mapping[str, str]] = detail.get("channels", {})
    sizes: list[tuple[float, float]] = []
    for _, ch in sorted(channels, key=lambda p: channels[p]):
        a = known.get(ch, {})
        x = to_float(a.get("HorizontalPixelDimension"))
        y = to_float(a.get("VerticalPixelDimension")) or x
        if x is None or y is None:
            continue
        if not (1e-3 <= x <= 1e3 and 1e-3 <= y <= 1e3):
            warnings.append(f"{DETAIL_FILE}: Ch{ch} pixel size {x} x {y} um is implausible")
            continue
        sizes.append((y, x))
    if not sizes:
        return None
    if len(set(sizes)) > 1:
        warnings.append(
            f"{DETAIL_FILE}: the channels have different pixel sizes {sorted(set(sizes))}; "
            "the first channel's is used"
        )
    return sizes[0]


def _positions(
    raw: list[dict[str, str]], images: list[ListedImage], warnings: list[str]
) -> dict[tuple[str, int], tuple[float, float]]:
    """``(well, field) -> (y, x)`` um from the records' X/Y (um from the well centre, y up)."""
    out: dict[tuple[str, int], tuple[float, float]] = {}
    bad = 0
    for a, im in zip(raw, images, strict=True):
        key = (im.well.label, im.key.field)
        if key in out:
            continue
        x, y = to_float(a.get("X")), to_float(a.get("Y"))
        if x is None or y is None:
            continue
        if abs(x) > 2e5 or abs(y) > 2e5:
            bad += 1
            continue
        out[key] = (0.0 - y, x)
    if bad:
        warnings.append(f"{DATA_FILE}: {bad} field position(s) larger than a plate: ignored")
    return out
