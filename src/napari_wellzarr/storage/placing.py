"""Putting a well built in a staging folder in place: a rename on disk, an upload to S3."""

from __future__ import annotations

import os
import shutil
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Final

from napari_wellzarr.errors import PlateExistsError, WellExistsError
from napari_wellzarr.storage import fsio
from napari_wellzarr.storage.claims import CLAIM_NAME
from napari_wellzarr.storage.locations import RemoteLocation
from napari_wellzarr.storage.reading import open_well
from napari_wellzarr.storage.records import Files, UploadedWell
from napari_wellzarr.storage.writing import swap_in

if TYPE_CHECKING:
    from collections.abc import Callable

    from napari_wellzarr.storage.reading import OpenWell

__all__ = [
    "UPLOAD_THREADS",
    "discard_stage",
    "place_well",
    "prepare_remote",
    "stage_for",
    "upload_well",
]

#: Objects of one well uploaded at once.
UPLOAD_THREADS: Final = 8


def prepare_remote(root: RemoteLocation, *, overwrite: bool, exist_ok: bool) -> bool:
    """Make ``root`` (``s3://``) ready for a new plate; True: a plate is there to open.

    A run's claim is kept; ``overwrite`` deletes every other object of a zarr store
    there (never of anything else).  Raises :class:`PlateExistsError` otherwise.
    """
    present = [k for k in root.keys() if k != CLAIM_NAME]
    if not present:
        return False
    is_zarr = fsio.has_node_doc(root)
    if is_zarr and exist_ok and not overwrite:
        return True
    if not overwrite:
        raise PlateExistsError(
            f"{root} already exists; pass overwrite=True to replace it, or open it "
            "with PlateStore.open(url, mode='r+') to add wells"
        )
    if not is_zarr:
        raise PlateExistsError(
            f"{root} exists and is not a zarr store; overwrite=True will not delete it"
        )
    root.delete(present)
    return False


def stage_for(dest: Path | RemoteLocation, label: str) -> Path:
    """A fresh private folder to build a well in: under the plate, or (S3) a local temp dir."""
    if isinstance(dest, RemoteLocation):
        return Path(tempfile.mkdtemp(prefix=f"wellzarr-{label}-"))
    return fsio.staging_dir(dest, label)


def discard_stage(dest: Path | RemoteLocation, stage: Path) -> None:
    """Delete a staging folder (S3's is a private temp dir: no rename aside needed)."""
    if isinstance(dest, RemoteLocation):
        shutil.rmtree(stage, ignore_errors=True)
    else:
        fsio.remove_tree(stage)


def build_and_place(
    dest: Path | RemoteLocation,
    where: tuple[str, str],
    build: Callable[[Path], None],
    zarr_format: int,
    overwrite: bool,
    ours: bool,
    before: Callable[[], None],
) -> tuple[OpenWell, Files | None, UploadedWell | None]:
    """Build the well ``where`` = (path, name) in a stage, then :func:`place_well` it.

    Returns the staged well (described before it is placed: once in place, another
    process may already be replacing it; a rename keeps sizes and mtimes), its layout
    record's files (``ours``: every array one shard file) and what an upload put.
    ``before`` runs just before the well is placed.
    """
    stage = stage_for(dest, where[0].replace("/", "_"))
    try:
        build(stage)
        staged = open_well(stage.parent, stage.name, where[1], zarr_format)
        files = staged.shard_files() if ours else None
        before()
        put = place_well(dest, stage, where, zarr_format, overwrite, files)
    finally:
        discard_stage(dest, stage)
    return staged, files, put


def place_well(
    dest: Path | RemoteLocation,
    stage: Path,
    where: tuple[str, str],
    zarr_format: int,
    overwrite: bool,
    files: Files | None = None,
) -> UploadedWell | None:
    """Make the well built in ``stage`` the well ``where`` = (path, name) of the plate ``dest``.

    On disk: renamed into place under the plate lock, so that two writers of one well
    take turns (the loser is told the well exists, or with ``overwrite`` replaces it
    whole); returns None.  On S3: uploaded, its group document last
    (:func:`upload_well`); with the well's layout record ``files`` (described from the
    stage), returns what was put, for the plate's finisher (:class:`UploadedWell`).
    """
    path, name = where
    if isinstance(dest, RemoteLocation):
        tags = upload_well(stage, dest / path, name, zarr_format, overwrite)
        if files is None:
            return None
        docs = {n: (stage / n).read_bytes() for n in files if n.endswith("zarr.json")}
        return UploadedWell.of(path, tags, files, docs)
    with fsio.plate_lock(dest):
        swap_in(dest, stage, path, name, zarr_format, overwrite)
    return None


def upload_well(
    stage: Path, target: RemoteLocation, name: str, zarr_format: int, overwrite: bool
) -> dict[str, str | None]:
    """Upload the well built in ``stage`` to ``target``: its data first, its document last.

    Readers (and a resumed conversion) take a well whose group document exists for
    complete, so that document goes up only after every other object of the well.  A
    well being replaced loses its document first (it is incomplete from then on), and
    objects the new well does not have are deleted before its document goes up.  No
    rename and no lock: a well has one writer at a time (its dask task), and a second
    writer of the same well writes the same bytes (the same source, the same options).
    Returns the entity tag the store gave each object, by path in the well.
    """
    files = sorted(p.relative_to(stage).as_posix() for p in stage.rglob("*") if p.is_file())
    order = ("zarr.json",) if zarr_format == 3 else (".zattrs", ".zgroup")
    docs = [d for d in order if d in files]
    existing = set(target.keys())
    if existing & {"zarr.json", ".zgroup"}:
        if not overwrite:
            raise WellExistsError(
                f"well {name} already exists in {target.parent.parent}; pass overwrite=True "
                "to replace it"
            )
        target.delete([d for d in reversed(docs) if d in existing])
    data = [f for f in files if f not in docs]
    with ThreadPoolExecutor(UPLOAD_THREADS, thread_name_prefix="wellzarr-upload") as pool:
        tags = dict(
            zip(
                data,
                pool.map(lambda f: (target / f).upload(os.fspath(stage / f)), data),
                strict=True,
            )
        )
    stale = sorted(existing - set(files))
    if stale:
        target.delete(stale)
    for doc in docs:
        tags[doc] = (target / doc).upload(os.fspath(stage / doc))
    return tags
