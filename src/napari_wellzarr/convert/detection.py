"""Parsing a folder's worth of file names: one scheme for all, or the best of several."""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import TYPE_CHECKING

from napari_wellzarr.convert.naming import (
    COORD_GROUPS,
    TIMEPOINT_FOLDER,
    ZSTEP_FOLDER,
    ParsedName,
    RegexScheme,
    registered_schemes,
)
from napari_wellzarr.errors import WellNameError

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

    from napari_wellzarr.convert.naming import NamingScheme
    from napari_wellzarr.convert.regex_guard import Spans
    from napari_wellzarr.storage.axes import PlaneKey

__all__ = ["Detection", "ParseResult", "detect_scheme", "expected_name", "parse_batch"]

#: One name's outcome: parsed, not of the scheme (``None``), or of it but impossible.
ParseResult = ParsedName | WellNameError | None


def parse_batch(
    scheme: NamingScheme, names: Sequence[str], channel_names: Sequence[str] | None = None
) -> tuple[NamingScheme, list[ParseResult]]:
    """Parse many names with one scheme; a bad name is reported, not raised.

    For a :class:`RegexScheme` whose ``channel`` group holds words (``DAPI``), the words
    are put in order first: ``channel_names`` when they name every word, else the
    scheme's ``channel_order`` followed by the other words alphabetically.  Returns the
    scheme actually used (with that order) and one result per name.
    """
    if not isinstance(scheme, RegexScheme):
        return scheme, [_parse_one(scheme, n) for n in names]
    all_spans = scheme.match_many(names)
    scheme = _with_channel_words(scheme, names, all_spans, channel_names)
    results: list[ParseResult] = []
    for name, spans in zip(names, all_spans, strict=True):
        try:
            results.append(None if spans is None else scheme.from_match(name, spans))
        except WellNameError as err:
            results.append(err)
    return scheme, results


def _parse_one(scheme: NamingScheme, name: str) -> ParseResult:
    try:
        return scheme.parse(name)
    except WellNameError as err:
        return err


def _with_channel_words(
    scheme: RegexScheme,
    names: Sequence[str],
    all_spans: Sequence[Spans | None],
    channel_names: Sequence[str] | None,
) -> RegexScheme:
    words: dict[str, str] = {}
    for name, spans in zip(names, all_spans, strict=True):
        if spans is not None and "channel" in spans:
            a, b = spans["channel"]
            text = PurePosixPath(name).name[a:b]
            if not text.isdigit():
                words.setdefault(text.casefold(), text)
    if not words:
        return scheme
    given = [c.casefold() for c in channel_names or ()]
    if given and set(words) <= set(given):
        order = tuple(channel_names or ())
    else:
        known = {c.casefold() for c in scheme.channel_order}
        extra = sorted((w for k, w in words.items() if k not in known), key=str.casefold)
        order = (*scheme.channel_order, *extra)
    return dataclasses.replace(scheme, channel_order=order)


@dataclass(frozen=True)
class Detection:
    """Which scheme recognises a set of names, and how well.

    Attributes
    ----------
    scheme
        The scheme that matched the most names (ties: the first tried).
    results
        One :data:`ParseResult` per name, from ``scheme``.
    counts
        ``(scheme name, names it matched)`` for every scheme tried.
    """

    scheme: NamingScheme
    results: tuple[ParseResult, ...]
    counts: tuple[tuple[str, int], ...]

    @property
    def matched(self) -> int:
        """Names the chosen scheme parsed."""
        return sum(isinstance(r, ParsedName) for r in self.results)

    @property
    def unmatched(self) -> int:
        """Names the chosen scheme did not parse (no match, or an impossible value)."""
        return len(self.results) - self.matched


def detect_scheme(
    names: Sequence[str],
    schemes: Iterable[NamingScheme] | None = None,
    channel_names: Sequence[str] | None = None,
) -> Detection:
    """Try every scheme (default: the registry) on ``names``; keep the best one.

    Raises :class:`WellNameError` when no scheme matches a single name.
    """
    tried = list(registered_schemes() if schemes is None else schemes)
    best: Detection | None = None
    best_found = 0
    counts: list[tuple[str, int]] = []
    for scheme in tried:
        used, results = parse_batch(scheme, names, channel_names)
        found = sum(r is not None for r in results)
        counts.append((scheme.name, found))
        if found > best_found:
            best, best_found = Detection(used, tuple(results), ()), found
    if best is None:
        sample = ", ".join(repr(PurePosixPath(n).name) for n in names[:3]) or "no files"
        raise WellNameError(
            f"no naming scheme recognises these file names ({sample}; tried "
            f"{', '.join(s.name for s in tried) or 'none'}); give a pattern with named "
            r"groups, e.g. '(?P<well>[A-P]\d\d)_f(?P<field>\d+)_c(?P<channel>\d+)\.tif'"
        )
    return dataclasses.replace(best, counts=tuple(counts))


def expected_name(
    template: ParsedName, key: PlaneKey, channel_order: Sequence[str] = ()
) -> str | None:
    """The name (relative path) a plane at ``key`` would have, modelled on ``template``.

    Numbers keep the template's zero padding; ImageXpress ``ZStep_N`` / ``TimePoint_N``
    folders are renumbered.  ``None`` when the template cannot express ``key`` (e.g. the
    name has no ``z`` part).
    """
    path = PurePosixPath(template.source)
    base, parts = path.name, list(path.parts[:-1])
    wanted = {"field": key.field, "channel": key.c, "z": key.z, "t": key.t}
    have = {"field": template.field, "channel": template.channel, "z": template.z}
    have["t"] = template.t
    spans = {g: (a, b) for g, a, b in template.spans}
    for group in sorted(
        (g for g in COORD_GROUPS if wanted[g] != have[g]), key=lambda g: -spans.get(g, (-1,))[0]
    ):
        if group in spans:
            a, b = spans[group]
            new = _number_text(base[a:b], wanted[group], channel_order)
            if new is None:
                return None
            base = base[:a] + new + base[b:]
        elif not _renumber_folder(parts, group, wanted[group]):
            return None
    return str(PurePosixPath(*parts, base))


def _number_text(old: str, index: int, channel_order: Sequence[str]) -> str | None:
    if old.isdigit():
        return str(index + 1).zfill(len(old))
    return channel_order[index] if index < len(channel_order) else None


def _renumber_folder(parts: list[str], group: str, index: int) -> bool:
    regex = {"z": ZSTEP_FOLDER, "t": TIMEPOINT_FOLDER}.get(group)
    for i, part in enumerate(parts):
        if regex is not None and regex.fullmatch(part):
            parts[i] = re.sub(r"\d+$", str(index + 1), part)
            return True
    return False
