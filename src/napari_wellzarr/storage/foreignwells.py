"""Wells of foreign plates read through one opened well when their documents match it."""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from napari_wellzarr.errors import WellZarrError
from napari_wellzarr.storage.fsio import MAX_METADATA_BYTES
from napari_wellzarr.storage.reading import open_well

if TYPE_CHECKING:
    from napari_wellzarr.storage.locations import RemoteLocation
    from napari_wellzarr.storage.reading import OpenWell

__all__ = ["ForeignTemplate"]

#: The documents of a zarr node, by zarr format and kind.
_DOCS = {
    (3, "group"): ("zarr.json",),
    (3, "array"): ("zarr.json",),
    (2, "group"): (".zgroup", ".zattrs"),
    (2, "array"): (".zarray", ".zattrs"),
}


class ForeignTemplate:
    """The first well of a plate written by other software, and clones of it.

    A well whose documents (well group, images, each array it reads) are byte for byte
    the template's, its own path in place of the template's (ome-zarr-py names each
    image after its path), has the template's layout: it is read through a clone, none
    of its metadata parsed.  Any other well (and any remote plate) is opened on its own.
    """

    def __init__(self, root: Path | RemoteLocation, zarr_format: int) -> None:
        self.root = root
        self.zarr_format = zarr_format
        self._lock = threading.Lock()
        self._template: OpenWell | None = None
        self._docs: dict[str, bytes | None] = {}
        self._arrays: set[str] = set()  # which of the documents are arrays'

    def clone(self, path: str, name: str) -> OpenWell | None:
        """A clone of the template for the well at ``path``, or None: open it on its own.

        The template itself for its own path.  The group documents are compared now,
        each array's document before the clone first reads it (``OpenWell.verify``).
        """
        if not isinstance(self.root, Path):
            return None
        template = self._template or self._first(path, name)
        docs = self._docs
        if template is None or template.info.path == path:
            return template
        groups = [doc for doc in docs if doc not in self._arrays]
        if not self._same(template.info.path, path, groups, docs):
            return None
        clone = template.clone(name, path, {})
        images = template.images

        def verify(image: int, level: int) -> bool:
            node = f"{images[image].path}/{images[image].meta.multiscale.datasets[level].path}/"
            names = [f"{node}{doc}" for doc in _DOCS[(self.zarr_format, "array")]]
            return all(n in docs for n in names) and self._same(
                template.info.path, path, names, docs
            )

        clone.verify = verify
        return clone

    def _same(
        self, template: str, path: str, names: list[str], docs: dict[str, bytes | None]
    ) -> bool:
        """Whether the documents ``names`` of the well at ``path`` are the template's."""
        old, new = template.encode(), path.encode()
        folder = os.path.join(os.fspath(self.root), path)  # type: ignore[arg-type]
        for doc in names:
            found, expected = _read(os.path.join(folder, doc)), docs[doc]
            if found is None or expected is None:
                if found is not expected:
                    return False
            elif found != expected.replace(old, new):
                return False
        return True

    def forget(self, path: str | None = None) -> None:
        """Drop the template (if it is the well at ``path``; None: whatever well it is)."""
        with self._lock:
            if path is None or (self._template and self._template.info.path == path):
                self._template, self._docs = None, {}

    def _first(self, path: str, name: str) -> OpenWell | None:
        """Open the well at ``path`` as the template and read its documents' bytes."""
        assert isinstance(self.root, Path)
        with self._lock:
            if self._template is not None:
                return self._template
            try:
                opened = open_well(self.root, path, name, self.zarr_format)
            except (WellZarrError, OSError):
                return None  # its own open reports the damage; the next well is tried
            nodes = [("", "group")]
            for image in opened.images:
                nodes.append((f"{image.path}/", "group"))
                nodes += [
                    (f"{image.path}/{d.path}/", "array") for d in image.meta.multiscale.datasets
                ]
            docs = {
                f"{node}{doc}": _read(self.root / path / f"{node}{doc}")
                for node, kind in nodes
                for doc in _DOCS[(self.zarr_format, kind)]
            }
            self._arrays = {
                f"{node}{doc}"
                for node, kind in nodes
                if kind == "array"
                for doc in _DOCS[(self.zarr_format, kind)]
            }
            if docs.get(_DOCS[(self.zarr_format, "group")][0]) is None:
                return None
            self._docs, self._template = docs, opened
            return opened


def _read(path: str | Path) -> bytes | None:
    """A document's bytes; None if absent, not a file or too large to be metadata."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except (FileNotFoundError, NotADirectoryError):
        return None
    try:
        size = os.fstat(fd).st_size
        if size > MAX_METADATA_BYTES:
            return None
        raw = os.read(fd, size + 1)
        while len(raw) <= size and (more := os.read(fd, size + 1 - len(raw))):
            raw += more  # (a short read)
    except IsADirectoryError:
        return None
    finally:
        os.close(fd)
    return raw if len(raw) == size else None
