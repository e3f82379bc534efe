"""Where the OpenHCS-compatible backend's virtual files live: its open plates and name index."""

from __future__ import annotations

import contextlib
import os
import threading
import time
import weakref
from dataclasses import dataclass
from functools import wraps
from typing import TYPE_CHECKING, Concatenate, ParamSpec, TypeVar

from napari_wellzarr.convert.naming import try_parse_filename
from napari_wellzarr.errors import (
    MetadataError,
    PlaneNotFoundError,
    PlateExistsError,
    PlateNotFoundError,
    StoreReadOnlyError,
    WellDataError,
    WellExistsError,
    WellNameError,
)
from napari_wellzarr.openhcs.paths import (
    RESERVED,
    PathLike,
    is_array,
    is_passthrough,
    read_links,
    require_writable,
    resolve_link,
    safe_name,
    split_path,
)
from napari_wellzarr.storage import fsio
from napari_wellzarr.storage.config import StorageConfig
from napari_wellzarr.storage.store import LIST_EVERY_S, PlateStore

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Sequence
    from pathlib import Path

    from napari_wellzarr.storage.axes import PlaneKey

__all__ = ["Hit", "PlateIndex", "flush_stores", "locked"]

_P = ParamSpec("_P")
_R = TypeVar("_R")
_S = TypeVar("_S", bound="PlateIndex")


def locked(
    method: Callable[Concatenate[_S, _P], _R],
) -> Callable[Concatenate[_S, _P], _R]:
    """Run a method under the backend's lock (writes, and every cache update)."""

    @wraps(method)
    def run(self: _S, /, *args: _P.args, **kwargs: _P.kwargs) -> _R:
        with self._lock:
            return method(self, *args, **kwargs)

    return run


@dataclass(frozen=True)
class Hit:
    """A located virtual file: a plane of ``well`` at ``key``, or (well None) a flat array."""

    root: Path
    name: str
    well: str | None = None
    key: PlaneKey | None = None


