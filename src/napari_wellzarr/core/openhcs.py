"""Deprecated location of :class:`napari_wellzarr.openhcs.ZarrStorageBackend` (kept for imports)."""

from __future__ import annotations

from napari_wellzarr.openhcs.backend import ZarrStorageBackend

__all__ = ["ZarrStorageBackend"]
