"""Microscope file names -> well and plane coordinate."""

from __future__ import annotations

import dataclasses
import re
import warnings
from dataclasses import dataclass
from dataclasses import field as dc_field
from pathlib import PurePosixPath
from typing import TYPE_CHECKING, Final, Protocol

from napari_wellzarr.convert.regex_guard import Spans, match_spans, match_spans_bounded
from napari_wellzarr.errors import WellNameError
from napari_wellzarr.storage.axes import PlaneKey
from napari_wellzarr.storage.geometry import Well

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

__all__ = [
    "IMAGEXPRESS",
    "OPERA",
    "ImageXpressScheme",
    "NamingScheme",
    "ParsedName",
    "RegexScheme",
    "parse_filename",
    "register_scheme",
    "registered_schemes",
    "scheme_by_name",
    "try_parse_filename",
    "unregister_scheme",
    "user_scheme",
]

# Groups a RegexScheme understands; the numbers in a file name are 1-based.
_NUMBER_GROUPS: Final = ("field", "z", "t")
COORD_GROUPS: Final = ("field", "channel", "z", "t")
ZSTEP_FOLDER: Final = re.compile(r"ZStep_(\d+)", re.IGNORECASE)
TIMEPOINT_FOLDER: Final = re.compile(r"TimePoint_(\d+)", re.IGNORECASE)
#: Default time bound (seconds) of a user pattern on a batch of names (+1 ms per name).
USER_PATTERN_TIMEOUT: Final = 5.0


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
    channel_label
        The channel as the file name spells it (``w1``, ``ch2``, ``DAPI``).
    plane_name
        The name the plane is recorded under in the well's file-name map: the base name,
        or for ImageXpress sub-folders the base name with ``_z``/``_t`` parts added.
    source
        The name or relative path that was parsed.
    spans
        ``(group, start, end)`` of the named groups that matched, in the base name.
    given
        Which of ``field``, ``channel``, ``z``, ``t`` the name (or its folders) states.
    """

    well: Well
    field: int = 0
    channel: int = 0
    z: int = 0
    t: int = 0
    scheme: str = dc_field(default="", compare=False)
    channel_label: str = dc_field(default="", compare=False)
    plane_name: str = dc_field(default="", compare=False)
    source: str = dc_field(default="", compare=False)
    spans: tuple[tuple[str, int, int], ...] = dc_field(default=(), compare=False)
    given: frozenset[str] = dc_field(default=frozenset(), compare=False)

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
        optional 1-based ``field``, ``z`` and ``t`` (absent = first); optional
        ``channel``: a 1-based number, or a word (``DAPI``) looked up in
        ``channel_order``.
    flags
        ``re`` flags; by default case-insensitive.
    channel_label
        Format of a numbered channel's label, e.g. ``"w{}"`` -> ``w1``.
    channel_order
        Channel words in channel order (matched case-insensitively).
    timeout
        When set, the pattern runs in a child interpreter that is stopped after
        ``timeout`` seconds (+1 ms per name), so that a catastrophically backtracking
        pattern cannot hang the caller.  Meant for patterns users type in.
    """

    name: str
    pattern: str
    flags: int = re.IGNORECASE
    channel_label: str = "ch{}"
    channel_order: tuple[str, ...] = ()
    timeout: float | None = None
    _regex: re.Pattern[str] = dc_field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        try:
            with warnings.catch_warnings():
                # "possible nested set" and the like: the pattern compiles and means
                # what it says today; the user is not helped by a FutureWarning
                warnings.simplefilter("ignore", FutureWarning)
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
        object.__setattr__(self, "channel_order", tuple(self.channel_order))

    def parse(self, filename: str) -> ParsedName | None:
        """Parse ``filename`` (a base name or a path); ``None`` if the pattern does not match."""
        spans = self.match_many([filename])[0]
        return None if spans is None else self.from_match(filename, spans)

    def match_many(self, filenames: Sequence[str]) -> list[Spans | None]:
        """Match the base names of ``filenames``; time-bounded when ``timeout`` is set."""
        bases = [PurePosixPath(f).name for f in filenames]
        if self.timeout is None:
            return [match_spans(self._regex, b) for b in bases]
        return match_spans_bounded(self.pattern, self.flags, bases, self.timeout)

    def from_match(self, filename: str, spans: Spans) -> ParsedName:
        """Build the parsed name of ``filename`` from the group spans of its base name."""
        base = PurePosixPath(filename).name
        groups = {g: base[a:b] for g, (a, b) in spans.items()}
        numbers = {g: _zero_based(groups[g], g, base) for g in _NUMBER_GROUPS if g in groups}
        channel, label = 0, ""
        if "channel" in groups:
            channel, label = self._channel(groups["channel"], base)
        return ParsedName(
            _well(groups, base),
            channel=channel,
            **numbers,
            scheme=self.name,
            channel_label=label,
            plane_name=base,
            source=filename,
            spans=tuple((g, a, b) for g, (a, b) in sorted(spans.items())),
            given=frozenset(g for g in COORD_GROUPS if g in groups),
        )

    def _channel(self, text: str, base: str) -> tuple[int, str]:
        if text.isdigit():
            index = _zero_based(text, "channel", base)
            return index, self.channel_label.format(index + 1)
        folded = [c.casefold() for c in self.channel_order]
        if text.casefold() in folded:
            index = folded.index(text.casefold())
            return index, self.channel_order[index]
        raise WellNameError(
            f"file {base!r}: channel {text!r} is neither a number from 1 nor one of the "
            f"channel names {list(self.channel_order)}"
        )


