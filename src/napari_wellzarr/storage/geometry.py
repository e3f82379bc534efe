"""Plate geometry: physical rows and columns, and well names."""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cached_property
from typing import Final

from napari_wellzarr.errors import ConfigError, WellNameError

__all__ = [
    "COARSEST_SIDE",
    "SINGLE_SCALE_LIMIT",
    "STANDARD_FORMATS",
    "PlateGeometry",
    "Well",
    "column_number",
    "row_index",
    "row_letters",
    "well_gap",
    "whole_plate_levels",
]

#: A plate mosaic whose longer side exceeds this many pixels is shown as a multiscale
#: layer (napari cannot hold more than 16384 pixels in one GPU texture; smaller limits
#: keep single-scale slices cheap).
SINGLE_SCALE_LIMIT: Final = 4096
#: Multiscale mosaics get levels until the coarsest one is at most this long.
COARSEST_SIDE: Final = 2048

#: Standard SBS plate formats: wells -> (rows, columns).
STANDARD_FORMATS: Final[dict[int, tuple[int, int]]] = {
    6: (2, 3),
    12: (3, 4),
    24: (4, 6),
    48: (6, 8),
    96: (8, 12),
    384: (16, 24),
    1536: (32, 48),
}

_MAX_ROWS: Final = 26 * 27  # A..Z, AA..ZZ
_MAX_COLUMNS: Final = 9999
# A well name is a handful of characters; longer text is refused before any regex runs
# (the patterns below backtrack quadratically on long runs of blanks).
_MAX_NAME_LENGTH: Final = 64

# "B03", "b3", "AA12", "B/03", "B_03"; Opera / Operetta "r02c03".
_LETTER_WELL = re.compile(r"^\s*([A-Za-z]{1,2})\s*[/_\-]?\s*([0-9]{1,4})\s*$", re.ASCII)
_OPERA_WELL = re.compile(r"^\s*[Rr]([0-9]{1,3})\s*[Cc]([0-9]{1,4})\s*$", re.ASCII)


def row_letters(index: int) -> str:
    """Return the letters of 0-based row ``index``: 0 -> ``A``, 25 -> ``Z``, 26 -> ``AA``."""
    if not 0 <= index < _MAX_ROWS:
        raise WellNameError(f"row index {index} is outside 0..{_MAX_ROWS - 1}")
    if index < 26:
        return chr(ord("A") + index)
    first, second = divmod(index, 26)
    return chr(ord("A") + first - 1) + chr(ord("A") + second)


def row_index(letters: str) -> int:
    """Return the 0-based index of a row name (``A`` -> 0, ``AF`` -> 31), case-insensitive."""
    name = letters.strip().upper()
    if not (1 <= len(name) <= 2 and name.isascii() and name.isalpha()):
        raise WellNameError(f"row name {letters!r} is not one or two letters (A..Z, AA..ZZ)")
    if len(name) == 1:
        return ord(name) - ord("A")
    return 26 * (ord(name[0]) - ord("A") + 1) + ord(name[1]) - ord("A")


def column_number(text: str) -> int:
    """Return the 0-based index of a column name (``"03"`` or ``"3"`` -> 2)."""
    stripped = text.strip()
    if not (stripped.isascii() and stripped.isdigit()) or int(stripped) < 1:
        raise WellNameError(f"column name {text!r} is not a number from 1")
    return int(stripped) - 1


@dataclass(frozen=True, order=True)
class Well:
    """A well position on a plate: 0-based ``row`` and ``column``."""

    row: int
    column: int

    @property
    def label(self) -> str:
        """``B03``: row letters and a two-digit (or wider) column number."""
        return f"{row_letters(self.row)}{self.column + 1:02d}"

    def __post_init__(self) -> None:
        if self.row < 0 or self.column < 0:
            raise WellNameError(f"well position ({self.row}, {self.column}) is negative")

    @classmethod
    def parse(cls, name: str) -> Well:
        """Parse ``A01``, ``B3``, ``b03``, ``AA12``, ``B/03`` or Opera's ``r02c03``."""
        if not isinstance(name, str):
            raise WellNameError(f"well name must be a string, not {type(name).__name__}")
        if len(name) > _MAX_NAME_LENGTH:
            raise WellNameError(
                f"well name {name[:20]!r}... is {len(name)} characters long; a well name is "
                "of the form A01, B3, AA12, B/03 or r02c03"
            )
        opera = _OPERA_WELL.match(name)
        if opera:
            row, col = int(opera.group(1)), int(opera.group(2))
            if row < 1 or col < 1:
                raise WellNameError(f"well name {name!r}: Opera rows and columns start at 1")
            if row > _MAX_ROWS:
                raise WellNameError(
                    f"well name {name!r}: row {row} is beyond the largest plate "
                    f"({_MAX_ROWS} rows, A..ZZ)"
                )
            return cls(row - 1, col - 1)
        letter = _LETTER_WELL.match(name)
        if letter is None:
            raise WellNameError(
                f"well name {name!r} is not of the form A01, B3, AA12, B/03 or r02c03"
            )
        try:
            return cls(row_index(letter.group(1)), column_number(letter.group(2)))
        except WellNameError as err:
            raise WellNameError(f"well name {name!r}: {err}") from None


