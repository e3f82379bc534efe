"""Remote plates: the documents the next reads need, fetched ahead together (few round trips)."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from napari_wellzarr.storage._spec import LAYOUT_FILE
from napari_wellzarr.storage.locations import RemoteLocation, fetch_all
from napari_wellzarr.storage.records import LayoutRecords

if TYPE_CHECKING:
    from collections.abc import Sequence
    from pathlib import Path

__all__ = ["fetch_ahead", "fetch_recorded", "fetch_wells"]


def fetch_ahead(root: Path | RemoteLocation, *, ours: bool) -> None:
    """Fetch, on a thread, the layout record of a plate of ours (``ours``) opened from a URL.

    Every read of a well's pixels starts from it: it names the well's template and the
    template's documents (:func:`fetch_recorded`).
    """
    if ours and isinstance(root, RemoteLocation):
        _start(root, [])


def fetch_wells(root: Path | RemoteLocation, paths: Sequence[str]) -> None:
    """Fetch, on a thread, the documents of the wells ``paths`` of a remote plate, at once.

    For a viewer about to read those wells' metadata one document after another: the
    wells' group documents with the layout record, then every document the record lists
    for them (images, levels) with their label groups.  Readers that ask meanwhile wait
    for the request in flight; nothing happens for a local plate.
    """
    if isinstance(root, RemoteLocation) and paths:
        _start(root, list(paths))


def fetch_recorded(
    root: Path | RemoteLocation, paths: Sequence[str], records: LayoutRecords
) -> None:
    """Fetch the documents ``records`` lists for the wells ``paths`` of a remote plate, at once.

    Their label groups too (one request each: :func:`open_well` looks for them).  Wells
    without a record are left to be read document by document.
    """
    if not isinstance(root, RemoteLocation):
        return
    docs: list[RemoteLocation] = []
    for path in paths:
        entry = records.get(path)
        if entry is None:
            continue
        names = [name for name in entry[1] if name.endswith("zarr.json")]
        images = [name.rsplit("/", 1)[0] for name in names if name.count("/") == 1]
        docs += [root / path / name for name in names]
        docs += [root / path / image / "labels" / "zarr.json" for image in images[:1]]
    fetch_all(docs)


def _start(root: RemoteLocation, paths: list[str]) -> None:
    thread = threading.Thread(
        target=_fetch, args=(root, paths), name="wellzarr-fetch-ahead", daemon=True
    )
    thread.start()


def _fetch(root: RemoteLocation, paths: list[str]) -> None:
    fetch_all([root / LAYOUT_FILE, *(root / path / "zarr.json" for path in paths)])
    if paths:
        fetch_recorded(root, paths, LayoutRecords.load(root))  # the record: from the cache
