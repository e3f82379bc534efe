"""Instrument exports recognised from their own files (index XML, ``.HTD``, ``.mlf``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from napari_wellzarr.convert.vendors import cellvoyager, harmony, imagexpress

if TYPE_CHECKING:
    from collections.abc import Callable

    from napari_wellzarr.convert.plan import ConversionPlan
    from napari_wellzarr.convert.srcfs import SourcePath

__all__ = ["VENDORS", "Vendor", "detect_vendor", "vendor_by_name", "vendor_names"]


class Vendor(Protocol):
    """A vendor module: its scheme name, a cheap ``detect`` and a complete ``scan``."""

    NAME: str

    def detect(self, folder: SourcePath) -> bool:
        """Whether ``folder`` holds this vendor's index files."""
        ...

    def scan(
        self, folder: SourcePath, *, progress: Callable[[int, int], None] | None = None
    ) -> ConversionPlan:
        """Scan the export into a complete plan (metadata included)."""
        ...


#: Tried in order by ``scheme="auto"``; each also answers to its own ``NAME``.
VENDORS: tuple[Vendor, ...] = (harmony, cellvoyager, imagexpress)


def detect_vendor(folder: SourcePath) -> Vendor | None:
    """The first vendor whose index files are in ``folder``, or ``None``."""
    for vendor in VENDORS:
        if vendor.detect(folder):
            return vendor
    return None


def vendor_by_name(name: str) -> Vendor | None:
    """The vendor whose scheme is called ``name`` (``metaxpress``), or ``None``."""
    return next((v for v in VENDORS if v.NAME == name), None)


def vendor_names() -> list[str]:
    """The scheme names of the vendors (``metaxpress``...), in registry order."""
    return [v.NAME for v in VENDORS]
