"""Sharded zarr v3 arrays of plane chunks, written and read without zarr's event loop."""

from __future__ import annotations

import math
import os
import threading
from collections import OrderedDict
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from itertools import product
from typing import TYPE_CHECKING, Any, Final

import numpy as np

from napari_wellzarr.errors import CorruptDataError
from napari_wellzarr.storage import fsio
from napari_wellzarr.storage.inflight import merge_spans
from napari_wellzarr.storage.locations import RemoteLocation
from napari_wellzarr.storage.zstore import blosc_decoded_size, gunzip_into, zstd_content_size

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping, Sequence
    from pathlib import Path

__all__ = [
    "EncodedShards",
    "ShardGrid",
    "ShardReader",
    "StaleFileError",
    "codec_from_doc",
    "encode_pool",
    "endian_of",
]

_EMPTY: Final = 2**64 - 1  # an index entry (offset, nbytes) of two of these = no chunk
_CRC: Final = 4
#: Planes of at most this many bytes are decoded on the calling thread, not on the pool.
POOL_DECODE_BYTES: Final = 64 * 2**10
_POOL: ThreadPoolExecutor | None = None
_POOL_LOCK = threading.Lock()


def encode_pool() -> ThreadPoolExecutor:
    """The process's codec threads (one per core, at most 4); numcodecs releases the GIL."""
    global _POOL
    with _POOL_LOCK:
        if _POOL is None:
            _POOL = ThreadPoolExecutor(
                min(4, os.cpu_count() or 1), thread_name_prefix="wellzarr-codec"
            )
        return _POOL


def _forget_pool() -> None:  # a forked child does not inherit the parent's threads
    global _POOL
    _POOL = None


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pool)


#: Chunks of a remote shard fetched along with a requested one (see ShardReader).
READ_AHEAD_BYTES: Final = 1 << 20
READ_AHEAD_CHUNKS: Final = 8


_Key = tuple[str, int, int, int]


class _ChunkCache:
    """Stored chunks fetched ahead of need, by (URL, object size, offset, length); bounded."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._bytes = 0
        self._items: OrderedDict[tuple[str, int, int, int], bytes] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple[str, int, int, int]) -> bytes | None:
        with self._lock:
            hit = self._items.get(key)
            if hit is not None:
                self._items.move_to_end(key)
            return hit

    def drop(self, keys: list[_Key]) -> None:
        with self._lock:
            for key in keys:
                dropped = self._items.pop(key, None)
                self._bytes -= len(dropped or b"")

    def put(self, key: tuple[str, int, int, int], data: bytes) -> None:
        with self._lock:
            if key in self._items or len(data) > self._limit:
                return
            self._items[key] = data
            self._bytes += len(data)
            while self._bytes > self._limit:
                _, dropped = self._items.popitem(last=False)
                self._bytes -= len(dropped)


_READ_AHEAD = _ChunkCache(256 * 2**20)


class StaleFileError(CorruptDataError):
    """A shard file is not the one its well's recorded layout describes (rewritten since)."""


def _crc32c(data: Any) -> bytes:
    import google_crc32c  # zarr's own dependency for its crc32c codec

    return int(google_crc32c.value(data)).to_bytes(4, "little")


def codec_from_doc(codec: Mapping[str, Any], itemsize: int) -> Any:
    """The numcodecs object for a zarr v3 bytes->bytes codec document, or None if unknown."""
    import numcodecs

    name, config = codec.get("name"), codec.get("configuration") or {}
    if not isinstance(config, dict):
        return None
    if name == "blosc":
        shuffle = {"noshuffle": 0, "shuffle": 1, "bitshuffle": 2}.get(str(config.get("shuffle")))
        cname, clevel = config.get("cname"), config.get("clevel")
        blocksize, typesize = config.get("blocksize", 0), config.get("typesize") or itemsize
        if shuffle is None or not isinstance(cname, str) or not _ints(clevel, blocksize, typesize):
            return None
        return numcodecs.Blosc(
            cname=cname, clevel=clevel, shuffle=shuffle, blocksize=blocksize, typesize=typesize
        )
    if name == "zstd" and _ints(config.get("level", 0)):
        return numcodecs.Zstd(level=config.get("level", 0), checksum=config.get("checksum") is True)
    if name == "gzip" and _ints(config.get("level", 5)):
        return numcodecs.GZip(level=config.get("level", 5))
    return None


