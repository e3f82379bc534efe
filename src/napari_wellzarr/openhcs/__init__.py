"""OpenHCS's path-based Zarr storage backend, on top of the plate store."""

from __future__ import annotations

from napari_wellzarr.openhcs.backend import ZarrStorageBackend

__all__ = ["ZarrStorageBackend"]
