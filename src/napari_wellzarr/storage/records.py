"""The plate's record of which wells share which on-disk layout."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from napari_wellzarr.storage import fsio
from napari_wellzarr.storage._spec import LAYOUT_FILE
from napari_wellzarr.storage.locations import RemoteLocation

if TYPE_CHECKING:
    from pathlib import Path

__all__ = ["LAYOUT_FILE", "LayoutRecords", "UploadedWell"]

_MAX_BYTES: Final = 64 * 2**20

_PATH: Final = re.compile(r"[A-Za-z0-9_-]{1,16}/[A-Za-z0-9_-]{1,16}")
_KEY: Final = re.compile(r"[0-9a-f]{12}")
# a file of the well, relative to it: "zarr.json" (the well's document) or an array's path
_FILE: Final = re.compile(r"([A-Za-z0-9_-]{1,64}/){0,4}([A-Za-z0-9_-]{1,64}|zarr\.json)")
# file in the well -> (size, mtime_ns[, chunk sizes of a shard file...])
Files = dict[str, tuple[int, ...]]
_MAX_CHUNKS: Final = 2**16


def _identity(value: object) -> tuple[int, ...] | None:
    if (
        isinstance(value, list)
        and 2 <= len(value) <= 2 + _MAX_CHUNKS
        and all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in value)
    ):
        return tuple(value)
    return None


@dataclass(frozen=True)
class UploadedWell:
    """What the writer of a well put into an object store, for the plate's one finisher.

    ``tags``: the entity tag the store answered for each object put (path in the well);
    ``files``: the layout record's files without their mtimes, ``(size, *chunk sizes)``
    (documents by their path, arrays by theirs); ``objects``: each array's shard object;
    ``docs``: the bytes of the well's documents.  The finisher trusts none of it until a
    listing shows the same entity tags and sizes (then no document or shard index of the
    well needs to be read back); small and picklable (it travels back from dask workers).
    """

    path: str
    tags: dict[str, str | None]
    files: dict[str, tuple[int, ...]]
    objects: dict[str, str]
    docs: dict[str, bytes]

    @classmethod
    def of(
        cls, path: str, tags: dict[str, str | None], files: Files, docs: dict[str, bytes]
    ) -> UploadedWell | None:
        """From a well's record ``files`` (size, mtime, ...) and the tags of its puts.

        None when an array's shard is not exactly one object put.
        """
        objects = {}
        for name in files:
            if name.endswith("zarr.json"):
                continue
            found = [k for k in tags if k.startswith(f"{name}/") and not k.endswith("zarr.json")]
            if len(found) != 1:
                return None
            objects[name] = found[0]
        sizes = {name: (f[0], *f[2:]) for name, f in files.items()}
        return cls(path, tags, sizes, objects, docs)

    def verified(self, listed: dict[str, tuple[int, int, str | None]]) -> Files | None:
        """The well's layout record files (mtimes from ``listed``), if the listing confirms it.

        ``listed``: ``(size, last modified ns, entity tag)`` by path in the well.  None
        when any object put is not listed with its tag, or a file's size differs.
        """
        for name, tag in self.tags.items():
            found = listed.get(name)
            if tag is None or found is None or _unquoted(found[2]) != _unquoted(tag):
                return None
        out: Files = {}
        for name, (size, *chunks) in self.files.items():
            key = self.objects.get(name, name)
            found = listed.get(key)
            if found is None or found[0] != size or key not in self.tags:
                return None
            out[name] = (size, found[1], *chunks)
        return out


def _unquoted(tag: str | None) -> str | None:
    return tag.strip('"') if tag is not None else None


class LayoutRecords:
    """Wells -> (layout key, shard file identities); layout key -> (template, arrays)."""

    def __init__(self) -> None:
        self._wells: dict[str, tuple[str, Files]] = {}
        self._layouts: dict[str, tuple[str, tuple[str, ...]]] = {}
        self._pending: set[str] = set()
        #: The plate overview's version: the wells it was built from and its shard file.
        self.overview: dict[str, Any] | None = None

    @classmethod
    def parse(cls, block: object) -> LayoutRecords:
        """Read a ``{"layouts": ..., "wells": ...}`` document, keeping its valid entries."""
        out = cls()
        if not isinstance(block, dict):
            return out
        overview = block.get("overview")
        out.overview = overview if isinstance(overview, dict) else None
        layouts, wells = block.get("layouts"), block.get("wells")
        if not isinstance(layouts, dict) or not isinstance(wells, dict):
            return out
        for key, entry in layouts.items():
            if not isinstance(entry, dict) or not _KEY.fullmatch(str(key)):
                continue
            template, arrays = entry.get("template"), entry.get("arrays")
            if (
                isinstance(template, str)
                and _PATH.fullmatch(template)
                and isinstance(arrays, list)
                and arrays
                and all(isinstance(a, str) and _FILE.fullmatch(a) for a in arrays)
            ):
                out._layouts[key] = (template, tuple(arrays))
        for path, entry in wells.items():
            if not _PATH.fullmatch(str(path)) or not isinstance(entry, list) or not entry:
                continue
            layout = out._layouts.get(entry[0]) if isinstance(entry[0], str) else None
            if layout is None or len(entry) != len(layout[1]) + 1:
                continue
            identities = [_identity(v) for v in entry[1:]]
            if all(i is not None for i in identities):
                files = {a: i for a, i in zip(layout[1], identities, strict=True) if i}
                out._wells[path] = (entry[0], files)
        return out

    @classmethod
    def load(cls, root: Path | RemoteLocation) -> LayoutRecords:
        """The records of the plate at ``root`` (none if the file is missing or unreadable)."""
        if isinstance(root, RemoteLocation):
            try:
                raw = (root / LAYOUT_FILE).read(_MAX_BYTES)
                return cls.parse(json.loads(raw)) if raw is not None else cls()
            except (OSError, ValueError):
                return cls()
        try:
            with open(root / LAYOUT_FILE, "rb") as fh:
                raw = fsio.read_bounded(fh, _MAX_BYTES)
            doc = json.loads(raw) if len(raw) <= _MAX_BYTES else None
        except (OSError, ValueError):
            return cls()
        return cls.parse(doc)

    def save(self, root: Path | RemoteLocation) -> None:
        """Replace the plate's record file (atomically; a cache, so not fsynced)."""
        data = json.dumps(self.to_json(), separators=(",", ":")).encode()
        if isinstance(root, RemoteLocation):
            (root / LAYOUT_FILE).write(data)
            return
        fsio.atomic_write_bytes(root / LAYOUT_FILE, data, durable=False)

    def to_json(self) -> dict[str, Any]:
        """The ``layouts`` / ``wells`` entries (if any) and the overview's version (if any)."""
        extra = {"overview": self.overview} if self.overview is not None else {}
        if not self._wells:
            return extra
        used = {key for key, _ in self._wells.values()}
        return {
            **extra,
            "layouts": {
                key: {"template": template, "arrays": list(arrays)}
                for key, (template, arrays) in sorted(self._layouts.items())
                if key in used
            },
            "wells": {
                path: [key, *([*files[a]] for a in self._layouts[key][1])]
                for path, (key, files) in sorted(self._wells.items())
            },
        }

    def add(self, path: str, key: str, files: Files, *, pending: bool = False) -> None:
        """Record ``path``'s layout; the first well recorded with a layout is its template."""
        arrays = tuple(files)
        current = self._layouts.get(key)
        if current is None or current[1] != arrays:
            self._layouts[key] = (path, arrays)
        before = self._wells.get(path)
        self._wells[path] = (key, dict(files))
        if before is not None and before[0] != key and self.template(before[0]) == path:
            # the template of its old layout changed layout: another well takes its place
            others = [p for p, (k, _) in self._wells.items() if k == before[0]]
            if others:
                self._layouts[before[0]] = (others[0], self._layouts[before[0]][1])
        if pending:
            self._pending.add(path)

    def get(self, path: str) -> tuple[str, Files] | None:
        """``(layout key, shard file identities)`` of a well, if recorded."""
        return self._wells.get(path)

    def template(self, key: str) -> str | None:
        """The path of a well recorded with layout ``key``."""
        layout = self._layouts.get(key)
        return layout[0] if layout is not None else None

    def pending(self) -> LayoutRecords:
        """The records added with ``pending=True`` and not yet marked :meth:`done`."""
        out = LayoutRecords()
        for path in self._pending:
            key, files = self._wells[path]
            out._layouts.setdefault(key, self._layouts[key])
            out._wells[path] = (key, files)
        return out

    def update(self, other: LayoutRecords) -> None:
        """Take ``other``'s wells (they replace these); keep this record's templates."""
        for path, (key, files) in other._wells.items():
            self.add(path, key, files)
        for key, layout in other._layouts.items():
            self._layouts.setdefault(key, layout)

    def done(self, written: LayoutRecords) -> None:
        """Forget that ``written``'s wells are pending (unless rewritten meanwhile)."""
        for path, record in written._wells.items():
            if self._wells.get(path) == record:
                self._pending.discard(path)
