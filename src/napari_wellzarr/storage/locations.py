"""Where a plate lives: URLs told from local paths, and remote folders read through obstore."""

from __future__ import annotations

import os
import re
import threading
import time
from bisect import bisect_right
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import urlsplit, urlunsplit

from napari_wellzarr.errors import RemoteReadError, RemoteStoreError, RemoteWriteError
from napari_wellzarr.storage.inflight import InFlight, merge_spans

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = [
    "READ_SCHEMES",
    "WRITE_SCHEMES",
    "RemoteLocation",
    "fetch_all",
    "is_url",
    "open_location",
    "redact",
    "refuse_url",
    "scrub",
    "writable_url",
]

#: The URL schemes plates are read from (obstore's stores).
READ_SCHEMES: Final = frozenset({"http", "https", "s3", "s3a", "gs", "az", "abfs", "abfss"})
#: The URL schemes plates are written to (object stores with conditional puts).
WRITE_SCHEMES: Final = frozenset({"s3", "s3a"})
# "scheme://" (and "scheme:/" as pathlib leaves it of "s3://bucket" after Path()).
_URL: Final = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:/")
_WINDOWS_DRIVE: Final = re.compile(r"^[A-Za-z]:[\\/]")
#: Documents kept per remote plate (bytes, or None for a missing one), and their total size.
_DOC_ENTRIES: Final = 4096
_DOC_BYTES: Final = 64 * 2**20
#: Parts of a multipart upload (S3's smallest) and how many go up at once: an upload
#: holds about their product in memory (+25 MiB RSS for a 64 MiB file, +65 MiB read whole).
UPLOAD_PART_BYTES: Final = 5 * 2**20
UPLOAD_PARTS_AT_ONCE: Final = 4


def is_url(target: object) -> bool:
    """Whether ``target`` (a string or path) is a URL, never to be used as a local path.

    ``Path("s3://bucket/x")`` reads ``s3:/bucket/x``: that is a URL too.
    """
    try:
        text = target if isinstance(target, str) else os.fspath(target)  # type: ignore[call-overload]
    except TypeError:
        return False
    if not isinstance(text, str):
        return False
    return bool(_URL.match(text)) and not _WINDOWS_DRIVE.match(text)


