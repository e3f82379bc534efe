"""The storage core: well-chunked OME-Zarr plates, with no napari or Qt imports.

Importing this package stays cheap (no zarr, dask or ome-zarr); zarr is imported when
a plate is first read or written.
"""

from __future__ import annotations

from .config import ChunkStrategy, Compressor, FieldArrangement, NgffVersion, Shuffle, StorageConfig
from .errors import (
    ConfigError,
    CorruptDataError,
    MetadataError,
    PlaneNotFoundError,
    PlateExistsError,
    PlateNotFoundError,
    StoreReadOnlyError,
    SymlinkCycleError,
    WellDataError,
    WellExistsError,
    WellNameError,
    WellNotFoundError,
    WellZarrError,
)
from .geometry import STANDARD_FORMATS, PlateGeometry, Well
from .metadata import Channel
from .reading import OpenWell, WellInfo, open_well_dir
from .store import PlateStore
from .well import PlaneKey

__all__ = [
    "STANDARD_FORMATS",
    "Channel",
    "ChunkStrategy",
    "Compressor",
    "ConfigError",
    "CorruptDataError",
    "FieldArrangement",
    "MetadataError",
    "NgffVersion",
    "OpenWell",
    "PlaneKey",
    "PlaneNotFoundError",
    "PlateExistsError",
    "PlateGeometry",
    "PlateNotFoundError",
    "PlateStore",
    "Shuffle",
    "StorageConfig",
    "StoreReadOnlyError",
    "SymlinkCycleError",
    "Well",
    "WellDataError",
    "WellExistsError",
    "WellInfo",
    "WellNameError",
    "WellNotFoundError",
    "WellZarrError",
    "open_well_dir",
]
