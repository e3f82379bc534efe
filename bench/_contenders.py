"""One contender of ``bench_plates.py``, run in its own process.

    python bench/_contenders.py SPEC.json

``SPEC.json`` (written by ``bench_plates.py``) names the contender, the plate size, the
well pool (``.npy`` cache), the plate directory, the read lists and the time budgets.  The
process writes the plate, records its peak RSS, syncs, drops the page cache (when it may),
reads, and writes a result JSON next to the spec.

This file must run in two interpreters: the project venv (napari-wellzarr, ome-zarr-py,
tifffile) and the polystore venv (polystore 0.6.3, tifffile).  It imports only numpy at
module level; every library is imported by the contender that needs it.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import statistics
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

N_FIELDS, N_CHANNELS, N_Z, SIZE = 4, 3, 1, 512
WELL_SHAPE = (N_FIELDS, N_CHANNELS, N_Z, SIZE, SIZE)
DTYPE = np.dtype("<u2")
WELL_BYTES = int(np.prod(WELL_SHAPE)) * DTYPE.itemsize
PLANE_BYTES = SIZE * SIZE * DTYPE.itemsize
ROW_LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
GEOMETRY = {
    6: (2, 3),
    12: (3, 4),
    24: (4, 6),
    48: (6, 8),
    96: (8, 12),
    384: (16, 24),
    1536: (32, 48),
}


# -- the data ----------------------------------------------------------------------------


def plate_wells(n_wells: int) -> list[tuple[str, str, str]]:
    """``(name, row, column)`` of every well of a full plate, row-major (A01, A02, ...)."""
    rows, cols = GEOMETRY[n_wells]
    return [
        (f"{ROW_LETTERS[r]}{c + 1:02d}", ROW_LETTERS[r], f"{c + 1:02d}")
        for r in range(rows)
        for c in range(cols)
    ]


class Pool:
    """The synthetic wells, memory-mapped one well at a time from the ``.npy`` cache.

    Well ``i`` of a plate is pool well ``i % pool_size``.  Each call maps only that
    well; once the caller drops the array the mapping goes away, so the pixels of
    earlier wells never count in the writer's resident memory.
    """

    def __init__(self, path: str, offset: int, size: int) -> None:
        self.path, self.offset, self.size = path, offset, size

    def well(self, i: int) -> np.ndarray:
        return np.memmap(
            self.path,
            dtype=DTYPE,
            mode="r",
            offset=self.offset + (i % self.size) * WELL_BYTES,
            shape=WELL_SHAPE,
        )

    def warm(self) -> None:
        """Read the cache file once so that the write phase never waits on the disk for it."""
        buf = bytearray(8 << 20)
        with open(self.path, "rb", buffering=0) as fh:
            while fh.readinto(buf):
                pass


def plane_file_name(well: str, field: int, c: int) -> str:
    """ImageXpress-style name of a plane: ``A01_s1_w2_z001.tif`` (1-based)."""
    return f"{well}_s{field + 1}_w{c + 1}_z001.tif"


# -- contenders --------------------------------------------------------------------------
#
# Each contender has write(plate_dir, n_wells, pool) and open(plate_dir, n_wells) -> reader;
# a reader has plane(well, field, c), well(well) and planes([(well, field, c), ...]).


class WellZarr:
    """napari-wellzarr's PlateStore: write_well per well in one ``with PlateStore.create``."""

    def __init__(self, **options: Any) -> None:
        # StorageConfig options; none given = the default configuration
        self.options = options

    def prepare(self) -> None:
        import zarr.codecs
        import zarr.storage  # noqa: F401

        import napari_wellzarr.storage.store  # noqa: F401

    def write(self, plate_dir: Path, n_wells: int, pool: Pool) -> None:
        from napari_wellzarr.core import PlateStore, StorageConfig

        config = StorageConfig(**self.options, plate=n_wells)
        with PlateStore.create(plate_dir, config) as plate:
            for i, (name, _row, _col) in enumerate(plate_wells(n_wells)):
                names = {
                    plane_file_name(name, f, c): (f, c, 0)
                    for f in range(N_FIELDS)
                    for c in range(N_CHANNELS)
                }
                data = pool.well(i)
                plate.write_well(name, data, plane_names=names)
                del data

    def open(self, plate_dir: Path, n_wells: int) -> Any:
        from napari_wellzarr.core import PlateStore

        store = PlateStore.open(plate_dir)

        class Reader:
            def plane(self, well: str, field: int, c: int) -> np.ndarray:
                return store.read_plane(well, field, c, 0)

            def well(self, well: str) -> np.ndarray:
                return store.read_well(well)

            def planes(self, keys: list[tuple[str, int, int]]) -> list[np.ndarray]:
                return [store.read_plane(w, f, c, 0) for w, f, c in keys]

        return Reader()


