"""Fault injection and crash-consistency checks shared by the fault tests.

:class:`DiskFull` fails the N-th space-consuming file-system operation under a folder
with ``ENOSPC``, at the operating-system boundary (``open`` for writing, ``write``,
``os.write``/``os.pwrite``/``os.writev``, ``os.mkdir``), never by patching this
project's private functions: it keeps working when the store's write path changes.

:func:`assert_crash_consistent` is what "a plate after a crash" must satisfy: every
metadata document parses, no temporary file is visible, every well folder on disk is
complete and byte-identical to the same well of a clean conversion, every listed well
is complete and reads back.
"""

from __future__ import annotations

import builtins
import errno
import hashlib
import io
import json
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    import pytest

_WRITE_MODES = frozenset("wax+")
HIDDEN_OK = frozenset({".zarray", ".zattrs", ".zgroup"})


@dataclass
class DiskFull:
    """Fail space-consuming operations under ``root`` with ``OSError(ENOSPC)``.

    Operations are counted from 1 in the order they happen (all threads): creating a
    file or folder, and every write to a file opened for writing.  Operation
    ``fail_at`` fails, or (``fail_when``) the first one for which ``fail_when(kind,
    path)`` is true; with ``sticky`` every later one fails too (the disk stays full
    until :meth:`free`).  Without either it only records: ``trace`` lists ``(number,
    kind, path relative to root)``; ``failed`` the operations that failed.
    """

    root: Path
    fail_at: int | None = None
    sticky: bool = False
    fail_when: Callable[[str, str], bool] | None = None
    trace: list[tuple[int, str, str]] = field(default_factory=list)
    failed: list[tuple[int, str, str]] = field(default_factory=list)
    _count: int = 0
    _full: bool = False
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def _under_root(self, path: Any) -> str | None:
        try:
            p = Path(os.fsdecode(path)).absolute()
        except TypeError:
            return None
        try:
            return str(p.relative_to(self.root))
        except ValueError:
            return None

    def _fd_path(self, fd: int) -> str | None:
        try:
            return self._under_root(os.readlink(f"/proc/self/fd/{fd}"))
        except OSError:
            return None

    def hit(self, kind: str, rel: str) -> None:
        """Count one operation on ``rel``; raise ENOSPC when it is the one to fail."""
        with self._lock:
            self._count += 1
            number = self._count
            self.trace.append((number, kind, rel))
            chosen = number == self.fail_at or (
                self.fail_when is not None and not self.failed and self.fail_when(kind, rel)
            )
            if self._full or chosen:
                self._full = self.sticky
                self.failed.append((number, kind, rel))
                fail = True
            else:
                fail = False
        if fail:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def free(self) -> None:
        """Space is free again: no further operation fails."""
        with self._lock:
            self.fail_at = None
            self.fail_when = None
            self._full = False

    def install(self, monkeypatch: pytest.MonkeyPatch) -> DiskFull:
        """Wrap the OS-level entry points (undone by ``monkeypatch``)."""
        real_open, real_mkdir = builtins.open, os.mkdir
        real_write, real_pwrite, real_writev = os.write, os.pwrite, os.writev
        fault = self

        def open_(file: Any, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
            rel = fault._under_root(file) if not isinstance(file, int) else None
            if rel is None or not (_WRITE_MODES & set(mode)):
                return real_open(file, mode, *args, **kwargs)
            if not os.path.exists(file):
                fault.hit("create", rel)
            return _FaultyFile(real_open(file, mode, *args, **kwargs), fault, rel)

        def mkdir(path: Any, *args: Any, **kwargs: Any) -> None:
            rel = fault._under_root(path)
            # Only a mkdir that would create something (not pathlib's parents=True probes).
            parent = os.path.dirname(os.path.abspath(path))
            if rel is not None and not os.path.exists(path) and os.path.isdir(parent):
                fault.hit("mkdir", rel)
            real_mkdir(path, *args, **kwargs)

        def by_fd(real: Callable[..., int], kind: str) -> Callable[..., int]:
            def wrapped(fd: int, *args: Any) -> int:
                rel = fault._fd_path(fd)
                if rel is not None:
                    fault.hit(kind, rel)
                return real(fd, *args)

            return wrapped

        monkeypatch.setattr(builtins, "open", open_)
        monkeypatch.setattr(io, "open", open_)
        monkeypatch.setattr(os, "mkdir", mkdir)
        monkeypatch.setattr(os, "write", by_fd(real_write, "os.write"))
        monkeypatch.setattr(os, "pwrite", by_fd(real_pwrite, "os.pwrite"))
        monkeypatch.setattr(os, "writev", by_fd(real_writev, "os.writev"))
        return self


class _FaultyFile:
    """A file object whose writes are counted (and may fail) by a :class:`DiskFull`."""

    def __init__(self, raw: Any, fault: DiskFull, rel: str) -> None:
        self._raw = raw
        self._fault = fault
        self._rel = rel

    def write(self, data: Any) -> int:
        self._fault.hit("write", self._rel)
        return int(self._raw.write(data))

    def writelines(self, lines: Any) -> None:
        for line in lines:
            self.write(line)

    def __enter__(self) -> _FaultyFile:
        self._raw.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._raw.__exit__(*exc)

    def __iter__(self) -> Iterator[Any]:
        return iter(self._raw)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._raw, name)


