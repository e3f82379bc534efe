"""napari-wellzarr: well-chunked OME-Zarr HCS plates for napari and OpenHCS.

Importing this package is cheap: napari loads plugin code only when a contribution
is used, and the storage core (:mod:`napari_wellzarr.core`) imports zarr lazily.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("napari-wellzarr")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0+unknown"

__all__ = ["__version__"]
