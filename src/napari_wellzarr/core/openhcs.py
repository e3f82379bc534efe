"""OpenHCS's path-based Zarr backend ("virtual files"), re-created over :class:`PlateStore`.

A file path ``.../images/A01_s1_w2_z001.tif`` means the plate store ``.../images`` and the
key ``A01_s1_w2_z001.tif``; a path without a suffix (or an existing directory that is not
a zarr array) is a directory.  ``.json .csv .txt .roi.zip .zip`` files are plain files on
disk.  Decisions where OpenHCS was unclear or broken:

* **Coordinates** of a plane come from ``coords=`` or from its file name
  (:mod:`.naming`), never from its position in the batch; missing planes are 0.
* **Plate metadata** is written once per write session, never by rescanning the plate:
  wells written by :meth:`ZarrStorageBackend.save_batch` are listed when the backend is
  flushed -- by :meth:`~ZarrStorageBackend.flush` / :meth:`~ZarrStorageBackend.close` /
  ``with``, when a batch goes to a *different* store (the previous store is flushed),
  and, if the caller forgets, when the backend is garbage-collected or the interpreter
  exits (a ``weakref.finalize`` hook).  Other processes see the wells after the flush.
* **save** of an array writes a standalone ("legacy flat") zarr array ``<store>/<name>``,
  as OpenHCS did; the store becomes a plate if it is not one yet.  **copy** of a virtual
  file writes such an array; **move** and **delete** of a plane inside a well are refused
  (a well is written whole and never loses single planes), while flat arrays, plain files,
  symlinks and directories can be moved and deleted.  Nothing is ever overwritten.
* **Symlinks** are names -> target names inside one store, kept in the JSON file
  ``<store>/.wellzarr_symlinks.json`` (written atomically under the plate lock), never in
  OME metadata; chains are followed with cycle detection.
* Read-only calls (``exists``, ``stat``, ``load``, ``list_*``, ``is_*``) never write.
"""

from __future__ import annotations

import contextlib
import errno
import fnmatch
import json
import os
import shutil
import threading
import time
import uuid
import weakref
from dataclasses import dataclass
from functools import wraps
from pathlib import Path
from typing import TYPE_CHECKING, Any, Concatenate, Final, ParamSpec, TypeVar

import numpy as np

from . import fsio
from .arrays import to_host
from .config import StorageConfig
from .errors import (
    CorruptDataError,
    MetadataError,
    PlaneNotFoundError,
    PlateExistsError,
    PlateNotFoundError,
    StoreReadOnlyError,
    SymlinkCycleError,
    WellDataError,
    WellExistsError,
    WellNameError,
)
from .geometry import Well, row_letters
from .metadata import parse_image
from .naming import ParsedName, parse_filename, try_parse_filename
from .store import PlateStore
from .well import PlaneKey

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Sequence
    from types import TracebackType

__all__ = ["PASSTHROUGH_EXTENSIONS", "SYMLINKS_FILE", "ZarrStorageBackend", "split_path"]

PathLike = str | os.PathLike[str]
#: File types stored as plain files on disk (checked case-insensitively).
PASSTHROUGH_EXTENSIONS: Final = (".json", ".csv", ".txt", ".roi.zip", ".zip")
#: Per-store file holding the zarr-native symlinks ``{"wellzarr_symlinks": {link: target}}``.
SYMLINKS_FILE: Final = ".wellzarr_symlinks.json"
_LINKS_KEY: Final = "wellzarr_symlinks"
# zarr's own documents are neither plain files nor virtual files.
_RESERVED: Final = frozenset({"zarr.json", ".zattrs", ".zgroup", ".zarray", SYMLINKS_FILE})
_POLY_MAP: Final = "polystore_filename_map"  # polystore (OpenHCS's successor), per field
_POLY_DIMS: Final = "polystore_dimensions"
_AXES: Final = {"field": "field", "site": "field", "c": "c", "channel": "c", "z": "z", "t": "t"}
_P = ParamSpec("_P")
_R = TypeVar("_R")


def _locked(
    method: Callable[Concatenate[ZarrStorageBackend, _P], _R],
) -> Callable[Concatenate[ZarrStorageBackend, _P], _R]:
    """Run a method under the backend's lock (writes, and every cache update)."""

    @wraps(method)
    def run(self: ZarrStorageBackend, /, *args: _P.args, **kwargs: _P.kwargs) -> _R:
        with self._lock:
            return method(self, *args, **kwargs)

    return run


