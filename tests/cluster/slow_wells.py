"""A dask worker preload: each well's last steps take longer, so a kill lands mid-well.

Folder: a pause before the staged well is renamed into place.  S3: a pause before
each ``zarr.json`` upload (the well's own document goes up last, after its data).
dask may import a preload twice: the originals are kept on the wrappers.
"""

from __future__ import annotations

import time
from typing import Any

from napari_wellzarr.storage import placing
from napari_wellzarr.storage.locations import RemoteLocation

PAUSE_S = 0.1

_place: Any = getattr(placing.place_well, "original", placing.place_well)
_upload: Any = getattr(RemoteLocation.upload, "original", RemoteLocation.upload)


def _slow_place(*args: Any, **kwargs: Any) -> Any:
    time.sleep(PAUSE_S)
    return _place(*args, **kwargs)


def _slow_upload(self: RemoteLocation, path: str) -> str | None:
    if self.name == "zarr.json":
        time.sleep(PAUSE_S)
    return _upload(self, path)  # type: ignore[no-any-return]


_slow_place.original = _place  # type: ignore[attr-defined]
_slow_upload.original = _upload  # type: ignore[attr-defined]
placing.place_well = _slow_place
RemoteLocation.upload = _slow_upload  # type: ignore[method-assign]
