"""Plain TIFF files read without tifffile: one uncompressed grey-level page, pixels in one run."""

from __future__ import annotations

import json
import math
import os
import struct
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["PixelSpan", "PlainTiff", "read_plain"]

#: Bytes read at once from the start of a file (the tags of a plain file lie there).
HEAD: Final = 4096
# TIFF field types -> struct codes (classic TIFF); others (rationals...) are never needed.
_TYPES: Final = {1: "B", 2: "s", 3: "H", 4: "I", 6: "b", 7: "B", 8: "h", 9: "i", 16: "Q"}
_SIZES: Final = {1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 6: 1, 7: 1, 8: 2, 9: 4, 10: 8, 11: 4, 12: 8}
# Tags that make a file something else than one plain plane (tiles, sub-images, stacks
# or formats tifffile shapes from their own tags): such files are left to tifffile.
_OTHER: Final = frozenset(
    {
        322,  # TileWidth
        323,  # TileLength
        324,  # TileOffsets
        330,  # SubIFDs
        338,  # ExtraSamples
        32997,  # ImageDepth
        33628,  # UIC1tag (MetaMorph STK)
        33629,  # UIC2tag
        33630,  # UIC3tag
        33631,  # UIC4tag
        34361,  # FluoView MM header
        34412,  # LSM CZ_LSMINFO
        50838,  # ImageJ meta data byte counts
        50839,  # ImageJ meta data
        51123,  # Micro-Manager metadata
    }
)
_KINDS: Final = {1: "u", 2: "i", 3: "f"}  # SampleFormat -> numpy kind


@dataclass(frozen=True)
class PixelSpan:
    """Where a file's planes lie as they are: uncompressed, one after the other.

    ``offset`` is the first plane's first byte, ``nbytes`` the bytes of all its planes;
    the file (or object) had ``size`` bytes and ``mtime_ns`` (a local file) or ``etag``
    (an object) when it was scanned: a file that differs since is read by tifffile again.
    """

    offset: int
    nbytes: int
    big_endian: bool
    size: int
    mtime_ns: int = 0
    etag: str | None = None


@dataclass(frozen=True)
class PlainTiff:
    """A plain file's one plane: ``shape`` ``(y, x)``, native numpy ``dtype`` (``u2``), ``span``."""

    shape: tuple[int, int]
    dtype: str
    span: PixelSpan


def read_plain(path: str) -> PlainTiff | None:
    """Read the tags of a plain TIFF file; ``None`` when it is anything else.

    Plain: classic (not Big) TIFF, one page (no further IFD), one sample per pixel of
    8-64 bits, uncompressed, no predictor or fill order, strips (not tiles) that follow
    each other, no description but a MetaSeries one or a tifffile shape of the plane,
    none of the tags of formats tifffile shapes by itself (ImageJ, STK, LSM, OME...).
    What is not plain (or damaged) is for tifffile to read and judge.
    """
    fd = os.open(path, os.O_RDONLY)
    try:
        stat = os.fstat(fd)
        head = os.pread(fd, HEAD, 0)

        def read(offset: int, n: int) -> bytes:
            if offset + n <= len(head):
                return head[offset : offset + n]
            return os.pread(fd, n, offset)

        try:
            tags = _ifd(head, read)
        except struct.error:  # offsets or counts beyond the end: damaged
            return None
        if tags is None:
            return None
        description = tags.get(270)
        found = _plain(tags, stat.st_size, str(description[0]) if description else None)
    finally:
        os.close(fd)
    if found is None:
        return None
    shape, dtype, offset, nbytes = found
    span = PixelSpan(offset, nbytes, head[:2] == b"MM", stat.st_size, stat.st_mtime_ns)
    return PlainTiff(shape, dtype, span)


Tags = dict[int, tuple[int | float | str, ...]]


def _ifd(head: bytes, read: Callable[[int, int], bytes]) -> Tags | None:
    """The tags of the file's only IFD (``None``: not classic TIFF, or more than one IFD)."""
    order = {b"II": "<", b"MM": ">"}.get(head[:2])
    if order is None or len(head) < 8:
        return None
    magic, first = struct.unpack_from(order + "HI", head, 2)
    if magic != 42 or first < 8:
        return None
    (count,) = struct.unpack(order + "H", read(first, 2))
    block = read(first + 2, count * 12 + 4)
    if len(block) != count * 12 + 4:
        return None
    (following,) = struct.unpack_from(order + "I", block, count * 12)
    if following != 0:
        return None  # a stack or a thumbnail: tifffile decides what the series is
    tags: Tags = {}
    for i in range(count):
        code, kind, n, value = struct.unpack_from(order + "HHI4s", block, i * 12)
        if code in _OTHER:
            return None
        fmt = _TYPES.get(kind)
        if fmt is None or n == 0:
            continue  # rationals, floats: no tag this reader needs has them
        size = _SIZES[kind] * n
        data = value[:size] if size <= 4 else read(struct.unpack(order + "I", value)[0], size)
        if len(data) != size:
            return None
        if fmt == "s":
            tags[code] = (data.rstrip(b"\0").decode("latin-1"),)
        else:
            tags[code] = struct.unpack(f"{order}{n}{fmt}", data)
    return tags


def _plain(
    tags: Tags, size: int, description: str | None
) -> tuple[tuple[int, int], str, int, int] | None:
    def one(code: int, default: int | None = None) -> int | None:
        values = tags.get(code)
        if values is None:
            return default
        return int(values[0]) if len(values) == 1 else None

    width, length = one(256), one(257)
    bits, kind = one(258, 1), _KINDS.get(one(339, 1) or 0)
    if not width or not length or bits not in (8, 16, 32, 64) or kind is None:
        return None
    if kind == "f" and bits == 8:
        return None
    if one(277, 1) != 1 or one(259, 1) != 1 or one(317, 1) != 1 or one(266, 1) != 1:
        return None  # samples, compression, predictor, fill order
    if one(262, 1) not in (0, 1) or one(284, 1) != 1 or one(254, 0) not in (0, 2):
        return None  # photometric (grey), planar configuration, subfile type (0, a page)
    if not _plain_description(description, (length, width)):
        return None
    offsets, counts = tags.get(273), tags.get(279)
    if not offsets or not counts or len(offsets) != len(counts):
        return None
    nbytes = width * length * bits // 8
    start = int(offsets[0])
    at = start
    for offset, count in zip(offsets, counts, strict=True):
        if int(offset) != at:
            return None  # strips apart or out of order
        at += int(count)
    if at - start != nbytes or at > size:
        return None  # more or fewer bytes than the plane, or truncated: tifffile says
    dtype = f"{kind}{bits // 8}"
    return (length, width), dtype, start, nbytes


def _plain_description(text: str | None, shape: tuple[int, int]) -> bool:
    """Whether a description leaves the plane as it is (none, MetaSeries', tifffile's shape)."""
    if not text or text.startswith("<MetaData>"):
        return True
    if text.startswith("{"):
        try:
            said = json.loads(text).get("shape")
        except (ValueError, AttributeError):
            return False
        return isinstance(said, list) and math.prod(said) == math.prod(shape)
    return False