def is_passthrough(path: PathLike) -> bool:
    """Whether ``path`` is a plain file type (``.json .csv .txt .roi.zip .zip``)."""
    text = str(path)
    return text.lower().endswith(PASSTHROUGH_EXTENSIONS) and os.path.basename(text) not in _RESERVED


def split_path(path: PathLike) -> tuple[Path, str]:
    """Split ``path`` into (absolute store directory, key); the key is ``""`` for a directory."""
    p = Path(os.path.abspath(path))
    if p.suffix and not (p.is_dir() and not _is_array(p)):
        return p.parent, p.name
    return p, ""


def _is_array(path: Path) -> bool:
    if (path / ".zarray").is_file():
        return True
    try:
        doc = json.loads((path / "zarr.json").read_bytes())
    except (FileNotFoundError, NotADirectoryError):
        return False
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CorruptDataError(f"{path / 'zarr.json'} is not valid JSON: {err}") from err
    return isinstance(doc, dict) and doc.get("node_type") == "array"


def _is_dir_path(path: Path) -> bool:
    return not split_path(path)[1]


@dataclass(frozen=True)
class _Hit:
    """A located virtual file: a plane of ``well`` at ``key``, or (well None) a flat array."""

    root: Path
    name: str
    well: str | None = None
    key: PlaneKey | None = None


