"""What the instrument recorded about a well beside its pixels: positions, conditions..."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

from napari_wellzarr.errors import WellDataError

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = ["PROJECTIONS_PATH", "Acquisition", "parse_acquisition"]

#: The well sub-group holding the projection image (not listed in the well's ``images``).
PROJECTIONS_PATH: Final = "projections"
_POSITIONS: Final = "field_positions_um"
_CONDITIONS: Final = "conditions"
_PROJECTED: Final = "channel_projections"
_HAS_PROJECTIONS: Final = "projections"
_MAX_TEXT: Final = 1000


@dataclass(frozen=True)
class Acquisition:
    """A well's instrument metadata, stored in its ``wellzarr`` block.

    Attributes
    ----------
    field_positions
        ``field -> (y, x)``: where each field was imaged, micrometres from the well's
        origin (the same origin for every field of the well).
    conditions
        ``name -> value`` (compound, concentration...).
    time_interval
        Seconds between timepoints (also the ``t`` scale of the images).
    channel_projections
        ``channel label -> method`` (``Maximum``, ``Best Focus``) for channels whose
        images are projections.
    """

    field_positions: Mapping[int, tuple[float, float]] = field(default_factory=dict)
    conditions: Mapping[str, str] = field(default_factory=dict)
    time_interval: float | None = None
    channel_projections: Mapping[str, str] = field(default_factory=dict)

    def check(self, well: str, n_fields: int) -> None:
        """Raise :class:`WellDataError` naming the well when a value cannot be stored."""
        for f, pos in self.field_positions.items():
            if not (isinstance(f, int) and 0 <= f < n_fields):
                raise WellDataError(
                    f"well {well}: field position given for field {f!r}; the well has "
                    f"{n_fields} field(s)"
                )
            if len(pos) != 2 or not all(
                isinstance(v, int | float) and math.isfinite(v) for v in pos
            ):
                raise WellDataError(f"well {well}: field {f} position {pos!r} is not (y, x)")
        for key, value in [*self.conditions.items(), *self.channel_projections.items()]:
            if not isinstance(key, str) or not isinstance(value, str) or len(value) > _MAX_TEXT:
                raise WellDataError(f"well {well}: {key!r}: {str(value)[:40]!r} is not short text")
        interval = self.time_interval
        if interval is not None and not (isinstance(interval, int | float) and interval > 0):
            raise WellDataError(f"well {well}: time interval {interval!r} is not positive")

    def to_block(self, has_projections: bool) -> dict[str, Any]:
        """The entries this adds to the well's ``wellzarr`` block."""
        out: dict[str, Any] = {}
        if self.field_positions:
            out[_POSITIONS] = {
                str(f): [float(y), float(x)] for f, (y, x) in sorted(self.field_positions.items())
            }
        if self.conditions:
            out[_CONDITIONS] = dict(self.conditions)
        if self.time_interval is not None:
            out["time_interval_s"] = float(self.time_interval)
        if self.channel_projections:
            out[_PROJECTED] = dict(self.channel_projections)
        if has_projections:
            out[_HAS_PROJECTIONS] = PROJECTIONS_PATH
        return out


def parse_acquisition(block: Mapping[str, Any]) -> tuple[Acquisition, bool]:
    """Read a well's ``wellzarr`` block; malformed entries are left out, never raised.

    Returns the acquisition and whether the well has a projection image.
    """
    positions: dict[int, tuple[float, float]] = {}
    raw = block.get(_POSITIONS)
    if isinstance(raw, dict):
        for key, value in raw.items():
            if (
                isinstance(key, str)
                and key.isdigit()
                and isinstance(value, list)
                and len(value) == 2
                and all(isinstance(v, int | float) and not isinstance(v, bool) for v in value)
            ):
                positions[int(key)] = (float(value[0]), float(value[1]))
    interval = block.get("time_interval_s")
    return (
        Acquisition(
            positions,
            _texts(block.get(_CONDITIONS)),
            float(interval) if isinstance(interval, int | float) and interval > 0 else None,
            _texts(block.get(_PROJECTED)),
        ),
        block.get(_HAS_PROJECTIONS) == PROJECTIONS_PATH,
    )


def _texts(raw: object) -> dict[str, str]:
    if not isinstance(raw, dict):
        return {}
    return {k: v for k, v in raw.items() if isinstance(k, str) and isinstance(v, str)}
