"""Source files by local path or ``s3://`` URL: list a prefix, read objects, ranges, sizes."""

from __future__ import annotations

import fnmatch
import io
import os
import posixpath
import threading
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import urlsplit

from napari_wellzarr.errors import ConfigError, RemoteReadError
from napari_wellzarr.storage import fsio
from napari_wellzarr.storage.locations import is_url, open_location, redact

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator

__all__ = [
    "HEAD_BYTES",
    "SOURCE_SCHEMES",
    "ObjectPath",
    "SourcePath",
    "as_source",
    "fetch_many",
    "fetched",
    "is_zarr",
    "object_etag",
    "open_ranged",
    "read_head",
    "read_object",
    "read_range_if",
    "walk",
]

#: The URL schemes a source (an export) is read from.
SOURCE_SCHEMES: Final = frozenset({"s3", "s3a"})
#: Bytes of a TIFF asked for at once when its header is read (the IFD is usually there).
HEAD_BYTES: Final = 64 * 1024
#: Source objects one worker process downloads at once.
FETCH_THREADS: Final = 4


@dataclass(frozen=True)
class _Stat:
    st_size: int


class _Tree:
    """One bucket's objects under a source prefix, listed once (an export does not change)."""

    def __init__(self, base: str, prefix: str) -> None:
        self.base = base
        self.prefix = prefix
        self._lock = threading.Lock()
        self._dirs: dict[str, tuple[list[str], dict[str, int]]] | None = None
        self._outside: dict[str, tuple[list[str], dict[str, int]]] = {}

    def url(self, key: str) -> str:
        return f"{self.base}/{key}" if key else self.base

    def listing(self, key: str) -> tuple[list[str], dict[str, int]]:
        """``(sub-folder names, {object name: size})`` directly in folder ``key``."""
        inside = not self.prefix or key == self.prefix or key.startswith(self.prefix + "/")
        if inside:
            return self._all().get(key, ([], {}))
        with self._lock:
            if key not in self._outside:
                self._outside[key] = _list_one(self.base, key)
            return self._outside[key]

    def _all(self) -> dict[str, tuple[list[str], dict[str, int]]]:
        with self._lock:
            if self._dirs is None:
                self._dirs = _list_all(self.base, self.prefix)
            return self._dirs