@dataclass(frozen=True)
class PlateGeometry:
    """The physical layout of a plate: ``rows`` x ``columns`` wells."""

    rows: int
    columns: int

    def __post_init__(self) -> None:
        for label, value, limit in (
            ("rows", self.rows, _MAX_ROWS),
            ("columns", self.columns, _MAX_COLUMNS),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= limit:
                raise ConfigError(f"plate {label} must be an integer in 1..{limit}, got {value!r}")

    @classmethod
    def from_wells(cls, n_wells: int) -> PlateGeometry:
        """Return the standard geometry of an ``n_wells`` plate (6, 12, ..., 1536)."""
        try:
            rows, columns = STANDARD_FORMATS[n_wells]
        except (KeyError, TypeError):
            allowed = ", ".join(str(n) for n in STANDARD_FORMATS)
            raise ConfigError(
                f"plate format {n_wells!r} is not a standard plate; allowed: {allowed} wells, "
                "or a custom PlateGeometry(rows, columns)"
            ) from None
        return cls(rows, columns)

    @classmethod
    def parse(cls, value: int | str | tuple[int, int] | PlateGeometry) -> PlateGeometry:
        """Build a geometry from ``96``, ``"384"``, ``"16x24"``, ``(16, 24)`` or a geometry."""
        if isinstance(value, PlateGeometry):
            return value
        if isinstance(value, tuple) and len(value) == 2:
            return cls(*value)
        if isinstance(value, str):
            text = value.strip().lower()
            if "x" in text:
                rows, _, columns = text.partition("x")
                try:
                    return cls(int(rows), int(columns))
                except ValueError:
                    raise ConfigError(
                        f"plate format {value!r} is not ROWSxCOLUMNS, e.g. '16x24'"
                    ) from None
            if text.isascii() and text.isdigit() and len(text) <= 12:
                return cls.from_wells(int(text))
        if isinstance(value, int) and not isinstance(value, bool):
            return cls.from_wells(value)
        raise ConfigError(
            f"plate format {value!r} is not a well count (6..1536), 'ROWSxCOLUMNS' "
            "or (rows, columns)"
        )

    @property
    def n_wells(self) -> int:
        """Number of wells on the plate."""
        return self.rows * self.columns

    @cached_property
    def _column_width(self) -> int:
        return max(2, len(str(self.columns)))

    @cached_property
    def row_names(self) -> tuple[str, ...]:
        """Every physical row name, in plate order (``A``, ``B``, ..., ``Z``, ``AA``, ...)."""
        return tuple(row_letters(i) for i in range(self.rows))

    @cached_property
    def column_names(self) -> tuple[str, ...]:
        """Every physical column name, in plate order (``01``, ``02``, ...)."""
        return tuple(f"{i + 1:0{self._column_width}d}" for i in range(self.columns))

    def contains(self, well: Well) -> bool:
        """Whether ``well`` lies on this plate."""
        return well.row < self.rows and well.column < self.columns

    def well(self, name: str | Well) -> Well:
        """Parse ``name`` and check that it lies on this plate."""
        well = name if isinstance(name, Well) else Well.parse(name)
        if not self.contains(well):
            raise WellNameError(
                f"well {name!r} is outside the {self.rows}x{self.columns} plate "
                f"(A{1:0{self._column_width}d}..{self.name(Well(self.rows - 1, self.columns - 1))})"
            )
        return well

    def name(self, well: Well) -> str:
        """Return the well's name as printed on the plate, e.g. ``B03``."""
        return f"{row_letters(well.row)}{well.column + 1:0{self._column_width}d}"

    def path(self, well: Well) -> str:
        """Return the well's group path inside the plate, e.g. ``B/03``."""
        return f"{row_letters(well.row)}/{well.column + 1:0{self._column_width}d}"

    def all_wells(self) -> list[Well]:
        """Every well in plate order (row by row)."""
        return [Well(r, c) for r in range(self.rows) for c in range(self.columns)]


def well_gap(tile: tuple[int, int]) -> int:
    """Pixels between neighbouring wells in a plate mosaic of ``tile``-sized wells."""
    return max(2, round(0.04 * max(tile)))


def whole_plate_levels(n_rows: int, n_columns: int, tile: tuple[int, int]) -> int:
    """Display levels (each halving) of a plate mosaic: 1, or until its side <= 2048.

    The coarsest, ``2**(levels - 1)`` times smaller than the wells' planes, is what a
    viewer draws to show the whole plate; automatic pyramids store that level.
    """
    gap = well_gap(tile)
    side = max(n_rows * (tile[0] + gap), n_columns * (tile[1] + gap))
    levels = 1
    if side > SINGLE_SCALE_LIMIT:
        while side / 2 ** (levels - 1) > COARSEST_SIDE:
            levels += 1
    return levels