class ZarrStorageBackend:
    """OpenHCS's ``ZarrStorageBackend`` API over well-chunked OME-Zarr plates.

    Parameters
    ----------
    config
        How new plates and arrays are stored (default: :class:`StorageConfig`).
        Existing plates keep their own configuration.

    Notes
    -----
    Missing files raise :class:`PlaneNotFoundError` (a ``KeyError``) when the store
    exists and :class:`PlateNotFoundError` (a ``FileNotFoundError``) when the directory
    does not; existing destinations raise ``FileExistsError`` subclasses.
    """

    def __init__(self, config: StorageConfig | None = None) -> None:
        self.config = config if config is not None else StorageConfig()
        self._stores: dict[Path, PlateStore] = {}
        self._dirty: set[Path] = set()
        self._index: dict[Path, dict[str, tuple[str, PlaneKey]]] = {}
        self._maps: dict[tuple[Path, str], dict[str, PlaneKey]] = {}
        self._lock = threading.RLock()
        self._finalizer = weakref.finalize(self, _flush_stores, self._stores, self._dirty)

    # -- session -------------------------------------------------------------------------

    @_locked
    def flush(self) -> None:
        """List every well written since the last flush in its plate's metadata."""
        _flush_stores(self._stores, self._dirty)

    @_locked
    def close(self) -> None:
        """Flush, then forget every open plate (the backend stays usable)."""
        self.flush()
        self._forget(None)

    def __enter__(self) -> ZarrStorageBackend:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- images ----------------------------------------------------------------------------

    @_locked
    def save_batch(
        self,
        /,
        data_list: Sequence[object],
        output_paths: Sequence[PathLike],
        *,
        row: str | None = None,
        col: str | int | None = None,
        n_fields: int | None = None,
        n_channels: int | None = None,
        n_z: int | None = None,
        coords: Sequence[Sequence[int]] | None = None,
        chunk_name: str | None = None,
        **metadata: Any,
    ) -> list[PlaneKey]:
        """Write one well from 2D planes, each placed by its coordinate, never by position.

        Parameters
        ----------
        data_list
            2D planes (NumPy, CuPy, PyTorch, JAX, anything array-like).
        output_paths
            One file path per plane, all in one store directory; the names become the
            well's ``openhcs_filename_map``.
        row, col
            The well (``row='B', col='03'``); by default parsed from the file names,
            which must then all name the same well.
        n_fields, n_channels, n_z
            Fix the well's shape; a plane beyond them is an error.  Unset: largest + 1.
        coords
            0-based ``(field, c, z[, t])`` per plane; by default parsed from the names.
        chunk_name
            Accepted for OpenHCS compatibility (used in nothing but its messages).
        **metadata
            ``channels``, ``pixel_size``, ``z_step`` (see :meth:`PlateStore.write_well`).

        Returns
        -------
        list of PlaneKey
            The planes that were missing and filled with 0.

        Raises
        ------
        WellExistsError
            The well, or one of the file names, already exists in the store.
        WellDataError, WellNameError
            Mismatched lengths, planes of different wells, duplicate coordinates,
            unparseable names, a coordinate beyond ``n_*``; the message names the file.
        """
        if len(data_list) != len(output_paths) or (
            coords is not None and len(coords) != len(data_list)
        ):
            raise WellDataError(
                f"save_batch {chunk_name or ''}: {len(data_list)} planes, {len(output_paths)} "
                f"paths{'' if coords is None else f', {len(coords)} coords'}; give one of each"
            )
        if not output_paths:
            return []
        root, names = _batch_names(output_paths)
        explicit = row is not None or col is not None
        parsed = None if coords is not None and explicit else [parse_filename(n) for n in names]
        if coords is not None:
            keys = [_coord(c, n) for c, n in zip(coords, names, strict=True)]
        else:
            keys = [p.key for p in parsed or ()]
        well = _batch_well(names, parsed, row, col)
        shape = _batch_shape(
            keys, names, {"n_fields": n_fields, "n_channels": n_channels, "n_z": n_z}
        )
        store = self._writer(root)
        target = _label(well)
        if target in store:
            raise WellExistsError(
                f"well {_label(well)} already exists in {root}; save_batch never overwrites"
            )
        self._check_free(root, store, names)
        _flush_stores(self._stores, self._dirty, skip=root)
        missing = store.write_planes(
            target, zip(keys, data_list, strict=True), names=names, shape=shape, **metadata
        )
        self._dirty.add(root)
        self._maps[(root, target)] = dict(zip(names, keys, strict=True))
        if root in self._index:
            self._index[root].update((n, (target, k)) for n, k in zip(names, keys, strict=True))
        return missing

    def load_batch(self, file_paths: Sequence[PathLike]) -> list[Any]:
        """Load files; planes are read per well, decoding only the chunks they live in.

        Raises :class:`PlaneNotFoundError` / :class:`PlateNotFoundError` for unknown files.
        """
        out: list[Any] = [None] * len(file_paths)
        planes: dict[tuple[Path, str], list[tuple[int, PlaneKey]]] = {}
        for i, path in enumerate(file_paths):
            if is_passthrough(path):
                out[i] = _load_plain(Path(path))
                continue
            hit = self._locate(path)
            if hit.well is None or hit.key is None:
                out[i] = _read_array(hit.root / hit.name)
            else:
                planes.setdefault((hit.root, hit.well), []).append((i, hit.key))
        for (root, well), items in planes.items():
            store = self._plate(root)
            assert store is not None
            for (i, _), plane in zip(
                items, store.read_planes(well, [k for _, k in items]), strict=True
            ):
                out[i] = plane
        return out

    def load(self, file_path: PathLike) -> Any:
        """Load one file (following symlinks): an array, or a plain file's content."""
        return self.load_batch([file_path])[0]

    @_locked
    def save(self, data: object, output_path: PathLike) -> None:
        """Save one file; never overwrites (``FileExistsError``).

        An array is written as a standalone zarr array ``<store>/<name>`` (the store is
        made a plate if needed).  Plain files: ``str`` is written as UTF-8 text, ``bytes``
        as is, and for ``.json`` any other object as JSON.
        """
        path = Path(os.path.abspath(output_path))
        if is_passthrough(path):
            _write_new(path, _encode(data, path))
            return
        root, name = split_path(path)
        if not name:
            raise IsADirectoryError(f"{output_path} is a directory, not a file")
        array = to_host(data, f"file {output_path}")
        if array.ndim < 2:
            raise WellDataError(f"{output_path}: data of shape {array.shape} is not an image (2D+)")
        store = self._writer(root)
        self._check_free(root, store, [name])
        self._write_array(store, name, array)

    # -- queries ---------------------------------------------------------------------------

    def exists(self, path: PathLike) -> bool:
        """Whether a file or directory exists (a symlink counts when it resolves)."""
        return bool(self.stat(path)["exists"])

    def is_file(self, path: PathLike) -> bool:
        """True for a file (or a symlink to one), False for a directory; missing: raises."""
        return bool(self._existing(path)["type"] != "directory")

    def is_dir(self, path: PathLike) -> bool:
        """True for a directory, False for a file; a missing path raises."""
        return bool(self._existing(path)["type"] == "directory")

    def is_symlink(self, path: PathLike) -> bool:
        """Whether ``path`` is a zarr-native symlink."""
        root, name = split_path(path)
        return bool(name) and root.is_dir() and name in _links(root)

    def stat(self, path: PathLike) -> dict[str, Any]:
        """Describe ``path`` without raising for missing paths.

        Keys: ``type`` (file/directory/symlink/missing), ``key``, ``store``, ``exists``,
        and ``target`` (symlinks) or ``well`` / ``plane`` (planes of a well).
        """
        p = Path(os.path.abspath(path))
        if is_passthrough(p) or _is_dir_path(p):
            kind = "directory" if p.is_dir() else "file" if p.exists() else "missing"
            return {"type": kind, "key": p.name, "store": str(p.parent), "exists": p.exists()}
        root, name = split_path(p)
        info: dict[str, Any] = {"key": name, "store": str(root)}
        link = _links(root).get(name) if root.is_dir() else None
        try:
            hit = self._locate(p)
        except (PlaneNotFoundError, PlateNotFoundError):
            hit = None
        if link is not None:
            return {**info, "type": "symlink", "target": link, "exists": hit is not None}
        if hit is None:
            return {**info, "type": "missing", "exists": False}
        if hit.well is not None and hit.key is not None:
            info.update(well=hit.well, plane=list(hit.key))
        return {**info, "type": "file", "exists": True}

    def list_files(
        self,
        directory: PathLike,
        pattern: str | None = None,
        extensions: set[str] | Sequence[str] | None = None,
        recursive: bool = False,
    ) -> list[Path]:
        """List files: the planes of the store's wells, flat arrays, symlinks and plain files.

        ``pattern`` is an fnmatch pattern on the name, ``extensions`` are matched
        case-insensitively; ``recursive`` descends plain sub-directories (and plates in them).
        """
        base = _directory(directory)
        exts = tuple(e.lower() for e in extensions) if extensions else None
        out = []
        for folder in self._folders(base, recursive):
            for name in self._file_names(folder):
                if (pattern is None or fnmatch.fnmatch(name, pattern)) and (
                    exts is None or name.lower().endswith(exts)
                ):
                    out.append(Path(directory) / folder.relative_to(base) / name)
        return sorted(out)

    def list_dir(self, path: PathLike) -> list[str]:
        """Names in a directory: its files (as :meth:`list_files`) and sub-directories."""
        base = _directory(path)
        folders = {c.name for c in self._subdirs(base)}
        return sorted(self._file_names(base) | folders)

    # -- changing the tree -----------------------------------------------------------------

    def ensure_directory(self, directory: PathLike) -> Path:
        """Create ``directory`` (and parents) if missing; return it."""
        Path(directory).mkdir(parents=True, exist_ok=True)
        return Path(directory)

    @_locked
    def delete(self, path: PathLike) -> None:
        """Delete a plain file, flat array, symlink or empty directory.

        A plane inside a well cannot be deleted alone (:class:`StoreReadOnlyError`); a
        non-empty directory raises ``IsADirectoryError`` (use :meth:`delete_all`).
        """
        p = Path(os.path.abspath(path))
        if p.is_dir() and (is_passthrough(p) or _is_dir_path(p)):
            self._refuse_inside_plate(p, "delete")
            if any(p.iterdir()):
                raise IsADirectoryError(f"{path} is a non-empty directory; use delete_all")
            self._forget(p, flush=False)
            p.rmdir()
        elif is_passthrough(p) or _is_dir_path(p):
            if not p.is_file():
                raise PlateNotFoundError(f"{path}: no such file or directory")
            p.unlink()
        else:
            self._delete_virtual(p)

    @_locked
    def delete_all(self, path: PathLike) -> None:
        """Delete a directory tree (a whole plate included), or one file as :meth:`delete`."""
        p = Path(os.path.abspath(path))
        if not (p.is_dir() and (is_passthrough(p) or _is_dir_path(p))):
            self.delete(p)
            return
        self._refuse_inside_plate(p, "delete")
        self._forget(p, flush=False)
        fsio.remove_tree(p)

    @_locked
    def copy(self, src: PathLike, dst: PathLike) -> None:
        """Copy a directory tree, a plain file or a virtual file; never overwrites.

        A virtual file (symlinks followed) is written at ``dst`` as a standalone array.
        """
        s, d = Path(os.path.abspath(src)), Path(os.path.abspath(dst))
        if _is_dir_path(s):
            self._check_tree_move(s, d)
            self._flush_under(s)
            shutil.copytree(s, d, ignore=shutil.ignore_patterns(fsio.STAGING_DIR, fsio.LOCK_NAME))
        elif is_passthrough(s):
            _require_plain(d, src)
            _write_new(d, _plain_bytes(s))
        else:
            self.save(self.load(s), d)

    @_locked
    def move(self, src: PathLike, dst: PathLike) -> None:
        """Move a directory tree, plain file, flat array or symlink (within its store).

        A plane inside a well cannot be moved (:class:`StoreReadOnlyError`; copy it).
        """
        s, d = Path(os.path.abspath(src)), Path(os.path.abspath(dst))
        if _is_dir_path(s):
            self._check_tree_move(s, d)
            self._refuse_inside_plate(s, "move")
            self._forget(s)
            d.parent.mkdir(parents=True, exist_ok=True)
            _rename(s, d)
        elif is_passthrough(s):
            _require_plain(d, src)
            _write_new(d, _plain_bytes(s))
            s.unlink()
        elif self.is_symlink(s):
            self._relink(s, d)
        else:
            hit = self._locate(s)
            if hit.well is not None:
                raise StoreReadOnlyError(
                    f"cannot move {src}: {self._plane_text(hit)}; copy it instead"
                )
            droot, dname = split_path(d)
            self._check_free(droot, self._writer(droot), [dname])
            _rename(hit.root / hit.name, droot / dname)

    @_locked
    def create_symlink(
        self, source: PathLike, link_name: PathLike, overwrite: bool = False
    ) -> None:
        """Make ``link_name`` a zarr-native symlink to ``source`` (same store only).

        ``overwrite`` replaces an existing *symlink* of that name, never a file.
        Raises :class:`WellNameError` (a ``ValueError``) across stores and
        :class:`SymlinkCycleError` if the link would close a cycle.
        """
        sroot, sname = split_path(source)
        lroot, lname = split_path(link_name)
        if not sname or not lname or is_passthrough(sname) or is_passthrough(lname):
            raise WellDataError(
                f"symlink {link_name} -> {source}: only virtual files can be linked"
            )
        if sroot != lroot:
            raise WellNameError(
                f"symlink {link_name} -> {source}: both must be in one store ({lroot}, {sroot})"
            )
        self._locate(source)
        with fsio.plate_lock(lroot):
            links = _links(lroot)
            if lname in links and not overwrite:
                raise WellExistsError(f"symlink {link_name} already exists; pass overwrite=True")
            if lname not in links and self._find(lroot, lname) is not None:
                raise WellExistsError(
                    f"{link_name} is a file, not a symlink; it cannot be replaced"
                )
            links[lname] = sname
            _resolve(links, lroot, lname)
            _write_links(lroot, links)

    # -- plates ---------------------------------------------------------------------------

    @_locked
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

    @_locked
    def _writer(self, root: Path) -> PlateStore:
        store = self._stores.get(root)
        if store is None or store.read_only:
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
            self._index.pop(root, None)
            self._maps = {k: v for k, v in self._maps.items() if k[0] != root}

    def _flush_under(self, under: Path) -> None:
        for root in [r for r in self._dirty if r == under or under in r.parents]:
            self._stores[root].flush()
            self._dirty.discard(root)

    @_locked
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

    def _locate(self, path: PathLike) -> _Hit:
        root, name = split_path(path)
        if not name:
            raise IsADirectoryError(f"{path} is a directory, not a file")
        if not root.is_dir():
            raise PlateNotFoundError(f"{path}: no such file (no directory {root})")
        final = _resolve(_links(root), root, name)
        hit = self._find(root, final) or (self._find(root, final) if self._refresh(root) else None)
        if hit is None:
            via = f" (the symlink's target {final!r})" if final != name else ""
            raise PlaneNotFoundError(f"{path}: no file {final!r}{via} in the store {root}")
        return hit

    def _find(self, root: Path, name: str) -> _Hit | None:
        if _is_array(root / name):
            return _Hit(root, name)
        store = self._plate(root)
        if store is None:
            return None
        try:
            parsed = try_parse_filename(name)
        except WellNameError:
            parsed = None
        well = _label(parsed.well) if parsed is not None else None
        if well is not None and ((root, well) in self._maps or well in store):
            key = self._well_map(root, store, well).get(name)
            if key is not None:
                return _Hit(root, name, well, key)
        found = self._names(root, store).get(name)
        return None if found is None else _Hit(root, name, *found)

    @_locked
    def _well_map(self, root: Path, store: PlateStore, well: str) -> dict[str, PlaneKey]:
        names = self._maps.get((root, well))
        if names is None:
            names = dict(store.well_info(well).plane_names) or _polystore_names(store, well)
            self._maps[(root, well)] = names
        return names

    @_locked
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
        links, index = _links(root), self._names(root, store)
        for name in names:
            if name in _RESERVED or name.startswith("."):
                raise WellDataError(f"{root / name}: {name!r} is reserved for zarr metadata")
            if name in index or name in links or (root / name).exists():
                raise WellExistsError(f"{root / name} already exists; save never overwrites")

    def _plane_text(self, hit: _Hit) -> str:
        assert hit.well is not None
        assert hit.key is not None
        return (
            f"it is plane {tuple(hit.key)} of well {hit.well} in {hit.root}, and a well "
            "is written whole: single planes cannot be moved or deleted (delete_all the plate)"
        )

    # -- helpers with side effects --------------------------------------------------------

    def _write_array(self, store: PlateStore, name: str, array: np.ndarray[Any, Any]) -> None:
        import zarr
        from zarr.storage import LocalStore

        config = store.config or self.config
        chunks, shards = config.chunk_layout(array.shape)
        stage = fsio.staging_dir(store.root, "file")
        try:
            zarr.create_array(
                store=LocalStore(stage),
                name="array",
                data=array,
                chunks=chunks,
                shards=shards,
                compressors=config.zarr_compressors(),
                zarr_format=store.zarr_format,  # type: ignore[arg-type]
                attributes={"wellzarr_file": name},
                chunk_key_encoding={"name": "v2", "separator": "/"}
                if store.zarr_format == 2
                else None,
            )
            _rename(stage / "array", store.root / name)
        finally:
            fsio.remove_tree(stage)

    def _delete_virtual(self, p: Path) -> None:
        root, name = split_path(p)
        if root.is_dir() and name in _links(root):
            with fsio.plate_lock(root):
                links = _links(root)
                links.pop(name, None)
                _write_links(root, links)
            return
        hit = self._locate(p)
        if hit.well is not None:
            raise StoreReadOnlyError(f"cannot delete {p}: {self._plane_text(hit)}")
        fsio.remove_tree(hit.root / hit.name)

    def _relink(self, s: Path, d: Path) -> None:
        root, name = split_path(s)
        droot, dname = split_path(d)
        if droot != root:
            raise WellNameError(f"cannot move symlink {s} to another store ({droot})")
        with fsio.plate_lock(root):
            links = _links(root)
            if dname in links or self._find(root, dname) is not None:
                raise WellExistsError(f"{d} already exists; move never overwrites")
            links[dname] = links.pop(name)
            _write_links(root, links)

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

    def _check_tree_move(self, s: Path, d: Path) -> None:
        if not s.is_dir():
            raise PlateNotFoundError(f"{s}: no such directory")
        if d.exists():
            raise PlateExistsError(f"{d} already exists; copy/move never overwrite")

    def _existing(self, path: PathLike) -> dict[str, Any]:
        info = self.stat(path)
        if not info["exists"]:
            raise PlateNotFoundError(f"{path}: no such file or directory ({info['type']})")
        return info

    def _folders(self, base: Path, recursive: bool) -> Iterator[Path]:
        yield base
        for child in self._subdirs(base) if recursive else ():
            yield from self._folders(child, True)

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
        names.update(_links(folder))
        for child in folder.iterdir():
            if child.name.startswith("."):
                continue
            if (child.is_file() and is_passthrough(child.name)) or (
                child.is_dir() and _is_array(child)
            ):
                names.add(child.name)
        return names


