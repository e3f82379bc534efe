"""Unsharded zarr v3 arrays (ome-zarr-py's layout) read chunk by chunk, without zarr."""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass
from itertools import product
from typing import TYPE_CHECKING, Any, Final, TypeGuard

import numpy as np

from napari_wellzarr.errors import CorruptDataError, WellZarrError
from napari_wellzarr.storage import fsio
from napari_wellzarr.storage.fsio import read_bounded
from napari_wellzarr.storage.locations import RemoteLocation
from napari_wellzarr.storage.memory import check_memory, check_size
from napari_wellzarr.storage.shards import ShardGrid, codec_from_doc, endian_of

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from pathlib import Path

__all__ = [
    "MAX_CHUNK_BYTES",
    "ChunkGrid",
    "chunk_grid",
    "is_extent",
    "pixel_dtype",
    "plane_heads",
]

#: One chunk is decoded into one buffer: a chunk larger than this is a memory bomb.
MAX_CHUNK_BYTES: Final = 2**32
# The data types a pixel array may have: zarr v3 names them, zarr v2 spells them "<u2".
_PIXEL_DTYPES: Final = {
    name: np.dtype(name)
    for name in (
        "bool",
        *(f"{sign}int{bits}" for sign in ("", "u") for bits in (8, 16, 32, 64)),
        "float16",
        "float32",
        "float64",
        "complex64",
        "complex128",
    )
}
_V2_DTYPE: Final = re.compile(r"[<>|=]?[biufc][0-9]{1,2}")