def redact(url: str) -> str:
    """``url`` without user name, password, query or fragment (they may hold secrets)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    if parts.scheme.lower() in ("abfs", "abfss") and parts.username and not parts.password:
        host = f"{parts.username}@{host}"  # the container (abfss://container@account...)
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


def writable_url(target: object) -> bool:
    """Whether ``target`` is a URL a plate can be written to (``s3://``)."""
    if not is_url(target):
        return False
    text = target if isinstance(target, str) else os.fspath(target)  # type: ignore[call-overload]
    return urlsplit(str(text)).scheme.lower() in WRITE_SCHEMES


def refuse_url(target: object, what: str, *, s3_ok: bool = False) -> None:
    """Raise :class:`RemoteWriteError` when a write destination ``target`` is a URL.

    Parameters
    ----------
    target
        The destination as given (string or path).
    what
        What would be written, for the message (``"a plate"``).
    s3_ok
        Let ``s3://`` URLs through (plates, conversions): only other URLs are refused.
    """
    if not is_url(target):
        return
    text = target if isinstance(target, str) else os.fspath(target)  # type: ignore[call-overload]
    if s3_ok and writable_url(text):
        return
    if s3_ok:
        raise RemoteWriteError(
            f"cannot write {what} to {redact(str(text))}: writing to a URL is not supported "
            "for this scheme; plates are written to local folders and s3:// URLs only"
        )
    raise RemoteWriteError(
        f"cannot write {what} to {redact(str(text))}: writing to a URL is not supported "
        "here (only reading); write to a local folder and upload it"
    )


def _timeout() -> float:
    """Seconds a remote request may take (``WELLZARR_REMOTE_TIMEOUT``, default 30)."""
    raw = os.environ.get("WELLZARR_REMOTE_TIMEOUT", "")
    try:
        value = float(raw)
    except ValueError:
        return 30.0
    return value if value > 0 else 30.0


def _s3_options(url: str) -> dict[str, Any]:
    """Obstore options for an S3 URL: the ``AWS_*`` variables, the AWS files, or anonymous."""
    options: dict[str, Any] = {}
    endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    if endpoint and endpoint.startswith("http://"):
        options["client_options"] = {"allow_http": True}
    if os.environ.get("AWS_ACCESS_KEY_ID"):
        return options  # obstore reads the AWS_* variables itself
    try:
        import boto3  # type: ignore[import-untyped]
    except ImportError:
        boto3 = None
    if boto3 is not None:
        session = boto3.Session()
        if session.get_credentials() is not None:  # ~/.aws/credentials, config, SSO...
            from obstore.auth.boto3 import Boto3CredentialProvider

            options["credential_provider"] = Boto3CredentialProvider(session)
            if session.region_name and not os.environ.get("AWS_DEFAULT_REGION"):
                options["region"] = session.region_name
            return options
    options["skip_signature"] = True  # no credentials anywhere: a public bucket
    return options


#: Variables that hold Google Cloud Storage credentials (obstore reads them itself).
_GCS_CREDENTIALS: Final = (
    "GOOGLE_SERVICE_ACCOUNT",
    "GOOGLE_SERVICE_ACCOUNT_PATH",
    "GOOGLE_SERVICE_ACCOUNT_KEY",
    "GOOGLE_APPLICATION_CREDENTIALS",
    "GOOGLE_BEARER_TOKEN",
)
#: Variables that hold Azure Blob Storage credentials (obstore reads them itself).
_AZURE_CREDENTIALS: Final = (
    "AZURE_STORAGE_ACCOUNT_KEY",
    "AZURE_STORAGE_ACCESS_KEY",
    "AZURE_STORAGE_MASTER_KEY",
    "AZURE_STORAGE_SAS_KEY",
    "AZURE_STORAGE_SAS_TOKEN",
    "AZURE_STORAGE_TOKEN",
    "AZURE_STORAGE_CLIENT_SECRET",
    "AZURE_CLIENT_SECRET",
    "AZURE_FEDERATED_TOKEN_FILE",
    "AZURE_STORAGE_USE_EMULATOR",
)


_USERINFO: Final = re.compile(r"//[^/@\s]*@")


def scrub(err: BaseException) -> None:
    """Take any URL's user info out of ``err`` and the errors chained to it, in place.

    obstore's errors name the request URL, user info included (``http://user:pw@...``);
    ours chain them (``from err``), so their text must not hold it either.
    """
    seen: set[int] = set()
    todo: list[BaseException | None] = [err]
    while todo:
        one = todo.pop()
        if one is None or id(one) in seen or len(seen) > 64:
            continue
        seen.add(id(one))
        if any(isinstance(a, str) and _USERINFO.search(a) for a in one.args):
            one.args = tuple(_USERINFO.sub("//", a) if isinstance(a, str) else a for a in one.args)
        notes = getattr(one, "__notes__", None)
        if isinstance(notes, list):
            notes[:] = [_USERINFO.sub("//", n) if isinstance(n, str) else n for n in notes]
        todo += [one.__cause__, one.__context__]


def _detail(err: Exception) -> str:
    """``Type: first line`` of an obstore error, any user info of a URL in it taken out."""
    scrub(err)
    text = str(err).strip()
    first = text.splitlines()[0] if text else ""
    return f"{type(err).__name__}: {_USERINFO.sub('//', first) or type(err).__name__}"


def _gcs_options() -> dict[str, Any]:
    """Obstore options for a ``gs://`` URL: the ``GOOGLE_*`` variables, an emulator, or anonymous.

    ``STORAGE_EMULATOR_HOST`` (the Google client libraries' variable) points at an
    emulator (fake-gcs-server): no credentials.  Without credential variables nor the
    gcloud default credentials file, a public bucket is read without signing.
    """
    emulator = os.environ.get("STORAGE_EMULATOR_HOST", "").strip()
    if emulator:
        base = emulator if "://" in emulator else f"http://{emulator}"
        return {
            "base_url": base.rstrip("/"),
            "skip_signature": True,
            "client_options": {"allow_http": base.startswith("http://")},
        }
    if any(os.environ.get(name) for name in _GCS_CREDENTIALS):
        return {}
    default = os.path.expanduser("~/.config/gcloud/application_default_credentials.json")
    return {} if os.path.isfile(default) else {"skip_signature": True}


def _azure_options() -> dict[str, Any]:
    """Obstore options for ``az://`` / ``abfs[s]://``: the ``AZURE_*`` variables, or anonymous."""
    options: dict[str, Any] = {}
    endpoint = os.environ.get("AZURE_STORAGE_ENDPOINT", "")
    if endpoint.startswith("http://") or os.environ.get("AZURE_STORAGE_USE_EMULATOR"):
        options["client_options"] = {"allow_http": True}
    if not any(os.environ.get(name) for name in _AZURE_CREDENTIALS):
        options["skip_signature"] = True  # no credentials anywhere: a public container
    return options


class _Remote:
    """One obstore store (a server or bucket), its small-document cache and its counters."""

    def __init__(self, base: str) -> None:
        from obstore.store import from_url

        scheme = urlsplit(base).scheme.lower()
        seconds = _timeout()
        client: dict[str, Any] = {
            "timeout": timedelta(seconds=seconds),
            "connect_timeout": timedelta(seconds=min(seconds, 10.0)),
        }
        retry = {
            "max_retries": 2,
            "retry_timeout": timedelta(seconds=seconds),
            "backoff": {
                "init_backoff": timedelta(milliseconds=50),
                "max_backoff": timedelta(seconds=1),
                "base": 2,
            },
        }
        options: dict[str, Any] = {}
        if scheme in ("http", "https"):
            client["allow_http"] = scheme == "http"
        elif scheme in ("s3", "s3a"):
            options = _s3_options(base)
        elif scheme == "gs":
            options = _gcs_options()
        else:
            options = _azure_options()
        client.update(options.pop("client_options", {}))
        self.base = base
        self.options = {"client_options": client, "retry_config": retry, **options}
        leaks: RemoteReadError | None = None
        try:
            self.store = from_url(base, **self.options)
        except Exception as err:  # obstore's configuration errors (no account, bad URL...)
            hint = ""
            if scheme == "az" and not os.environ.get("AZURE_STORAGE_ACCOUNT_NAME"):
                hint = (
                    "; az://CONTAINER/... needs AZURE_STORAGE_ACCOUNT_NAME (or use "
                    "abfss://CONTAINER@ACCOUNT.dfs.core.windows.net/...)"
                )
            reason = f"cannot reach this store: {_detail(err)}{hint}"
            error = RemoteReadError(f"{redact(base)}: {reason}")
            if not _USERINFO.search(str(err)):
                raise error from err
            leaks = error  # its text holds user info even scrubbed: raised unchained
        if leaks is not None:
            raise leaks
        self._lock = threading.Lock()
        self._docs: OrderedDict[str, bytes | None] = OrderedDict()
        self.inflight: dict[str, threading.Event] = {}
        #: Byte ranges in flight, shared by the reads that need the same bytes.
        self.ranges = InFlight()
        self._doc_bytes = 0

    def remember(self, key: str, value: bytes | None) -> None:
        with self._lock:
            old = self._docs.pop(key, None)
            self._doc_bytes -= len(old or b"")
            self._docs[key] = value
            self._doc_bytes += len(value or b"")
            while len(self._docs) > _DOC_ENTRIES or self._doc_bytes > _DOC_BYTES:
                _, dropped = self._docs.popitem(last=False)
                self._doc_bytes -= len(dropped or b"")

    def forget(self, key: str) -> None:
        with self._lock:
            old = self._docs.pop(key, None)
            self._doc_bytes -= len(old or b"")

    def recall(self, key: str) -> tuple[bool, bytes | None]:
        with self._lock:
            if key in self._docs:
                self._docs.move_to_end(key)
                return True, self._docs[key]
        return False, None


def _split(url: str) -> tuple[str, str]:
    """``(store base URL, key prefix)``: the server or bucket, and the path inside it."""
    parts = urlsplit(url)
    if parts.scheme.lower() not in READ_SCHEMES:
        raise RemoteReadError(
            f"{redact(url)}: the scheme {parts.scheme!r} is not supported; use one of "
            f"{', '.join(sorted(READ_SCHEMES))}"
        )
    if not parts.netloc:
        raise RemoteReadError(f"{redact(url)}: no server or bucket in the URL")
    base = urlunsplit((parts.scheme, parts.netloc, "", "", ""))
    return base, parts.path.strip("/")


class RemoteLocation:
    """A folder or object of a plate on a web server or in an object store (read only).

    ``loc / "B/03"`` is a folder below it; documents are read whole (and kept in a
    bounded cache: opening a plate reads each at most once), shards by byte ranges.
    """

    def __init__(self, remote: _Remote, key: str) -> None:
        self._remote = remote
        self.key = key.strip("/")

    @property
    def url(self) -> str:
        """The location's URL without credentials (safe to show)."""
        return redact(f"{self._remote.base}/{self.key}")

    @property
    def writable(self) -> bool:
        """Whether plates are written here (an ``s3://`` bucket)."""
        return urlsplit(self._remote.base).scheme.lower() in WRITE_SCHEMES

    @property
    def base_url(self) -> str:
        """The server or bucket URL (``s3://bucket``)."""
        return self._remote.base

    def __str__(self) -> str:
        return self.url

    def __repr__(self) -> str:
        return f"RemoteLocation({self.url!r})"

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, RemoteLocation)
            and other._remote is self._remote
            and other.key == self.key
        )

    def __hash__(self) -> int:
        return hash((id(self._remote), self.key))

    def __truediv__(self, child: str) -> RemoteLocation:
        child = child.strip("/")
        return RemoteLocation(self._remote, f"{self.key}/{child}" if self.key else child)

    @property
    def name(self) -> str:
        """The last part of the path."""
        return self.key.rsplit("/", 1)[-1]

    @property
    def parent(self) -> RemoteLocation:
        """The folder above."""
        return RemoteLocation(self._remote, self.key.rsplit("/", 1)[0] if "/" in self.key else "")

    def store_at(self) -> Any:
        """A fresh obstore store rooted at this folder (for zarr's ``ObjectStore``)."""
        from obstore.store import from_url

        return from_url(f"{self._remote.base}/{self.key}", **self._remote.options)

    # -- reading ------------------------------------------------------------------------

    def _fail(self, err: Exception, doing: str) -> RemoteReadError:
        # obstore's messages carry the request URL and the server's answer; never
        # credentials (they travel in headers).  Keep its first line only.
        return RemoteReadError(f"{self.url}: {doing} failed: {_detail(err)}")

    def read(self, limit: int) -> bytes | None:
        """The whole object (a document), or None when it does not exist.

        Raises :class:`RemoteReadError` for any other failure (denied, server error,
        timeout) and :class:`MetadataError`-like size refusals are the caller's:
        objects over ``limit`` bytes raise :class:`RemoteReadError` before being read.
        Found and missing documents are cached; failures are not.
        """
        hit, value = self._remote.recall(self.key)
        if hit:
            return value
        # One request per document however many threads ask for it at once (tiles of
        # many wells open one template well's documents together).
        with self._remote._lock:
            pending = self._remote.inflight.get(self.key)
            leader = pending is None
            if pending is None:
                pending = self._remote.inflight[self.key] = threading.Event()
        if not leader:
            pending.wait(_timeout() * 3)
            hit, value = self._remote.recall(self.key)
            if hit:
                return value
            return self._fetch(limit)  # the first request failed: try on our own
        try:
            return self._fetch(limit)
        finally:
            with self._remote._lock:
                self._remote.inflight.pop(self.key, None)
            pending.set()

    def _fetch(self, limit: int) -> bytes | None:
        import obstore
        from obstore.exceptions import NotFoundError

        try:
            result = obstore.get(self._remote.store, self.key)
            size = int(result.meta["size"])
            if size > limit:
                raise RemoteReadError(f"{self.url} holds {size:,} bytes, more than {limit:,}")
            data: bytes | None = bytes(result.bytes())
        except (NotFoundError, FileNotFoundError):
            data = None
        except RemoteReadError:
            raise
        except Exception as err:  # obstore's errors, each named in the message
            raise self._fail(err, "reading") from err
        self._remote.remember(self.key, data)
        return data

    def forget(self) -> None:
        """Drop this object from the document cache: the next read asks the store."""
        self._remote.forget(self.key)

    def exists(self) -> bool:
        """Whether the object exists (read whole: only used for small documents)."""
        return self.read(_DOC_BYTES) is not None

    # -- writing (object stores: no rename, no lock) ------------------------------------

    def _store_error(self, err: Exception, doing: str) -> RemoteStoreError:
        return RemoteStoreError(f"{self.url}: {doing} failed: {_detail(err)}")

    def write(self, data: bytes, *, create: bool = False) -> None:
        """Put the whole object (one request: readers see the old or the new one).

        ``create=True`` is a conditional put (``If-None-Match: *``): raises
        ``FileExistsError`` when the object exists, whoever wrote it.
        """
        import obstore
        from obstore.exceptions import AlreadyExistsError

        try:
            obstore.put(self._remote.store, self.key, data, mode="create" if create else None)
        except AlreadyExistsError as err:
            self._remote.forget(self.key)
            scrub(err)
            raise FileExistsError(f"{self.url} exists already") from err
        except Exception as err:  # obstore's errors, each named in the message
            self._remote.forget(self.key)
            raise self._store_error(err, "writing") from err
        if len(data) <= _DOC_BYTES // 64:  # a document: readers of this process see it
            self._remote.remember(self.key, data)
        else:
            self._remote.forget(self.key)

    def upload(self, path: str) -> str | None:
        """Put the local file ``path`` as this object, streamed from the file.

        A file over ``UPLOAD_PART_BYTES`` goes up as a multipart upload, at most
        ``UPLOAD_PARTS_AT_ONCE`` parts in flight (the memory it holds); readers see the
        old object or the new one, never a part.  Returns the object's entity tag (None
        if the store gave none).
        """
        import obstore

        try:
            put = obstore.put(
                self._remote.store,
                self.key,
                Path(path),
                chunk_size=UPLOAD_PART_BYTES,
                max_concurrency=UPLOAD_PARTS_AT_ONCE,
            )
        except Exception as err:  # obstore's errors, each named in the message
            raise self._store_error(err, "uploading") from err
        self._remote.forget(self.key)
        return put.get("e_tag")

    def seed(self, data: bytes | None) -> None:
        """Take ``data`` as this document's bytes (None: it does not exist) without a request.

        Only for what a listing just proved: the object listed with the entity tag of a
        put whose bytes are ``data`` (or not listed at all).
        """
        self._remote.remember(self.key, data)

    def keys(self) -> list[str]:
        """Every object below this folder, as paths relative to it (never cached)."""
        import obstore

        prefix = f"{self.key}/" if self.key else ""
        try:
            found = [
                meta["path"][len(prefix) :]
                for batch in obstore.list(self._remote.store, prefix or None)
                for meta in batch
            ]
        except Exception as err:
            raise self._store_error(err, "listing") from err
        return sorted(found)

    def stamps(self) -> dict[str, tuple[int, int]]:
        """``(size, last modified ns)`` of every object below this folder, by relative path.

        One listing (a request per 1,000 objects), never cached: what a local ``stat``
        gives of each file, for the records that tell a rewritten object.
        """
        return {name: (size, mtime) for name, (size, mtime, _) in self.listed().items()}

    def listed(self) -> dict[str, tuple[int, int, str | None]]:
        """:meth:`stamps` with each object's entity tag (None if the store gives none)."""
        import obstore

        prefix = f"{self.key}/" if self.key else ""
        try:
            return {
                meta["path"][len(prefix) :]: (
                    int(meta["size"]),
                    int(meta["last_modified"].timestamp() * 1e6) * 1000,
                    meta.get("e_tag"),
                )
                for batch in obstore.list(self._remote.store, prefix or None)
                for meta in batch
            }
        except Exception as err:  # obstore's errors, each named in the message
            raise self._store_error(err, "listing") from err

    def listing(self) -> tuple[list[str], list[str]]:
        """``(folders, objects)`` directly in this folder, by name (never cached)."""
        import obstore

        prefix = f"{self.key}/" if self.key else ""
        try:
            found = obstore.list_with_delimiter(self._remote.store, prefix or None)
        except Exception as err:
            raise self._store_error(err, "listing") from err
        folders = [p[len(prefix) :].strip("/") for p in found["common_prefixes"]]
        objects = [m["path"][len(prefix) :] for m in found["objects"]]
        return sorted(folders), sorted(objects)

    def delete(self, names: Sequence[str]) -> None:
        """Delete the objects ``names`` (paths relative to this folder); missing ones too."""
        import obstore

        keys = [(self / name).key for name in names]
        for key in keys:
            self._remote.forget(key)
        try:
            for start in range(0, len(keys), 1000):
                obstore.delete(self._remote.store, keys[start : start + 1000])
        except Exception as err:
            raise self._store_error(err, f"deleting {len(keys)} object(s)") from err

    def read_tail(self, length: int) -> tuple[bytes, int] | None:
        """The last ``length`` bytes of the object and its size; None when it does not exist."""
        import obstore
        from obstore.exceptions import NotFoundError

        try:
            result = obstore.get(
                self._remote.store, self.key, options={"range": {"suffix": length}}
            )
            return bytes(result.bytes()), int(result.meta["size"])
        except (NotFoundError, FileNotFoundError):
            return None
        except Exception as err:
            raise self._fail(err, f"reading its last {length} bytes") from err

    def read_ranges(self, spans: Sequence[tuple[int, int]], size: int | None = None) -> list[bytes]:
        """The bytes at each ``(offset, length)``, fetched concurrently.

        With ``size``, each answer must come from an object of that size, else
        :class:`RemoteReadError` (the object was replaced since its size was known);
        touching ranges are then fetched in one request, and bytes another thread is
        fetching already are taken from its answer (a read-ahead and the read that needs
        it make one request).
        """
        import obstore

        if size is None:
            try:
                got = obstore.get_ranges(
                    self._remote.store,
                    self.key,
                    starts=[o for o, _ in spans],
                    lengths=[n for _, n in spans],
                )
            except Exception as err:
                raise self._fail(err, f"reading {len(spans)} byte ranges") from err
            return [bytes(b) for b in got]

        def one(span: tuple[int, int]) -> bytes:
            offset, length = span
            try:
                result = obstore.get(
                    self._remote.store, self.key, options={"range": (offset, offset + length)}
                )
                data = bytes(result.bytes())
                found = int(result.meta["size"])
            except Exception as err:
                raise self._fail(err, f"reading bytes {offset}+{length}") from err
            if found != size:
                raise RemoteReadError(
                    f"{self.url}: holds {found:,} bytes, not the {size:,} the plate recorded "
                    "(replaced since)"
                )
            return data

        def shared(span: tuple[int, int]) -> bytes:
            return self._remote.ranges.read((self.key, size), span, lambda: one(span))

        requests = merge_spans(spans)  # touching ranges: one request
        if len(requests) == 1:
            answers = [shared(requests[0])]
        else:
            answers = list(_range_pool().map(shared, requests))
        starts = [start for start, _ in requests]
        out = []
        for offset, length in spans:
            at = bisect_right(starts, offset) - 1
            data, start = answers[at], starts[at]
            out.append(data[offset - start : offset - start + length])
        return out


