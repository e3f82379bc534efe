"""What an instrument export knew about its plate: channels, pixel size, positions, conditions."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = ["ChannelInfo", "InstrumentMetadata", "SkippedFile", "wavelength_color"]


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


def wavelength_color(nm: float | None) -> str | None:
    """The ``RRGGBB`` colour of light of wavelength ``nm`` (emission), for a channel.

    Visible light (380-780 nm) maps to its hue (a piecewise-linear spectrum, dimmed at
    both ends); near-UV and near-IR emission are clamped to violet and deep red, so a
    far-red dye stays visible. ``None`` when the wavelength is unknown, not positive or
    outside 300-1000 nm (brightfield channels report 0).

    Parameters
    ----------
    nm
        The wavelength in nanometres.

    Returns
    -------
    str or None
        Six upper-case hex digits, as OME-NGFF ``omero`` channels store them.
    """
    if nm is None or not 300.0 <= nm <= 1000.0:  # NaN fails too
        return None
    w = min(max(nm, 380.0), 700.0)
    if w < 440:
        r, g, b = (440 - w) / 60, 0.0, 1.0
    elif w < 490:
        r, g, b = 0.0, (w - 440) / 50, 1.0
    elif w < 510:
        r, g, b = 0.0, 1.0, (510 - w) / 20
    elif w < 580:
        r, g, b = (w - 510) / 70, 1.0, 0.0
    elif w < 645:
        r, g, b = 1.0, (645 - w) / 65, 0.0
    else:
        r, g, b = 1.0, 0.0, 0.0
    # dim the ends of the visible range a little, never to black
    fade = 0.6 + 0.4 * (w - 380) / 40 if w < 420 else 1.0
    return "".join(f"{round(255 * v * fade):02X}" for v in (r, g, b))