# -- module helpers -----------------------------------------------------------------------


def _flush_stores(
    stores: dict[Path, PlateStore], dirty: set[Path], skip: Path | None = None
) -> None:
    for root in sorted(r for r in dirty if r != skip):
        stores[root].flush()
        dirty.discard(root)


def _label(well: Well) -> str:
    return f"{row_letters(well.row)}{well.column + 1:02d}"


def _batch_names(paths: Sequence[PathLike]) -> tuple[Path, list[str]]:
    root = split_path(paths[0])[0]
    names: list[str] = []
    for path in paths:
        where, name = split_path(path)
        if not name or is_passthrough(name):
            raise WellDataError(f"save_batch: {path} is not an image file path")
        if where != root:
            raise WellDataError(f"save_batch: {path} is not in the store {root} of {paths[0]}")
        if name in names:
            raise WellDataError(f"save_batch: file name {name!r} is given twice")
        names.append(name)
    return root, names


def _batch_well(
    names: list[str], parsed: list[ParsedName] | None, row: str | None, col: str | int | None
) -> Well:
    if row is not None or col is not None:
        if row is None or col is None:
            raise WellNameError(
                f"save_batch: give both row= and col= (got row={row!r}, col={col!r})"
            )
        return Well.parse(f"{row}{col}")
    assert parsed is not None
    for name, p in zip(names, parsed, strict=True):
        if p.well != parsed[0].well:
            raise WellDataError(
                f"save_batch writes one well, but {name!r} is in well {_label(p.well)} and "
                f"{names[0]!r} in {_label(parsed[0].well)}"
            )
    return parsed[0].well