@dataclass(frozen=True)
class ChunkGrid:
    """How one unsharded zarr v3 array of a local plate is chunked and encoded.

    Only the documents this reader understands whole (regular grid, ``bytes`` plus at
    most one blosc, zstd or gzip codec and an optional crc32c, no storage transformer)
    take this road; any other array is read by zarr.
    """

    shape: tuple[int, ...]
    chunk_shape: tuple[int, ...]
    #: Decodes one stored chunk (a one-chunk "shard" layout: the same checks on size).
    codec: ShardGrid

    @classmethod
    def parse(cls, doc: Mapping[str, Any]) -> ChunkGrid | None:
        """The layout of a zarr v3 array document, or None unless this reader can read it."""
        try:
            return cls._parse(doc)
        except (AttributeError, TypeError, ValueError, KeyError):
            return None

    @classmethod
    def _parse(cls, doc: Mapping[str, Any]) -> ChunkGrid | None:
        shape, grid, codecs = tuple(doc["shape"]), doc["chunk_grid"], list(doc["codecs"])
        if (
            doc.get("zarr_format") != 3
            or grid.get("name") != "regular"
            or doc.get("storage_transformers")
            or not codecs
            or len(shape) < 2
            or not all(isinstance(n, int) and not isinstance(n, bool) for n in shape)
        ):
            return None
        chunks = tuple(grid["configuration"]["chunk_shape"])
        if len(chunks) != len(shape) or not all(
            isinstance(n, int) and not isinstance(n, bool) and n > 0 for n in chunks
        ):
            return None
        endian = endian_of(codecs.pop(0))
        checksum = bool(codecs) and codecs[-1].get("name") == "crc32c"
        if checksum:
            codecs.pop()
        dtype = np.dtype(doc["data_type"])
        if endian is None or len(codecs) > 1 or dtype.kind not in "iuf":
            return None
        compressor = codec_from_doc(codecs[0], dtype.itemsize) if codecs else None
        if codecs and compressor is None:
            return None
        keys = doc.get("chunk_key_encoding") or {"name": "default"}
        config = keys.get("configuration") or {}
        if keys.get("name") == "default":
            separator = config.get("separator", "/")
            prefix = f"c{separator}"
        elif keys.get("name") == "v2":
            prefix, separator = "", config.get("separator", ".")
        else:
            return None
        if separator not in ("/", "."):
            return None
        codec = ShardGrid(
            shape=chunks,
            dtype=dtype.newbyteorder(endian),
            shard_shape=chunks,
            chunk_shape=chunks,
            compressor=compressor,
            checksum=checksum,
            index_checksum=False,
            key_prefix=prefix,
            separator=separator,
        )
        return cls(shape, chunks, codec)

    def chunk_key(self, coords: Sequence[int]) -> str:
        """The store key of the chunk at grid ``coords``, e.g. ``c/0/0/0/0``."""
        return self.codec.key_prefix + self.codec.separator.join(str(i) for i in coords)

    def read(
        self, directory: Path | RemoteLocation, planes: Sequence[Sequence[int]], label: str
    ) -> np.ndarray[Any, Any] | None:
        """The (y, x) planes at lead indexes ``planes``, stacked (native byte order).

        Each chunk is read and decoded once, however many planes it holds.  Returns
        None for a remote ``directory`` or when a chunk file is missing: zarr then reads
        the planes, with the array's fill value and the plate's strictness.

        Raises
        ------
        CorruptDataError
            A chunk that cannot be decoded or decodes to the wrong size, naming its file.
        """
        if isinstance(directory, RemoteLocation):
            return None  # remote plates: zarr's road
        lead = self.chunk_shape[:-2]
        ch, cw = self.chunk_shape[-2:]
        h, w = self.shape[-2:]
        dtype = self.codec.dtype.newbyteorder("=")
        chunk_bytes = math.prod(self.chunk_shape) * dtype.itemsize
        check_memory(chunk_bytes + len(planes) * h * w * dtype.itemsize, f"{label}: planes")
        out = np.empty((len(planes), h, w), dtype)
        by_chunk: dict[tuple[int, ...], list[tuple[int, tuple[int, ...]]]] = {}
        for n, plane in enumerate(planes):
            coords = tuple(i // s for i, s in zip(plane, lead, strict=True))
            inner = tuple(i % s for i, s in zip(plane, lead, strict=True))
            by_chunk.setdefault(coords, []).append((n, inner))
        decoded = np.empty(self.chunk_shape, self.codec.dtype)
        limit = decoded.nbytes + decoded.nbytes // 8 + 4096  # codecs' worst-case growth
        folder = os.fspath(directory)
        for coords, members in by_chunk.items():
            for cy, cx in product(range(math.ceil(h / ch)), range(math.ceil(w / cw))):
                key = self.chunk_key((*coords, cy, cx))
                path = os.path.join(folder, key)
                try:
                    with open(path, "rb", buffering=0) as fh:
                        data = read_bounded(fh, limit)
                except FileNotFoundError:
                    return None
                where = f"{label} chunk {key} ({path})"
                if len(data) > limit:
                    raise CorruptDataError(
                        f"{where} is larger than any encoding of its chunk: refused before decoding"
                    )
                self.codec.decode(data, where, decoded)
                y0, x0 = cy * ch, cx * cw
                y1, x1 = min(y0 + ch, h), min(x0 + cw, w)
                for n, inner in members:
                    out[n, y0:y1, x0:x1] = decoded[inner][: y1 - y0, : x1 - x0]
        return out


def chunk_grid(
    root: Path | RemoteLocation, path: str, dtype: np.dtype[Any], doc: dict[str, Any] | None
) -> ChunkGrid | None:
    """The direct reader of array ``path`` under a local ``root``, or None (zarr reads it).

    None for remote plates, other documents than :meth:`ChunkGrid.parse` reads, another
    data type than ``dtype`` and chunks over ``MAX_CHUNK_BYTES`` (zarr's road reports them).
    """
    if isinstance(root, RemoteLocation):
        return None
    if doc is None:
        try:
            doc = fsio.read_array_doc(root / path, 3)
        except (FileNotFoundError, WellZarrError):
            return None
    grid = ChunkGrid.parse(doc)
    if grid is None or grid.codec.dtype.newbyteorder("=") != dtype.newbyteorder("="):
        return None
    if math.prod(grid.chunk_shape) * dtype.itemsize > MAX_CHUNK_BYTES:
        return None
    check_size(grid.shape, dtype, path)
    return grid


def plane_heads(
    indexes: Sequence[tuple[int | slice, ...]], shape: tuple[int, ...]
) -> list[tuple[int, ...]] | None:
    """The lead (all but y, x) integer index of each whole-plane selection, or None.

    None when a selection is not integers then two full slices, or lies outside
    ``shape`` (zarr's road reads or reports it).
    """
    heads = []
    for index in indexes:
        head = tuple(i for i in index[:-2] if isinstance(i, int))
        if len(head) != len(index) - 2 or index[-2:] != (slice(None),) * 2:
            return None
        if len(head) != len(shape) - 2:
            return None
        if any(not 0 <= i < n for i, n in zip(head, shape, strict=False)):
            return None
        heads.append(head)
    return heads or None


def pixel_dtype(raw: object, zarr_format: int) -> np.dtype[Any] | None:
    """The numeric data type an array document declares, or None for anything else.

    zarr v3 documents name it (``"uint16"``), v2 ones spell it (``"<u2"``); anything
    else (missing, null, structured, text, object, extension types) is no pixel type:
    NumPy would read ``None`` as float64 and accept aliases no zarr writer produces.
    """
    if zarr_format == 3:
        return _PIXEL_DTYPES.get(raw) if isinstance(raw, str) else None
    if not isinstance(raw, str) or not _V2_DTYPE.fullmatch(raw):
        return None
    try:
        dtype = np.dtype(raw)
    except TypeError:  # "<u3": the pattern is right, the size is not
        return None
    return dtype if dtype.newbyteorder("=") in _PIXEL_DTYPES.values() else None


def is_extent(shape: object) -> TypeGuard[list[int]]:
    """Whether ``shape`` is a JSON list of positive integers (an empty axis is damage)."""
    return isinstance(shape, list) and all(
        isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in shape
    )