def _ints(*values: object) -> bool:
    return all(isinstance(v, int) and not isinstance(v, bool) for v in values)


def endian_of(codec: object) -> str | None:
    """``<`` / ``>`` for a ``bytes`` codec document, None for anything else."""
    if not isinstance(codec, dict) or codec.get("name") != "bytes":
        return None
    config = codec.get("configuration") or {}
    endian = config.get("endian", "little") if isinstance(config, dict) else None
    return {"little": "<", "big": ">"}.get(endian)  # type: ignore[arg-type]


@dataclass(frozen=True)
class ShardGrid:
    """How one sharded array of plane chunks is laid out on disk."""

    shape: tuple[int, ...]
    dtype: np.dtype[Any]  # with the stored byte order
    shard_shape: tuple[int, ...]
    chunk_shape: tuple[int, ...]
    compressor: Any  # numcodecs codec or None
    checksum: bool  # crc32c after each chunk
    index_checksum: bool  # crc32c after the index
    key_prefix: str  # "c/" or "c." (default encoding), "" (v2 encoding)
    separator: str

    @classmethod
    def parse(cls, doc: Mapping[str, Any]) -> ShardGrid | None:
        """The layout of a zarr v3 array document, or None unless it takes the direct road."""
        try:
            return cls._parse(doc)
        except (AttributeError, TypeError, ValueError, KeyError):
            return None

    @classmethod
    def _parse(cls, doc: Mapping[str, Any]) -> ShardGrid | None:
        shape = tuple(doc["shape"])
        grid = doc["chunk_grid"]
        codecs = doc["codecs"]
        if (
            doc.get("zarr_format") != 3
            or grid.get("name") != "regular"
            or doc.get("storage_transformers")
            or len(codecs) != 1
            or codecs[0].get("name") != "sharding_indexed"
            or not _ints(*shape)
            or len(shape) < 3
        ):
            return None
        shard_shape = tuple(grid["configuration"]["chunk_shape"])
        sharding = codecs[0]["configuration"]
        chunk_shape = tuple(sharding["chunk_shape"])
        plane = (1,) * (len(shape) - 2) + shape[-2:]
        if (
            chunk_shape != plane
            or len(shard_shape) != len(shape)
            or not _ints(*shard_shape)
            or shard_shape[-2:] != shape[-2:]
            or any(s < 1 for s in shard_shape)
            or sharding.get("index_location", "end") != "end"
        ):
            return None
        inner = list(sharding["codecs"])
        endian = endian_of(inner.pop(0)) if inner else None
        checksum = bool(inner) and inner[-1].get("name") == "crc32c"
        if checksum:
            inner.pop()
        dtype = np.dtype(doc["data_type"])
        if endian is None or len(inner) > 1 or dtype.kind not in "iuf":
            return None
        compressor = codec_from_doc(inner[0], dtype.itemsize) if inner else None
        if inner and compressor is None:
            return None
        index_codecs = [c.get("name") for c in sharding.get("index_codecs", [])]
        if index_codecs not in (["bytes"], ["bytes", "crc32c"]):
            return None
        if endian_of(sharding["index_codecs"][0]) != "<":
            return None
        keys = doc.get("chunk_key_encoding") or {"name": "default"}
        key_config = keys.get("configuration") or {}
        if keys.get("name") == "default":
            separator = key_config.get("separator", "/")
            prefix = f"c{separator}"
        elif keys.get("name") == "v2":
            prefix, separator = "", key_config.get("separator", ".")
        else:
            return None
        if separator not in ("/", "."):
            return None
        return cls(
            shape=shape,
            dtype=dtype.newbyteorder(endian),
            shard_shape=shard_shape,
            chunk_shape=chunk_shape,
            compressor=compressor,
            checksum=checksum,
            index_checksum=len(index_codecs) == 2,
            key_prefix=prefix,
            separator=separator,
        )

    # -- geometry -----------------------------------------------------------------------

    @property
    def chunks_per_shard(self) -> tuple[int, ...]:
        """The inner chunk grid of one shard: the shard's shape without its (y, x)."""
        return self.shard_shape[:-2]

    @property
    def plane_chunks(self) -> int:
        """Chunks that make one plane of the array (1: plane chunks)."""
        return 1

    def shard_key(self, shard: Sequence[int]) -> str:
        """The store key of a shard file, e.g. ``c.0.0.0.0.0`` or ``c/0/0/0/0/0``."""
        return self.key_prefix + self.separator.join(str(i) for i in shard)

    def locate(self, plane: Sequence[int]) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """``(shard, chunk within the shard)`` of the plane at ``plane`` (all but y, x)."""
        return (
            (*(i // s for i, s in zip(plane, self.chunks_per_shard, strict=True)), 0, 0),
            tuple(i % s for i, s in zip(plane, self.chunks_per_shard, strict=True)),
        )

    def _index_bytes(self) -> int:
        return math.prod(self.chunks_per_shard) * 16

    # -- writing --------------------------------------------------------------------------

    def encode(self, data: np.ndarray[Any, Any]) -> EncodedShards:
        """Start encoding every chunk of ``data`` on the codec threads.

        The caller can write the array's documents while the chunks are encoded, then
        :meth:`EncodedShards.write` the shard files.
        """
        stored = np.asarray(data).astype(self.dtype, copy=False)
        per_shard = self.chunks_per_shard
        grid = [range(math.ceil(n / s)) for n, s in zip(self.shape[:-2], per_shard, strict=True)]
        pool = encode_pool()
        shards = []
        for shard in product(*grid):
            origin = [i * s for i, s in zip(shard, per_shard, strict=True)]
            slots = []  # (place in the index, encoded plane); planes past the edge stay empty
            for slot, at in enumerate(np.ndindex(*per_shard)):
                plane = tuple(o + i for o, i in zip(origin, at, strict=True))
                if all(i < n for i, n in zip(plane, self.shape, strict=False)):
                    slots.append((slot, pool.submit(self._encode, stored[plane])))
            shards.append((self.shard_key((*shard, 0, 0)), slots))
        return EncodedShards(self, shards)

    def write_one_shard(self, directory: Path, planes: Iterable[np.ndarray[Any, Any]]) -> None:
        """Write an array held in one shard from its planes, given in index order.

        Each plane is encoded and written as it comes: one plane in memory at a time.
        """
        if self.shard_shape != self.shape:
            raise ValueError(f"{directory}: {self.shape} is not held in one shard")
        index = np.full((math.prod(self.chunks_per_shard), 2), _EMPTY, "<u8")
        with fsio.open_in_new_dir(directory / self.shard_key((0,) * len(self.shape)), "xb") as fh:
            offset = 0
            for slot, plane in enumerate(planes):
                data = self._encode(np.asarray(plane).astype(self.dtype, copy=False))
                fsio.write_all(fh, data)
                index[slot] = (offset, len(data))
                offset += len(data)
            tail = index.tobytes()
            fsio.write_all(fh, tail + _crc32c(tail) if self.index_checksum else tail)

    def write_one_shard_from(
        self,
        directory: Path,
        chunks: Iterable[tuple[int, np.ndarray[Any, Any]]],
        spill: Path,
    ) -> None:
        """:meth:`write_one_shard` from ``(slot in the index, plane)`` pairs in any order.

        Each plane is encoded as it comes and appended to the new file ``spill``; the
        shard is then copied from it in index order (chunks back to back, as
        :meth:`write_one_shard` lays them out), one encoded chunk in memory at a time.
        Slots never given stay empty.
        """
        if self.shard_shape != self.shape:
            raise ValueError(f"{directory}: {self.shape} is not held in one shard")
        places = np.full((math.prod(self.chunks_per_shard), 2), _EMPTY, "<u8")
        with fsio.open_in_new_dir(spill, "xb") as fh:
            offset = 0
            for slot, plane in chunks:
                data = self._encode(np.asarray(plane).astype(self.dtype, copy=False))
                fsio.write_all(fh, data)
                places[slot] = (offset, len(data))
                offset += len(data)
        index = np.full_like(places, _EMPTY)
        key = self.shard_key((0,) * len(self.shape))
        with open(spill, "rb") as src, fsio.open_in_new_dir(directory / key, "xb") as fh:
            offset = 0
            for slot, (start, nbytes) in enumerate(places.tolist()):
                if start != _EMPTY:
                    fsio.write_all(fh, os.pread(src.fileno(), nbytes, start))
                    index[slot] = (offset, nbytes)
                    offset += nbytes
            tail = index.tobytes()
            fsio.write_all(fh, tail + _crc32c(tail) if self.index_checksum else tail)

    def _encode(self, plane: np.ndarray[Any, Any]) -> bytes:
        chunk = np.ascontiguousarray(plane)
        data = bytes(self.compressor.encode(chunk)) if self.compressor else chunk.tobytes()
        return data + _crc32c(data) if self.checksum else data

    # -- reading ------------------------------------------------------------------------

    def decode(self, data: bytes, where: str, out: np.ndarray[Any, Any]) -> None:
        """Decode one stored chunk into ``out`` (a plane), checking its crc32c and its size.

        Parameters
        ----------
        data : bytes
            The chunk as stored, with its crc32c when the codecs end with one.
        where : str
            The array, shard file and inner chunk, for error messages.
        out : numpy.ndarray
            The plane to fill (C-contiguous); its byte order may differ from the stored one.

        Raises
        ------
        CorruptDataError
            When the crc32c does not match, the codec cannot decode the chunk, or the
            chunk decodes to another number of bytes than the plane holds.  Frames that
            declare their decoded size (blosc; zstd when every frame records one) are
            checked before decoding; the others are decoded into the plane and never past
            it, so a short chunk is refused, never returned with part of ``out`` unwritten.
        """
        if self.checksum:
            if len(data) < _CRC or _crc32c(data[:-_CRC]) != data[-_CRC:]:
                raise CorruptDataError(f"{where}: crc32c checksum mismatch")
            data = data[:-_CRC]
        target = out if out.dtype == self.dtype else np.empty(out.shape, self.dtype)
        nbytes = target.nbytes
        codec = None if self.compressor is None else self.compressor.codec_id
        declared: int | None = None  # a size from the frame's header: checked before decoding
        try:
            if codec is None:
                size = len(data)
                if size == nbytes:
                    target.reshape(-1).view(np.uint8)[:] = np.frombuffer(data, np.uint8)
            elif codec == "blosc":
                size = declared = blosc_decoded_size(data)  # the header's: never allocated
                if size == nbytes:
                    self.compressor.decode(data, out=target)
            elif codec == "zstd":
                declared = zstd_content_size(data)
                # Unknown sizes: numcodecs decodes exactly len(out) bytes, or raises.
                size = nbytes if declared is None else declared
                if size == nbytes:
                    self.compressor.decode(data, out=target)
            else:  # gzip, the only other codec parse() accepts
                size = gunzip_into(data, target.reshape(-1).view(np.uint8).data)
        except Exception as err:
            raise CorruptDataError(
                f"{where}: cannot be decoded: {type(err).__name__}: {err}"
            ) from err
        if size != nbytes:
            more = "+" if codec == "gzip" and size > nbytes else ""  # counted up to nbytes + 1
            early = ", refused before decoding" if declared is not None else ""
            raise CorruptDataError(
                f"{where}: decodes to {size:,}{more} bytes{early}, but a {self.chunk_shape[-2:]} "
                f"{self.dtype} plane holds {nbytes:,}: the chunk is damaged or the array's "
                "data type or shape is wrong"
            )
        if target is not out:
            out[...] = target


class EncodedShards:
    """An array's shards whose chunks are being encoded on the codec threads."""

    def __init__(
        self, layout: ShardGrid, shards: list[tuple[str, list[tuple[int, Future[bytes]]]]]
    ) -> None:
        self._layout = layout
        self._shards = shards

    def write(self, directory: Path) -> None:
        """Write the shard files under ``directory``, each chunk as soon as it is encoded.

        Chunks go in index order, then the index and its crc32c.  On any failure the
        chunks not yet encoded are dropped (the threads only encode; nothing is written
        behind the caller's back).
        """
        try:
            for key, slots in self._shards:
                index = np.full((math.prod(self._layout.chunks_per_shard), 2), _EMPTY, "<u8")
                with fsio.open_in_new_dir(directory / key, "xb") as fh:
                    offset = 0
                    for slot, part in slots:
                        data = part.result()
                        fsio.write_all(fh, data)
                        index[slot] = (offset, len(data))
                        offset += len(data)
                    tail = index.tobytes()
                    fsio.write_all(
                        fh, tail + _crc32c(tail) if self._layout.index_checksum else tail
                    )
        finally:
            self.cancel()

    def cancel(self) -> None:
        """Drop the chunks not yet encoded (after a failure elsewhere)."""
        for _, slots in self._shards:
            for _, part in slots:
                part.cancel()


class ShardReader:
    """Planes of one sharded array, read straight from its shard files.

    The index of each shard file is read once and kept with the file's identity
    (inode, size, mtime); a replaced file is re-indexed.  Returns ``None`` for planes it
    cannot serve on its own (a missing shard file or chunk), so that the caller can fall
    back to zarr, which knows the fill value and the plate's strictness.
    """

    def __init__(
        self,
        directory: Path | RemoteLocation,
        layout: ShardGrid,
        label: str,
        expect: tuple[int, ...] | None = None,
    ) -> None:
        self.directory = directory
        self.layout = layout
        self.label = label  # "well B03: array B/3/0/0", for error messages
        # What the plate recorded for the (single) shard file, see identity(): another
        # size or mtime means the well was rewritten and its recorded layout may be stale.
        self.expect = expect
        self._indexes: dict[str, tuple[tuple[int, int, int], np.ndarray[Any, Any]]] = {}

    def read(self, planes: Sequence[Sequence[int]], out: np.ndarray[Any, Any]) -> bool:
        """Fill ``out[i]`` with plane ``planes[i]``; False when a plane needs zarr."""
        by_shard: dict[tuple[int, ...], list[tuple[int, tuple[int, ...]]]] = {}
        for n, plane in enumerate(planes):
            shard, chunk = self.layout.locate(plane)
            by_shard.setdefault(shard, []).append((n, chunk))
        for shard, members in by_shard.items():
            if not self._read_shard(self.layout.shard_key(shard), members, out):
                return False
        return True

    def _read_shard(
        self, key: str, members: list[tuple[int, tuple[int, ...]]], out: np.ndarray[Any, Any]
    ) -> bool:
        if isinstance(self.directory, RemoteLocation):
            return self._read_remote(key, members, out)
        path = self.directory / key
        where = f"{self.label} chunk {key}"
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            return False
        except OSError as err:
            raise CorruptDataError(f"{where} cannot be opened: {err}") from err
        try:
            index, size = self._index(fd, key, where)
            spans = []
            for n, chunk in members:
                offset, nbytes = (int(v) for v in index[chunk])
                if offset == _EMPTY and nbytes == _EMPTY:
                    return False
                if offset + nbytes > size:
                    raise CorruptDataError(
                        f"{where}: chunk {chunk} lies at {offset}+{nbytes}, beyond the "
                        f"{size}-byte file"
                    )
                spans.append((n, chunk, offset, nbytes))
            if len(spans) > 1 and sum(s[3] for s in spans) > size // 2:
                whole = os.pread(fd, size, 0)  # most of the file: one read
                blobs = [whole[o : o + b] for _, _, o, b in spans]
            else:
                blobs = [os.pread(fd, b, o) for _, _, o, b in spans]
        finally:
            os.close(fd)
        self._decode_all(blobs, spans, where, out)
        return True

    def _spans(
        self,
        index: np.ndarray[Any, Any],
        size: int,
        members: list[tuple[int, tuple[int, ...]]],
        where: str,
    ) -> list[tuple[int, tuple[int, ...], int, int]] | None:
        """``(n, chunk, offset, nbytes)`` of each member, None when a chunk is not stored."""
        spans = []
        for n, chunk in members:
            offset, nbytes = (int(v) for v in index[chunk])
            if offset == _EMPTY and nbytes == _EMPTY:
                return None
            if offset + nbytes > size:
                raise CorruptDataError(
                    f"{where}: chunk {chunk} lies at {offset}+{nbytes}, beyond the {size}-byte file"
                )
            spans.append((n, chunk, offset, nbytes))
        return spans

    def _read_remote(
        self, key: str, members: list[tuple[int, tuple[int, ...]]], out: np.ndarray[Any, Any]
    ) -> bool:
        """:meth:`_read_shard` of a remote shard: its chunks fetched as concurrent byte ranges."""
        assert isinstance(self.directory, RemoteLocation)
        where = f"{self.label} chunk {key}"
        location = self.directory / key
        found = self._remote_index(location, key, where)
        if found is None:
            return False
        used: list[_Key] = []
        try:
            spans = self._spans(*found, members, where)
            if spans is None:
                return False
            blobs, ahead, used = self._remote_blobs(location, found, spans)
            self._decode_all(blobs, spans, where, out)
        except CorruptDataError:
            _READ_AHEAD.drop(used)  # what a damaged answer brought is never kept
            self._indexes.pop(key, None)
            raise
        for key_, piece in ahead:  # kept once the answer they came with decoded
            _READ_AHEAD.put(key_, piece)
        return True

    def _remote_blobs(
        self,
        location: RemoteLocation,
        found: tuple[np.ndarray[Any, Any], int],
        spans: list[tuple[int, tuple[int, ...], int, int]],
    ) -> tuple[list[bytes], list[tuple[_Key, bytes]], list[_Key]]:
        """The stored chunks of ``spans``: from the read-ahead cache, else fetched.

        A lone chunk (or chunks back to back) is fetched with the chunks stored right
        after it (the next planes: the other channels, the next field), up to
        ``READ_AHEAD_BYTES`` and ``READ_AHEAD_CHUNKS`` planes, in one request;
        those are returned to be kept for the reads that follow (the other channels'
        layers), with the cache keys this read used.
        """
        index, size = found
        url = location.url
        blobs: dict[tuple[int, int], bytes] = {}
        missing = []
        ahead: list[tuple[_Key, bytes]] = []
        used: list[_Key] = []
        for _, _, offset, nbytes in spans:
            hit = _READ_AHEAD.get((url, size, offset, nbytes))
            if hit is not None:
                used.append((url, size, offset, nbytes))
                blobs[(offset, nbytes)] = hit
            elif (offset, nbytes) not in missing:
                missing.append((offset, nbytes))
        if missing and len(merge_spans(missing)) == 1:  # back to back: one request
            offset = min(o for o, _ in missing)
            last = max(missing, key=sum)
            chunk = next(c for _, c, o, b in spans if (o, b) == last)
            following = self._following(index, chunk, sum(last))
            end = following[-1][0] + following[-1][1] if following else sum(last)
            data = location.read_ranges([(offset, end - offset)], size)[0]
            for o, b in missing:
                blobs[(o, b)] = data[o - offset : o - offset + b]
            for o, b in following:
                piece = data[o - offset : o - offset + b]
                if len(piece) == b:
                    ahead.append(((url, size, o, b), piece))
        elif missing:
            blobs.update(zip(missing, location.read_ranges(missing, size), strict=True))
        return [blobs[(o, b)] for _, _, o, b in spans], ahead, used

    def _following(
        self, index: np.ndarray[Any, Any], chunk: tuple[int, ...], end: int
    ) -> list[tuple[int, int]]:
        """``(offset, nbytes)`` of the chunks stored back to back after ``chunk`` (bounded)."""
        flat = index.reshape(-1, 2)
        slot = int(np.ravel_multi_index(chunk, self.layout.chunks_per_shard))
        start, out = end, []
        for offset, nbytes in flat[slot + 1 : slot + READ_AHEAD_CHUNKS * self.layout.plane_chunks]:
            o, b = int(offset), int(nbytes)
            if o != end or end + b - start > READ_AHEAD_BYTES:
                break
            out.append((o, b))
            end = o + b
        return out

    def _remote_index(
        self, location: RemoteLocation, key: str, where: str
    ) -> tuple[np.ndarray[Any, Any], int] | None:
        """The index and size of a remote shard (recorded, cached or read), None if missing."""
        cached = self._indexes.get(key)
        if cached is not None:
            return cached[1], cached[0][1]
        if self.expect is not None:
            recorded = self._recorded_index(self.expect[0])
            if recorded is not None:  # its size is checked by each range read
                self._indexes[key] = ((0, self.expect[0], 0), recorded)
                return recorded, self.expect[0]
        n = self.layout._index_bytes()
        tail = n + (_CRC if self.layout.index_checksum else 0)
        got = location.read_tail(tail)
        if got is None:
            return None
        raw, size = got
        if self.expect is not None and size != self.expect[0]:
            raise StaleFileError(f"{where}: the object changed since the plate recorded it")
        if size < tail or len(raw) != tail:
            raise CorruptDataError(
                f"{where}: the object holds {size} bytes, less than its "
                f"{tail}-byte shard index (truncated)"
            )
        if self.layout.index_checksum and _crc32c(raw[:n]) != raw[n:]:
            raise CorruptDataError(f"{where}: shard index crc32c checksum mismatch")
        index = np.frombuffer(raw[:n], "<u8").reshape(*self.layout.chunks_per_shard, 2)
        self._indexes[key] = ((0, size, 0), index)
        return index, size

    def _decode_all(
        self,
        blobs: list[bytes],
        spans: list[tuple[int, tuple[int, ...], int, int]],
        where: str,
        out: np.ndarray[Any, Any],
    ) -> None:
        for blob, (_, _, _, nbytes) in zip(blobs, spans, strict=True):
            if len(blob) != nbytes:
                raise CorruptDataError(f"{where}: the file is shorter than its index says")

        def decode(item: tuple[bytes, tuple[int, tuple[int, ...], int, int]]) -> None:
            blob, (n, chunk, _, _) = item
            self.layout.decode(blob, f"{where} (inner chunk {chunk})", out[n])

        items = list(zip(blobs, spans, strict=True))
        # Small chunks (overview levels) decode faster here than a pool task is handed over.
        if len(items) > 1 and out[0].nbytes > POOL_DECODE_BYTES:
            list(encode_pool().map(decode, items))
        else:
            for item in items:
                decode(item)

    def identity(self, stamp: tuple[int, int] | None = None) -> tuple[int, ...] | None:
        """The array's single shard file as ``(size, mtime_ns, *chunk sizes)``, else None.

        The chunk sizes (in index order) are left out unless the chunks lie back to back
        from the start of the file, as this module writes them: with them, a reader that
        trusts the record needs no read of the index.  A remote shard needs its ``stamp``
        (size, last modified ns, from a listing: ``RemoteLocation.stamps``); its index is
        read (one request).
        """
        if any(s < n for s, n in zip(self.layout.shard_shape, self.layout.shape, strict=True)):
            return None
        key = self.layout.shard_key((0,) * len(self.layout.shape))
        where = f"{self.label} chunk {key}"
        if isinstance(self.directory, RemoteLocation):
            found = self._remote_index(self.directory / key, key, where) if stamp else None
            if found is None or stamp is None or found[1] != stamp[0]:
                return None
            index, (size, mtime) = found[0], stamp
        else:
            try:
                fd = os.open(self.directory / key, os.O_RDONLY)
            except OSError:
                return None
            try:
                stat = os.fstat(fd)
                index, _ = self._index(fd, key, where)
            finally:
                os.close(fd)
            size, mtime = stat.st_size, stat.st_mtime_ns
        offsets, nbytes = index.reshape(-1, 2).T
        sizes = [int(n) for n in nbytes]
        contiguous = bool(np.all(offsets == np.cumsum([0, *sizes[:-1]])))
        return (size, mtime, *(sizes if contiguous else ()))

    def _recorded_index(self, size: int) -> np.ndarray[Any, Any] | None:
        """The index as recorded with the plate (see identity), if it fits this file."""
        expect = self.expect
        n = math.prod(self.layout.chunks_per_shard)
        if expect is None or len(expect) != 2 + n:
            return None
        sizes = np.asarray(expect[2:], dtype="<u8")
        tail = self.layout._index_bytes() + (_CRC if self.layout.index_checksum else 0)
        if int(sizes.sum()) + tail != size:
            return None
        index = np.stack([np.cumsum(sizes) - sizes, sizes], axis=-1)
        return index.reshape(*self.layout.chunks_per_shard, 2)

    def _index(self, fd: int, key: str, where: str) -> tuple[np.ndarray[Any, Any], int]:
        stat = os.fstat(fd)
        if self.expect is not None and (stat.st_size, stat.st_mtime_ns) != self.expect[:2]:
            raise StaleFileError(f"{where}: the file changed since the plate recorded it")
        identity = (stat.st_ino, stat.st_size, stat.st_mtime_ns)
        cached = self._indexes.get(key)
        if cached is not None and cached[0] == identity:
            return cached[1], stat.st_size
        recorded = self._recorded_index(stat.st_size)
        if recorded is not None:  # the file is the one recorded: no read of its index
            self._indexes[key] = (identity, recorded)
            return recorded, stat.st_size
        n = self.layout._index_bytes()
        tail = n + (_CRC if self.layout.index_checksum else 0)
        if stat.st_size < tail:
            raise CorruptDataError(
                f"{where}: the file holds {stat.st_size} bytes, less than its "
                f"{tail}-byte shard index (truncated)"
            )
        raw = os.pread(fd, tail, stat.st_size - tail)
        if self.layout.index_checksum and _crc32c(raw[:n]) != raw[n:]:
            raise CorruptDataError(f"{where}: shard index crc32c checksum mismatch")
        index = np.frombuffer(raw[:n], "<u8").reshape(*self.layout.chunks_per_shard, 2)
        self._indexes[key] = (identity, index)
        return index, stat.st_size