def _coord(coord: Sequence[int], name: str) -> PlaneKey:
    values = tuple(coord) if isinstance(coord, list | tuple) else ()
    if len(values) not in (3, 4) or not all(
        isinstance(v, int | np.integer) and not isinstance(v, bool) and v >= 0 for v in values
    ):
        raise WellDataError(
            f"{name!r}: coordinate {coord!r} is not (field, c, z[, t]) of integers >= 0"
        )
    return PlaneKey(*(int(v) for v in values))


def _batch_shape(
    keys: list[PlaneKey], names: list[str], limits: dict[str, int | None]
) -> tuple[int, ...] | None:
    dims = []
    for i, (option, limit) in enumerate(limits.items()):
        if limit is not None and (
            isinstance(limit, bool) or not isinstance(limit, int) or limit < 1
        ):
            raise WellDataError(f"save_batch: {option}={limit!r} must be an integer >= 1")
        for name, key in zip(names, keys, strict=True):
            if limit is not None and key[i] >= limit:
                raise WellDataError(
                    f"{name!r}: {PlaneKey._fields[i]} index {key[i]} (0-based) is beyond "
                    f"{option}={limit}"
                )
        dims.append(limit if limit is not None else max(k[i] for k in keys) + 1)
    if all(v is None for v in limits.values()):
        return None
    return (*dims, max(k.t for k in keys) + 1) if any(k.t for k in keys) else tuple(dims)


