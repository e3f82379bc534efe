"""Shared set-up of the conversion and CLI tests: TIFF exports, plate checks, the CLI."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from typing import TYPE_CHECKING, Any

import numpy as np
import tifffile

from napari_wellzarr.core import PlaneKey, PlateStore

if TYPE_CHECKING:
    from pathlib import Path

SHAPE = (32, 48)
#: (well, key) -> (plane name in the well's map, pixels)
Truth = dict[tuple[str, PlaneKey], tuple[str, np.ndarray]]
_ZARR_V2_DOCS = {".zarray", ".zattrs", ".zgroup"}


def pixels(rng: np.random.Generator, dtype: Any, shape: tuple[int, ...] = SHAPE) -> np.ndarray:
    """Random pixels of ``dtype`` spanning its range (ints) or a wide range (floats)."""
    dt = np.dtype(dtype)
    if dt.kind == "f":
        return (rng.standard_normal(shape) * 1000).astype(dt)
    info = np.iinfo(dt)
    return rng.integers(info.min, info.max, size=shape, dtype=dt, endpoint=True)


def ix_set(
    root: Path,
    rng: np.random.Generator,
    wells: tuple[str, ...] = ("A01", "B03"),
    fields: int = 2,
    channels: int = 2,
    zs: int = 1,
    ts: int = 1,
    *,
    folders: bool = False,
    dtype: Any = "u2",
    skip: frozenset[tuple[str, PlaneKey]] = frozenset(),
    shape: tuple[int, int] = SHAPE,
) -> Truth:
    """An ImageXpress folder; with ``folders`` z and t live in ZStep_N / TimePoint_N."""
    truth: Truth = {}
    for well in wells:
        for f in range(fields):
            for t in range(ts):
                for c in range(channels):
                    for z in range(zs):
                        key = PlaneKey(f, c, z, t)
                        if (well, key) in skip:
                            continue
                        base = f"screen_{well}_s{f + 1}_w{c + 1}"
                        zt = (f"_z{z + 1:03d}" if zs > 1 else "") + (
                            f"_t{t + 1:03d}" if ts > 1 else ""
                        )
                        sub = root
                        if folders:
                            sub = root / f"TimePoint_{t + 1}" / f"ZStep_{z + 1}"
                        sub.mkdir(parents=True, exist_ok=True)
                        data = pixels(rng, dtype, shape)
                        tifffile.imwrite(sub / f"{base}{'' if folders else zt}.tif", data)
                        truth[well, key] = (f"{base}{zt}.tif", data)
    return truth


def assert_plate(
    path: Path, truth: Truth, missing: tuple[tuple[str, PlaneKey], ...] = ()
) -> PlateStore:
    """Every plane equals its source file; every file name maps to its plane."""
    store = PlateStore.open(path)
    for (well, key), (name, data) in truth.items():
        got = store.read_plane(well, key.field, key.c, key.z, key.t)
        assert got.dtype == data.dtype
        np.testing.assert_array_equal(got, data, err_msg=f"{well} {key} {name}")
        assert store.plane_key(well, name) == key
    for well, key in missing:
        assert not store.read_plane(well, key.field, key.c, key.z, key.t).any()
    wells = {w for w, _ in truth}
    assert sorted(store.wells()) == sorted(wells)
    for well in wells:
        assert len(store.well_info(well).plane_names) == sum(w == well for w, _ in truth)
    return store


def plate_digest(root: Path) -> dict[str, str]:
    """sha1 of every file of the plate, hidden bookkeeping (lock, staging) left out."""
    out = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root)
        if any(p.startswith(".") and p not in _ZARR_V2_DOCS for p in rel.parts):
            continue
        if path.is_file():
            out[str(rel)] = hashlib.sha1(path.read_bytes()).hexdigest()
    return out


CLI = [sys.executable, "-m", "napari_wellzarr.cli"]


def wellzarr(*args: Any, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run ``wellzarr *args`` to its end and capture its output."""
    return subprocess.run(
        [*CLI, *map(str, args)], capture_output=True, text=True, timeout=timeout, check=False
    )


def start_cli(*args: Any) -> subprocess.Popen[str]:
    """``wellzarr *args`` started in its own process group, its stderr piped."""
    return subprocess.Popen(
        [*CLI, *map(str, args)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group: kill -9 takes the workers too
    )


def wait_for_wells(proc: subprocess.Popen[str], count: int) -> list[str]:
    """The stderr lines of ``proc`` until ``count`` wells were written."""
    assert proc.stderr is not None
    lines = []
    for line in proc.stderr:
        lines.append(line)
        if sum(" written (" in x for x in lines) >= count:
            return lines
    raise AssertionError(f"the conversion ended before {count} wells: {''.join(lines)}")
