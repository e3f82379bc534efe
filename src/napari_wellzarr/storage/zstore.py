"""Zarr stores for reading plates, and decoded sizes of codec frames: damage is reported."""

from __future__ import annotations

import functools
import gzip
import io
import struct
from typing import TYPE_CHECKING, Any, Final, Protocol

from napari_wellzarr.errors import CorruptDataError

if TYPE_CHECKING:
    from pathlib import Path

    from zarr.storage import LocalStore

    from napari_wellzarr.storage.locations import RemoteLocation

__all__ = [
    "ChunkCheck",
    "blosc_decoded_size",
    "blosc_sizes",
    "expect_chunks",
    "gunzip_into",
    "read_store",
    "zstd_content_size",
]

_METADATA_FILES: Final = frozenset({".zarray", ".zattrs", ".zgroup", ".zmetadata", "zarr.json"})
_BLOSC_HEADER: Final = struct.Struct("<BBBBIII")  # version, versionlz, flags, typesize, sizes
_ZSTD_MAGIC: Final = 0xFD2FB528
_ZSTD_SKIPPABLE: Final = 0x184D2A50  # the 16 magic numbers 0x184D2A50..0x184D2A5F
_U32: Final = struct.Struct("<I")


def read_store(
    root: Path | RemoteLocation, *, strict: bool, blosc_frames: bool = False
) -> LocalStore | Any:
    """A read-only store on ``root`` that bounds what each chunk may decode to.

    ``strict`` for plates whose every chunk was written (a missing chunk is damage);
    ``blosc_frames`` when every chunk is a whole blosc frame.  Arrays opened on it are
    registered with :func:`expect_chunks`; their chunks are checked before zarr decodes.
    A remote ``root`` gets zarr's ``ObjectStore`` over the same obstore client, bounded
    the same way (never strict: a remote listing costs requests).
    """
    from pathlib import Path

    if isinstance(root, Path):
        store = _bounded_store_class("local")(root, read_only=True)
        store.where = str(root)
    else:
        from napari_wellzarr.storage.locations import redact

        store = _bounded_store_class("remote")(root.store_at(), read_only=True)
        store.where = redact(str(root))
        strict = blosc_frames = False
    store.strict = strict
    store.blosc_frames = blosc_frames
    store.bounds = {}
    return store


def expect_chunks(store: LocalStore, path: str, bound: ChunkCheck | None) -> None:
    """Check every chunk of the array at ``path`` with ``bound`` before zarr decodes it."""
    bounds = getattr(store, "bounds", None)
    if bounds is not None and bound is not None:
        bounds[path.strip("/")] = bound


class ChunkCheck(Protocol):
    """What :func:`expect_chunks` calls on each stored chunk of an array."""

    def check(self, data: Any, ranged: bool, key: str) -> None:
        """Raise ``CorruptDataError`` when the stored chunk ``data`` of ``key`` is refused."""


def zstd_content_size(data: bytes) -> int | None:
    """The number of bytes the zstd frames in ``data`` decode to, or None when unknown.

    Walks the frames (and skippable frames) block by block, as libzstd does to find
    them, without decoding anything.  The size is unknown when a frame does not record
    its content size; a decoder must then be bounded by its output buffer.

    Parameters
    ----------
    data : bytes
        One or more zstd frames, back to back.

    Returns
    -------
    int or None
        The sum of the frames' declared content sizes, or None when any frame has none.

    Raises
    ------
    ValueError
        When ``data`` is not a sequence of whole zstd frames (bad magic number, reserved
        bits, a block or checksum beyond the end).
    """
    total: int | None = 0
    at = 0
    while True:
        at, size = _zstd_frame(data, at)
        total = None if total is None or size is None else total + size
        if at == len(data):
            return total


def _zstd_frame(data: bytes, at: int) -> tuple[int, int | None]:
    """``(end, content size or None)`` of the zstd (or skippable) frame at ``at``."""
    if at + 4 > len(data):
        raise ValueError(f"{len(data) - at} bytes at offset {at}: not a zstd frame")
    (magic,) = _U32.unpack_from(data, at)
    if magic & 0xFFFFFFF0 == _ZSTD_SKIPPABLE:
        if at + 8 > len(data):
            raise ValueError(f"skippable zstd frame at offset {at} is truncated")
        end = at + 8 + _U32.unpack_from(data, at + 4)[0]
        if end > len(data):
            raise ValueError(f"skippable zstd frame at offset {at} runs past the end")
        return end, 0
    if magic != _ZSTD_MAGIC:
        raise ValueError(f"no zstd magic number at offset {at}")
    if at + 5 > len(data):
        raise ValueError(f"zstd frame header at offset {at} is truncated")
    descriptor = data[at + 4]
    if descriptor & 0x08:
        raise ValueError(f"zstd frame at offset {at} sets a reserved header bit")
    fcs_flag, single = descriptor >> 6, (descriptor >> 5) & 1
    fcs_bytes = (1 if single else 0, 2, 4, 8)[fcs_flag]
    header = 5 + (0 if single else 1) + (0, 1, 2, 4)[descriptor & 3]
    end = at + header + fcs_bytes
    if end > len(data):
        raise ValueError(f"zstd frame header at offset {at} is truncated")
    size = int.from_bytes(data[end - fcs_bytes : end], "little") if fcs_bytes else None
    if size is not None and fcs_bytes == 2:
        size += 256
    end = _zstd_blocks(data, end)
    end += 4 if descriptor & 0x04 else 0  # content checksum
    if end > len(data):
        raise ValueError(f"zstd frame at offset {at} runs past the end")
    return end, size