class Polystore:
    """polystore 0.6.3 ``ZarrStorageBackend()`` (default ZarrConfig) via save_batch/load_batch."""

    def prepare(self) -> None:
        import ome_zarr.writer  # noqa: F401  (save_batch imports it on first call)
        import polystore.zarr  # noqa: F401

    def _layout(self) -> Any:
        from polystore.zarr_batch import ZarrBatchAxis, ZarrBatchAxisRole, ZarrBatchLayout

        return ZarrBatchLayout(
            axes=(
                ZarrBatchAxis(
                    "field", tuple(str(f + 1) for f in range(N_FIELDS)), ZarrBatchAxisRole.HCS_IMAGE
                ),
                ZarrBatchAxis("c", tuple(str(c + 1) for c in range(N_CHANNELS))),
                ZarrBatchAxis("z", ("1",)),
            ),
            item_coordinates=tuple((f, c, 0) for f in range(N_FIELDS) for c in range(N_CHANNELS)),
        )

    def write(self, plate_dir: Path, n_wells: int, pool: Pool) -> None:
        from polystore.zarr import ZarrStorageBackend

        images = plate_dir / "images"
        backend = ZarrStorageBackend()
        layout = self._layout()
        for i, (name, row, col) in enumerate(plate_wells(n_wells)):
            data = pool.well(i)
            planes = [data[f, c, 0] for f in range(N_FIELDS) for c in range(N_CHANNELS)]
            paths = [
                images / plane_file_name(name, f, c)
                for f in range(N_FIELDS)
                for c in range(N_CHANNELS)
            ]
            backend.save_batch(
                planes, paths, chunk_name=name, batch_layout=layout, row=row, col=col
            )
            del data, planes

    def open(self, plate_dir: Path, n_wells: int) -> Any:
        from polystore.zarr import ZarrStorageBackend

        backend = ZarrStorageBackend()
        images = plate_dir / "images"

        def path(well: str, field: int, c: int) -> Path:
            return images / plane_file_name(well, field, c)

        class Reader:
            def plane(self, well: str, field: int, c: int) -> np.ndarray:
                return backend.load_batch([path(well, field, c)])[0]

            def well(self, well: str) -> list[np.ndarray]:
                return backend.load_batch(
                    [path(well, f, c) for f in range(N_FIELDS) for c in range(N_CHANNELS)]
                )

            def planes(self, keys: list[tuple[str, int, int]]) -> list[np.ndarray]:
                # polystore's own batch API: one call for all planes.
                return backend.load_batch([path(*k) for k in keys])

        return Reader()


class OmeZarrPy:
    """ome-zarr-py's standard per-field plate: write_image per field with its defaults."""

    def prepare(self) -> None:
        import ome_zarr.writer  # noqa: F401
        import skimage.transform  # noqa: F401  (its default pyramid: Methods.RESIZE)

    def write(self, plate_dir: Path, n_wells: int, pool: Pool) -> None:
        import zarr
        from ome_zarr.writer import write_image, write_plate_metadata, write_well_metadata

        rows, cols = GEOMETRY[n_wells]
        root = zarr.open_group(str(plate_dir), mode="w")
        wells = plate_wells(n_wells)
        for i, (_name, row, col) in enumerate(wells):
            well_group = root.require_group(row).require_group(col)
            write_well_metadata(well_group, [str(f) for f in range(N_FIELDS)])
            data = pool.well(i)
            for f in range(N_FIELDS):
                write_image(data[f], well_group.require_group(str(f)), axes="czyx")
            del data
        write_plate_metadata(
            root,
            [ROW_LETTERS[r] for r in range(rows)],
            [f"{c + 1:02d}" for c in range(cols)],
            [f"{row}/{col}" for _n, row, col in wells],
        )

    def open(self, plate_dir: Path, n_wells: int) -> Any:
        import zarr

        root = zarr.open_group(str(plate_dir), mode="r")
        wells = {name: f"{row}/{col}" for name, row, col in plate_wells(n_wells)}
        arrays: dict[tuple[str, int], Any] = {}

        def array(well: str, field: int) -> Any:
            key = (well, field)
            if key not in arrays:
                image = root[f"{wells[well]}/{field}"]
                attrs = image.attrs.asdict()
                multiscales = (attrs.get("ome") or attrs)["multiscales"]
                arrays[key] = image[multiscales[0]["datasets"][0]["path"]]
            return arrays[key]

        class Reader:
            def plane(self, well: str, field: int, c: int) -> np.ndarray:
                return array(well, field)[c, 0]

            def well(self, well: str) -> list[np.ndarray]:
                return [array(well, f)[...] for f in range(N_FIELDS)]

            def planes(self, keys: list[tuple[str, int, int]]) -> list[np.ndarray]:
                return [array(w, f)[c, 0] for w, f, c in keys]

        return Reader()