_POOL: ThreadPoolExecutor | None = None


def _range_pool() -> ThreadPoolExecutor:
    """Threads for the byte ranges of one object read at once (obstore releases the GIL)."""
    global _POOL
    with _OPEN_LOCK:
        if _POOL is None:
            _POOL = ThreadPoolExecutor(8, thread_name_prefix="wellzarr-range")
        return _POOL


_DOC_POOL: ThreadPoolExecutor | None = None
#: Documents fetched at once by :func:`fetch_all` (each a request in flight).
DOC_THREADS: Final = 16


def fetch_all(locations: Sequence[RemoteLocation]) -> None:
    """Read the documents at ``locations`` into their caches, all at once (one round trip).

    For documents a reader is about to read one after another: it then finds them
    cached (or waits for the request in flight).  A document that fails to read is
    not cached: the reader that needs it asks again and reports the failure.
    """
    todo = list(dict.fromkeys(loc for loc in locations if not loc._remote.recall(loc.key)[0]))

    def one(location: RemoteLocation) -> None:
        try:
            location.read(_DOC_BYTES)
        except RemoteReadError:
            pass  # not cached: the reader that needs it asks again and reports it

    if len(todo) <= 1:
        for location in todo:
            one(location)
        return
    global _DOC_POOL
    with _OPEN_LOCK:
        if _DOC_POOL is None:
            _DOC_POOL = ThreadPoolExecutor(DOC_THREADS, thread_name_prefix="wellzarr-doc")
        pool = _DOC_POOL
    list(pool.map(one, todo))


