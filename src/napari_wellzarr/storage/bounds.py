"""Bounds on what a chunk read through zarr-python may decode to, checked before zarr decodes."""

from __future__ import annotations

import bz2
import lzma
import math
import struct
import zlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

import numpy as np

from napari_wellzarr.errors import CorruptDataError
from napari_wellzarr.storage.zstore import blosc_sizes, gunzip_into, zstd_content_size

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ["ChunkBound", "chunk_bound"]

_KINDS: Final = ("blosc", "zstd", "gzip", "zlib", "lz4", "bz2", "lzma", "crc32c")
_DTYPE_KEYS: Final = ("astype", "encode_dtype", "dtype")
_SHARD_ENTRY: Final = struct.Struct("<QQ")
_EMPTY: Final = 2**64 - 1
_I32: Final = struct.Struct("<i")
#: What a filter may add to a chunk's bytes (a zarr v2 checksum filter appends 4-8).
_FILTER_SLACK: Final = 64


def _kind(codec: object) -> str | None:
    name = str(getattr(codec, "codec_id", None) or type(codec).__name__).lower()
    return next((k for k in _KINDS if k in name), None)


def _itemsize(dtype: Any, filters: Sequence[object]) -> int:
    """Bytes per element of the data a compressor sees (filters may widen it)."""
    sizes: list[int] = [int(np.dtype(dtype).itemsize)]
    for f in filters:
        config = {**vars(f), **(getattr(f, "codec_config", None) or {})}
        for key in _DTYPE_KEYS:
            try:
                sizes.append(int(np.dtype(config[key]).itemsize))
            except (KeyError, TypeError, ValueError):
                continue
    return max(sizes)