def _store(base: str) -> Any:
    """The obstore store of a bucket in this process (credentials and retries as the reader's).

    Kept per bucket and endpoint (``AWS_ENDPOINT_URL``): one client, its connections reused.
    """
    key = (base, os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL"))
    with _STORES_LOCK:
        store = _STORES.get(key)
        if store is None:
            store = _STORES[key] = open_location(base).store_at()
        return store


_STORES: dict[tuple[str, str | None], Any] = {}
_STORES_LOCK = threading.Lock()


def _fail(url: str, err: Exception, doing: str) -> RemoteReadError:
    # obstore's messages hold the request URL and the server's answer, never the
    # credentials (they travel in headers); keep the first line.
    text = str(err).strip()
    detail = text.splitlines()[0] if text else type(err).__name__
    return RemoteReadError(f"{redact(url)}: {doing} failed: {type(err).__name__}: {detail}")


def _missing(url: str) -> RemoteReadError:
    return RemoteReadError(
        f"{redact(url)}: no such object (deleted or never uploaded since the scan?)"
    )


def _is_missing(err: RemoteReadError) -> bool:
    from obstore.exceptions import NotFoundError

    return isinstance(err.__cause__, NotFoundError | FileNotFoundError)


def _list_all(base: str, prefix: str) -> dict[str, tuple[list[str], dict[str, int]]]:
    import obstore

    dirs: dict[str, tuple[list[str], dict[str, int]]] = {prefix: ([], {})}
    try:
        batches = obstore.list(_store(base), f"{prefix}/" if prefix else None)
        metas = [meta for batch in batches for meta in batch]
    except Exception as err:  # obstore's errors, each named in the message
        raise _fail(_tree_url(base, prefix), err, "listing") from err
    for meta in metas:
        key = str(meta["path"])
        if key.endswith("/"):  # a folder marker
            continue
        folder, _, name = key.rpartition("/")
        dirs.setdefault(folder, ([], {}))[1][name] = int(meta["size"])
        while folder != prefix and folder:
            parent, _, child = folder.rpartition("/")
            entry = dirs.setdefault(parent, ([], {}))
            if child in entry[0]:
                break
            entry[0].append(child)
            dirs.setdefault(folder, ([], {}))
            folder = parent
    for subdirs, _ in dirs.values():
        subdirs.sort()
    return dirs


def _list_one(base: str, key: str) -> tuple[list[str], dict[str, int]]:
    import obstore

    prefix = f"{key}/" if key else ""
    try:
        found = obstore.list_with_delimiter(_store(base), prefix or None)
    except Exception as err:  # obstore's errors, each named in the message
        raise _fail(_tree_url(base, key), err, "listing") from err
    subdirs = sorted(p[len(prefix) :].strip("/") for p in found["common_prefixes"])
    files = {
        str(m["path"])[len(prefix) :]: int(m["size"])
        for m in found["objects"]
        if not str(m["path"]).endswith("/")
    }
    return subdirs, files


def _tree_url(base: str, key: str) -> str:
    return f"{base}/{key}" if key else base


class ObjectPath:
    """A file or folder of an export in an object store, with the ``Path`` calls a scan uses.

    Folders are answered from one listing of the source prefix (folders above it are
    listed when asked). ``str()`` is the URL (never credentials); it has no
    ``__fspath__``: no code can open it as a local file by mistake.
    """

    __slots__ = ("_key", "_tree")

    def __init__(self, tree: _Tree, key: str) -> None:
        self._tree = tree
        self._key = key.strip("/")

    # -- naming ---------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """``s3://bucket/key``."""
        return self._tree.url(self._key)

    def __str__(self) -> str:
        return self.url

    def __repr__(self) -> str:
        return f"ObjectPath({self.url!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ObjectPath) and (other._tree.base, other._key) == (
            self._tree.base,
            self._key,
        )

    def __hash__(self) -> int:
        return hash((self._tree.base, self._key))

    def __lt__(self, other: ObjectPath) -> bool:
        return self._key < other._key

    def __truediv__(self, child: str | os.PathLike[str]) -> ObjectPath:
        joined = posixpath.normpath(posixpath.join(self._key or "/", os.fspath(child)))
        return ObjectPath(self._tree, joined.lstrip("/") if joined != "/" else "")

    @property
    def name(self) -> str:
        """The last part of the key."""
        return self._key.rpartition("/")[2]

    @property
    def stem(self) -> str:
        """:attr:`name` without its suffix."""
        return PurePosixPath(self.name).stem if self.name else ""

    @property
    def suffix(self) -> str:
        """The name's suffix (``.xml``)."""
        return PurePosixPath(self.name).suffix if self.name else ""

    @property
    def parent(self) -> ObjectPath:
        """The folder above (the bucket's top stays the top)."""
        return ObjectPath(self._tree, self._key.rpartition("/")[0])

    def absolute(self) -> ObjectPath:
        """Itself (a URL is absolute)."""
        return self

    def relative_to(self, other: ObjectPath) -> PurePosixPath:
        """The key below ``other``'s, as a relative path."""
        if other._key and not (self._key == other._key or self._key.startswith(other._key + "/")):
            raise ValueError(f"{self.url} is not below {other.url}")
        rest = self._key[len(other._key) :].lstrip("/") if other._key else self._key
        return PurePosixPath(rest or ".")

    # -- listing --------------------------------------------------------------------------

    def _entry(self) -> tuple[list[str], dict[str, int]]:
        parent, _, name = self._key.rpartition("/")
        return self._tree.listing(parent) if name else ([], {})

    def is_file(self) -> bool:
        """Whether an object has this key."""
        return bool(self._key) and self.name in self._entry()[1]

    def is_dir(self) -> bool:
        """Whether objects are below this key (the bucket's top always is)."""
        if not self._key:
            return True
        subdirs, files = self._tree.listing(self._key)
        return bool(subdirs or files)

    def exists(self) -> bool:
        """An object or a folder."""
        return self.is_file() or self.is_dir()

    def iterdir(self) -> Iterator[ObjectPath]:
        """The folders and objects directly below, by name."""
        subdirs, files = self._tree.listing(self._key)
        for name in sorted({*subdirs, *files}):
            yield self / name

    def glob(self, pattern: str) -> Iterator[ObjectPath]:
        """Entries directly below whose name matches ``pattern`` (no ``/`` nor ``**``)."""
        if "/" in pattern:
            raise ValueError(f"only patterns of one part are supported, not {pattern!r}")
        return (p for p in self.iterdir() if fnmatch.fnmatchcase(p.name, pattern))

    def stat(self) -> _Stat:
        """The object's size (from the listing)."""
        size = self._entry()[1].get(self.name) if self._key else None
        if size is None:
            raise FileNotFoundError(2, "no such object", self.url)
        return _Stat(size)

    # -- reading --------------------------------------------------------------------------

    def read_bytes(self) -> bytes:
        """The whole object (one GET)."""
        return read_object(self.url)