class PlateIndex:
    """The plates a backend has open, the wells it has yet to flush, and its name index."""

    def __init__(self, config: StorageConfig | None = None) -> None:
        self.config = config if config is not None else StorageConfig()
        self._stores: dict[Path, PlateStore] = {}
        self._dirty: set[Path] = set()
        self._index: dict[Path, dict[str, tuple[str, PlaneKey]]] = {}
        self._maps: dict[tuple[Path, str], dict[str, PlaneKey]] = {}
        self._listed_at: dict[Path, float] = {}
        self._lock = threading.RLock()
        self._finalizer = weakref.finalize(self, flush_stores, self._stores, self._dirty)

    # -- plates ---------------------------------------------------------------------------

    @locked
    def _plate(self, root: Path) -> PlateStore | None:
        """The plate at ``root`` for reading, or None when it is not one (never writes)."""
        store = self._stores.get(root)
        if store is None:
            if not root.is_dir() or fsio.detect_zarr_format(root) is None:
                return None
            try:
                store = PlateStore.open(root, "r")
            except PlateNotFoundError:
                return None
            self._stores[root] = store
        return store

    @locked
    def _writer(self, root: Path) -> PlateStore:
        store = self._stores.get(root)
        if store is None or store.read_only:
            require_writable(root)
            self._forget(root)
            store = self._stores[root] = self._open_or_create(root)
        return store

    def _open_or_create(self, root: Path) -> PlateStore:
        # Several processes may create one plate at once: the losers open the winner's.
        deadline = time.monotonic() + 2.0
        while True:
            try:
                if fsio.detect_zarr_format(root) is not None:
                    return PlateStore.open(root, "r+")
                if root.is_dir() and any(root.iterdir()):
                    return self._adopt(root)
                return PlateStore.create(root, self.config)
            except PlateNotFoundError:
                half_written = (root / ".zgroup").is_file() and not (root / ".zattrs").is_file()
                if not half_written or time.monotonic() > deadline:
                    raise
            except PlateExistsError:
                if time.monotonic() > deadline:
                    raise
            time.sleep(0.02)

    def _adopt(self, root: Path) -> PlateStore:
        """Make a directory that already holds plain files a plate (without touching them)."""
        stage = fsio.staging_dir(root, "plate")
        try:
            PlateStore.create(stage, self.config, name=root.name)
            docs = sorted(
                (p for p in stage.iterdir() if p.is_file()), key=lambda p: p.name == ".zgroup"
            )
            for doc in docs:  # a v2 plate's .zgroup goes last: with it, the plate exists
                with contextlib.suppress(FileExistsError):
                    os.link(doc, root / doc.name)
        finally:
            fsio.remove_tree(stage)
        return PlateStore.open(root, "r+")

    def _forget(self, under: Path | None, *, flush: bool = True) -> None:
        for root in [r for r in self._stores if under is None or r == under or under in r.parents]:
            store = self._stores.pop(root)
            if flush and root in self._dirty:
                store.flush()
            self._dirty.discard(root)
            self._listed_at.pop(root, None)
            self._index.pop(root, None)
            self._maps = {k: v for k, v in self._maps.items() if k[0] != root}

    def _list_progress(self, root: Path) -> None:
        """List ``root``'s new wells after its first well, then at most every ``LIST_EVERY_S``.

        OpenHCS callers never flush: this keeps the plate valid OME from its first well on
        and lets other readers see progress, at one plate-metadata write per interval.
        """
        now = time.monotonic()
        last = self._listed_at.get(root)
        if last is not None and now - last < LIST_EVERY_S:
            return
        self._stores[root].flush()
        self._dirty.discard(root)
        self._listed_at[root] = now

    def _flush_under(self, under: Path) -> None:
        for root in [r for r in self._dirty if r == under or under in r.parents]:
            self._stores[root].flush()
            self._dirty.discard(root)

    @locked
    def _refresh(self, root: Path) -> bool:
        """Re-read a cached plate's well list; True when other writers added wells."""
        old = self._stores.get(root)
        if old is None or root in self._dirty or fsio.detect_zarr_format(root) is None:
            return False
        fresh = PlateStore.open(root, "r")
        added = sorted(set(fresh.wells()) - set(old.wells()))
        if not added:
            return False
        old.close()
        self._stores[root] = fresh
        index = self._index.get(root)
        if index is not None:
            for well in added:
                self._add_names(index, root, fresh, well)
        return True

    # -- finding virtual files ------------------------------------------------------------

    def _locate(self, path: PathLike) -> Hit:
        root, name = split_path(path)
        if not name:
            raise IsADirectoryError(f"{path} is a directory, not a file")
        if not safe_name(name):
            raise PlaneNotFoundError(f"{path!r}: no such file ({name!r} is not a file name)")
        if not root.is_dir():
            raise PlateNotFoundError(f"{path}: no such file (no directory {root})")
        final = resolve_link(read_links(root), root, name)
        hit = self._find(root, final) or (self._find(root, final) if self._refresh(root) else None)
        if hit is None:
            via = f" (the symlink's target {final!r})" if final != name else ""
            raise PlaneNotFoundError(f"{path}: no file {final!r}{via} in the store {root}")
        return hit

    def _find(self, root: Path, name: str) -> Hit | None:
        if is_array(root / name):
            return Hit(root, name)
        store = self._plate(root)
        if store is None:
            return None
        try:
            parsed = try_parse_filename(name)
        except WellNameError:
            parsed = None
        well = parsed.well.label if parsed is not None else None
        if well is not None and ((root, well) in self._maps or well in store):
            key = self._well_map(root, store, well).get(name)
            if key is not None:
                return Hit(root, name, well, key)
        found = self._names(root, store).get(name)
        return None if found is None else Hit(root, name, *found)

    @locked
    def _well_map(self, root: Path, store: PlateStore, well: str) -> dict[str, PlaneKey]:
        names = self._maps.get((root, well))
        if names is None:
            names = dict(store.well_info(well).plane_names)
            for name in names:
                # A name from the plate's metadata becomes a path: it must stay one file
                # name inside the store ("../x", "/etc/x" and "a/b" would not).
                if not safe_name(name) or name in RESERVED:
                    raise MetadataError(
                        f"{root}: well {well} maps the file name {name!r}, which is not a "
                        "file name inside the store (no '/', '\\', '..', NUL)"
                    )
            self._maps[(root, well)] = names
        return names

    @locked
    def _names(self, root: Path, store: PlateStore) -> dict[str, tuple[str, PlaneKey]]:
        """Every file name of the plate -> (well, plane): read once per store, then kept."""
        index = self._index.get(root)
        if index is None:
            index = {}
            for well in store.wells():
                self._add_names(index, root, store, well)
            self._index[root] = index
        return index

    def _add_names(
        self, index: dict[str, tuple[str, PlaneKey]], root: Path, store: PlateStore, well: str
    ) -> None:
        for name, key in self._well_map(root, store, well).items():
            other = index.setdefault(name, (well, key))[0]
            if other != well:
                raise MetadataError(
                    f"{root}: file {name!r} is mapped in two wells, {other} and {well}"
                )

    def _check_free(self, root: Path, store: PlateStore, names: Sequence[str]) -> None:
        links, index = read_links(root), self._names(root, store)
        for name in names:
            if name in RESERVED or name.startswith("."):
                raise WellDataError(f"{root / name}: {name!r} is reserved for zarr metadata")
            if name in index or name in links or (root / name).exists():
                raise WellExistsError(f"{root / name} already exists; save never overwrites")

    # -- listing and describing ---------------------------------------------------------

    def _plane_text(self, hit: Hit) -> str:
        assert hit.well is not None
        assert hit.key is not None
        return (
            f"it is plane {tuple(hit.key)} of well {hit.well} in {hit.root}, and a well "
            "is written whole: single planes cannot be moved or deleted (delete_all the plate)"
        )

    def _refuse_inside_plate(self, path: Path, what: str) -> None:
        if fsio.detect_zarr_format(path) is None:
            return
        for parent in path.parents:
            if fsio.detect_zarr_format(parent) is None:
                return
            if self._plate(parent) is not None:
                raise StoreReadOnlyError(
                    f"cannot {what} {path}: it is inside the plate {parent}, whose metadata "
                    "would still list it; delete the whole plate"
                )

    def _folders(self, base: Path, recursive: bool, seen: set[str] | None = None) -> Iterator[Path]:
        # Directories are visited once each: a symlink to an ancestor is not a cycle.
        seen = set() if seen is None else seen
        real = os.path.realpath(base)
        if real in seen:
            return
        seen.add(real)
        yield base
        for child in self._subdirs(base) if recursive else ():
            yield from self._folders(child, True, seen)

    def _subdirs(self, base: Path) -> list[Path]:
        """Plain directories and plates in ``base`` (not the zarr groups or arrays of a plate)."""
        return [
            child
            for child in sorted(base.iterdir())
            if not child.name.startswith(".")
            and child.is_dir()
            and (fsio.detect_zarr_format(child) is None or self._plate(child) is not None)
        ]

    def _file_names(self, folder: Path) -> set[str]:
        store = self._plate(folder)
        names = set(self._names(folder, store)) if store is not None else set()
        names.update(read_links(folder))
        for child in folder.iterdir():
            if child.name.startswith("."):
                continue
            if (child.is_file() and is_passthrough(child.name)) or (
                child.is_dir() and is_array(child)
            ):
                names.add(child.name)
        return names


def flush_stores(
    stores: dict[Path, PlateStore], dirty: set[Path], skip: Path | None = None
) -> None:
    """Flush the ``dirty`` plates (all but ``skip``), so their metadata lists new wells."""
    for root in sorted(r for r in dirty if r != skip):
        stores[root].flush()
        dirty.discard(root)
