"""The project's error hierarchy."""

from __future__ import annotations

__all__ = [
    "AcquisitionNotFoundError",
    "ConfigError",
    "CorruptDataError",
    "DestinationClaimedError",
    "MetadataError",
    "PlaneNotFoundError",
    "PlateExistsError",
    "PlateNotFoundError",
    "RemoteReadError",
    "RemoteStoreError",
    "RemoteWriteError",
    "StoreReadOnlyError",
    "SymlinkCycleError",
    "WellDataError",
    "WellExistsError",
    "WellNameError",
    "WellNotFoundError",
    "WellZarrError",
]


class WellZarrError(Exception):
    """Base class of every error napari-wellzarr raises on purpose."""


class ConfigError(WellZarrError, ValueError):
    """A storage option, or a combination of options, that cannot work."""


class WellNameError(WellZarrError, ValueError):
    """A well name that cannot be parsed or lies outside the plate."""


class WellDataError(WellZarrError, ValueError):
    """Pixel data that does not fit a well: shape, dtype, coordinates or duplicates."""


class MetadataError(WellZarrError, ValueError):
    """OME-Zarr metadata that is missing, malformed or inconsistent."""


class CorruptDataError(WellZarrError, OSError):
    """A chunk or metadata file that exists but cannot be decoded."""


class ClusterLostError(WellZarrError, ConnectionError):
    """The dask cluster has had no live worker for too long: its wells were not converted."""


class PlateNotFoundError(WellZarrError, FileNotFoundError):
    """No plate (or no OME-Zarr group at all) at the given path."""


class PlateExistsError(WellZarrError, FileExistsError):
    """Creating a plate where data already exists, without ``overwrite=True``."""


class WellNotFoundError(WellZarrError, KeyError):
    """A well that the plate does not hold (or holds only incompletely)."""

    def __str__(self) -> str:
        # KeyError repr()s its argument; show the message as written.
        return str(self.args[0]) if self.args else ""


class WellExistsError(WellZarrError, FileExistsError):
    """Writing a well that is already complete, without ``overwrite=True``."""


class PlaneNotFoundError(WellZarrError, KeyError):
    """A plane (field, channel, z, t) or a mapped file name that a well does not hold."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class AcquisitionNotFoundError(PlaneNotFoundError):
    """A well has no image of the acquisition asked for."""


class StoreReadOnlyError(WellZarrError, PermissionError):
    """A write to a plate that was opened read-only."""


class SymlinkCycleError(WellZarrError, OSError):
    """A chain of zarr-native symlinks that loops back on itself."""


class RemoteReadError(WellZarrError, OSError):
    """A remote object (URL) that cannot be read: denied, server error, timeout, bad URL."""


class RemoteWriteError(WellZarrError, ValueError):
    """A URL given where something cannot be written (only ``s3://`` plates are written)."""


class RemoteStoreError(WellZarrError, OSError):
    """A write to, or a listing of, an object store that failed (denied, down, timeout)."""


class DestinationClaimedError(WellZarrError, FileExistsError):
    """A conversion into a destination that another conversion (run) has claimed."""