#: A source file or folder: a local path or an object of an ``s3://`` export.
SourcePath = Path | ObjectPath


def as_source(source: str | os.PathLike[str] | ObjectPath) -> SourcePath:
    """The folder of a source: an absolute local path, or an :class:`ObjectPath` of a URL.

    Raises :class:`ConfigError` for a URL of a scheme sources are not read from
    (``http://``...), naming the URL without credentials.
    """
    if isinstance(source, ObjectPath):
        return source
    if not is_url(source):
        return Path(source).absolute()
    text = os.fspath(source)
    parts = urlsplit(text)
    if parts.scheme.lower() not in SOURCE_SCHEMES:
        raise ConfigError(
            f"source {redact(text)}: sources are read from local folders and s3:// URLs, "
            f"not {parts.scheme}://"
        )
    if not parts.hostname:
        raise ConfigError(f"source {redact(text)}: no bucket in the URL")
    base = f"{parts.scheme.lower()}://{parts.hostname}"
    key = parts.path.strip("/")
    return ObjectPath(_Tree(base, key), key)


def walk(
    root: SourcePath,
) -> Iterator[tuple[SourcePath, PurePosixPath, list[str], list[str]]]:
    """``os.walk`` of a source folder, top down.

    Yields ``(folder, its path below root, folder names, file names)``; prune by
    editing the folder names in place.
    """
    if isinstance(root, Path):
        for dirpath, dirnames, filenames in os.walk(root):
            here = Path(dirpath)
            yield here, PurePosixPath(here.relative_to(root).as_posix()), dirnames, filenames
        return
    todo = [root]
    while todo:
        folder = todo.pop()
        subdirs, files = folder._tree.listing(folder._key)
        dirnames = list(subdirs)
        yield folder, folder.relative_to(root), dirnames, sorted(files)
        todo.extend(folder / d for d in reversed(dirnames))


def is_zarr(folder: SourcePath) -> bool:
    """Whether ``folder`` is a zarr group or array (a plate written into its source)."""
    if isinstance(folder, Path):
        return fsio.detect_zarr_format(folder) is not None
    names = folder._tree.listing(folder._key)[1]
    return "zarr.json" in names or ".zgroup" in names or ".zarray" in names


# -- objects by URL (workers: plans carry URLs, never stores or credentials) -----------------


