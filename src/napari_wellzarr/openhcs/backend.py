"""OpenHCS's path-based Zarr backend ("virtual files"), re-created over :class:`PlateStore`."""

from __future__ import annotations

import fnmatch
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

from napari_wellzarr.convert.naming import parse_filename
from napari_wellzarr.errors import (
    PlaneNotFoundError,
    PlateExistsError,
    PlateNotFoundError,
    StoreReadOnlyError,
    WellDataError,
    WellExistsError,
    WellNameError,
)
from napari_wellzarr.openhcs.batch import batch_names, batch_shape, batch_well
from napari_wellzarr.openhcs.index import PlateIndex, flush_stores, locked
from napari_wellzarr.openhcs.paths import (
    PASSTHROUGH_EXTENSIONS,
    SYMLINKS_FILE,
    PathLike,
    encode_plain,
    existing_dir,
    is_dir_path,
    is_passthrough,
    load_plain,
    local_path,
    plain_bytes,
    read_array,
    read_links,
    rename_new,
    require_plain,
    require_writable,
    resolve_link,
    safe_name,
    split_path,
    write_array,
    write_links,
    write_new,
)
from napari_wellzarr.storage import fsio
from napari_wellzarr.storage.arrays import to_host
from napari_wellzarr.storage.axes import plane_key
from napari_wellzarr.storage.locations import refuse_url

if TYPE_CHECKING:
    from collections.abc import Sequence
    from types import TracebackType

    from napari_wellzarr.storage.axes import PlaneKey

__all__ = ["PASSTHROUGH_EXTENSIONS", "SYMLINKS_FILE", "ZarrStorageBackend", "split_path"]


