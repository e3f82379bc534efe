"""The plate's reference well: the dtype and plane shapes most wells have (metadata only)."""

from __future__ import annotations

import warnings
from collections import Counter
from typing import TYPE_CHECKING, Any, Final

import numpy as np

from napari_wellzarr.errors import AcquisitionNotFoundError, MetadataError, WellZarrError
from napari_wellzarr.plugin.mosaic import DamagedWellWarning

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator, Sequence

    from napari_wellzarr.storage.reading import WellInfo
    from napari_wellzarr.storage.store import PlateStore

__all__ = ["READ_ERRORS", "reference_sample", "reference_well"]


#: Wells whose metadata opening reads first: the first, middle and last ones.
_SAMPLE: Final = 3


#: Wells without layout records read when the first ones disagree.
_CENSUS_SAMPLE: Final = 9


READ_ERRORS: Final = (WellZarrError, OSError, ValueError)


#: What every well must share with the plate: its dtype and each level's (y, x) plane.
_Signature = tuple[np.dtype[Any], tuple[tuple[int, ...], ...]]


def _signature(info: WellInfo) -> _Signature:
    return info.dtype.newbyteorder("="), tuple(tuple(s[-2:]) for s in info.level_shapes)


def _spread(names: Sequence[str], k: int) -> list[str]:
    """Up to ``k`` of ``names``, spread evenly over them (the first and last included)."""
    if len(names) <= k:
        return list(names)
    step = (len(names) - 1) / (k - 1)
    return [names[i] for i in dict.fromkeys(round(j * step) for j in range(k))]


def reference_sample(wells: Sequence[str]) -> list[str]:
    """The wells :func:`reference_well` reads the metadata of first (the first and middle)."""
    return _spread(wells, _SAMPLE)[:2]


def _infos(
    read: Callable[[str], WellInfo], names: Iterable[str], failed: dict[str, str]
) -> Iterator[tuple[str, WellInfo]]:
    """``(name, read(name))`` of each well whose metadata reads; the others are reported."""
    for name in names:
        if name in failed:
            continue
        try:
            info = read(name)
        except AcquisitionNotFoundError:
            continue  # a well not imaged in this acquisition: blank, nothing wrong
        except READ_ERRORS as err:
            failed[name] = f"{type(err).__name__}: {err}"
            warnings.warn(
                f"well {name} cannot be shown and is left blank: {failed[name]}",
                DamagedWellWarning,
                stacklevel=7,
            )
            continue
        yield name, info


def _until_two_agree(infos: Iterator[tuple[str, WellInfo]], k: int) -> list[tuple[str, WellInfo]]:
    """The first ``k`` of ``infos``, or fewer: up to the first one that repeats a signature."""
    out: list[tuple[str, WellInfo]] = []
    seen: set[_Signature] = set()
    for name, info in infos:
        out.append((name, info))
        signature = _signature(info)
        if signature in seen or len(out) == k:
            break
        seen.add(signature)
    return out


def _majority(infos: Sequence[tuple[str, WellInfo]]) -> _Signature:
    """The most common signature among ``infos`` (ties: the first one seen)."""
    return Counter(_signature(info) for _, info in infos).most_common(1)[0][0]


def reference_well(
    store: PlateStore, wells: list[str], failed: dict[str, str], acquisition: int | None = None
) -> WellInfo:
    """The metadata of a well that has what most wells have: the plate's dtype and planes.

    The first, middle and last wells' metadata is read, stopping as soon as two agree
    (wells that do not read are replaced by the next ones); only when they disagree are
    the other wells counted (:func:`_census`).  No pixel is read.  Wells whose metadata
    does not read are reported and recorded in ``failed``.  ``acquisition``: the
    images of that acquisition in each well (see :meth:`PlateStore.well_info`).
    """

    def info(name: str) -> WellInfo:
        return store.well_info(name, acquisition)

    def layout(name: str) -> WellInfo:
        return store.layout_info(name, acquisition)

    first = _spread(wells, _SAMPLE)
    order = [*first, *(w for w in wells if w not in first)]
    sample = _until_two_agree(_infos(info, order, failed), _SAMPLE)
    if not sample:
        raise MetadataError(
            f"{store.root}: none of its {len(wells)} well(s) can be read"
            + (f"; first failure: {next(iter(failed.items()))}" if failed else "")
        )
    if len({_signature(info) for _, info in sample}) == 1:
        return sample[0][1]
    best, names = _census(store, layout, wells, sample, failed)
    chosen = next((i for _, i in sample if _signature(i) == best), None)
    if chosen is None:  # a well's own metadata (channels, labels), not its layout record
        read = {name for name, _ in sample}
        others = _infos(info, [n for n in names if n not in read], failed)
        chosen = next((i for _, i in others if _signature(i) == best), None)
    return chosen or sample[0][1]


def _census(
    store: PlateStore,
    layout: Callable[[str], WellInfo],
    wells: list[str],
    sample: list[tuple[str, WellInfo]],
    failed: dict[str, str],
) -> tuple[_Signature, list[str]]:
    """The signature most ``wells`` have, and some wells that have it (metadata only).

    Wells that the plate's layout records group together count for their group's
    majority (among up to three of them, spread over the group); the other wells count
    through up to nine of them spread over the plate.
    """
    votes: dict[_Signature, float] = {}
    names: dict[_Signature, list[str]] = {}
    grouped: set[str] = set()
    for group in store.layout_groups(wells):
        grouped.update(group)
        members = _until_two_agree(_infos(layout, _spread(group, 3), failed), 3)
        if members:
            signature = _majority(members)
            votes[signature] = votes.get(signature, 0.0) + len(group)
        for name, info in members:
            names.setdefault(_signature(info), []).append(name)
    rest = [w for w in wells if w not in grouped]
    sampled = list(_infos(layout, _spread(rest, _CENSUS_SAMPLE), failed))
    for name, info in sampled:
        signature = _signature(info)
        votes[signature] = votes.get(signature, 0.0) + len(rest) / len(sampled)
        names.setdefault(signature, []).append(name)
    if not votes:
        return _majority(sample), []
    best = max(votes, key=votes.__getitem__)  # ties: the first counted
    return best, names[best]