def _split(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    if parts.scheme.lower() not in SOURCE_SCHEMES or not parts.hostname:
        raise ConfigError(f"{redact(url)}: not an s3:// object URL")
    return f"{parts.scheme.lower()}://{parts.hostname}", parts.path.strip("/")


def read_object(url: str) -> bytes:
    """The whole object at ``url`` (one GET, with the remote reader's retries and timeouts).

    Raises :class:`RemoteReadError` naming the URL (never credentials) when it is
    missing, denied or the store cannot be reached.
    """
    import obstore
    from obstore.exceptions import NotFoundError

    base, key = _split(url)
    try:
        data = bytes(obstore.get(_store(base), key).bytes())
    except (NotFoundError, FileNotFoundError) as err:
        raise _missing(url) from err
    except Exception as err:  # obstore's errors, each named in the message
        raise _fail(url, err, "reading") from err
    with _STORES_LOCK:
        _FETCHED[0] += 1
        _FETCHED[1] += len(data)
    return data


_FETCHED = [0, 0]


def fetched() -> tuple[int, int]:
    """``(objects, bytes)`` this process has read from object storage for their pixels.

    An object read whole counts once, and so does one read by a ranged GET of its pixels
    (:func:`read_range_if`).
    """
    with _STORES_LOCK:
        return _FETCHED[0], _FETCHED[1]


def read_range_if(url: str, start: int, end: int, etag: str | None) -> memoryview | None:
    """Bytes ``start:end`` of the object at ``url``, if its ETag is still ``etag``.

    ``None`` when the object changed since (or the range lies beyond its end): read it
    whole instead.  One GET; raises :class:`RemoteReadError` as :func:`read_object`.
    """
    import obstore
    from obstore.exceptions import NotFoundError, PreconditionError

    base, key = _split(url)
    options: dict[str, Any] = {"range": (start, end)}
    if etag is not None:
        options["if_match"] = etag
    try:
        result = obstore.get(_store(base), key, options=options)  # type: ignore[arg-type]
        data = memoryview(result.bytes())
    except PreconditionError:
        return None
    except (NotFoundError, FileNotFoundError) as err:
        raise _missing(url) from err
    except Exception as err:  # obstore's errors, each named in the message
        raise _fail(url, err, f"reading bytes {start}-{end}") from err
    if len(data) != end - start:
        return None
    with _STORES_LOCK:
        _FETCHED[0] += 1
        _FETCHED[1] += len(data)
    return data


def object_etag(handle: io.RawIOBase) -> str | None:
    """The ETag of the object an :func:`open_ranged` file reads (None if the store gave none)."""
    return handle.etag if isinstance(handle, _RangedFile) else None


def _read_range(url: str, start: int, end: int) -> tuple[bytes, int, str | None]:
    """Bytes ``start:end`` (fewer at the end of the object), the object's size and ETag."""
    import obstore
    from obstore.exceptions import NotFoundError

    base, key = _split(url)
    try:
        result = obstore.get(_store(base), key, options={"range": (start, end)})
        meta = result.meta
        return bytes(result.bytes()), int(meta["size"]), meta.get("e_tag")
    except (NotFoundError, FileNotFoundError) as err:
        raise _missing(url) from err
    except Exception as err:  # obstore's errors, each named in the message
        raise _fail(url, err, f"reading bytes {start}-{end}") from err


def read_head(path: SourcePath | str, length: int) -> bytes:
    """The first ``length`` bytes of a file (fewer when it is shorter)."""
    if isinstance(path, ObjectPath) or (isinstance(path, str) and is_url(path)):
        url = str(path)
        try:
            return _read_range(url, 0, length)[0]
        except RemoteReadError as err:
            if _is_missing(err):
                raise
            size = ObjectPath.stat(path).st_size if isinstance(path, ObjectPath) else None
            if size is not None and size < length:  # a short object: some stores refuse
                return read_object(url)
            raise
    with open(path, "rb") as handle:
        return handle.read(length)


class _RangedFile(io.RawIOBase):
    """A read-only, seekable file of an object: the head at once, more by ranged GETs."""

    def __init__(self, url: str, head: int) -> None:
        super().__init__()
        self.url = url
        data, self.size, self.etag = _fetch_head(url, head)
        self._blocks: dict[int, bytes] = {0: data}  # offset -> bytes
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = 0) -> int:
        base = {0: 0, 1: self._pos, 2: self.size}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        want = min(len(view), self.size - self._pos)
        if want <= 0:
            return 0
        data = self._read(self._pos, self._pos + want)
        view[: len(data)] = data
        self._pos += len(data)
        return len(data)

    def _read(self, start: int, end: int) -> bytes:
        for offset, block in self._blocks.items():
            if offset <= start and end <= offset + len(block):
                return block[start - offset : end - offset]
        # fetch at least HEAD_BYTES: tifffile reads tags one small value at a time
        stop = min(self.size, max(end, start + HEAD_BYTES))
        data, _, _ = _read_range(self.url, start, stop)
        self._blocks[start] = data
        return data[: end - start]


def _fetch_head(url: str, length: int) -> tuple[bytes, int, str | None]:
    try:
        return _read_range(url, 0, length)
    except RemoteReadError as err:
        if _is_missing(err):
            raise
        data = read_object(url)  # a short object whose store refuses the range
        return data, len(data), None


def open_ranged(url: str, head: int = HEAD_BYTES) -> io.BufferedReader:
    """A binary file of the object at ``url`` for tifffile.

    One GET of its first ``head`` bytes, then ranged GETs for what lies beyond (an IFD
    written after the pixels).
    """
    return io.BufferedReader(_RangedFile(url, head), buffer_size=HEAD_BYTES)


_POOL: ThreadPoolExecutor | None = None
_POOL_LOCK = threading.Lock()


def fetch_many(
    urls: Iterable[str], fetch: Callable[[str], Any] = read_object
) -> Iterator[tuple[str, Any]]:
    """``(url, fetch(url))`` of each object in order, at most :data:`FETCH_THREADS` at once.

    Objects are fetched (by default whole, :func:`read_object`) ahead of the caller by
    at most ``FETCH_THREADS`` (memory: that many objects).
    """
    global _POOL
    with _POOL_LOCK:
        if _POOL is None:
            _POOL = ThreadPoolExecutor(FETCH_THREADS, thread_name_prefix="wellzarr-source")
        pool = _POOL
    pending = list(urls)
    ahead: deque[Future[Any]] = deque(pool.submit(fetch, u) for u in pending[:FETCH_THREADS])
    for i, url in enumerate(pending):
        data = ahead.popleft().result()
        if i + FETCH_THREADS < len(pending):
            ahead.append(pool.submit(fetch, pending[i + FETCH_THREADS]))
        yield url, data
