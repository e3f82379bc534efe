"""Zarr stores for reading plates: strict ones report damage instead of hiding it.

zarr reads a missing chunk as the fill value, and blosc decodes a truncated frame into
whatever memory follows it.  For plates written here (every chunk stored, see
``write_empty_chunks`` in writing.py) both mean damage, so the strict store raises
:class:`CorruptDataError` naming the chunk file instead.
"""

from __future__ import annotations

import functools
import struct
from typing import TYPE_CHECKING, Any, Final

from .errors import CorruptDataError

if TYPE_CHECKING:
    from pathlib import Path

    from zarr.storage import LocalStore

__all__ = ["read_store"]

_METADATA_FILES: Final = frozenset({".zarray", ".zattrs", ".zgroup", ".zmetadata", "zarr.json"})
_BLOSC_HEADER: Final = struct.Struct("<BBBBIII")  # version, versionlz, flags, typesize, sizes


def read_store(root: Path, *, strict: bool, blosc_frames: bool = False) -> LocalStore:
    """A read-only store on ``root``; ``strict`` for plates whose every chunk was written."""
    from zarr.storage import LocalStore

    if not strict:
        return LocalStore(root, read_only=True)
    store = _strict_store_class()(root, read_only=True)
    store.blosc_frames = blosc_frames
    return store  # type: ignore[no-any-return]


def _check_blosc_frame(data: bytes, size: int, where: str) -> None:
    if size < _BLOSC_HEADER.size:
        raise CorruptDataError(f"chunk file {where} holds {size} bytes: not a blosc frame")
    *_, cbytes = _BLOSC_HEADER.unpack(data[: _BLOSC_HEADER.size])
    if cbytes != size:
        raise CorruptDataError(
            f"chunk file {where} holds {size} bytes, but its blosc header says {cbytes}: "
            "the file is truncated or overwritten"
        )


@functools.cache
def _strict_store_class() -> Any:
    from zarr.storage import LocalStore

    class StrictLocalStore(LocalStore):
        """A LocalStore whose missing, empty or truncated chunk files raise."""

        blosc_frames: bool = False

        async def get(self, key: str, prototype: Any = None, byte_range: Any = None) -> Any:
            buf = await super().get(key, prototype, byte_range)
            if key.rsplit("/", 1)[-1] in _METADATA_FILES:
                return buf
            where = str(self.root / key)
            if buf is None:
                raise CorruptDataError(f"chunk file {where} is missing")
            if len(buf) == 0:
                raise CorruptDataError(f"chunk file {where} is empty")
            if self.blosc_frames and byte_range is None:
                head = buf.as_numpy_array()[: _BLOSC_HEADER.size].tobytes()
                _check_blosc_frame(head, len(buf), where)
            return buf

    return StrictLocalStore
