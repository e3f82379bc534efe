"""Set-up shared by tests of every subpackage (the fixtures that wrap it are in conftest)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Mapping
    from pathlib import Path

    import numpy as np

    from napari_wellzarr.storage.config import StorageConfig


def write_plate(
    path: Path,
    wells: Mapping[str, np.ndarray] | None = None,
    config: StorageConfig | None = None,
    *,
    write: Mapping[str, Any] | None = None,
    **options: Any,
) -> Path:
    """Create a plate at ``path`` with ``PlateStore.create`` and write ``wells`` into it.

    ``config`` is the plate's :class:`StorageConfig`; without it one is built from
    ``options`` (``ngff_version=``, ``plate=``, ``chunks=``...).  Each well is written
    with ``write_well(name, data, **write)`` (``channels=``, ``pixel_size=``...), in
    the order of ``wells``.  Returns ``path``.
    """
    from napari_wellzarr.storage.config import StorageConfig
    from napari_wellzarr.storage.store import PlateStore

    if config is None:
        config = StorageConfig(**options)
    elif options:
        raise TypeError(f"give a config or options, not both: {sorted(options)}")
    with PlateStore.create(path, config) as store:
        for name, data in (wells or {}).items():
            store.write_well(name, data, **(write or {}))
    return path
