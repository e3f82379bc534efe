"""napari-wellzarr: well-chunked OME-Zarr HCS plates for napari and OpenHCS."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("napari-wellzarr")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0+unknown"

__all__ = ["__version__"]
