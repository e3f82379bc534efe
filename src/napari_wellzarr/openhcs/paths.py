"""The path model of the OpenHCS-compatible backend, and the files it keeps outside wells."""

from __future__ import annotations

import errno
import json
import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import numpy as np

from napari_wellzarr.errors import (
    CorruptDataError,
    MetadataError,
    PlateExistsError,
    PlateNotFoundError,
    RemoteReadError,
    StoreReadOnlyError,
    SymlinkCycleError,
    WellDataError,
)
from napari_wellzarr.storage import fsio
from napari_wellzarr.storage.locations import is_url, redact

if TYPE_CHECKING:
    from napari_wellzarr.storage.config import StorageConfig
    from napari_wellzarr.storage.store import PlateStore

__all__ = [
    "PASSTHROUGH_EXTENSIONS",
    "RESERVED",
    "SYMLINKS_FILE",
    "PathLike",
    "encode_plain",
    "existing_dir",
    "is_array",
    "is_dir_path",
    "is_passthrough",
    "load_plain",
    "local_path",
    "plain_bytes",
    "read_array",
    "read_links",
    "rename_new",
    "require_plain",
    "require_writable",
    "resolve_link",
    "safe_name",
    "split_path",
    "write_array",
    "write_links",
    "write_new",
]

PathLike = str | os.PathLike[str]
#: File types stored as plain files on disk (checked case-insensitively).
PASSTHROUGH_EXTENSIONS: Final = (".json", ".csv", ".txt", ".roi.zip", ".zip")
#: Per-store file holding the zarr-native symlinks ``{"wellzarr_symlinks": {link: target}}``.
SYMLINKS_FILE: Final = ".wellzarr_symlinks.json"
_LINKS_KEY: Final = "wellzarr_symlinks"
# zarr's own documents are neither plain files nor virtual files.
RESERVED: Final = frozenset({"zarr.json", ".zattrs", ".zgroup", ".zarray", SYMLINKS_FILE})
# The longest file name POSIX file systems hold (bytes).
_MAX_NAME_BYTES: Final = 255


# -- paths ----------------------------------------------------------------------------------


def is_passthrough(path: PathLike) -> bool:
    """Whether ``path`` is a plain file type (``.json .csv .txt .roi.zip .zip``)."""
    text = str(path)
    return text.lower().endswith(PASSTHROUGH_EXTENSIONS) and os.path.basename(text) not in RESERVED


def local_path(path: PathLike) -> Path:
    """``path`` as an absolute local path; a URL is refused (the backend is local only)."""
    if is_url(path):
        raise RemoteReadError(
            f"{redact(os.fspath(path))}: the OpenHCS backend works on local plates only; "
            "read a remote plate with PlateStore.open(url)"
        )
    return Path(os.path.abspath(path))


def split_path(path: PathLike) -> tuple[Path, str]:
    """Split ``path`` into (absolute store directory, key); the key is ``""`` for a directory."""
    p = local_path(path)
    if p.suffix and not (os.path.isdir(p) and not is_array(p)):
        return p.parent, p.name
    return p, ""


def is_array(path: Path) -> bool:
    """Whether ``path`` is a zarr array (v2 or v3); its directory is then a file."""
    if not os.path.isdir(path):  # also for names no file system holds (NUL, too long)
        return False
    if (path / ".zarray").is_file():
        return True
    try:
        doc = json.loads((path / "zarr.json").read_bytes())
    except (FileNotFoundError, NotADirectoryError):
        return False
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CorruptDataError(f"{path / 'zarr.json'} is not valid JSON: {err}") from err
    return isinstance(doc, dict) and doc.get("node_type") == "array"


def safe_name(name: object) -> bool:
    r"""Whether ``name`` is one file name inside a store, one that cannot reach outside it.

    Refused: non-strings, ``""``, ``.``, ``..``, separators (``/``, ``\``), NUL bytes and
    names longer than a file system holds.  Names read from a plate's side files
    (symlinks, file-name maps) are checked with this before any of them is used.
    """
    if not isinstance(name, str) or name in ("", ".", ".."):
        return False
    if "/" in name or "\\" in name or "\x00" in name:
        return False
    return len(name.encode("utf-8", "surrogatepass")) <= _MAX_NAME_BYTES


def require_writable(folder: PathLike, target: PathLike | None = None) -> None:
    """Refuse, with :class:`StoreReadOnlyError`, to change ``target`` in ``folder`` if read-only.

    Checks ``folder`` or its nearest existing parent (a read-only mount, or no write
    permission), so that a write fails up front with a message naming what was to be
    written, not half-way with a bare ``EROFS`` / ``EACCES``.
    """
    p = local_path(folder)
    existing = next((d for d in (p, *p.parents) if d.is_dir()), None)
    if existing is not None and not os.access(existing, os.W_OK | os.X_OK):
        raise StoreReadOnlyError(
            f"cannot write {target if target is not None else folder}: {existing} is "
            "read-only (a read-only file system or no write permission)"
        )


