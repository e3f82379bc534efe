"""What an instrument export knew about its plate: channels, pixel size, positions, conditions."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = ["ChannelInfo", "InstrumentMetadata", "SkippedFile", "color_for_wavelength"]


@dataclass(frozen=True)
class ChannelInfo:
    """One channel as the instrument recorded it (index = the plan's channel index ``c``)."""

    name: str
    excitation_nm: float | None = None
    emission_nm: float | None = None
    #: ``RRGGBB`` (OME ``omero`` colour), from the emission wavelength when known.
    color: str | None = None


@dataclass(frozen=True)
class SkippedFile:
    """A file of the export that is not in the plate, and why (thumbnail, duplicate...)."""

    path: str  # relative to the export folder
    reason: str


@dataclass(frozen=True)
class InstrumentMetadata:
    """Metadata read from an export's own files (index XML, ``.HTD``, TIFF tags).

    Every field is optional: ``None`` / empty means the export did not say.
    """

    vendor: str
    plate_name: str | None = None
    #: ``(rows, columns)`` of the physical plate (a 384-well export gives (16, 24)).
    plate_format: tuple[int, int] | None = None
    channels: tuple[ChannelInfo, ...] = ()
    #: Pixel size ``(y, x)`` in micrometres.
    pixel_size_um: tuple[float, float] | None = None
    z_step_um: float | None = None
    time_interval_s: float | None = None
    #: ``(well label, field index) -> (y, x)`` stage position in micrometres, relative to
    #: the well (the same origin for every field of a well).
    field_positions_um: Mapping[tuple[str, int], tuple[float, float]] = field(default_factory=dict)
    #: ``well label -> {condition name: value}`` (e.g. compound, concentration).
    conditions: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    skipped: tuple[SkippedFile, ...] = ()
    #: ``channel name -> method`` (``Maximum``, ``Best Focus``) for channels with projections.
    projection_methods: Mapping[str, str] = field(default_factory=dict)
    #: Soft problems found while reading the metadata (shown in the conversion report).
    warnings: tuple[str, ...] = ()


#: (upper bound in nm, colour): violet-blue, cyan, green, yellow, orange, red, far red.
_SPECTRUM: tuple[tuple[float, str], ...] = (
    (470.0, "0000FF"),
    (500.0, "00FFFF"),
    (560.0, "00FF00"),
    (590.0, "FFFF00"),
    (620.0, "FF8000"),
    (680.0, "FF0000"),
    (float("inf"), "FF00FF"),
)


def color_for_wavelength(nm: float | None) -> str | None:
    """An ``RRGGBB`` display colour for an emission wavelength (``None`` when unknown)."""
    if nm is None or not 200.0 <= nm <= 2000.0:
        return None
    return next(color for upper, color in _SPECTRUM if nm < upper)
