"""Memory-bomb guards: the memory a read may take, checked before anything is allocated."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import numpy as np

from napari_wellzarr.errors import MetadataError

if TYPE_CHECKING:
    from collections.abc import Sequence


# A well array larger than this is refused before anything is allocated: metadata
# that claims it is a memory bomb, not a microscope well (2**40 bytes = 1 TiB).
MAX_WELL_BYTES: Final = 2**40


# Reads that allocate less than this are not checked against the memory available:
# the check reads /proc and the cgroup files (~70 us, a third of a warm plane read),
# and below this size it would cost more than 1% of the read it guards.
CHECKED_READ_BYTES: Final = 2**24


def available_memory() -> int | None:
    """Bytes this process could still allocate now, or None when unknown.

    The smaller of the kernel's ``MemAvailable`` (free memory plus reclaimable cache; the
    free-pages count alone under-reports it and, read twice, races other processes) and
    what the process's cgroup limit leaves (a container's limit is often far below the
    host's memory, and crossing it gets the process killed, not a ``MemoryError``).
    """
    candidates = [m for m in (meminfo_available(), cgroup_headroom()) if m is not None]
    if candidates:
        return min(candidates)
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return None


def meminfo_available() -> int | None:
    """The kernel's ``MemAvailable``, or None when it cannot be read."""
    try:
        with open("/proc/meminfo", "rb") as f:
            for line in f:
                if line.startswith(b"MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def cgroup_headroom(
    membership: Path = Path("/proc/self/cgroup"), mount: Path = Path("/sys/fs/cgroup")
) -> int | None:
    """What the memory limit of this process's cgroup (v2 or v1) leaves, if one is set."""
    try:
        lines = membership.read_text().splitlines()
    except OSError:
        return None
    candidates: list[tuple[Path, str, str]] = []
    for line in lines:
        if line.count(":") < 2:
            continue
        _, controllers, group = line.split(":", 2)
        group = group.lstrip("/")
        if controllers == "":  # v2 unified hierarchy
            candidates += [(mount / group, "memory.max", "memory.current")]
        elif "memory" in controllers.split(","):
            v1 = mount / "memory" / group
            candidates += [(v1, "memory.limit_in_bytes", "memory.usage_in_bytes")]
    for folder, limit_name, usage_name in candidates:
        try:
            limit = (folder / limit_name).read_text().strip()
            usage = int((folder / usage_name).read_text().strip())
        except (OSError, ValueError):
            continue  # the group's folder is not visible from this mount namespace
        if limit.isdigit() and int(limit) < 2**60:  # "max" or a huge number: no limit
            return max(int(limit) - usage, 0)
    return None


def nbytes(shape: Sequence[int], dtype: Any) -> int:
    """Bytes of an array of ``shape`` and ``dtype``."""
    itemsize: int = np.dtype(dtype).itemsize
    return math.prod(shape) * itemsize


def check_memory(need: int, what: str) -> None:
    """Refuse (before anything is allocated) a read needing more than the memory available.

    Reads below ``CHECKED_READ_BYTES`` are not checked (see there).

    Raises
    ------
    MetadataError
        Naming ``what`` (the well and the array), ``need`` and the bytes available.
    """
    if need < CHECKED_READ_BYTES:
        return
    free = available_memory()
    if free is not None and need > free:
        raise MetadataError(
            f"{what} needs {need:,} bytes, more than the {free:,} bytes of memory available"
        )


def check_size(shape: tuple[int, ...], dtype: Any, path: str) -> None:
    """Refuse an array whose metadata claims more than ``MAX_WELL_BYTES``."""
    if nbytes(shape, dtype) > MAX_WELL_BYTES:
        raise MetadataError(f"array {path} claims shape {shape} ({dtype}): larger than 1 TiB")
