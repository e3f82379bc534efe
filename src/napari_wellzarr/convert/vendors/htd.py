"""Reading a MetaXpress ``.HTD`` plate file and the MetaSeries tags of its TIFFs."""

from __future__ import annotations

import html
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final

from napari_wellzarr.errors import MetadataError

if TYPE_CHECKING:
    from collections.abc import Iterable

    from napari_wellzarr.convert.srcfs import SourcePath

__all__ = ["MAX_HTD_BYTES", "METASERIES_KEYS", "HtdInfo", "parse_metaseries", "read_htd"]

#: A real ``.HTD`` is a few kB; a larger file is not one.
MAX_HTD_BYTES: Final = 1 << 20
_MAX_WELLS_SIDE: Final = (32, 48)  # rows, columns of the largest plate (1536 wells)
_LINE: Final = re.compile(r'^\s*"([^"]{1,64})"\s*(?:,\s*(.*?))?\s*$')
#: The MetaSeries ``PlaneInfo`` properties the MetaXpress source reads.
METASERIES_KEYS: Final = (
    "Z Projection Method",
    "Z Step",
    "acquisition-time-local",
    "z-position",
    "_IllumSetting_",
    "image-name",
    "wavelength",
    "spatial-calibration-x",
    "spatial-calibration-y",
    "spatial-calibration-units",
    "stage-position-x",
    "stage-position-y",
    "OffsetFromWellCenterUmX",
    "OffsetFromWellCenterUmY",
)


@dataclass(frozen=True)
class HtdInfo:
    """What an ``.HTD`` says (``None`` where it says nothing usable)."""

    path: str
    description: str | None = None
    plate_format: tuple[int, int] | None = None
    wave_names: dict[int, str] = field(default_factory=dict)  # wave number (1-based) -> name
    z_steps: int | None = None
    timepoints: int | None = None
    warnings: tuple[str, ...] = ()


def read_htd(path: SourcePath, shown: str) -> HtdInfo:
    """Parse an ``.HTD`` (``"Key", value`` lines); ``shown`` names it in messages.

    Non-UTF-8 text is read as Latin-1, a truncated file (no ``EndFile``) and absurd
    values give warnings; a file that is not an ``.HTD`` at all raises
    :class:`MetadataError` naming it.
    """
    size = path.stat().st_size
    if size > MAX_HTD_BYTES:
        raise MetadataError(f"{shown} is {size} bytes; an .HTD is a few kB: not an .HTD file")
    raw = path.read_bytes()
    warnings: list[str] = []
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        text = raw.decode("latin-1")  # MetaXpress writes 0x82 0x81 separators
    values: dict[str, str] = {}
    ended = False
    for line in text.splitlines():
        match = _LINE.match(line)
        if match is None:
            continue
        key, value = match.group(1), (match.group(2) or "")
        if key == "EndFile":
            ended = True
            break
        values.setdefault(key, value.strip())
    if "HTSInfoFile" not in values and not values.get("NWavelengths"):
        raise MetadataError(f"{shown} is not a MetaXpress .HTD file (no HTSInfoFile line)")
    if not ended:
        warnings.append(f"{shown} is truncated (no EndFile line): read what it holds")
    plate_format = None
    rows, columns = (
        _count(values, "YWells", shown, warnings),
        _count(values, "XWells", shown, warnings),
    )
    if rows and columns:
        if rows <= _MAX_WELLS_SIDE[0] and columns <= _MAX_WELLS_SIDE[1]:
            plate_format = (rows, columns)
        else:
            warnings.append(
                f"{shown}: a plate of {rows}x{columns} wells is not a real plate; "
                "the plate format is taken from the wells found"
            )
    waves: dict[int, str] = {}
    n_waves = _count(values, "NWavelengths", shown, warnings) or 0
    for n in range(1, min(n_waves, 64) + 1):
        name = _string(values.get(f"WaveName{n}", ""))
        if name:
            waves[n] = name
    return HtdInfo(
        path=shown,
        description=_string(values.get("Description", "")) or None,
        plate_format=plate_format,
        wave_names=waves,
        z_steps=_count(values, "ZSteps", shown, warnings),
        timepoints=_count(values, "TimePoints", shown, warnings),
        warnings=tuple(warnings),
    )


def _string(value: str) -> str:
    return value.strip().strip('"').strip()


def _count(values: dict[str, str], key: str, shown: str, warnings: list[str]) -> int | None:
    raw = values.get(key)
    if raw is None:
        return None
    try:
        number = int(raw)
    except ValueError:
        warnings.append(f"{shown}: {key} {raw[:40]!r} is not a whole number; ignored")
        return None
    if not 0 < number < 1_000_000:
        warnings.append(f"{shown}: {key} {number} is out of range; ignored")
        return None
    return number


def parse_metaseries(description: str, keys: Iterable[str] = METASERIES_KEYS) -> dict[str, str]:
    """The ``PlaneInfo`` properties ``keys`` of a MetaSeries ImageDescription (empty if none).

    Found by plain string search, not an XML parser: a TIFF's description is untrusted
    text, the MetaSeries XML is flat ``<prop id= type= value=/>`` lines, and this reads
    a description in a few microseconds (a conversion reads one per file).
    """
    start = description.find("<PlaneInfo>")
    end = description.find("</PlaneInfo>", start)
    if start < 0 or end < 0:
        return {}
    out: dict[str, str] = {}
    for key in keys:
        at = description.find(f'id="{key}"', start, end)
        if at < 0:
            continue
        value = description.find('value="', at, end)
        close = description.find("/>", at, end)
        if value < 0 or close < value:  # no value in this element
            continue
        value += 7
        stop = description.find('"', value, close)
        if stop < 0:
            continue
        text = description[value:stop]
        out[key] = html.unescape(text) if "&" in text else text
    return out