def _forget_pools() -> None:  # a forked child does not inherit the parent's threads
    global _POOL, _DOC_POOL
    _POOL = _DOC_POOL = None


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pools)


#: How many servers or buckets keep their client (and its open connections) between opens.
KEPT_CLIENTS: Final = 8
_OPEN: OrderedDict[str, _Remote] = OrderedDict()
_OPEN_LOCK = threading.Lock()
#: How long a location handed over (:func:`hand_over`) waits for the open that follows.
HANDOFF_S: Final = 10.0
_HANDED: dict[tuple[str, str], tuple[float, _Remote]] = {}


def open_location(url: str, *, fresh: bool = False) -> RemoteLocation:
    """The :class:`RemoteLocation` of ``url`` (``https://...``, ``s3://bucket/...``).

    Locations of one server or bucket share one client (the last ``KEPT_CLIENTS``
    servers keep theirs); ``fresh=True`` starts a new client with an empty document
    cache (a plate opened again sees documents changed since), unless the location of
    ``url`` was just handed over (:func:`hand_over`): its documents are then taken, once.
    """
    base, key = _split(url)
    with _OPEN_LOCK:
        now = time.monotonic()
        for stale in [k for k, (t, _) in _HANDED.items() if now - t > HANDOFF_S]:
            del _HANDED[stale]
        handed = _HANDED.pop((base, key), None) if fresh else None
        known = _OPEN.get(base)
        if handed is not None:
            remote = handed[1]
        else:
            remote = _Remote(base) if known is None or fresh else known
        _OPEN[base] = remote
        _OPEN.move_to_end(base)
        while len(_OPEN) > KEPT_CLIENTS:  # a dropped client closes its connections
            _OPEN.popitem(last=False)
    return RemoteLocation(remote, key)


def hand_over(location: RemoteLocation) -> None:
    """Let the next fresh :func:`open_location` of ``location`` reuse its documents.

    Within ``HANDOFF_S``, once: napari asks the reader for a URL, then opens it, and the
    plate's document is fetched once for both.
    """
    with _OPEN_LOCK:
        base = location._remote.base
        _HANDED[(base, location.key)] = (time.monotonic(), location._remote)