def _resolve(links: dict[str, str], root: Path, name: str) -> str:
    chain = [name]
    while name in links:
        name = links[name]
        if name in chain:
            raise SymlinkCycleError(f"symlink cycle in {root}: {' -> '.join([*chain, name])}")
        chain.append(name)
    return name


def _links(root: Path) -> dict[str, str]:
    path = root / SYMLINKS_FILE
    try:
        doc = json.loads(path.read_bytes())
    except FileNotFoundError:
        return {}
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CorruptDataError(f"{path} is not valid JSON: {err}") from err
    links = doc.get(_LINKS_KEY) if isinstance(doc, dict) else None
    if not isinstance(links, dict) or not all(isinstance(v, str) for v in links.values()):
        raise MetadataError(f"{path}: {_LINKS_KEY!r} is not an object of name -> target name")
    return links


def _write_links(root: Path, links: dict[str, str]) -> None:
    doc = {_LINKS_KEY: dict(sorted(links.items()))}
    fsio.atomic_write_bytes(root / SYMLINKS_FILE, json.dumps(doc, indent=2).encode())


def _polystore_names(store: PlateStore, well: str) -> dict[str, PlaneKey]:
    """File names of a well written by polystore: a ``polystore_filename_map`` per image."""
    info = store.well_info(well)
    out: dict[str, PlaneKey] = {}
    for index, image in enumerate(info.image_paths):
        image_dir = store.root / info.path / image
        meta, _ = parse_image(fsio.read_attrs(image_dir, store.zarr_format), f"{info.name}/{image}")
        attrs = fsio.read_attrs(image_dir / meta.multiscale.datasets[0].path, store.zarr_format)
        if _POLY_MAP in attrs:
            out.update(_polystore_map(attrs, None if info.stacked else index, info.name))
    return out


