"""Describing and checking a plate on disk (the ``wellzarr info`` / ``validate`` commands)."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from napari_wellzarr.errors import WellZarrError
from napari_wellzarr.storage import fsio
from napari_wellzarr.storage.claims import CLAIM_NAME
from napari_wellzarr.storage.store import PlateStore
from napari_wellzarr.storage.zstore import read_store

if TYPE_CHECKING:
    from napari_wellzarr.storage.locations import RemoteLocation
    from napari_wellzarr.storage.reading import WellInfo

__all__ = ["PlateCheck", "check_plate", "describe_plate"]


def _disk_bytes(root: Path) -> tuple[int, int]:
    """Bytes and number of files under ``root`` (staging and lock excluded)."""
    total = files = 0
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d != fsio.STAGING_DIR]
        for name in filenames:
            if name not in (fsio.LOCK_NAME, CLAIM_NAME):  # (the claim: a symlink)
                total += (Path(dirpath) / name).stat().st_size
                files += 1
    return total, files


def _codec(codec: Any) -> dict[str, Any]:
    if hasattr(codec, "to_dict"):
        return dict(codec.to_dict())
    return dict(codec.get_config())


def _array_layout(store: PlateStore, info: WellInfo) -> dict[str, Any]:
    import zarr

    path = f"{info.path}/{info.image_paths[0]}"
    attrs = fsio.read_attrs(store.location / path, store.zarr_format)
    from napari_wellzarr.storage.metadata import parse_image

    meta, _ = parse_image(attrs, path)
    dataset = meta.multiscale.datasets[0].path
    zstore = read_store(store.location, strict=False)
    array = zarr.open_array(store=zstore, path=f"{path}/{dataset}", mode="r")
    return {
        "array": f"{path}/{dataset}",
        "array_shape": list(array.shape),
        "chunks": list(array.chunks),
        "shards": None if array.shards is None else list(array.shards),
        "filters": [_codec(c) for c in array.filters],
        "compressors": [_codec(c) for c in array.compressors],
    }


def describe_plate(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Layout, wells, sizes, codecs and chunking of the plate at ``path`` (read-only).

    Raises :class:`PlateNotFoundError` when ``path`` is not a plate, and the store's
    errors for damaged metadata.
    """
    store = PlateStore.open(path)
    wells = store.wells()
    infos = [store.well_info(w) for w in wells]
    # A remote plate is not listed (one request per object): its size is unknown.
    disk, files = (None, None) if store.is_remote else _disk_bytes(store.root)
    raw = sum(math.prod(i.shape) * i.dtype.itemsize for i in infos)
    out: dict[str, Any] = {
        "plate": str(store.location),
        "ngff_version": store.ngff_version,
        "zarr_format": store.zarr_format,
        "rows": len(store.rows),
        "columns": len(store.columns),
        "wells": wells,
        "raw_bytes": raw,
        "disk_bytes": disk,
        "files": files,
        "compression_ratio": round(raw / disk, 3) if disk else None,
        "config": None if store.config is None else store.config.to_dict(),
    }
    if infos:
        first = infos[0]
        shapes = sorted({i.shape for i in infos})
        out.update(
            axes=list(first.axes),
            well_shapes=[list(s) for s in shapes],
            dtype=str(first.dtype),
            layout="stacked" if first.stacked else "per-field",
            channels=[c.label for c in first.channels],
            levels=first.n_levels,
            mapped_files=sum(len(i.plane_names) for i in infos),
            **_array_layout(store, first),
        )
    return out


@dataclass
class PlateCheck:
    """The outcome of :func:`check_plate`: problems make a plate invalid, warnings do not."""

    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    spec: str = ""

    @property
    def ok(self) -> bool:
        """No problem found."""
        return not self.problems


def check_plate(path: str | os.PathLike[str], *, deep: bool = False) -> PlateCheck:
    """Check the plate at ``path``; nothing is written.

    The specification part uses ``ome_zarr_models.open_ome_zarr`` when that package
    is importable (``spec`` says whether it ran).  Internal consistency: every listed
    well opens, every mapped file name points at a plane inside its well; with ``deep``
    every chunk of every well is decoded.  The traces of an interrupted write are
    warnings, not problems: readers see a consistent plate, and resuming completes it.
    These are complete wells on disk that the well list does not name yet, staging
    leftovers, and a plate written by napari-wellzarr that lists no well yet (not an
    OME-NGFF plate until its first well is listed: the specification is not checked).
    """
    check = PlateCheck()
    try:
        store = PlateStore.open(path)
    except WellZarrError as err:
        check.problems.append(str(err))
        return check
    wells = store.wells()
    if not wells and store.config is not None:
        check.warnings.append(
            f"{store.location} lists no wells yet: it becomes an OME-NGFF HCS plate when its "
            "first well is listed (the specification was not checked)"
        )
        check.spec = "skipped (the plate lists no wells yet)"
    else:
        check.spec = _check_spec(store.location, check)
    for well in wells:
        _check_well(store, well, deep, check)
    _check_unlisted(store, check)
    staging = None if store.is_remote else store.root / fsio.STAGING_DIR
    if staging is not None and staging.is_dir() and any(staging.iterdir()):
        check.warnings.append(
            f"{staging} holds leftovers of interrupted writes (removed by the next writer)"
        )
    return check


def _check_spec(root: Path | RemoteLocation, check: PlateCheck) -> str:
    try:
        import ome_zarr_models
        import zarr
    except ImportError:
        check.warnings.append("ome-zarr-models is not installed: the specification was not checked")
        return "skipped (ome-zarr-models not installed)"
    version = getattr(ome_zarr_models, "__version__", "?")
    try:
        group = zarr.open_group(store=read_store(root, strict=False), mode="r")
        model = ome_zarr_models.open_ome_zarr(group)
    except Exception as err:  # the validator's verdict, whatever its type: reported
        check.problems.append(f"OME-NGFF (ome-zarr-models {version}): {err}")
        return f"ome-zarr-models {version}: invalid"
    kind = type(model).__name__
    if kind != "HCS":
        check.problems.append(f"OME-NGFF: {root} is a valid {kind}, not an HCS plate")
        return f"ome-zarr-models {version}: {kind}"
    return f"ome-zarr-models {version}: valid HCS plate"


def _check_well(store: PlateStore, well: str, deep: bool, check: PlateCheck) -> None:
    try:
        info = store.well_info(well)
    except WellZarrError as err:
        check.problems.append(f"well {well} is listed but cannot be opened: {err}")
        return
    lead = info.shape[:-2]
    for name, key in info.plane_names.items():
        index = (key.field, key.t, key.c, key.z) if "t" in info.axes else key[:3]
        if len(index) != len(lead) or any(i >= s for i, s in zip(index, lead, strict=True)):
            check.problems.append(
                f"well {well}: file {name!r} maps to plane {tuple(key)} outside the well's "
                f"shape {info.shape}"
            )
    if deep:
        try:
            data = store.read_well(well)
        except WellZarrError as err:
            check.problems.append(f"well {well}: {err}")
            return
        if data.shape != info.shape or np.dtype(data.dtype) != info.dtype:
            check.problems.append(f"well {well}: reads as {data.shape}, metadata says {info.shape}")


def _check_unlisted(store: PlateStore, check: PlateCheck) -> None:
    for name in store.unlisted_wells():
        # Wells are listed once per writing session: an interrupted session leaves its
        # complete wells unlisted (not damage: our reader shows them, others do not).
        check.warnings.append(
            f"well {name} is complete on disk but not listed in the plate metadata "
            "yet (an interrupted write: resume the conversion, or call "
            "PlateStore.recover())"
        )