def is_dir_path(path: Path) -> bool:
    """Whether ``path`` names a directory (no suffix, or a directory that is no array)."""
    return not split_path(path)[1]


def existing_dir(path: PathLike) -> Path:
    """``path`` as an absolute existing directory; raises for missing paths and files."""
    p = local_path(path)
    if not p.exists():
        raise PlateNotFoundError(f"{path}: no such directory")
    if not p.is_dir() or is_array(p):
        raise NotADirectoryError(f"{path} is a file, not a directory")
    return p


# -- symlinks -------------------------------------------------------------------------------


def resolve_link(links: dict[str, str], root: Path, name: str) -> str:
    """Follow ``name`` through the store's ``links`` to a final name; cycles raise."""
    chain = [name]
    while name in links:
        name = links[name]
        if name in chain:
            raise SymlinkCycleError(f"symlink cycle in {root}: {' -> '.join([*chain, name])}")
        chain.append(name)
    return name


def read_links(root: Path) -> dict[str, str]:
    """The store's symlinks ``{link name: target name}`` (``{}`` when it has none)."""
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
    for link, target in links.items():
        if not (safe_name(link) and safe_name(target)):
            raise MetadataError(
                f"{path}: symlink {link!r} -> {target!r} is not a file name -> file name "
                "inside the store (no '/', '\\', '..', NUL)"
            )
    return links


def write_links(root: Path, links: dict[str, str]) -> None:
    """Replace the store's symlinks file atomically (call under the plate lock)."""
    doc = {_LINKS_KEY: dict(sorted(links.items()))}
    fsio.atomic_write_bytes(root / SYMLINKS_FILE, json.dumps(doc, indent=2).encode())


# -- plain files and flat arrays ------------------------------------------------------------


def read_array(path: Path) -> np.ndarray[Any, Any]:
    """Read a standalone zarr array whole."""
    import zarr
    from zarr.storage import LocalStore

    array = zarr.open_array(store=LocalStore(path.parent, read_only=True), path=path.name, mode="r")
    return np.asarray(array[...])


def write_array(
    store: PlateStore, name: str, array: np.ndarray[Any, Any], config: StorageConfig
) -> None:
    """Write ``array`` as the standalone ("legacy flat") zarr array ``<store>/<name>``.

    It is staged, then renamed into place: it appears whole or not at all, and an
    existing ``name`` is never replaced.  ``config`` gives its chunks and codecs.
    """
    import zarr
    from zarr.storage import LocalStore

    chunks, shards = config.chunking(array.shape)
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
            chunk_key_encoding={"name": "v2", "separator": "/"} if store.zarr_format == 2 else None,
        )
        rename_new(stage / "array", store.root / name)
    finally:
        fsio.remove_tree(stage)


def rename_new(src: Path, dst: Path) -> None:
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


def require_plain(dst: Path, src: PathLike) -> None:
    """Refuse to copy or move the plain file ``src`` to a ``dst`` that is not one."""
    if not is_passthrough(dst):
        raise WellDataError(f"cannot copy/move the plain file {src} to {dst}, which is not one")


def plain_bytes(path: Path) -> bytes:
    """The bytes of a plain file; a missing file raises :class:`PlateNotFoundError`."""
    if not safe_name(path.name):
        raise PlateNotFoundError(f"{str(path)!r}: no such file ({path.name!r} is not a file name)")
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise PlateNotFoundError(f"{path}: no such file") from None


def load_plain(path: Path) -> Any:
    """A plain file's content: bytes (``.zip``), parsed JSON (``.json``) or text."""
    data = plain_bytes(local_path(path))
    name = path.name.lower()
    if name.endswith(".zip"):
        return data
    text = data.decode("utf-8")
    return json.loads(text) if name.endswith(".json") else text


def encode_plain(data: object, path: Path) -> bytes:
    """The bytes to write to a plain file: ``str`` as UTF-8, ``bytes`` as is, JSON."""
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


def write_new(path: Path, payload: bytes) -> None:
    """Create ``path`` with ``payload`` atomically; never replaces an existing file."""
    if path.exists():
        raise PlateExistsError(f"{path} already exists; save never overwrites")
    try:
        fsio.atomic_write_bytes(path, payload, replace=False)
    except FileExistsError as err:
        raise PlateExistsError(f"{path} already exists; save never overwrites") from err