class Tiff:
    """One uncompressed TIFF per plane (tifffile.imwrite / imread), as a microscope writes."""

    def prepare(self) -> None:
        import tifffile  # noqa: F401

    def write(self, plate_dir: Path, n_wells: int, pool: Pool) -> None:
        import tifffile

        images = plate_dir / "images"
        images.mkdir(parents=True)
        for i, (name, _row, _col) in enumerate(plate_wells(n_wells)):
            data = pool.well(i)
            for f in range(N_FIELDS):
                for c in range(N_CHANNELS):
                    tifffile.imwrite(images / plane_file_name(name, f, c), data[f, c, 0])
            del data

    def open(self, plate_dir: Path, n_wells: int) -> Any:
        import tifffile

        images = plate_dir / "images"

        def read(well: str, field: int, c: int) -> np.ndarray:
            return tifffile.imread(images / plane_file_name(well, field, c))

        return PlaneFileReader(read)


class PlaneFileReader:
    """Reads a plate stored as one file per plane, through ``read(well, field, c)``."""

    def __init__(self, read: Any) -> None:
        self._read = read

    def plane(self, well: str, field: int, c: int) -> np.ndarray:
        return self._read(well, field, c)

    def well(self, well: str) -> list[np.ndarray]:
        return [self._read(well, f, c) for f in range(N_FIELDS) for c in range(N_CHANNELS)]

    def planes(self, keys: list[tuple[str, int, int]]) -> list[np.ndarray]:
        return [self._read(*k) for k in keys]


class Raw:
    """Plain ``open().write()`` of each plane's raw bytes: the file system's own limit."""

    def prepare(self) -> None:
        pass

    def write(self, plate_dir: Path, n_wells: int, pool: Pool) -> None:
        images = plate_dir / "images"
        images.mkdir(parents=True)
        for i, (name, _row, _col) in enumerate(plate_wells(n_wells)):
            data = pool.well(i)
            for f in range(N_FIELDS):
                for c in range(N_CHANNELS):
                    with open(images / f"{name}_s{f + 1}_w{c + 1}_z001.raw", "wb") as fh:
                        fh.write(data[f, c, 0].data)
            del data

    def open(self, plate_dir: Path, n_wells: int) -> Any:
        images = plate_dir / "images"

        def read(well: str, field: int, c: int) -> np.ndarray:
            with open(images / f"{well}_s{field + 1}_w{c + 1}_z001.raw", "rb") as fh:
                return np.frombuffer(fh.read(), DTYPE).reshape(SIZE, SIZE)

        return PlaneFileReader(read)


def make(kind: str, options: dict[str, Any]) -> Any:
    return {
        "wellzarr": WellZarr,
        "polystore": Polystore,
        "ome-zarr": OmeZarrPy,
        "tiff": Tiff,
        "raw": Raw,
    }[kind](**options)


# -- measuring ---------------------------------------------------------------------------


def _status_mb(key: str) -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024  # kB
    raise KeyError(key)


