"""The storage core: well-chunked OME-Zarr plates, with no napari or Qt imports."""

from __future__ import annotations

from napari_wellzarr.errors import (
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
from napari_wellzarr.storage.axes import PlaneKey
from napari_wellzarr.storage.config import (
    ChunkStrategy,
    Compressor,
    FieldArrangement,
    NgffVersion,
    Shuffle,
    StorageConfig,
)
from napari_wellzarr.storage.geometry import STANDARD_FORMATS, PlateGeometry, Well
from napari_wellzarr.storage.metadata import Channel
from napari_wellzarr.storage.reading import OpenWell, WellInfo, open_well_dir
from napari_wellzarr.storage.store import PlateStore

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