# -- what a plate must look like after any crash ------------------------------------------


def visible(rel: Path) -> bool:
    """Whether a path inside a plate is seen by readers (hidden bookkeeping is not)."""
    return not any(p.startswith(".") and p not in HIDDEN_OK for p in rel.parts)


def well_dirs(root: Path) -> dict[str, Path]:
    """Every ``<row>/<column>`` folder on disk (listed or not): ``{"B03": path}``."""
    out = {}
    for row in sorted(root.iterdir()) if root.is_dir() else ():
        if row.is_dir() and visible(Path(row.name)):
            for col in sorted(row.iterdir()):
                if col.is_dir() and visible(Path(col.name)):
                    out[f"{row.name}{col.name}"] = col
    return out


def listed_wells(root: Path) -> list[str]:
    """The wells the plate's own metadata lists (read without this project's code)."""
    doc = json.loads((root / "zarr.json").read_text())
    attrs = doc.get("attributes", {})
    plate = attrs.get("ome", attrs).get("plate", {})
    return sorted(w["path"].replace("/", "") for w in plate.get("wells", []))


def assert_crash_consistent(root: Path, reference: dict[str, str], where: str) -> list[str]:
    """Check the crash guarantees of the plate ``root``; return the wells on disk.

    ``reference`` is :func:`plate_digest` of a clean conversion of the same source.
    """
    from napari_wellzarr.core import PlateStore

    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root)
        if not visible(rel) or not path.is_file():
            continue
        assert not path.name.endswith((".tmp", ".partial")), f"{where}: temporary {rel} visible"
        if path.name in ("zarr.json", *HIDDEN_OK):
            try:
                json.loads(path.read_bytes())
            except ValueError as err:
                raise AssertionError(f"{where}: {rel} is not whole JSON: {err}") from err
    on_disk = well_dirs(root)
    for name, path in on_disk.items():
        prefix = f"{path.relative_to(root)}/"
        mine = {
            str(p.relative_to(root)): p
            for p in path.rglob("*")
            if p.is_file() and visible(p.relative_to(root))
        }
        theirs = {k for k in reference if k.startswith(prefix)}
        assert set(mine) == theirs, (
            f"{where}: well {name} is on disk but not whole: files {sorted(set(mine) ^ theirs)}"
        )

        for rel, p in mine.items():
            assert hashlib.sha1(p.read_bytes()).hexdigest() == reference[rel], (
                f"{where}: {rel} differs from a clean conversion"
            )
    listed = listed_wells(root)
    assert set(listed) <= set(on_disk), f"{where}: listed but absent: {set(listed) - set(on_disk)}"
    store = PlateStore.open(root)
    assert sorted(store.wells()) == listed
    for well in listed:
        data = store.read_well(well)
        assert data.shape == store.well_info(well).shape, f"{where}: {well}"
    return sorted(on_disk)


def assert_reader_opens(root: Path, where: str) -> None:
    """napari's reader opens the plate and shows every complete well's pixels.

    Wells on disk that the metadata does not list yet (a killed session) are shown too,
    with one UnfinishedPlateWarning naming them; a plate with no well at all opens as
    its plate map alone, with that warning.
    """
    import warnings

    from napari_wellzarr.plugin._reader import get_reader
    from napari_wellzarr.plugin.view import UnfinishedPlateWarning

    reader = get_reader(str(root))
    assert reader is not None, f"{where}: the reader does not claim the plate"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        layers = reader(str(root))
        images = [data for data, _, kind in layers if kind == "image"]
        tiles = []
        for data in images:
            level = data[-1] if isinstance(data, list) else data
            tiles.append(np.asarray(level[(0,) * (level.ndim - 2)]))
    on_disk = {w for w, p in well_dirs(root).items() if (p / "zarr.json").is_file()}
    unlisted = sorted(on_disk - set(listed_wells(root)))
    unfinished = [str(w.message) for w in caught if w.category is UnfinishedPlateWarning]
    others = [str(w.message) for w in caught if w.category is not UnfinishedPlateWarning]
    assert not others, f"{where}: {others}"
    assert len(unfinished) == (1 if unlisted or not on_disk else 0), f"{where}: {unfinished}"
    if unlisted:
        assert all(w in unfinished[0] for w in unlisted), f"{where}: {unfinished}"
    if not on_disk:
        assert not images, f"{where}: image layers for a plate with no wells"
        return
    assert images, f"{where}: no image layer"
    for tile in tiles:
        assert tile.ndim == 2
        assert tile.any(), f"{where}: the mosaic shows no pixels"


#: Entries of the plate's ``wellzarr`` block that record its wells' files' (size, mtime)
#: for fast reads: a cache, different in every run by nature, so not part of "the same
#: plate".  Everything else, pixels and metadata, must be byte for byte identical.