def peak_rss_mb() -> float:
    """Peak resident memory of this process (VmHWM).

    Not ``ru_maxrss``: Linux carries that over from the forked parent across ``exec``, so a
    child would report the orchestrator's peak.  VmHWM belongs to this process's own memory.
    """
    try:
        return _status_mb("VmHWM")
    except (OSError, KeyError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def rss_mb() -> float:
    try:
        return _status_mb("VmRSS")
    except (OSError, KeyError):
        return float("nan")


def drop_caches() -> bool:
    os.sync()
    try:
        with open("/proc/sys/vm/drop_caches", "w") as fh:
            fh.write("3\n")
        return True
    except OSError:
        return False


def dir_stats(path: Path) -> tuple[int, int]:
    size = files = 0
    for root, _dirs, names in os.walk(path):
        for name in names:
            size += os.lstat(os.path.join(root, name)).st_size
            files += 1
    return size, files


def budgeted(items: list[Any], budget_s: float, minimum: int, call: Any) -> list[float]:
    """Time ``call(item)`` for each item until the list or the time budget runs out."""
    times: list[float] = []
    started = time.perf_counter()
    for item in items:
        t = time.perf_counter()
        call(item)
        times.append(time.perf_counter() - t)
        if len(times) >= minimum and time.perf_counter() - started > budget_s:
            break
    return times


def check(plane: np.ndarray, pool: Pool, well_index: int, field: int, c: int) -> None:
    expected = pool.well(well_index)[field, c, 0]
    if not np.array_equal(np.asarray(plane).reshape(SIZE, SIZE), expected):
        raise AssertionError(f"plane {well_index}/{field}/{c} read back wrong")


def run(spec: dict[str, Any]) -> dict[str, Any]:
    warnings.simplefilter("ignore")  # library deprecation chatter is not a measurement
    import logging

    logging.disable(logging.WARNING)  # ome-zarr's "version mismatch" per polystore read
    n_wells = spec["wells"]
    pool = Pool(spec["pool"], spec["pool_offset"], spec["pool_size"])
    contender = make(spec["kind"], spec.get("options", {}))
    plate_dir = Path(spec["plate_dir"])
    names = [n for n, _r, _c in plate_wells(n_wells)]
    index = {n: i for i, n in enumerate(names)}
    raw_bytes = n_wells * WELL_BYTES
    out: dict[str, Any] = {"name": spec["name"], "wells": n_wells}

    # -- write -----------------------------------------------------------------------
    # Cheap contenders write the plate several times (median): single writes on this kind
    # of virtual disk vary up to 3x from run to run.  Only the last copy is kept for reads.
    contender.prepare()  # imports are not writing
    pool.warm()
    out["rss_before_mb"] = rss_mb()
    write_s: list[float] = []
    sync_s: list[float] = []
    cpu_s: list[float] = []
    repeats = int(spec.get("write_repeats", 1))
    for rep in range(repeats):
        if rep:
            shutil.rmtree(plate_dir)
        os.sync()  # no dirty pages of an earlier write are flushed on our clock
        t0, c0 = time.perf_counter(), time.process_time()
        contender.write(plate_dir, n_wells, pool)
        write_s.append(time.perf_counter() - t0)
        cpu_s.append(time.process_time() - c0)
        t1 = time.perf_counter()
        os.sync()
        sync_s.append(time.perf_counter() - t1)
    out["peak_rss_mb"] = peak_rss_mb()
    both = [w + s for w, s in zip(write_s, sync_s, strict=True)]
    out["write_mbs"] = raw_bytes / statistics.median(write_s) / 1e6
    out["write_sync_mbs"] = raw_bytes / statistics.median(both) / 1e6
    # Raw MB per CPU second, all threads of the writer: robust against disk noise and
    # against other processes (as long as they leave a core free).
    out["write_cpu_mbs"] = raw_bytes / statistics.median(cpu_s) / 1e6
    out["write_runs_mbs"] = [raw_bytes / w / 1e6 for w in write_s]
    out["write_s"] = write_s
    out["sync_s"] = sync_s
    disk, files = dir_stats(plate_dir)
    out["disk_bytes"], out["files"] = disk, files
    out["ratio"] = raw_bytes / disk

    # -- read --------------------------------------------------------------------------
    budget = spec["read_budget_s"]
    cold = drop_caches() if spec.get("drop_caches", True) else False
    out["cold"] = cold
    reader = contender.open(plate_dir, n_wells)
    w, f, c = spec["plane_reads"][0]
    check(reader.plane(names[w], f, c), pool, w, f, c)  # correctness (and first import)
    reads = [(names[w], f, c) for w, f, c in spec["plane_reads"]]
    if cold:
        drop_caches()
    times = budgeted(reads, budget, 3, lambda k: reader.plane(*k))
    out["plane_ms"] = statistics.median(times) * 1e3
    out["plane_n"] = len(times)
    # The same planes again: now from the page cache (decode + library overhead only).
    warm = budgeted(reads[: len(times)], budget, 3, lambda k: reader.plane(*k))
    out["plane_warm_ms"] = statistics.median(warm) * 1e3

    if cold:
        drop_caches()
    whole = [names[i] for i in spec["well_reads"]]
    times = budgeted(whole, budget, 1, reader.well)
    out["well_mbs"] = len(times) * WELL_BYTES / sum(times) / 1e6
    out["well_n"] = len(times)
    got = reader.well(whole[0])
    got = np.stack(got) if isinstance(got, list) else got
    if not np.array_equal(got.reshape(-1), np.asarray(pool.well(index[whole[0]])).reshape(-1)):
        raise AssertionError("whole well read back wrong")

    if cold:
        drop_caches()
    many = [(names[w], f, c) for w, f, c in spec["many_reads"]]
    t = time.perf_counter()
    planes = reader.planes(many)
    out["many_s"] = time.perf_counter() - t
    out["many_n"] = len(many)
    w, f, c = spec["many_reads"][-1]
    check(planes[-1], pool, w, f, c)
    return out


def main() -> None:
    spec_path = Path(sys.argv[1])
    spec = json.loads(spec_path.read_text())
    try:
        result = run(spec)
    except Exception as err:  # report, do not hide: the orchestrator prints it
        import traceback

        result = {
            "name": spec["name"],
            "wells": spec["wells"],
            "error": repr(err),
            "traceback": traceback.format_exc(),
        }
    Path(spec["result"]).write_text(json.dumps(result))


if __name__ == "__main__":
    main()