@dataclass(frozen=True)
class ChunkBound:
    """What one stored chunk of an array may decode to, and how to tell before decoding.

    ``kind`` is the outermost compressor (``blosc``, ``zstd``, ``gzip``, ``zlib``,
    ``lz4``, ``bz2``, ``lzma``; ``raw``: none; None: one not known here, not checked),
    ``nbytes`` the most its frame may decode to (a chunk's elements times the widest item
    a filter makes, plus a few bytes per filter for the checksums some append), and
    ``trailer`` the checksum bytes (crc32c) after the frame.  ``shard_chunks``,
    ``index_bytes`` and ``index_at_end``
    describe the shards of an array sharded by others (None when not sharded).
    """

    array: str
    kind: str | None
    nbytes: int
    trailer: int = 0
    shard_chunks: int | None = None
    index_bytes: int = 0
    index_at_end: bool = True

    def check(self, data: Any, ranged: bool, key: str) -> None:
        """Refuse (``CorruptDataError``) a stored chunk that would decode past its bound.

        ``data`` is the stored bytes of ``key`` (a buffer); ``ranged`` when zarr asked for
        part of the file (a chunk or the index of a shard).
        """
        raw = memoryview(np.ascontiguousarray(data).view(np.uint8).data)
        if self.shard_chunks is None:
            self._check_frame(raw, key)
        elif not ranged:
            self._check_shard(raw, key)
        elif len(raw) != self.index_bytes:
            # A ranged read of a shard is one chunk or the index (read at its own size).
            self._check_frame(raw, key)

    def _check_shard(self, raw: memoryview, key: str) -> None:
        if len(raw) < self.index_bytes:
            raise CorruptDataError(
                f"array {self.array} shard {key}: {len(raw)} bytes, shorter than its index"
            )
        at = len(raw) - self.index_bytes if self.index_at_end else 0
        for i in range(self.shard_chunks or 0):
            offset, size = _SHARD_ENTRY.unpack_from(raw, at + 16 * i)
            if offset == _EMPTY and size == _EMPTY:
                continue
            if offset + size > len(raw):
                raise CorruptDataError(
                    f"array {self.array} shard {key}: chunk {i} at {offset}+{size} runs past "
                    f"the shard's {len(raw)} bytes"
                )
            self._check_frame(raw[offset : offset + size], f"{key} (inner chunk {i})")

    def _check_frame(self, raw: memoryview, key: str) -> None:
        frame = raw[: len(raw) - self.trailer] if self.trailer else raw
        where = f"array {self.array} chunk {key}"
        try:
            decoded = self._decoded_size(frame)
        except (ValueError, OSError, EOFError, zlib.error, lzma.LZMAError, RuntimeError) as err:
            raise CorruptDataError(
                f"{where}: {len(frame)} bytes are not a {self.kind} frame: {err}"
            ) from err
        if decoded > self.nbytes:
            raise CorruptDataError(
                f"{where}: its {self.kind} frame of {len(frame)} bytes decodes to "
                f"{f'more than {self.nbytes}' if decoded == self.nbytes + 1 else decoded} bytes, "
                f"but a chunk holds at most {self.nbytes}: refused before decoding (a damaged "
                "or hostile chunk)"
            )

    def _decoded_size(self, frame: memoryview) -> int:
        """The size ``frame`` decodes to, or ``nbytes + 1`` for "more than the bound"."""
        if self.kind == "blosc":
            decoded, stored = blosc_sizes(bytes(frame[:16]), len(frame))
            if stored != len(frame):
                raise ValueError(f"{len(frame)} bytes, but the blosc header says {stored}")
            return decoded
        if self.kind == "lz4":  # numcodecs' LZ4: a 4-byte little-endian size, then the block
            if len(frame) < _I32.size:
                raise ValueError("shorter than the LZ4 size header")
            return int(_I32.unpack_from(frame)[0])
        if self.kind == "zstd":
            declared = zstd_content_size(bytes(frame))
            return declared if declared is not None else self._zstd_unknown(frame)
        if self.kind == "zlib":
            inflater = zlib.decompressobj()
            return len(inflater.decompress(frame, self.nbytes + 1))
        if self.kind == "gzip":
            return gunzip_into(bytes(frame), memoryview(bytearray(self.nbytes)))
        if self.kind == "bz2":
            return len(bz2.BZ2Decompressor().decompress(frame, self.nbytes + 1))
        if self.kind == "lzma":
            return len(lzma.LZMADecompressor().decompress(frame, self.nbytes + 1))
        if self.kind == "raw":
            return len(frame)
        return 0  # a compressor of which nothing is known: not bounded here

    def _zstd_unknown(self, frame: memoryview) -> int:
        """A frame without a content size: decoded into a buffer of the bound, never more."""
        from numcodecs.zstd import Zstd

        try:
            got = Zstd().decode(bytes(frame), out=bytearray(self.nbytes))
        except RuntimeError as err:
            if "too small" not in str(err):
                raise
            return self.nbytes + 1
        return len(memoryview(got).cast("B"))


def chunk_bound(array: Any, path: str) -> ChunkBound | None:
    """The decode bound of each stored chunk of an open zarr ``array``, or None when unknown.

    Unknown: variable-length data types (strings, objects), whose chunks have no size
    that the metadata fixes.
    """
    dtype = np.dtype(array.dtype)
    if dtype.hasobject or dtype.itemsize == 0:
        return None
    compressors = list(array.compressors)
    trailer = 0
    while compressors and _kind(compressors[-1]) == "crc32c":
        compressors.pop()
        trailer += 4
    kind = _kind(compressors[-1]) if compressors else "raw"
    filters = list(array.filters)
    nbytes = math.prod(array.chunks) * _itemsize(dtype, filters) + _FILTER_SLACK * len(filters)
    if array.shards is None:
        return ChunkBound(path, kind, nbytes, trailer)
    sharding = next(c for c in array.metadata.codecs if hasattr(c, "index_codecs"))
    n_inner = math.prod(s // c for s, c in zip(array.shards, array.chunks, strict=True))
    index_trailer = 4 * sum(_kind(c) == "crc32c" for c in sharding.index_codecs)
    return ChunkBound(
        path,
        kind,
        nbytes,
        trailer,
        shard_chunks=n_inner,
        index_bytes=16 * n_inner + index_trailer,
        index_at_end=str(getattr(sharding.index_location, "value", "end")) == "end",
    )
