"""Microscope file names -> well and plane coordinate.

A :class:`NamingScheme` turns a file name into a :class:`ParsedName` (well, field,
channel, z, t; all 0-based) or says "not mine" by returning ``None``.  The schemes are
kept in an ordered registry that :func:`parse_filename` tries in turn; the built-in ones
are ImageXpress (``<anything>_A01_s1_w2[_z001][_t001].tif``) and Opera Phenix /
Operetta (``r01c01f01p01-ch1sk1fk1fl1.tiff``).  A :class:`RegexScheme` is built from any
regular expression with named groups, so user patterns plug in the same way::

    register_scheme(RegexScheme("mine", r"(?P<well>[A-P][0-9]+)-(?P<field>[0-9]+)[.]tif"))
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from dataclasses import field as dc_field
from pathlib import PurePath
from typing import TYPE_CHECKING, Final, Protocol

from .errors import WellNameError
from .geometry import Well
from .well import PlaneKey

if TYPE_CHECKING:
    from collections.abc import Iterable

__all__ = [
    "IMAGEXPRESS",
    "OPERA",
    "NamingScheme",
    "ParsedName",
    "RegexScheme",
    "parse_filename",
    "register_scheme",
    "registered_schemes",
    "try_parse_filename",
    "unregister_scheme",
]

# Groups a RegexScheme understands; the numbers in a file name are 1-based.
_NUMBER_GROUPS: Final = ("field", "channel", "z", "t")
_WELL_GROUPS: Final = ("well", "row", "col")


@dataclass(frozen=True)
class ParsedName:
    """What a file name says about its plane; every index is 0-based.

    Attributes
    ----------
    well
        The well (physical row and column on the plate).
    field, channel, z, t
        Field of view (site), channel (wavelength), z plane and timepoint.
    scheme
        Name of the scheme that recognised the file name.
    """

    well: Well
    field: int = 0
    channel: int = 0
    z: int = 0
    t: int = 0
    scheme: str = dc_field(default="", compare=False)

    @property
    def key(self) -> PlaneKey:
        """The plane's ``(field, c, z, t)`` coordinate in its well."""
        return PlaneKey(self.field, self.channel, self.z, self.t)


class NamingScheme(Protocol):
    """Anything with a ``name`` that parses a file name or returns ``None``."""

    @property
    def name(self) -> str:
        """Short unique name of the scheme (``imagexpress``)."""
        ...

    def parse(self, filename: str) -> ParsedName | None:
        """Return the parsed name, or ``None`` when ``filename`` is not of this scheme."""
        ...


@dataclass(frozen=True)
class RegexScheme:
    """A naming scheme given by a regular expression with named groups.

    Parameters
    ----------
    name
        Unique name of the scheme.
    pattern
        Matched against the whole file name (not the directory).  Groups: ``well``
        (``B03``, ``r02c03``) or both ``row`` and ``col`` (letters or 1-based numbers);
        optional 1-based ``field``, ``channel``, ``z`` and ``t`` (absent = first).
    flags
        ``re`` flags; by default case-insensitive.
    """

    name: str
    pattern: str
    flags: int = re.IGNORECASE
    _regex: re.Pattern[str] = dc_field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        try:
            regex = re.compile(self.pattern, self.flags)
        except re.error as err:
            raise WellNameError(
                f"naming scheme {self.name!r}: bad pattern {self.pattern!r}: {err}"
            ) from err
        groups = set(regex.groupindex)
        if "well" not in groups and not {"row", "col"} <= groups:
            raise WellNameError(
                f"naming scheme {self.name!r}: pattern {self.pattern!r} needs a (?P<well>...) "
                "group or both (?P<row>...) and (?P<col>...)"
            )
        object.__setattr__(self, "_regex", regex)

    def parse(self, filename: str) -> ParsedName | None:
        """Parse ``filename`` (a base name or a path); ``None`` if the pattern does not match."""
        base = PurePath(filename).name
        match = self._regex.fullmatch(base)
        if match is None:
            return None
        groups = {k: v for k, v in match.groupdict().items() if v is not None}
        numbers = {g: _zero_based(groups[g], g, base) for g in _NUMBER_GROUPS if g in groups}
        return ParsedName(_well(groups, base), **numbers, scheme=self.name)