def _zero_based(text: str, what: str, filename: str) -> int:
    if not (text.isascii() and text.isdigit()):
        raise WellNameError(f"file {filename!r}: {what} {text!r} is not a number")
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


_GUID: Final = r"(?:[0-9A-F]{8}-[0-9A-F]{4}-[0-9A-F]{4}-[0-9A-F]{4}-[0-9A-F]{12})?"
_IX_NAMES: Final = RegexScheme(
    "imagexpress",
    # MetaXpress omits _s with one site and may append a GUID to _wN (BBBC021 style).
    # The prefix is lazy: the well is the first token followed by [_sN]_wN, so that
    # "A01_s1_w2" never reads "s1" as the well.
    r"(?:.*?_)??(?P<well>[A-Z]{1,2}\d{1,4})(?:_s(?P<field>\d+))?_w(?P<channel>\d+)"
    + _GUID
    + r"(?:_z(?P<z>\d+))?(?:_t(?P<t>\d+))?(?P<ext>(?:\.\w+)+)",
    channel_label="w{}",
)


@dataclass(frozen=True)
class ImageXpressScheme:
    """ImageXpress / MetaXpress names, flat or in ``TimePoint_N`` / ``ZStep_N`` folders.

    ``<anything>_A01_s1_w2[_z001][_t001].tif`` (s = field, w = channel).  In the
    sub-folder variant the same base name repeats in every ``ZStep_N`` (z) and
    ``TimePoint_N`` (t) folder; parse the path relative to the plate folder.  Such a
    plane is recorded under its base name with ``_zNNN`` / ``_tNNN`` added (the names
    OpenHCS gives flattened z-steps), so that the names in one well stay distinct.
    """

    name: str = "imagexpress"

    def parse(self, filename: str) -> ParsedName | None:
        """Parse a base name or a relative path; ``None`` when it is not ImageXpress."""
        parsed = _IX_NAMES.parse(filename)
        if parsed is None:
            return None
        folders = _folder_numbers(PurePosixPath(filename).parts[:-1], parsed.plane_name)
        if not folders:
            return parsed
        for axis, value in folders.items():
            if axis in parsed.given and getattr(parsed, axis) != value:
                raise WellNameError(
                    f"file {filename!r}: its name says {axis}={getattr(parsed, axis) + 1}, "
                    f"its folder says {axis}={value + 1}"
                )
        return dataclasses.replace(
            parsed,
            z=folders.get("z", parsed.z),
            t=folders.get("t", parsed.t),
            plane_name=_with_folder_parts(parsed, folders),
            given=parsed.given | set(folders),
        )


