"""Template wells: wells that share a recorded layout are read through one opened well."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from napari_wellzarr.errors import WellZarrError
from napari_wellzarr.storage.foreignwells import ForeignTemplate
from napari_wellzarr.storage.reading import open_well
from napari_wellzarr.storage.remotefetch import fetch_recorded

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from napari_wellzarr.storage.locations import RemoteLocation
    from napari_wellzarr.storage.reading import OpenWell
    from napari_wellzarr.storage.records import LayoutRecords

__all__ = ["TemplateCache", "well_record"]


def well_record(
    root: Path | RemoteLocation, path: str, name: str, zarr_format: int
) -> tuple[str, dict[str, tuple[int, ...]]] | None:
    """A well's layout record, or None (not sharded, or it does not open).

    For wells another process wrote (conversion workers, a crashed session): their
    writers never flushed, so their records are made here.  A well that does not open
    is still adopted; its reads report what is wrong with it.
    """
    try:
        opened = open_well(root, path, name, zarr_format)
        files = opened.shard_files()
    except (WellZarrError, OSError):
        return None
    return None if files is None else (opened.layout_key(), files)


class TemplateCache:
    """One opened template well per layout key, and the clones read through them."""

    def __init__(self, root: Path | RemoteLocation, zarr_format: int) -> None:
        self.root = root
        self.zarr_format = zarr_format
        self._clones: dict[str, OpenWell] = {}
        self._templates: dict[str, OpenWell | None] = {}
        self._foreign = ForeignTemplate(root, zarr_format)

    def foreign_clone(self, path: str, name: str) -> OpenWell | None:
        """A well of a foreign plate read through its first well (see ForeignTemplate)."""
        cached = self._clones.get(path)
        if cached is None:
            cached = self._foreign.clone(path, name)
            if cached is not None:
                self._clones[path] = cached
        return cached

    def clone(
        self,
        path: str,
        name: str,
        records: LayoutRecords,
        is_listed: Callable[[str], bool],
    ) -> OpenWell | None:
        """A clone of the template of ``path``'s layout, or None when it cannot be trusted."""
        cached = self._clones.get(path)
        if cached is not None:
            return cached
        record = records.get(path)
        if record is None:
            return None
        key, files = record
        if not self._unchanged(path, files):
            return None
        template = self._template(key, records, is_listed)
        if template is None:
            return None
        clone = template.clone(name, path, files)
        self._clones[path] = clone
        return clone

    def forget(self, path: str) -> None:
        """Drop the clone of ``path`` (its read failed: read its own metadata next time)."""
        self._clones.pop(path, None)
        self._foreign.forget(path)

    def clear(self) -> None:
        """Forget every template and clone."""
        self._clones.clear()
        self._templates.clear()
        self._foreign.forget()

    def _unchanged(self, path: str, files: Mapping[str, tuple[int, ...]]) -> bool:
        if not isinstance(self.root, Path):
            # Remote: no stat without one request per document of every well; each
            # shard's size is checked as it is read instead (ShardReader).
            return True
        for file_name, identity in files.items():
            if file_name.rsplit("/", 1)[-1] != "zarr.json":
                continue  # shard files: checked as they are read (ShardReader)
            try:
                stat = (self.root / path / file_name).stat()
            except OSError:
                return False
            if identity != (stat.st_size, stat.st_mtime_ns):
                return False  # rewritten or damaged since it was recorded: read its own
        return True

    def _template(
        self, key: str, records: LayoutRecords, is_listed: Callable[[str], bool]
    ) -> OpenWell | None:
        if key not in self._templates:
            template_path = records.template(key)
            template = None
            if template_path is not None and is_listed(template_path):
                fetch_recorded(self.root, [template_path], records)  # remote: all at once
                try:
                    opened = open_well(self.root, template_path, template_path, self.zarr_format)
                except (WellZarrError, OSError):
                    opened = None
                if opened is not None and opened.layout_key() == key:
                    template = opened
            self._templates[key] = template
        return self._templates[key]