def _zstd_blocks(data: bytes, at: int) -> int:
    """The end of the blocks of a zstd frame whose first block header is at ``at``."""
    while True:
        if at + 3 > len(data):
            raise ValueError(f"zstd block header at offset {at} is truncated")
        block = int.from_bytes(data[at : at + 3], "little")
        kind, size = (block >> 1) & 3, block >> 3
        if kind == 3:
            raise ValueError(f"zstd block at offset {at} has the reserved block type")
        at += 3 + (1 if kind == 1 else size)  # an RLE block stores one byte
        if at > len(data):
            raise ValueError(f"zstd block at offset {at} runs past the end")
        if block & 1:
            return at


def gunzip_into(data: bytes, out: memoryview) -> int:
    """Decompress the gzip members in ``data`` into ``out``, never past its end.

    Parameters
    ----------
    data : bytes
        One or more gzip members.
    out : memoryview
        A writable byte buffer.

    Returns
    -------
    int
        How many bytes the data decodes to, counted up to ``len(out) + 1``: a result
        other than ``len(out)`` means the data does not fill ``out`` exactly.

    Raises
    ------
    OSError, EOFError, zlib.error
        When ``data`` is not valid gzip.
    """
    with gzip.GzipFile(fileobj=io.BytesIO(data), mode="rb") as member:
        filled = 0
        while filled < len(out):
            got = member.readinto(out[filled:])
            if not got:
                return filled
            filled += got
        return filled + len(member.read(1))


def blosc_decoded_size(data: bytes) -> int:
    """The number of bytes the blosc frame ``data`` decodes to, read from its header.

    Raises
    ------
    ValueError
        When ``data`` is shorter than a blosc header, or its header gives another frame
        length than ``len(data)`` (a truncated or overwritten frame).
    """
    nbytes, cbytes = blosc_sizes(data, len(data))
    if cbytes != len(data):
        raise ValueError(f"{len(data)} bytes, but the blosc header says {cbytes}")
    return nbytes


def blosc_sizes(head: bytes, size: int) -> tuple[int, int]:
    """``(decoded, frame)`` sizes from the header at the start of a ``size``-byte frame.

    Raises
    ------
    ValueError
        When ``size`` is shorter than a blosc header.
    """
    if size < _BLOSC_HEADER.size:
        raise ValueError(f"{size} bytes: shorter than a blosc header")
    *_, nbytes, _, cbytes = _BLOSC_HEADER.unpack(head[: _BLOSC_HEADER.size])
    return nbytes, cbytes


def _check_blosc_frame(data: bytes, size: int, where: str) -> None:
    try:
        _, cbytes = blosc_sizes(data, size)
    except ValueError:
        raise CorruptDataError(
            f"chunk file {where} holds {size} bytes: not a blosc frame"
        ) from None
    if cbytes != size:
        raise CorruptDataError(
            f"chunk file {where} holds {size} bytes, but its blosc header says {cbytes}: "
            "the file is truncated or overwritten"
        )


def _bound_of(bounds: dict[str, ChunkCheck], key: str) -> ChunkCheck | None:
    """The registered array whose chunk ``key`` is (its longest path prefix)."""
    at = key.rfind("/")
    while at > 0:
        found = bounds.get(key[:at])
        if found is not None:
            return found
        at = key.rfind("/", 0, at)
    return None


@functools.cache
def _bounded_store_class(kind: str) -> Any:
    from zarr.storage import LocalStore, ObjectStore

    base: Any = LocalStore if kind == "local" else ObjectStore

    class BoundedStore(base):  # type: ignore[misc]
        """A LocalStore that checks chunks before they are decoded (see :func:`read_store`)."""

        strict: bool = False
        blosc_frames: bool = False
        bounds: dict[str, ChunkCheck]
        where: str = ""

        async def get(self, key: str, prototype: Any = None, byte_range: Any = None) -> Any:
            try:
                buf = await super().get(key, prototype, byte_range)
            except Exception as err:  # obstore's errors name the URL, user info included
                from napari_wellzarr.storage.locations import scrub

                scrub(err)
                raise
            if key.rsplit("/", 1)[-1] in _METADATA_FILES:
                return buf
            where = f"{self.where}/{key}"
            if buf is None:
                if self.strict:
                    raise CorruptDataError(f"chunk file {where} is missing")
                return buf
            if len(buf) == 0 and self.strict:
                raise CorruptDataError(f"chunk file {where} is empty")
            if self.strict and self.blosc_frames and byte_range is None:
                head = buf.as_numpy_array()[: _BLOSC_HEADER.size].tobytes()
                _check_blosc_frame(head, len(buf), where)
            bound = _bound_of(self.bounds, key)
            if bound is not None:
                bound.check(buf.as_numpy_array(), byte_range is not None, key)
            return buf

    return BoundedStore
