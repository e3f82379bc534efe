"""File-system primitives: group metadata documents, atomic writes, locks, staging."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import socket
import sys
import uuid
from typing import IO, TYPE_CHECKING, Any, Final

from napari_wellzarr.errors import CorruptDataError, MetadataError
from napari_wellzarr.storage.locations import RemoteLocation

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping
    from pathlib import Path

__all__ = [
    "LOCK_NAME",
    "STAGING_DIR",
    "aside_of",
    "atomic_write_bytes",
    "clean_stale_staging",
    "detect_zarr_format",
    "has_node_doc",
    "is_file",
    "is_group",
    "plate_lock",
    "read_attrs",
    "recover_aside",
    "remove_tree",
    "replace_dir",
    "staging_dir",
    "write_group",
    "write_staged_file",
]

STAGING_DIR: Final = ".wellzarr-staging"
LOCK_NAME: Final = ".wellzarr.lock"
# A metadata document larger than this is not metadata: refuse it before parsing.
MAX_METADATA_BYTES: Final = 64 * 1024 * 1024


def is_file(path: Path | RemoteLocation) -> bool:
    """Whether ``path`` is a file (remote: a document that exists; it is read and cached)."""
    if isinstance(path, RemoteLocation):
        return path.exists()
    return path.is_file()


def detect_zarr_format(path: Path | RemoteLocation) -> int | None:
    """Return 3 or 2 when ``path`` is a zarr group or array, else ``None``."""
    if is_file(path / "zarr.json"):
        return 3
    if is_file(path / ".zgroup") or is_file(path / ".zarray"):
        return 2
    return None


def has_node_doc(path: Path | RemoteLocation) -> bool:
    """:func:`detect_zarr_format` that never trusts a cache: asks the store (remote: lists)."""
    if isinstance(path, RemoteLocation):
        names = set(path.listing()[1])
        return "zarr.json" in names or ".zgroup" in names or ".zarray" in names
    return detect_zarr_format(path) is not None


def is_group(path: Path | RemoteLocation, zarr_format: int) -> bool:
    """Whether ``path`` holds a zarr group of ``zarr_format``."""
    if zarr_format == 2:
        return is_file(path / ".zgroup")
    doc = _read_json(path / "zarr.json", missing_ok=True)
    return isinstance(doc, dict) and doc.get("node_type") == "group"


def _read_json(path: Path | RemoteLocation, *, missing_ok: bool = False) -> Any:
    if isinstance(path, RemoteLocation):
        raw = path.read(MAX_METADATA_BYTES)
        if raw is None:
            if missing_ok:
                return None
            raise FileNotFoundError(f"{path} does not exist")
        return _parse_json(raw, path)
    try:
        with path.open("rb") as fh:
            # Refuse an oversized document before reading (and allocating) any of it.
            if os.fstat(fh.fileno()).st_size > MAX_METADATA_BYTES:
                raise MetadataError(
                    f"{path} is larger than {MAX_METADATA_BYTES} bytes; not metadata"
                )
            raw = read_bounded(fh, MAX_METADATA_BYTES)
    except FileNotFoundError:
        if missing_ok:
            return None
        raise
    except IsADirectoryError as err:
        raise MetadataError(f"{path} is a directory, expected a metadata file") from err
    if len(raw) > MAX_METADATA_BYTES:
        raise MetadataError(f"{path} is larger than {MAX_METADATA_BYTES} bytes; not metadata")
    return _parse_json(raw, path)


def _parse_json(raw: bytes, path: Path | RemoteLocation) -> Any:
    try:
        return json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CorruptDataError(f"{path} is not valid JSON: {err}") from err


def read_bounded(fh: IO[bytes], limit: int) -> bytes:
    """At most ``limit + 1`` bytes of an open file (more than ``limit``: too big).

    Sized by the file's length: ``read(limit + 1)`` would allocate ``limit`` bytes up
    front for every small document.
    """
    first = min(os.fstat(fh.fileno()).st_size, limit) + 1
    raw = fh.read(first)
    if len(raw) == first:  # the file grew since fstat (written in place): read on
        while len(raw) <= limit and (more := fh.read(min(limit + 1 - len(raw), 1 << 20))):
            raw += more
    return raw


def read_attrs(path: Path | RemoteLocation, zarr_format: int) -> dict[str, Any]:
    """Return a zarr node's attributes (``{}`` when the node has none).

    Raises ``FileNotFoundError`` when ``path`` is not a node of ``zarr_format``.
    """
    if zarr_format == 3:
        doc = _read_json(path / "zarr.json")
        if not isinstance(doc, dict):
            raise MetadataError(f"{path / 'zarr.json'} is not a JSON object")
        attrs = doc.get("attributes", {})
    else:
        if not is_file(path / ".zgroup") and not is_file(path / ".zarray"):
            raise FileNotFoundError(f"{path} is not a zarr v2 group or array")
        attrs = _read_json(path / ".zattrs", missing_ok=True) or {}
    if not isinstance(attrs, dict):
        raise MetadataError(f"attributes of {path} are not a JSON object")
    return attrs


def read_array_doc(path: Path | RemoteLocation, zarr_format: int) -> dict[str, Any]:
    """An array's metadata document (v2: ``.zarray`` with ``.zattrs`` as ``_attrs``).

    Raises ``FileNotFoundError`` when ``path`` holds no array of ``zarr_format``.
    """
    name = "zarr.json" if zarr_format == 3 else ".zarray"
    doc = _read_json(path / name)
    if not isinstance(doc, dict) or (zarr_format == 3 and doc.get("node_type") != "array"):
        raise MetadataError(f"{path / name} is not a zarr array document")
    if zarr_format == 2:
        doc["_attrs"] = _read_json(path / ".zattrs", missing_ok=True) or {}
    return doc


def atomic_write_bytes(
    path: Path, data: bytes, *, durable: bool = True, replace: bool = True
) -> None:
    """Write ``data`` to ``path`` so that readers see the old or the new file, never half.

    With ``replace=False`` an existing ``path`` is never replaced: ``FileExistsError``
    (the file is linked into place, which fails when the name is taken).  An error of
    a write (a full disk) names ``path``.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{_owner()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with tmp.open("xb") as fh:
            fh.write(data)
            fh.flush()
            if durable:
                os.fsync(fh.fileno())
        if replace:
            os.replace(tmp, path)
        else:
            os.link(tmp, path)
    except OSError as err:
        if err.filename is not None or err.errno is None:
            raise
        # write() and fsync() errors name no file: "No space left on device" alone
        # would not say which document could not be written.
        raise OSError(err.errno, err.strerror, str(path)) from err
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def _dumps(doc: Mapping[str, Any]) -> bytes:
    # Compact: json's C encoder does not indent, and the pure-Python one that does cost
    # ~0.2 ms per document, a tenth of a well's whole write (bench/profile_core.py).
    return json.dumps(doc, allow_nan=False).encode()


def write_staged_file(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` inside a staging directory, creating missing parents.

    No reader sees a staging directory before the store renames it into place whole, so
    its files need no temporary name and no fsync (a crash leaves the directory to the
    next writer's clean-up).  Trying the open first spares a ``mkdir`` per file.
    """
    with open_in_new_dir(path, "wb") as fh:
        write_all(fh, data)


def open_in_new_dir(path: Path, mode: str) -> IO[Any]:
    """``open(path, mode, buffering=0)``, creating the missing parent folders if needed."""
    try:
        return open(path, mode, buffering=0)
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True)
        return open(path, mode, buffering=0)


def write_all(fh: IO[Any], data: bytes) -> None:
    """Write all of ``data`` to an unbuffered file (a raw write may write less)."""
    view = memoryview(data)
    while view:
        view = view[fh.write(view) :]


def write_group(
    path: Path | RemoteLocation,
    attrs: Mapping[str, Any],
    zarr_format: int,
    *,
    staged: bool = False,
) -> None:
    """Create or replace the group at ``path`` with attributes ``attrs`` (atomically).

    ``staged=True`` is for a group inside a staging directory: its documents are written
    directly (see :func:`write_staged_file`).  Remote: one put per document.
    """
    files: list[tuple[str, bytes]]
    if zarr_format == 3:
        doc = {"zarr_format": 3, "node_type": "group", "attributes": dict(attrs)}
        files = [("zarr.json", _dumps(doc))]
    else:
        # Attributes first: a reader that finds .zgroup must also find the attributes.
        files = [(".zattrs", _dumps(dict(attrs)))]
        if staged or not is_file(path / ".zgroup"):
            files.append((".zgroup", _dumps({"zarr_format": 2})))
    for name, data in files:
        if isinstance(path, RemoteLocation):
            (path / name).write(data)
            continue
        if staged:
            write_staged_file(path / name, data)
        else:
            atomic_write_bytes(path / name, data)


@contextlib.contextmanager
def plate_lock(root: Path | RemoteLocation) -> Iterator[None]:
    """Hold an exclusive inter-process lock on the plate's metadata.

    The lock file stays in place for good: deleting it while another process waits
    on it would hand the two of them different locks.  An object store has no locks:
    there the conversion's client is the plate metadata's only writer (no lock taken).
    """
    if isinstance(root, RemoteLocation):
        yield
        return
    with (root / LOCK_NAME).open("a") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def _owner() -> str:
    """``host.pid`` of this process, as written into the names of its temporary nodes."""
    return f"{socket.gethostname().replace('.', '-')}.{os.getpid()}"


def staging_dir(root: Path, label: str) -> Path:
    """Return a fresh private directory under the plate to build ``label`` in."""
    path = root / STAGING_DIR / f"{label}.{_owner()}.{uuid.uuid4().hex[:12]}"
    path.mkdir(parents=True)
    return path


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return not is_zombie(pid)


def is_zombie(pid: int) -> bool:
    """Whether ``pid`` has exited but is not reaped yet (``kill(pid, 0)`` still succeeds).

    A writer killed with its parent (``kill -9`` of a conversion's process group) stays
    a zombie until something reaps it, in a container maybe for good: it writes no more.
    """
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            stat = fh.read()
    except OSError:  # no /proc (not Linux), or it exited meanwhile
        return False
    # "pid (comm) S ...": the state follows the last ")", as comm may hold parentheses.
    end = stat.rfind(b")")
    return stat[end + 2 : end + 3] == b"Z"


def _dead_owner(name: str) -> bool:
    """Whether a ``label.host.pid.uuid`` name belongs to a finished process of this host.

    Nodes of other hosts (a cluster sharing the file system) are never judged dead.
    """
    parts = name.split(".")
    if len(parts) != 4 or not parts[2].isdigit():
        return False
    host = socket.gethostname().replace(".", "-")
    return parts[1] == host and not _pid_alive(int(parts[2]))


def clean_stale_staging(root: Path) -> list[Path]:
    """Delete what killed writers of this host left behind; return what was removed.

    That is: staging directories of dead processes, trees a killed ``remove_tree`` had
    already moved aside (``*.deleting.*``), and half-written metadata documents
    (``.<name>.<host>.<pid>.<id>.tmp``) in the plate and its row groups.
    """
    removed: list[Path] = []
    base = root / STAGING_DIR
    entries = list(base.iterdir()) if base.is_dir() else []
    folders = [root, *(r for r in root.iterdir() if r.is_dir() and not r.name.startswith("."))]
    for folder in folders:
        for entry in folder.iterdir():
            if entry.name.endswith(".tmp") and entry.is_file():
                parts = entry.name[: -len(".tmp")].rsplit(".", 3)
                if len(parts) == 4 and _dead_owner("x." + ".".join(parts[1:])):
                    entry.unlink(missing_ok=True)
                    removed.append(entry)
            elif folder is not root and entry.name.startswith(".") and ".deleting." in entry.name:
                entries.append(entry)
    for entry in entries:
        # A tree moved aside for deletion is named ".<name>.deleting.<host>.<pid>.<uuid>".
        owner = (
            "x." + entry.name.split(".deleting.", 1)[1]
            if ".deleting." in entry.name
            else entry.name
        )
        if _dead_owner(owner):
            _rmtree(entry)
            removed.append(entry)
    return removed


def _rmtree(path: Path) -> None:
    """``shutil.rmtree`` that tolerates files another cleaner removed first."""

    def vanished(_func: Any, _path: Any, exc: Any) -> None:
        error = exc[1] if isinstance(exc, tuple) else exc
        if not isinstance(error, FileNotFoundError):
            raise error

    if sys.version_info >= (3, 12):
        shutil.rmtree(path, onexc=vanished)
    else:
        shutil.rmtree(path, onerror=vanished)


def exchange(new: Path, old: Path) -> bool:
    """Swap two directories in one step (Linux ``renameat2(RENAME_EXCHANGE)``).

    Readers see ``old`` as it was or ``new`` whole, never neither.  Returns False
    where the system or file system cannot (then nothing was moved).
    """
    import ctypes
    import errno

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    done = renameat2(at_fdcwd, os.fsencode(new), at_fdcwd, os.fsencode(old), rename_exchange)
    if done == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP):
        return False
    raise OSError(code, os.strerror(code), str(old))


def aside_of(path: Path | RemoteLocation) -> Path | RemoteLocation:
    """Where :func:`replace_dir` keeps the old ``path`` while the new one moves in."""
    return path.parent / _aside_name(path.name)


def _aside_name(name: str) -> str:
    return f".{name}.wellzarr-aside"


def replace_dir(new: Path, old: Path) -> None:
    """Put the directory ``new`` in the place of ``old``: whole, old or new, never a mix.

    With ``renameat2`` the two are exchanged in one step (``new`` then holds the old
    tree, for the caller to remove).  Without it, ``old`` is first renamed aside
    (:func:`aside_of`), ``new`` renamed in, then the aside copy removed: a kill in
    between leaves the aside copy, which readers read in place of a missing ``old``
    and :func:`recover_aside` (every later replace) puts back or removes.
    """
    recover_aside(old)
    if not old.exists():
        os.rename(new, old)
    elif not exchange(new, old):
        aside = old.parent / _aside_name(old.name)
        os.rename(old, aside)
        os.rename(new, old)
        remove_tree(aside)


def recover_aside(path: Path) -> bool:
    """Finish a :func:`replace_dir` that was killed; return whether there was one.

    The aside copy is removed when a complete ``path`` is in place, else put back.
    """
    aside = path.parent / _aside_name(path.name)
    if not aside.is_dir():
        return False
    if detect_zarr_format(path) is not None:
        remove_tree(aside)
    else:
        if path.exists():
            remove_tree(path)
        os.rename(aside, path)
    return True


def remove_tree(path: Path) -> None:
    """Delete ``path`` (a directory tree or a file).

    A tree is first renamed aside, so that its name is free at once and a crash never
    leaves a half-deleted node where readers look.
    """
    if not path.exists() and not path.is_symlink():
        return
    if path.is_symlink() or path.is_file():
        path.unlink()
        return
    trash = path.with_name(f".{path.name}.deleting.{_owner()}.{uuid.uuid4().hex[:8]}")
    try:
        os.replace(path, trash)
    except FileNotFoundError:  # someone else removed it first
        return
    _rmtree(trash)


def subfolders(path: Path | RemoteLocation) -> list[str]:
    """Names of the folders in ``path`` (none when it cannot be listed), hidden ones left out.

    A remote plate's folders are listed only where it is written (``s3://``); other
    remote plates have none to list: their unlisted wells are not looked for.
    """
    if isinstance(path, RemoteLocation):
        if not path.writable:
            return []
        return [name for name in path.listing()[0] if not name.startswith(".")]
    try:
        with os.scandir(path) as entries:
            return [e.name for e in entries if not e.name.startswith(".") and e.is_dir()]
    except OSError:
        return []