def _folder_numbers(folders: Sequence[str], base: str) -> dict[str, int]:
    out: dict[str, int] = {}
    for part in folders:
        for axis, regex in (("z", ZSTEP_FOLDER), ("t", TIMEPOINT_FOLDER)):
            match = regex.fullmatch(part)
            if match:
                out[axis] = _zero_based(match.group(1), f"{part} folder", base)
    return out


def _with_folder_parts(parsed: ParsedName, folders: dict[str, int]) -> str:
    """The base name with ``_zNNN`` / ``_tNNN`` inserted where ImageXpress puts them."""
    base = parsed.plane_name
    spans = {g: (a, b) for g, a, b in parsed.spans}
    ext = spans["ext"][0]
    inserts: dict[int, str] = {}
    if "z" in folders and "z" not in spans:
        where = spans["t"][0] - 2 if "t" in spans else ext  # before "_t"
        inserts[where] = f"_z{folders['z'] + 1:03d}"
    if "t" in folders and "t" not in spans:
        inserts[ext] = inserts.get(ext, "") + f"_t{folders['t'] + 1:03d}"  # after any _z
    for where in sorted(inserts, reverse=True):
        base = base[:where] + inserts[where] + base[where:]
    return base


#: ImageXpress: ``<anything>_A01_s1_w2[_z001][_t001].tif``, flat or in sub-folders.
IMAGEXPRESS: Final = ImageXpressScheme()
#: Opera Phenix / Operetta: ``r01c01f01p01-ch1sk1fk1fl1.tiff`` (p = z, sk = timepoint).
OPERA: Final = RegexScheme(
    "opera",
    r"r(?P<row>\d+)c(?P<col>\d+)f(?P<field>\d+)p(?P<z>\d+)-ch(?P<channel>\d+)"
    r"sk(?P<t>\d+)fk\d+fl\d+(?:\.\w+)+",
    channel_label="ch{}",
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


def scheme_by_name(name: str) -> NamingScheme:
    """The registered scheme called ``name`` (:class:`WellNameError` naming the choices)."""
    for scheme in _REGISTRY:
        if scheme.name == name:
            return scheme
    raise WellNameError(
        f"no naming scheme named {name!r}; registered: {[s.name for s in _REGISTRY]}"
    )


def user_scheme(
    pattern: str, *, timeout: float = USER_PATTERN_TIMEOUT, name: str = "pattern"
) -> RegexScheme:
    """A scheme from a pattern a user typed: checked now, run with a time bound later.

    Raises :class:`WellNameError` for a pattern that does not compile or lacks the
    well groups; the message lists the groups a pattern may use.
    """
    try:
        return RegexScheme(name, pattern, timeout=timeout)
    except WellNameError as err:
        raise WellNameError(
            f"{err}. Groups: (?P<well>...) or (?P<row>...) + (?P<col>...), and optionally "
            "(?P<field>...), (?P<channel>...), (?P<z>...), (?P<t>...); e.g. "
            r"'(?P<well>[A-P]\d\d)_f(?P<field>\d+)_c(?P<channel>\d+)\.tif'"
        ) from err


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
        File name or path (only the last component is parsed, except that ImageXpress
        reads ``ZStep_N`` / ``TimePoint_N`` folders).
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
            f"file name {PurePosixPath(name).name!r} matches no naming scheme "
            f"(tried {', '.join(s.name for s in tried) or 'none'}); e.g. ImageXpress "
            "'A01_s1_w1_z001.tif' or Opera 'r01c01f01p01-ch1sk1fk1fl1.tiff'"
        )
    return parsed