def _polystore_map(attrs: dict[str, Any], field: int | None, well: str) -> dict[str, PlaneKey]:
    dims, raw = attrs.get(_POLY_DIMS), attrs[_POLY_MAP]
    if not isinstance(dims, dict) or not isinstance(raw, dict):
        raise MetadataError(f"well {well}: {_POLY_MAP} / {_POLY_DIMS} are not JSON objects")
    axes = [_AXES.get(str(n).lower()) for n, d in dims.items() if not _is_image_axis(d)]
    image = [_AXES.get(str(n).lower()) for n, d in dims.items() if _is_image_axis(d)]
    if None in axes or image != ([] if field is None else ["field"]):
        raise MetadataError(f"well {well}: polystore dimensions {list(dims)} are not supported")
    out = {}
    for name, coord in raw.items():
        if not isinstance(coord, list) or len(coord) != len(axes):
            raise MetadataError(
                f"well {well}: {_POLY_MAP}[{name!r}] = {coord!r} does not match {axes}"
            )
        values: dict[str | None, Any] = {"field": field, **dict(zip(axes, coord, strict=True))}
        out[name] = _coord([values.get(a) or 0 for a in ("field", "c", "z", "t")], name)
    return out


def _is_image_axis(spec: object) -> bool:
    return isinstance(spec, dict) and spec.get("role") == "hcs_image"