class ZarrStorageBackend(PlateIndex):
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

    # -- session -------------------------------------------------------------------------

    @locked
    def flush(self) -> None:
        """List every well written since the last flush in its plate's metadata."""
        flush_stores(self._stores, self._dirty)

    @locked
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

    @locked
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
        for path in output_paths:
            refuse_url(path, "an OpenHCS file")
        if len(data_list) != len(output_paths) or (
            coords is not None and len(coords) != len(data_list)
        ):
            raise WellDataError(
                f"save_batch {chunk_name or ''}: {len(data_list)} planes, {len(output_paths)} "
                f"paths{'' if coords is None else f', {len(coords)} coords'}; give one of each"
            )
        if not output_paths:
            return []
        root, names = batch_names(output_paths)
        explicit = row is not None or col is not None
        parsed = None if coords is not None and explicit else [parse_filename(n) for n in names]
        if coords is not None:
            keys = [plane_key(c, repr(n)) for c, n in zip(coords, names, strict=True)]
        else:
            keys = [p.key for p in parsed or ()]
        well = batch_well(names, parsed, row, col)
        shape = batch_shape(
            keys, names, {"n_fields": n_fields, "n_channels": n_channels, "n_z": n_z}
        )
        store = self._writer(root)
        target = well.label
        if target in store:
            raise WellExistsError(
                f"well {well.label} already exists in {root}; save_batch never overwrites"
            )
        self._check_free(root, store, names)
        flush_stores(self._stores, self._dirty, skip=root)
        missing = store.write_planes(
            target, zip(keys, data_list, strict=True), names=names, shape=shape, **metadata
        )
        self._dirty.add(root)
        self._maps[(root, target)] = dict(zip(names, keys, strict=True))
        if root in self._index:
            self._index[root].update((n, (target, k)) for n, k in zip(names, keys, strict=True))
        self._list_progress(root)
        return missing

    def load_batch(self, file_paths: Sequence[PathLike]) -> list[Any]:
        """Load files; planes are read per well, decoding only the chunks they live in.

        Raises :class:`PlaneNotFoundError` / :class:`PlateNotFoundError` for unknown files.
        """
        out: list[Any] = [None] * len(file_paths)
        planes: dict[tuple[Path, str], list[tuple[int, PlaneKey]]] = {}
        for i, path in enumerate(file_paths):
            if is_passthrough(path):
                out[i] = load_plain(Path(path))
                continue
            hit = self._locate(path)
            if hit.well is None or hit.key is None:
                out[i] = read_array(hit.root / hit.name)
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

    @locked
    def save(self, data: object, output_path: PathLike) -> None:
        """Save one file; never overwrites (``FileExistsError``).

        An array is written as a standalone zarr array ``<store>/<name>`` (the store is
        made a plate if needed).  Plain files: ``str`` is written as UTF-8 text, ``bytes``
        as is, and for ``.json`` any other object as JSON.
        """
        refuse_url(output_path, "an OpenHCS file")
        path = local_path(output_path)
        if is_passthrough(path):
            require_writable(path.parent, path)
            write_new(path, encode_plain(data, path))
            return
        root, name = split_path(path)
        if not name:
            raise IsADirectoryError(f"{output_path} is a directory, not a file")
        array = to_host(data, f"file {output_path}")
        if array.ndim < 2:
            raise WellDataError(f"{output_path}: data of shape {array.shape} is not an image (2D+)")
        store = self._writer(root)
        self._check_free(root, store, [name])
        write_array(store, name, array, store.config or self.config)

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
        return bool(name) and root.is_dir() and name in read_links(root)

    def stat(self, path: PathLike) -> dict[str, Any]:
        """Describe ``path`` without raising for missing paths.

        Keys: ``type`` (file/directory/symlink/missing), ``key``, ``store``, ``exists``,
        and ``target`` (symlinks) or ``well`` / ``plane`` (planes of a well).
        """
        p = local_path(path)
        if not safe_name(p.name) and p.parent != p:  # NUL, or too long for a file system
            return {"type": "missing", "key": p.name, "store": str(p.parent), "exists": False}
        if is_passthrough(p) or is_dir_path(p):
            kind = "directory" if p.is_dir() else "file" if p.exists() else "missing"
            return {"type": kind, "key": p.name, "store": str(p.parent), "exists": p.exists()}
        root, name = split_path(p)
        info: dict[str, Any] = {"key": name, "store": str(root)}
        link = read_links(root).get(name) if root.is_dir() else None
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
        base = existing_dir(directory)
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
        base = existing_dir(path)
        folders = {c.name for c in self._subdirs(base)}
        return sorted(self._file_names(base) | folders)

    # -- changing the tree -----------------------------------------------------------------

    def ensure_directory(self, directory: PathLike) -> Path:
        """Create ``directory`` (and parents) if missing; return it."""
        refuse_url(directory, "a directory")
        Path(directory).mkdir(parents=True, exist_ok=True)
        return Path(directory)

    @locked
    def delete(self, path: PathLike) -> None:
        """Delete a plain file, flat array, symlink or empty directory.

        A plane inside a well cannot be deleted alone (:class:`StoreReadOnlyError`); a
        non-empty directory raises ``IsADirectoryError`` (use :meth:`delete_all`).
        """
        refuse_url(path, "(delete) a file")
        p = local_path(path)
        require_writable(p.parent, p)
        if p.is_dir() and (is_passthrough(p) or is_dir_path(p)):
            self._refuse_inside_plate(p, "delete")
            if any(p.iterdir()):
                raise IsADirectoryError(f"{path} is a non-empty directory; use delete_all")
            self._forget(p, flush=False)
            p.rmdir()
        elif is_passthrough(p) or is_dir_path(p):
            if not p.is_file():
                raise PlateNotFoundError(f"{path}: no such file or directory")
            p.unlink()
        else:
            self._delete_virtual(p)

    @locked
    def delete_all(self, path: PathLike) -> None:
        """Delete a directory tree (a whole plate included), or one file as :meth:`delete`."""
        refuse_url(path, "(delete) a tree")
        p = local_path(path)
        require_writable(p.parent, p)
        if not (p.is_dir() and (is_passthrough(p) or is_dir_path(p))):
            self.delete(p)
            return
        self._refuse_inside_plate(p, "delete")
        self._forget(p, flush=False)
        fsio.remove_tree(p)

    @locked
    def copy(self, src: PathLike, dst: PathLike) -> None:
        """Copy a directory tree, a plain file or a virtual file; never overwrites.

        A virtual file (symlinks followed) is written at ``dst`` as a standalone array.
        """
        refuse_url(dst, "a copy")
        s, d = local_path(src), local_path(dst)
        require_writable(d.parent, d)
        if is_dir_path(s):
            self._check_tree_move(s, d)
            self._flush_under(s)
            shutil.copytree(s, d, ignore=shutil.ignore_patterns(fsio.STAGING_DIR, fsio.LOCK_NAME))
        elif is_passthrough(s):
            require_plain(d, src)
            write_new(d, plain_bytes(s))
        else:
            self.save(self.load(s), d)

    @locked
    def move(self, src: PathLike, dst: PathLike) -> None:
        """Move a directory tree, plain file, flat array or symlink (within its store).

        A plane inside a well cannot be moved (:class:`StoreReadOnlyError`; copy it).
        """
        refuse_url(src, "(move) a file")
        refuse_url(dst, "(move) a file")
        s, d = local_path(src), local_path(dst)
        require_writable(s.parent, s)
        require_writable(d.parent, d)
        if is_dir_path(s):
            self._check_tree_move(s, d)
            self._refuse_inside_plate(s, "move")
            self._forget(s)
            d.parent.mkdir(parents=True, exist_ok=True)
            rename_new(s, d)
        elif is_passthrough(s):
            require_plain(d, src)
            write_new(d, plain_bytes(s))
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
            rename_new(hit.root / hit.name, droot / dname)

    @locked
    def create_symlink(
        self, source: PathLike, link_name: PathLike, overwrite: bool = False
    ) -> None:
        """Make ``link_name`` a zarr-native symlink to ``source`` (same store only).

        ``overwrite`` replaces an existing *symlink* of that name, never a file.
        Raises :class:`WellNameError` (a ``ValueError``) across stores and
        :class:`SymlinkCycleError` if the link would close a cycle.
        """
        refuse_url(link_name, "a symlink")
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
        require_writable(lroot, link_name)
        with fsio.plate_lock(lroot):
            links = read_links(lroot)
            if lname in links and not overwrite:
                raise WellExistsError(f"symlink {link_name} already exists; pass overwrite=True")
            if lname not in links and self._find(lroot, lname) is not None:
                raise WellExistsError(
                    f"{link_name} is a file, not a symlink; it cannot be replaced"
                )
            links[lname] = sname
            resolve_link(links, lroot, lname)
            write_links(lroot, links)

    # -- helpers with side effects --------------------------------------------------------

    def _delete_virtual(self, p: Path) -> None:
        root, name = split_path(p)
        if root.is_dir() and name in read_links(root):
            with fsio.plate_lock(root):
                links = read_links(root)
                links.pop(name, None)
                write_links(root, links)
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
            links = read_links(root)
            if dname in links or self._find(root, dname) is not None:
                raise WellExistsError(f"{d} already exists; move never overwrites")
            links[dname] = links.pop(name)
            write_links(root, links)

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