def _zero_based(text: str, what: str, filename: str) -> int:
    value = int(text)
    if value < 1:
        raise WellNameError(f"file {filename!r}: {what} {text!r} must count from 1")
    return value - 1


def _well(groups: dict[str, str], filename: str) -> Well:
    try:
        if "well" in groups:
            return Well.parse(groups["well"])
        row, col = groups["row"], groups["col"]
        if row.isdigit():
            return Well(_zero_based(row, "row", filename), _zero_based(col, "column", filename))
        return Well.parse(f"{row}{col}")
    except WellNameError as err:
        raise WellNameError(f"file {filename!r}: {err}") from err


#: ImageXpress: ``<anything>_A01_s1_w2[_z001][_t001].tif`` (s = field, w = channel).
IMAGEXPRESS: Final = RegexScheme(
    "imagexpress",
    r"(?:.*_)?(?P<well>[A-Z]{1,2}\d{1,4})_s(?P<field>\d+)_w(?P<channel>\d+)"
    r"(?:_z(?P<z>\d+))?(?:_t(?P<t>\d+))?(?:\.\w+)+",
)
#: Opera Phenix / Operetta: ``r01c01f01p01-ch1sk1fk1fl1.tiff`` (p = z, sk = timepoint).
OPERA: Final = RegexScheme(
    "opera",
    r"r(?P<row>\d+)c(?P<col>\d+)f(?P<field>\d+)p(?P<z>\d+)-ch(?P<channel>\d+)"
    r"sk(?P<t>\d+)fk\d+fl\d+(?:\.\w+)+",
)

_REGISTRY: list[NamingScheme] = [IMAGEXPRESS, OPERA]


def registered_schemes() -> tuple[NamingScheme, ...]:
    """The registered schemes, in the order :func:`parse_filename` tries them."""
    return tuple(_REGISTRY)


def register_scheme(scheme: NamingScheme, *, first: bool = False) -> None:
    """Add ``scheme`` to the registry (last, or first with ``first=True``).

    Raises :class:`WellNameError` if a scheme of that name is already registered.
    """
    if any(s.name == scheme.name for s in _REGISTRY):
        raise WellNameError(f"a naming scheme named {scheme.name!r} is already registered")
    _REGISTRY.insert(0 if first else len(_REGISTRY), scheme)


def unregister_scheme(name: str) -> NamingScheme:
    """Remove and return the scheme called ``name`` (:class:`WellNameError` if absent)."""
    for i, scheme in enumerate(_REGISTRY):
        if scheme.name == name:
            return _REGISTRY.pop(i)
    raise WellNameError(
        f"no naming scheme named {name!r}; registered: {[s.name for s in _REGISTRY]}"
    )


def try_parse_filename(
    name: str, schemes: Iterable[NamingScheme] | None = None
) -> ParsedName | None:
    """Like :func:`parse_filename`, but return ``None`` when no scheme matches."""
    for scheme in _REGISTRY if schemes is None else schemes:
        parsed = scheme.parse(name)
        if parsed is not None:
            return parsed
    return None


def parse_filename(name: str, schemes: Iterable[NamingScheme] | None = None) -> ParsedName:
    """Parse a microscope file name into well and 0-based plane coordinate.

    Parameters
    ----------
    name
        File name or path (only the last component is parsed).
    schemes
        Schemes to try in order; by default the registry (ImageXpress, then Opera).

    Returns
    -------
    ParsedName
        The well and the ``field, channel, z, t`` of the plane.

    Raises
    ------
    WellNameError
        No scheme matches (the message names the file and the schemes tried), or a
        matching name holds an impossible value (a 0 where counting starts at 1).
    """
    tried = list(_REGISTRY if schemes is None else schemes)
    parsed = try_parse_filename(name, tried)
    if parsed is None:
        raise WellNameError(
            f"file name {PurePath(name).name!r} matches no naming scheme "
            f"(tried {', '.join(s.name for s in tried) or 'none'}); e.g. ImageXpress "
            "'A01_s1_w1_z001.tif' or Opera 'r01c01f01p01-ch1sk1fk1fl1.tiff'"
        )
    return parsed