def _read_array(path: Path) -> np.ndarray[Any, Any]:
    import zarr
    from zarr.storage import LocalStore

    array = zarr.open_array(store=LocalStore(path.parent, read_only=True), path=path.name, mode="r")
    return np.asarray(array[...])


def _rename(src: Path, dst: Path) -> None:
    """Rename without replacing; across file systems copy then delete."""
    if dst.exists():
        raise PlateExistsError(f"{dst} already exists; nothing is overwritten")
    try:
        os.rename(src, dst)
    except OSError as err:
        if err.errno in (errno.ENOTEMPTY, errno.EEXIST):
            raise PlateExistsError(f"{dst} already exists; nothing is overwritten") from err
        if err.errno != errno.EXDEV:
            raise
        if src.is_dir():
            shutil.copytree(src, dst)
        else:
            shutil.copy2(src, dst)
        fsio.remove_tree(src)


def _directory(path: PathLike) -> Path:
    p = Path(os.path.abspath(path))
    if not p.exists():
        raise PlateNotFoundError(f"{path}: no such directory")
    if not p.is_dir() or _is_array(p):
        raise NotADirectoryError(f"{path} is a file, not a directory")
    return p


def _require_plain(dst: Path, src: PathLike) -> None:
    if not is_passthrough(dst):
        raise WellDataError(f"cannot copy/move the plain file {src} to {dst}, which is not one")


def _plain_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise PlateNotFoundError(f"{path}: no such file") from None


def _load_plain(path: Path) -> Any:
    data = _plain_bytes(Path(os.path.abspath(path)))
    name = path.name.lower()
    if name.endswith(".zip"):
        return data
    text = data.decode("utf-8")
    return json.loads(text) if name.endswith(".json") else text


def _encode(data: object, path: Path) -> bytes:
    if isinstance(data, bytes | bytearray | memoryview):
        return bytes(data)
    if isinstance(data, str):
        return data.encode("utf-8")
    if path.name.lower().endswith(".json"):
        try:
            return json.dumps(data, indent=2).encode("utf-8")
        except (TypeError, ValueError) as err:
            raise WellDataError(
                f"{path}: cannot write a {type(data).__name__} as JSON: {err}"
            ) from err
    raise WellDataError(f"{path}: write str or bytes to a plain file, not a {type(data).__name__}")


def _write_new(path: Path, payload: bytes) -> None:
    """Create ``path`` with ``payload`` atomically; never replaces an existing file."""
    if path.exists():
        raise PlateExistsError(f"{path} already exists; save never overwrites")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with tmp.open("xb") as fh:
            fh.write(payload)
            fh.flush()
            os.fsync(fh.fileno())
        try:
            os.link(tmp, path)
        except FileExistsError as err:
            raise PlateExistsError(f"{path} already exists; save never overwrites") from err
    finally:
        tmp.unlink(missing_ok=True)
