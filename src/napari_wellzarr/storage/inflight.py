"""Byte-range reads of remote objects: adjacent ranges merged, a range in flight shared."""

from __future__ import annotations

import threading
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from collections.abc import Callable, Hashable, Sequence

__all__ = ["MERGE_GAP_BYTES", "InFlight", "merge_spans"]

#: Ranges of one object at most this far apart are fetched in one request (the gap too).
MERGE_GAP_BYTES: Final = 0
#: How long a read waits for the same bytes already in flight (then reads them itself).
WAIT_S: Final = 120.0


def merge_spans(spans: Sequence[tuple[int, int]]) -> list[tuple[int, int]]:
    """The ``(offset, length)`` requests that cover ``spans``: touching ranges merged."""
    merged: list[list[int]] = []
    for offset, length in sorted(set(spans)):
        if merged and offset <= merged[-1][1] + MERGE_GAP_BYTES:
            merged[-1][1] = max(merged[-1][1], offset + length)
        else:
            merged.append([offset, offset + length])
    return [(start, end - start) for start, end in merged]


class InFlight:
    """Range reads in flight, by object: a read of bytes inside one waits for its answer.

    A viewer's read-ahead of the next planes and the step that needs them then make one
    request between them, not two.  Failures are not shared as answers: the waiting
    read raises the same error (the bytes could not be read).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._reads: dict[Hashable, list[tuple[int, int, Future[bytes]]]] = {}

    def read(self, obj: Hashable, span: tuple[int, int], fetch: Callable[[], bytes]) -> bytes:
        """The bytes at ``span`` of ``obj``: from a read in flight covering them, else fetched."""
        offset, length = span
        with self._lock:
            for start, size, shared in self._reads.get(obj, ()):
                if start <= offset and offset + length <= start + size:
                    pending = shared
                    break
            else:
                pending = Future()
                entry = (offset, length, pending)
                self._reads.setdefault(obj, []).append(entry)
                start = -1
        if start >= 0:  # another thread is reading these bytes: its answer, sliced
            try:
                data = pending.result(WAIT_S)
            except FutureTimeout:
                return fetch()
            return data[offset - start : offset - start + length]
        try:
            data = fetch()
        except BaseException as err:
            pending.set_exception(err)
            raise
        else:
            pending.set_result(data)
            return data
        finally:
            with self._lock:
                reads = self._reads.get(obj, [])
                reads.remove(entry)
                if not reads:
                    self._reads.pop(obj, None)

    def pending(self, obj: Hashable) -> int:
        """How many reads of ``obj`` are in flight (for tests)."""
        with self._lock:
            return len(self._reads.get(obj, ()))
