"""Prototype fast paths for the core, installed by monkeypatching (``profile_core.py``).

Not core code: they model two changes to ``src/`` so that their gain can be measured.

* :func:`install_direct_shard_writer` - ``writing._write_levels`` lets zarr write the array
  metadata only (``zarr.create_array`` without data), then encodes the plane chunks itself
  (numcodecs, one call per plane on a 2-thread pool, no asyncio) and writes the shard file
  (chunks + index + crc32c, the layout of zarr's ``sharding_indexed`` codec) with one
  ``write``.  zarr reads the result back bit for bit (checked by ``selftest``).
* :func:`install_direct_plane_reader` - ``OpenWell.read_planes`` on a sharded well reads
  the shard index once per well (``pread`` at the end of the shard file), then ``pread``s
  the plane's chunk and decodes it in the calling thread: no event loop, no thread pool.
* :func:`install_shared_well_layout` - models plate-level (consolidated) well metadata:
  wells after the first reuse the first opened well's layout instead of reading three
  ``zarr.json`` files and opening the zarr array (the plate would record each well's shape
  and codecs at ``flush``).

Only the default-like layouts are handled (zarr v3, sharded, one shard per array, blosc or
no compressor, optional crc32c); anything else falls through to the original code.
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

_POOL: ThreadPoolExecutor | None = None
_MAX_U64 = np.uint64(2**64 - 1)


def _pool() -> ThreadPoolExecutor:
    global _POOL
    if _POOL is None:
        _POOL = ThreadPoolExecutor(os.cpu_count() or 2, thread_name_prefix="wz-encode")
    return _POOL


def _crc(data: Any) -> bytes:
    import google_crc32c

    return np.uint32(google_crc32c.value(data)).tobytes()


def _shard_spec(array: Any) -> dict[str, Any] | None:
    """Codec details of a zarr v3 array with one ``sharding_indexed`` codec, else None."""
    from zarr.codecs import BloscCodec, BytesCodec, Crc32cCodec, ShardingCodec

    codecs = getattr(array.metadata, "codecs", None)
    if not codecs or len(codecs) != 1 or not isinstance(codecs[0], ShardingCodec):
        return None
    sharding = codecs[0]
    if sharding.index_location.value != "end":
        return None
    inner = list(sharding.codecs)
    if not inner or not isinstance(inner[0], BytesCodec):
        return None
    checksum = bool(inner) and isinstance(inner[-1], Crc32cCodec)
    middle = inner[1:-1] if checksum else inner[1:]
    blosc = None
    if middle:
        if len(middle) != 1 or not isinstance(middle[0], BloscCodec):
            return None
        blosc = middle[0]
    index_codecs = list(sharding.index_codecs)
    index_crc = len(index_codecs) == 2 and isinstance(index_codecs[1], Crc32cCodec)
    return {
        "chunk_shape": tuple(sharding.chunk_shape),
        "blosc": blosc,
        "checksum": checksum,
        "index_crc": index_crc,
    }


def _numcodecs_blosc(codec: Any, itemsize: int) -> Any:
    import numcodecs

    shuffle = {"noshuffle": 0, "shuffle": 1, "bitshuffle": 2}[codec.shuffle.value]
    return numcodecs.Blosc(
        cname=codec.cname.value,
        clevel=codec.clevel,
        shuffle=shuffle,
        blocksize=codec.blocksize,
        typesize=codec.typesize or itemsize,
    )


# -- writing ----------------------------------------------------------------------------------


def encode_shard(level: np.ndarray, spec: dict[str, Any]) -> bytes:
    """The bytes zarr's sharding codec would store for ``level`` (one shard, plane chunks)."""
    chunk_shape = spec["chunk_shape"]
    grid = tuple(s // c for s, c in zip(level.shape, chunk_shape, strict=True))
    if any(s % c for s, c in zip(level.shape, chunk_shape, strict=True)):
        raise ValueError("prototype handles exact chunk grids only")
    blosc = _numcodecs_blosc(spec["blosc"], level.dtype.itemsize) if spec["blosc"] else None
    little = level.astype(level.dtype.newbyteorder("<"), copy=False)
    coords = list(np.ndindex(grid))

    def encode(coord: tuple[int, ...]) -> bytes:
        sel = tuple(slice(i * c, (i + 1) * c) for i, c in zip(coord, chunk_shape, strict=True))
        chunk = np.ascontiguousarray(little[sel])
        data = blosc.encode(chunk) if blosc is not None else chunk.tobytes()
        return bytes(data) + _crc(data) if spec["checksum"] else bytes(data)

    parts = list(_pool().map(encode, coords))
    index = np.empty((*grid, 2), dtype="<u8")
    offset = 0
    for coord, part in zip(coords, parts, strict=True):
        index[coord] = (offset, len(part))
        offset += len(part)
    index_bytes = index.tobytes()
    tail = index_bytes + (_crc(index_bytes) if spec["index_crc"] else b"")
    return b"".join([*parts, tail])


def install_direct_shard_writer() -> None:
    from napari_wellzarr.core import writing

    original = writing._write_levels

    def _write_levels(
        zstore: Any,
        path: str,
        image: np.ndarray,
        multiscale: Any,
        config: Any,
        attrs: dict[str, Any] | None,
        nearest: bool,
    ) -> None:
        import zarr

        if config.zarr_format != 3 or config.chunk_strategy.value != "sharded":
            return original(zstore, path, image, multiscale, config, attrs, nearest)
        codecs = (
            config.zarr_codecs()
            if hasattr(config, "zarr_codecs")
            else {"compressors": config.zarr_compressors()}
        )
        level = np.asarray(image)
        for index, dataset in enumerate(multiscale.datasets):
            if index:
                level = level[..., ::2, ::2] if nearest else writing.downsample(level)
            chunks, shards = config.chunk_layout(level.shape)
            name = f"{path}/{dataset.path}"
            array = zarr.create_array(
                store=zstore,
                name=name,
                shape=level.shape,
                dtype=level.dtype,
                chunks=chunks,
                shards=shards,
                **codecs,
                fill_value=0,
                zarr_format=3,
                attributes=attrs if index == 0 and attrs else None,
                dimension_names=[a.name for a in multiscale.axes],
            )
            spec = _shard_spec(array)
            if spec is None or tuple(shards or ()) != level.shape:
                array[...] = level  # not a layout the prototype knows: let zarr write it
                continue
            key = array.metadata.encode_chunk_key((0,) * level.ndim)
            target = Path(zstore.root) / name / key
            target.parent.mkdir(parents=True, exist_ok=True)
            with open(target, "wb") as fh:
                fh.write(encode_shard(level, spec))
        return None

    writing._write_levels = _write_levels


# -- reading ----------------------------------------------------------------------------------


class _ShardFile:
    """One shard's index, read once; chunks are pread and decoded in the calling thread."""

    def __init__(self, path: Path, shape: tuple[int, ...], dtype: Any, spec: dict[str, Any]):
        self.path, self.spec, self.dtype = path, spec, np.dtype(dtype)
        self.chunk_shape = spec["chunk_shape"]
        self.grid = tuple(s // c for s, c in zip(shape, self.chunk_shape, strict=True))
        self.blosc = _numcodecs_blosc(spec["blosc"], self.dtype.itemsize) if spec["blosc"] else None
        self._index: np.ndarray | None = None
        self._fd: int | None = None
        self._lock = threading.Lock()

    def _open(self) -> int:
        if self._fd is None:
            self._fd = os.open(self.path, os.O_RDONLY)
        return self._fd

    def index(self) -> np.ndarray:
        if self._index is None:
            fd = self._open()
            n = int(np.prod(self.grid)) * 16
            tail = n + (4 if self.spec["index_crc"] else 0)
            size = os.fstat(fd).st_size
            raw = os.pread(fd, tail, size - tail)
            if self.spec["index_crc"] and _crc(raw[:n]) != raw[n:]:
                raise ValueError(f"{self.path}: shard index checksum mismatch")
            self._index = np.frombuffer(raw[:n], "<u8").reshape(*self.grid, 2)
        return self._index

    def chunk(self, coord: tuple[int, ...]) -> np.ndarray:
        offset, nbytes = (int(v) for v in self.index()[coord])
        if offset == int(_MAX_U64):
            return np.zeros(self.chunk_shape, self.dtype)
        data = os.pread(self._open(), nbytes, offset)
        if self.spec["checksum"]:
            data, stored = data[:-4], data[-4:]
            if _crc(data) != stored:
                raise ValueError(f"{self.path}: chunk {coord} checksum mismatch")
        raw = self.blosc.decode(data) if self.blosc is not None else data
        return np.frombuffer(raw, self.dtype.newbyteorder("<")).reshape(self.chunk_shape)


def _shard_file(well: Any, image: int, level: int) -> _ShardFile | None:
    cache = well.__dict__.setdefault("_shard_files", {})
    if (image, level) in cache:
        return cache[(image, level)]
    template = getattr(well, "_template_shard", None)
    if template is not None and level == 0 and image == 0:
        # Shared layout: the path of this well's shard, the first well's codecs.
        layout = well._images[image]
        dataset = layout.meta.multiscale.datasets[level].path
        rel = f"{well.info.path}/{layout.path}/{dataset}"
        shard = _ShardFile(Path(well._root) / rel / template["key"], template["shape"],
                           template["dtype"], template["spec"])  # fmt: skip
        cache[(image, level)] = shard
        return shard
    array = well._array(image, level)
    spec = _shard_spec(array)
    if spec is None or tuple(array.shards or ()) != tuple(array.shape):
        cache[(image, level)] = None
        return None
    key = array.metadata.encode_chunk_key((0,) * array.ndim)
    shard = _ShardFile(Path(well._root) / array.path / key, tuple(array.shape), array.dtype, spec)
    shard.key = key  # type: ignore[attr-defined]
    cache[(image, level)] = shard
    return shard


def install_direct_plane_reader() -> None:
    from napari_wellzarr.core import reading
    from napari_wellzarr.core.well import WellAxes

    original = reading.OpenWell.read_planes

    def read_planes(self: Any, keys: Any, level: int = 0) -> list[np.ndarray]:
        if not self.info.stacked:
            return original(self, keys, level)
        shard = _shard_file(self, 0, level)
        if shard is None or shard.chunk_shape[:-2] != (1,) * (len(shard.chunk_shape) - 2):
            return original(self, keys, level)
        axes = WellAxes("t" in self.info.axes)
        out = []
        for key in keys:
            position = axes.plane_index(key)
            if any(i >= s for i, s in zip(position, self.info.shape, strict=False)):
                return original(self, keys, level)  # let the core raise its error
            layout = self._images[0]
            index = layout.selection(key, field_in_image=True)
            coord = (*tuple(i for i in index if isinstance(i, int)), 0, 0)
            out.append(shard.chunk(coord)[(0,) * (len(coord) - 2)])
        return out

    reading.OpenWell.read_planes = read_planes


def install_shared_well_layout() -> None:
    """Wells after the first reuse its layout: no per-well metadata reads (needs the reader)."""
    from dataclasses import replace

    from napari_wellzarr.core import reading, store

    original = store.PlateStore._open

    def _open(self: Any, well: Any) -> Any:
        target = self._target(well)
        cached = self._wells.get(target.path)
        if cached is not None:
            return cached
        template = self.__dict__.get("_template_well")
        if template is None or not self._is_listed(target.path):
            opened = original(self, well)
            shard = _shard_file(opened, 0, 0)
            if shard is not None:
                self._template_well = opened
                self._template_shard = {
                    "key": shard.key,  # type: ignore[attr-defined]
                    "shape": tuple(opened._array(0, 0).shape),
                    "dtype": opened._array(0, 0).dtype,
                    "spec": shard.spec,
                }
            return opened
        opened = reading.OpenWell(
            template._root, template._zstore,
            replace(template.info, name=target.name, path=target.path),
            template._images, template._zarr_format,
        )  # fmt: skip
        opened._template_shard = self._template_shard
        self._wells[target.path] = opened
        return opened

    store.PlateStore._open = _open


# -- self test --------------------------------------------------------------------------------


def selftest(tmp: Path) -> None:
    """Write with the direct writer, read with zarr and with the direct reader: same pixels."""
    from napari_wellzarr.core import PlateStore, StorageConfig
    from napari_wellzarr.synthetic import synthetic_well

    install_direct_shard_writer()
    wells = [synthetic_well(2, 3, 1, (128, 96), seed=s) for s in range(3)]
    roots = []
    for checksum in (True, False):
        for compressor in ("blosc-zstd", "none"):
            kwargs: dict[str, Any] = {"compressor": compressor, "plate": 24}
            if "checksum" in StorageConfig.__dataclass_fields__:
                kwargs["checksum"] = checksum
            root = tmp / f"selftest-{checksum}-{compressor}"
            roots.append(root)
            with PlateStore.create(root, StorageConfig(**kwargs)) as plate:
                for name, w in zip(("A01", "A02", "B05"), wells, strict=True):
                    plate.write_well(name, w)
            plate = PlateStore.open(root)
            for name, w in zip(("A01", "A02", "B05"), wells, strict=True):
                np.testing.assert_array_equal(plate.read_well(name), w)  # zarr's own reader
    install_direct_plane_reader()
    install_shared_well_layout()
    for root in roots:
        plate = PlateStore.open(root)
        for name, w in zip(("A01", "A02", "B05"), wells, strict=True):
            for f in range(2):
                for c in range(3):
                    np.testing.assert_array_equal(plate.read_plane(name, f, c, 0), w[f, c, 0])


if __name__ == "__main__":
    import sys
    import tempfile

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    with tempfile.TemporaryDirectory() as d:
        selftest(Path(d))
    print("fast paths: zarr reads the direct writer's shards, the direct reader reads them too")
