"""Reading one well: metadata once, then only the chunks a request needs."""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import numpy as np

from napari_wellzarr.errors import (
    AcquisitionNotFoundError,
    CorruptDataError,
    MetadataError,
    PlaneNotFoundError,
    WellNotFoundError,
)
from napari_wellzarr.storage import fsio, memory
from napari_wellzarr.storage._spec import WELLZARR_KEY
from napari_wellzarr.storage.acquisition import Acquisition, parse_acquisition
from napari_wellzarr.storage.axes import ImageAxes, PlaneKey, WellAxes
from napari_wellzarr.storage.bounds import chunk_bound
from napari_wellzarr.storage.chunkread import (
    MAX_CHUNK_BYTES,
    ChunkGrid,
    chunk_grid,
    is_extent,
    pixel_dtype,
    plane_heads,
)
from napari_wellzarr.storage.locations import RemoteLocation, fetch_all, is_url, open_location
from napari_wellzarr.storage.memory import check_memory, check_size, nbytes
from napari_wellzarr.storage.metadata import (
    Channel,
    default_channels,
    find_block,
    parse_image,
    parse_well,
)
from napari_wellzarr.storage.namemaps import read_plane_names
from napari_wellzarr.storage.shards import ShardGrid, ShardReader
from napari_wellzarr.storage.zstore import expect_chunks, read_store

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence

    from zarr.storage import LocalStore

__all__ = ["OpenWell", "WellInfo", "open_well", "open_well_dir", "select_acquisition"]

_MAX_PROBES: Final = 4096


@dataclass(frozen=True)
class WellInfo:
    """What a well holds, in well-array terms (``field, [t,] c, z, y, x``)."""

    name: str
    path: str
    axes: tuple[str, ...]
    shape: tuple[int, ...]
    dtype: np.dtype[Any]
    stacked: bool
    image_paths: tuple[str, ...]
    channels: tuple[Channel, ...]
    scale: tuple[float, ...]
    unit: str | None
    level_shapes: tuple[tuple[int, ...], ...]
    plane_names: Mapping[str, PlaneKey] = field(default_factory=dict)
    labels: tuple[str, ...] = ()
    #: Field positions, conditions... from the well's ``wellzarr`` block.
    acquisition: Acquisition = field(default_factory=Acquisition)
    #: Whether the well has a projection image (its ``projections`` group).
    has_projections: bool = False
    #: The OME acquisition id these images belong to (None: the images carry no id).
    acquisition_id: int | None = None
    #: Every acquisition id the well's images name, in order of first appearance.
    acquisition_ids: tuple[int | None, ...] = ()

    @property
    def n_fields(self) -> int:
        """Number of fields of view."""
        return self.shape[0]

    @property
    def n_channels(self) -> int:
        """Number of channels."""
        return self.shape[self.axes.index("c")]

    @property
    def n_levels(self) -> int:
        """Number of resolution levels."""
        return len(self.level_shapes)


class OpenWell:
    """A well whose metadata has been read; arrays open lazily and stay open."""

    def __init__(
        self,
        root: Path | RemoteLocation,
        zstore: LocalStore | Any,
        info: WellInfo,
        images: list[ImageAxes],
        zarr_format: int,
        expected: Mapping[str, tuple[int, ...]] | None = None,
        *,
        docs: Mapping[tuple[int, int], dict[str, Any]] | None = None,
    ) -> None:
        self.info = info
        self._root = root
        self._zstore = zstore
        self._images = images
        self._zarr_format = zarr_format
        # Shard file identities (array path in the well -> (size, mtime_ns)) when this well
        # was opened from a recorded layout instead of its own metadata (see clone).
        self._expected = dict(expected or {})
        # Array documents open_well has read already, by (image, level): not read twice.
        self._docs = dict(docs or {})
        self._arrays: dict[tuple[int, int], Any] = {}
        self._shards: dict[tuple[int, int], ShardReader | None] = {}
        # Unsharded arrays' layouts (shared with clones: their documents are the same).
        self._grids: dict[tuple[int, int], ChunkGrid | None] = {}
        #: A clone of a foreign plate's well: whether its array (image, level) has the
        #: template's document, asked before the array is first read (ForeignTemplate).
        self.verify: Callable[[int, int], bool] | None = None
        self._verified: set[tuple[int, int]] = set()

    @property
    def images(self) -> tuple[ImageAxes, ...]:
        """The image groups this well reads (of its acquisition), in field order."""
        return tuple(self._images)

    @property
    def root(self) -> Path | RemoteLocation:
        """The directory (or remote folder) the well's path is relative to: the plate."""
        return self._root

    def _trust(self, image: int, level: int) -> None:
        """Refuse to read an array of a clone whose document is not its template's."""
        if self.verify is None or (image, level) in self._verified:
            return
        if 0 <= level < len(self._images[image].meta.multiscale.datasets):
            if not self.verify(image, level):
                raise CorruptDataError(
                    f"well {self.info.name}: image {self._images[image].path} level {level} "
                    "is not laid out as the well it was read like"
                )
            self._verified.add((image, level))

    def _array(self, image: int, level: int) -> Any:
        self._trust(image, level)
        cached = self._arrays.get((image, level))
        if cached is not None:
            return cached
        layout = self._images[image]
        datasets = layout.meta.multiscale.datasets
        if not 0 <= level < len(datasets):
            raise PlaneNotFoundError(
                f"well {self.info.name}: level {level} does not exist (0..{len(datasets) - 1})"
            )
        path = f"{self.info.path}/{layout.path}/{datasets[level].path}"
        array = _open_array(self._zstore, path, self._zarr_format, self.info.name)
        if array.ndim != len(layout.roles):
            raise MetadataError(
                f"well {self.info.name}: array {path} has {array.ndim} dimensions, but its "
                f"image declares {len(layout.roles)} axes"
            )
        check_size(array.shape, array.dtype, path)
        if not self._fits(image, level, array.shape):
            raise MetadataError(
                f"well {self.info.name}: array {path} has shape {array.shape}, which does "
                f"not make the well's shape {self.info.level_shapes[level]} at level {level}"
            )
        self._arrays[(image, level)] = array
        return array

    def _fits(self, image: int, level: int, shape: tuple[int, ...]) -> bool:
        """Whether an array of ``shape`` makes the well's shape at ``level`` (other fields too)."""
        shapes, layout = self.info.level_shapes, self._images[image]
        if level >= len(shapes):
            return True
        n_fields = 1 if self.info.stacked else len(self._images)
        return (
            len(shape) == len(layout.roles) and layout.well_shape(shape, n_fields) == shapes[level]
        )

    # -- the plate-level layout record (store.py): wells that share one layout ------------

    def _array_paths(self) -> list[tuple[int, int, str]]:
        return [
            (i, level, f"{layout.path}/{dataset.path}")
            for i, layout in enumerate(self._images)
            for level, dataset in enumerate(layout.meta.multiscale.datasets)
        ]

    def layout_key(self) -> str:
        """A digest of everything a pixel read depends on, except the well's name and path."""
        doc = {
            "axes": self.info.axes,
            "levels": self.info.level_shapes,
            "dtype": self.info.dtype.str,
            "stacked": self.info.stacked,
            "arrays": [[path, self._images[i].roles] for i, _, path in self._array_paths()],
        }
        return hashlib.sha1(json.dumps(doc).encode(), usedforsecurity=False).hexdigest()[:12]

    def shard_files(
        self, stamps: Mapping[str, tuple[int, int]] | None = None
    ) -> dict[str, tuple[int, ...]] | None:
        """``(size, mtime_ns)`` of the well's documents and of each array's shard file.

        Keys are paths in the well (``zarr.json``, ``0/zarr.json``, ``0/0/zarr.json`` for
        documents, ``0/0`` for an array's shard).  None unless every array has exactly
        one shard file (zarr v3 only).  A remote well needs ``stamps``: ``(size, last
        modified ns)`` of its objects by path in the well (``RemoteLocation.stamps``).
        """
        remote = isinstance(self._root, RemoteLocation)
        if self._zarr_format != 3 or (remote and stamps is None):
            return None
        arrays = self._array_paths()
        docs = [
            "zarr.json",
            *(f"{image.path}/zarr.json" for image in self._images),
            *(f"{path}/zarr.json" for _, _, path in arrays),
        ]
        out: dict[str, tuple[int, ...]] = {}
        for doc in docs:
            if stamps is not None:
                if doc not in stamps:
                    return None
                out[doc] = stamps[doc]
                continue
            assert isinstance(self._root, Path)  # remote wells have stamps
            stat = os.stat(self._root / self.info.path / doc)
            out[doc] = (stat.st_size, stat.st_mtime_ns)
        for image, level, path in arrays:
            reader = self._shard_reader(image, level)
            key = (
                f"{path}/{reader.layout.shard_key((0,) * len(reader.layout.shape))}"
                if reader
                else ""
            )
            stamp = stamps.get(key) if stamps is not None else None
            identity = reader.identity(stamp) if reader is not None else None
            if identity is None:
                return None
            out[path] = identity
        return out

    def clone(self, name: str, path: str, expected: Mapping[str, tuple[int, ...]]) -> OpenWell:
        """Another well with this well's layout, for pixel reads only.

        The clone has no file names, channels or labels of its own; its shard files must
        match ``expected``, else its reads raise :class:`StaleFileError`.
        """
        info = dataclasses.replace(self.info, name=name, path=path, plane_names={}, labels=())
        clone = OpenWell(self._root, self._zstore, info, self._images, self._zarr_format, expected)
        clone._grids = self._grids
        for image, level, _ in self._array_paths():  # the shard layouts too: no docs to read
            reader = self._shard_reader(image, level)
            clone._shards[(image, level)] = (
                None if reader is None else clone._new_shard_reader(image, level, reader.layout)
            )
        return clone

    def _shard_reader(self, image: int, level: int) -> ShardReader | None:
        """The direct plane reader of a sharded array of plane chunks (None: use zarr)."""
        self._trust(image, level)
        if (image, level) in self._shards:
            return self._shards[(image, level)]
        reader = None
        datasets = self._images[image].meta.multiscale.datasets
        if self._zarr_format == 3 and 0 <= level < len(datasets):
            path = f"{self.info.path}/{self._images[image].path}/{datasets[level].path}"
            doc = self._docs.pop((image, level), None)
            if doc is None:
                try:
                    doc = fsio.read_array_doc(self._root / path, 3)
                except (FileNotFoundError, MetadataError):
                    doc = {}  # zarr's road reports it
            layout = ShardGrid.parse(doc)
            if layout is not None:  # memory bombs are refused before any allocation
                check_size(layout.shape, layout.dtype, path)
                _check_chunk(doc, 3, layout.dtype, self._root / path, self.info.name)
            if (
                layout is not None
                and layout.dtype.newbyteorder("=") == self.info.dtype
                and self._fits(image, level, layout.shape)
            ):  # else zarr's road, which reports the mismatch
                reader = self._new_shard_reader(image, level, layout)
        self._shards[(image, level)] = reader
        return reader

    def _new_shard_reader(self, image: int, level: int, layout: ShardGrid) -> ShardReader:
        datasets = self._images[image].meta.multiscale.datasets
        in_well = f"{self._images[image].path}/{datasets[level].path}"
        path = f"{self.info.path}/{in_well}"
        label = f"well {self.info.name}: array {path}"
        return ShardReader(self._root / path, layout, label, self._expected.get(in_well))

    def _read_direct(
        self, image: int, level: int, indexes: Sequence[tuple[int | slice, ...]]
    ) -> np.ndarray[Any, Any] | None:
        """The planes at ``indexes`` of one image, stacked, or None when zarr must read them."""
        reader = self._shard_reader(image, level)
        if reader is None or not indexes:
            return None
        planes: list[tuple[int, ...]] = []
        for index in indexes:
            head = tuple(i for i in index[:-2] if isinstance(i, int))
            if len(head) != len(index) - 2 or index[-2:] != (slice(None),) * 2:
                return None
            if any(i >= n for i, n in zip(head, reader.layout.shape, strict=False)):
                return None  # zarr's road raises the error
            planes.append(head)
        plane_bytes = math.prod(reader.layout.shape[-2:]) * self.info.dtype.itemsize
        check_memory(len(planes) * plane_bytes, f"{reader.label}: reading {len(planes)} planes")
        out = np.empty((len(planes), *reader.layout.shape[-2:]), dtype=self.info.dtype)
        return out if reader.read(planes, out) else None

    def _read_chunks(
        self, image: int, level: int, indexes: Sequence[tuple[int | slice, ...]]
    ) -> np.ndarray[Any, Any] | None:
        """Planes of an unsharded local zarr v3 array, read without zarr (None: zarr reads)."""
        self._trust(image, level)
        path = f"{self.info.path}/{self._images[image].path}/"
        path += self._images[image].meta.multiscale.datasets[level].path
        if (image, level) not in self._grids:
            doc = self._docs.get((image, level))
            self._grids[(image, level)] = chunk_grid(self._root, path, self.info.dtype, doc)
        grid = self._grids[(image, level)]
        planes = plane_heads(indexes, grid.shape) if grid is not None else None
        if grid is None or planes is None or not self._fits(image, level, grid.shape):
            return None
        return grid.read(self._root / path, planes, f"well {self.info.name}: array {path}")

    def _read_image(self, image: int, level: int) -> np.ndarray[Any, Any]:
        """The whole array of one image at ``level``."""
        reader = self._shard_reader(image, level)
        if reader is not None:
            shape = reader.layout.shape
            full = (slice(None), slice(None))
            indexes = [(*p, *full) for p in np.ndindex(*shape[:-2])]
            planes = self._read_direct(image, level, indexes)
            if planes is not None:
                return planes.reshape(shape)
        array = self._array(image, level)
        self._check_zarr_read(array, outputs=nbytes(array.shape, array.dtype), whole=True)
        return _read(array, (), self.info.name)

    def read_all(self, level: int = 0) -> np.ndarray[Any, Any]:
        """The whole well array at ``level``.

        Refused (before anything is allocated) when it would not fit in the memory
        the machine has available.
        """
        shapes = self.info.level_shapes
        if 0 <= level < len(shapes):
            need = math.prod(shapes[level]) * self.info.dtype.itemsize
            free = memory.available_memory()
            if free is not None and need > free:
                raise MetadataError(
                    f"well {self.info.name}: reading level {level} needs {need:,} bytes "
                    f"({shapes[level]}), more than the {free:,} bytes of memory available; "
                    "read planes (read_plane / read_planes) instead"
                )
        first = self._images[0]
        if first.stacked:
            return first.to_well(self._read_image(0, level), with_field=True)
        blocks: list[np.ndarray[Any, Any]] = []
        for i, layout in enumerate(self._images):
            block = layout.to_well(self._read_image(i, level), with_field=False)
            if blocks and block.shape != blocks[0].shape:
                raise MetadataError(
                    f"well {self.info.name}: field {layout.path} has shape {block.shape}, "
                    f"field {self._images[0].path} has {blocks[0].shape}"
                )
            blocks.append(block)
        return np.stack(blocks)

    def read_planes(self, keys: Sequence[PlaneKey], level: int = 0) -> list[np.ndarray[Any, Any]]:
        """The 2D planes at ``keys``; chunks that hold several requested planes are read once."""
        axes = WellAxes("t" in self.info.axes)
        groups: dict[int, list[int]] = {}
        for n, key in enumerate(keys):
            position = axes.plane_index(key)
            if any(i >= s for i, s in zip(position, self.info.shape, strict=False)):
                raise PlaneNotFoundError(
                    f"well {self.info.name}: plane (field={key.field}, c={key.c}, z={key.z}, "
                    f"t={key.t}) is outside the well of shape {self.info.shape}"
                )
            groups.setdefault(0 if self.info.stacked else key.field, []).append(n)
        out: list[np.ndarray[Any, Any]] = [np.empty(0)] * len(keys)
        for image, members in groups.items():
            layout = self._images[image]
            indexes = [layout.selection(keys[n], field_in_image=self.info.stacked) for n in members]
            direct = self._read_direct(image, level, indexes)
            if direct is None:
                direct = self._read_chunks(image, level, indexes)
            if direct is not None:
                for n, plane in zip(members, direct, strict=True):
                    out[n] = plane
                continue
            array = self._array(image, level)
            # Planes that share a chunk (well chunking) are cut from one decoded read.
            shared = math.prod(array.chunks[:-2]) > 1 and len(members) > 1
            outputs = len(members) * nbytes(array.shape[-2:], array.dtype)
            if shared:
                outputs += nbytes(array.shape, array.dtype)
            self._check_zarr_read(array, outputs=outputs, whole=shared)
            whole = _read(array, (), self.info.name) if shared else None
            for n, index in zip(members, indexes, strict=True):
                out[n] = whole[index] if whole is not None else _read(array, index, self.info.name)
        return out

    def read_labels(self, name: str, level: int = 0) -> np.ndarray[Any, Any]:
        """The label image ``name`` as ``(field, [t,] z, y, x)``."""
        if name not in self.info.labels:
            raise PlaneNotFoundError(
                f"well {self.info.name} has no label image {name!r} "
                f"(it has {list(self.info.labels)})"
            )
        arrays = [self._label_array(layout, name, level) for layout in self._images]
        held = sum(nbytes(array.shape, array.dtype) for _, array in arrays)
        if len(arrays) > 1:
            held *= 2  # the per-field blocks, then their stack
        chunk = max(nbytes(array.chunks, array.dtype) for _, array in arrays)
        paths = ", ".join(array.path for _, array in arrays)
        check_memory(held + chunk, f"well {self.info.name}: reading label {name!r} ({paths})")
        blocks = [
            label.to_well(_read(array, (), self.info.name), with_field=layout.stacked)
            for layout, (label, array) in zip(self._images, arrays, strict=True)
        ]
        block = blocks[0] if self.info.stacked else np.stack(blocks)
        c_axis = self.info.axes.index("c")
        if block.shape[c_axis] != 1:
            raise MetadataError(
                f"well {self.info.name}: label {name!r} has {block.shape[c_axis]} channels"
            )
        return np.squeeze(block, axis=c_axis)

    def _label_array(self, layout: ImageAxes, name: str, level: int) -> tuple[ImageAxes, Any]:
        """The layout and the (open, unread) array of label ``name`` in one image."""
        where = f"{self.info.name}/{layout.path}/labels/{name}"
        label_dir = self._root / self.info.path / layout.path / "labels" / name
        try:
            attrs = fsio.read_attrs(label_dir, self._zarr_format)
        except FileNotFoundError as err:
            label_dir = fsio.aside_of(label_dir)  # the old labels of a save killed midway
            try:
                attrs = fsio.read_attrs(label_dir, self._zarr_format)
            except FileNotFoundError:
                raise CorruptDataError(
                    f"well {self.info.name}: label {name!r} is listed but image {layout.path} "
                    f"has no label group {label_dir.parent / name}"
                ) from err
        meta, _ = parse_image(attrs, where)
        label = ImageAxes.parse(f"{layout.path}/labels/{label_dir.name}", meta, where)
        datasets = meta.multiscale.datasets
        if not 0 <= level < len(datasets):
            raise PlaneNotFoundError(f"{where}: level {level} does not exist")
        path = f"{self.info.path}/{label.path}/{datasets[level].path}"
        array = _open_array(self._zstore, path, self._zarr_format, self.info.name)
        check_size(array.shape, array.dtype, path)
        return label, array

    def _check_zarr_read(self, array: Any, *, outputs: int, whole: bool) -> None:
        """Refuse a zarr read of ``array`` that would not fit in the memory available.

        ``outputs`` is what the read returns; zarr also decodes the chunks it touches
        into buffers of their own: one chunk for a plane, the whole array for ``whole``.
        """
        chunk = nbytes(array.chunks, array.dtype)
        decoded = max(nbytes(array.shape, array.dtype), chunk) if whole else chunk
        what = "the whole array" if whole else "planes"
        check_memory(outputs + decoded, f"well {self.info.name}: reading {what} of {array.path}")

    def plane_key(self, name: str) -> PlaneKey:
        """The coordinate an original file name maps to."""
        try:
            return self.info.plane_names[name]
        except KeyError:
            raise PlaneNotFoundError(f"{name!r} is not a file of well {self.info.name}") from None


def _open_array(zstore: LocalStore | Any, path: str, zarr_format: int, well: str) -> Any:
    import zarr
    from zarr.errors import NodeNotFoundError

    try:
        array = zarr.open_array(store=zstore, path=path, mode="r", zarr_format=zarr_format)  # type: ignore[arg-type]
        expect_chunks(zstore, path, chunk_bound(array, path))
    except (FileNotFoundError, NodeNotFoundError) as err:
        raise CorruptDataError(f"well {well}: array {path} is missing") from err
    except Exception as err:
        # zarr's parser meets hostile documents with a grab-bag of builtins (ValueError,
        # TypeError, KeyError, OverflowError for a fill value out of range...).
        raise CorruptDataError(
            f"well {well}: array {path} has unreadable metadata: {type(err).__name__}: {err}"
        ) from err
    return array


def _check_chunk(
    doc: dict[str, Any],
    zarr_format: int,
    dtype: np.dtype[Any],
    path: Path | RemoteLocation,
    well: str,
) -> None:
    """Refuse a chunk (or inner shard chunk) shape whose buffer would be a memory bomb."""
    if zarr_format == 2:
        shapes = [doc.get("chunks")]
    else:
        grid = doc.get("chunk_grid")
        config = grid.get("configuration", {}) if isinstance(grid, dict) else {}
        shapes = [config.get("chunk_shape") if isinstance(config, dict) else None]
        for codec in doc.get("codecs", []) if isinstance(doc.get("codecs"), list) else []:
            if isinstance(codec, dict) and codec.get("name") == "sharding_indexed":
                inner = codec.get("configuration", {})
                shapes.append(inner.get("chunk_shape") if isinstance(inner, dict) else None)
    for shape in shapes:
        if not isinstance(shape, list) or not all(
            isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in shape
        ):
            raise MetadataError(f"well {well}: array {path} has chunk shape {shape!r}")
        if math.prod(shape) * dtype.itemsize > MAX_CHUNK_BYTES:
            raise MetadataError(
                f"well {well}: array {path} declares chunks of shape {shape} "
                f"({math.prod(shape) * dtype.itemsize:,} bytes, limit {MAX_CHUNK_BYTES:,})"
            )


def _read(array: Any, index: tuple[Any, ...], well: str) -> np.ndarray[Any, Any]:
    try:
        return np.asarray(array[index] if index else array[...])
    except Exception as err:
        # Any decoder failure (blosc, zstd, a truncated shard index...) means a damaged
        # chunk: name the array and chunk, keep the cause.
        raise CorruptDataError(
            f"well {well}: array {array.path} chunk {_chunk_key(array, index)} cannot be "
            f"read: {type(err).__name__}: {err}"
        ) from err


def _chunk_key(array: Any, index: tuple[Any, ...]) -> str:
    """Name the stored chunk (or shard) file behind a failed read of ``array[index]``.

    Runs only after a failure: it re-reads the selection one chunk file at a time and
    names the first that fails (at most ``_MAX_PROBES`` of them).
    """
    grid = array.shards or array.chunks
    bounds = [
        (i, i + 1) if isinstance(i, int) else (0, size)
        for i, size in zip(index or (slice(None),) * array.ndim, array.shape, strict=True)
    ]
    ranges = [range(lo // g, (hi - 1) // g + 1) for (lo, hi), g in zip(bounds, grid, strict=True)]
    first = tuple(r[0] for r in ranges)
    for coords in itertools.islice(itertools.product(*ranges), _MAX_PROBES):
        region = tuple(
            slice(c * g, min((c + 1) * g, s))
            for c, g, s in zip(coords, grid, array.shape, strict=True)
        )
        try:
            array[region]
        except Exception:
            first = coords
            break
    try:
        return str(array.metadata.encode_chunk_key(first))
    except (AttributeError, TypeError, ValueError):
        return "/".join(str(c) for c in first)


def select_acquisition(
    images: Sequence[str], ids: Sequence[int | None], acquisition: int | None, well: str
) -> tuple[list[int], int | None]:
    """Indices of a well's ``images`` that belong to ``acquisition``, and its id.

    ``None`` asks for the well's first acquisition (a well whose images carry no ids is
    one acquisition).  Raises :class:`AcquisitionNotFoundError` when the well has no
    image of ``acquisition``, :class:`MetadataError` when its images name none.
    """
    ids = list(ids) or [None] * len(images)
    distinct = list(dict.fromkeys(ids))
    if acquisition is None:
        wanted = distinct[0]
    elif distinct == [None]:
        raise MetadataError(
            f"well {well}: its images {list(images)} name no acquisition, so none of "
            f"them can be told to belong to acquisition {acquisition}"
        )
    else:
        wanted = acquisition
    chosen = [i for i, a in enumerate(ids) if a == wanted]
    if not chosen:
        raise AcquisitionNotFoundError(
            f"well {well} has no image of acquisition {wanted} (its images belong to "
            f"acquisitions {distinct})"
        )
    return chosen, wanted


def open_well(
    root: Path | RemoteLocation,
    path: str,
    name: str,
    zarr_format: int,
    acquisition: int | None = None,
) -> OpenWell:
    """Read a well's metadata (well, images, level-0 arrays) and return it open.

    ``root`` is the directory the array paths are relative to (the plate).  A well
    with images of several acquisitions (``images[].acquisition``) opens the images of
    ``acquisition`` only (``None``: the first acquisition listed).
    """
    well_dir = root / path
    if fsio.detect_zarr_format(well_dir) is None:
        raise WellNotFoundError(
            f"well {name} is listed in {root} but {well_dir} holds no zarr group"
        )
    well_attrs = fsio.read_attrs(well_dir, zarr_format)
    well_meta, _ = parse_well(well_attrs, name)
    # Wells written here store every chunk: read them strictly (see zstore.py).
    marker = well_attrs.get(WELLZARR_KEY)
    marker = marker if isinstance(marker, dict) else {}
    details, has_projections = parse_acquisition(marker)
    zstore = read_store(
        root,
        strict=marker.get("all_chunks_written") is True,
        blosc_frames=marker.get("blosc_frames") is True,
    )
    chosen, acquisition_id = select_acquisition(
        well_meta.images, well_meta.acquisitions, acquisition, name
    )
    image_paths = tuple(well_meta.images[i] for i in chosen)
    _fetch_ahead(well_dir, [(p, "group") for p in image_paths], zarr_format)
    images = []
    for image_path in image_paths:
        image_dir = well_dir / image_path
        try:
            attrs = fsio.read_attrs(image_dir, zarr_format)
        except FileNotFoundError as err:
            raise CorruptDataError(f"well {name}: image {image_path} is missing") from err
        meta, _ = parse_image(attrs, f"{name}/{image_path}")
        images.append(ImageAxes.parse(image_path, meta, f"{name}/{image_path}"))
    first = images[0]
    if any(img.roles != first.roles for img in images[1:]) or (first.stacked and len(images) > 1):
        raise MetadataError(
            f"well {name}: its images {list(image_paths)}"
            + (f" (acquisition {acquisition_id})" if acquisition_id is not None else "")
            + " do not share one axis layout"
        )
    # Shapes and dtype come from the arrays' JSON documents: opening zarr arrays is left
    # to the first read (opening a plate of 1536 wells reads metadata only).
    nodes = [(f"{first.path}/{ds.path}", "array") for ds in first.meta.multiscale.datasets]
    _fetch_ahead(well_dir, [*nodes, (f"{first.path}/labels", "group")], zarr_format)
    levels = [
        _array_meta(well_dir / first.path / ds.path, zarr_format, name, len(first.roles))
        for ds in first.meta.multiscale.datasets
    ]
    n_fields = 1 if first.stacked else len(images)
    level_shapes = tuple(first.well_shape(shape, n_fields) for shape, _, _, _ in levels)
    roles = dict(zip(first.roles, first.meta.multiscale.datasets[0].scale, strict=True))
    axes = WellAxes(first.has_time).names
    n_c = level_shapes[0][axes.index("c")]
    channels = first.meta.channels if len(first.meta.channels) == n_c else default_channels(n_c)
    y_axis = first.meta.multiscale.axes[first.roles.index("y")]
    info = WellInfo(
        name=name,
        path=path,
        axes=axes,
        shape=level_shapes[0],
        dtype=levels[0][1],
        stacked=first.stacked,
        image_paths=image_paths,
        channels=channels,
        scale=tuple(roles.get(a, 1.0) for a in axes),
        unit=y_axis.unit,
        level_shapes=level_shapes,
        plane_names=read_plane_names(well_dir, images, well_attrs, levels[0][2], zarr_format, name),
        labels=_label_names(well_dir / first.path, zarr_format, name),
        acquisition=details,
        has_projections=has_projections,
        acquisition_id=acquisition_id,
        acquisition_ids=tuple(dict.fromkeys(well_meta.acquisitions)),
    )
    docs = {(0, level): doc for level, (_, _, _, doc) in enumerate(levels)}
    return OpenWell(root, zstore, info, images, zarr_format, docs=docs)


def _fetch_ahead(
    root: Path | RemoteLocation, nodes: Sequence[tuple[str, str]], zarr_format: int
) -> None:
    """Fetch the documents of nodes ``(path, "group" | "array")`` below a remote ``root`` at once.

    A well's images, an image's levels: read next, in turn, from the cache.
    """
    if not isinstance(root, RemoteLocation):
        return
    names = {"group": (".zgroup", ".zattrs"), "array": (".zarray", ".zattrs")}
    fetch_all(
        [
            root / path / name
            for path, kind in nodes
            for name in (("zarr.json",) if zarr_format == 3 else names[kind])
        ]
    )


def _array_meta(
    path: Path | RemoteLocation, zarr_format: int, well: str, ndim: int
) -> tuple[tuple[int, ...], np.dtype[Any], dict[str, Any], dict[str, Any]]:
    """``(shape, dtype, attributes, document)`` of an array, from its metadata document alone."""
    try:
        doc = fsio.read_array_doc(path, zarr_format)
    except FileNotFoundError as err:
        raise CorruptDataError(f"well {well}: array {path} is missing") from err
    shape, dtype_name = doc.get("shape"), doc.get("data_type" if zarr_format == 3 else "dtype")
    if not is_extent(shape):
        raise MetadataError(
            f"well {well}: array {path} has shape {shape!r}: not a list of positive integers"
        )
    if len(shape) != ndim:
        raise MetadataError(
            f"well {well}: array {path} has {len(shape)} dimensions, but its image "
            f"declares {ndim} axes"
        )
    dtype = pixel_dtype(dtype_name, zarr_format)
    if dtype is None:
        key, document = ("data_type", "zarr.json") if zarr_format == 3 else ("dtype", ".zarray")
        declared = f"{key} {dtype_name!r}" if key in doc else f"no {key}"
        raise MetadataError(
            f"well {well}: {path / document} has {declared}: a pixel array needs a "
            "numeric data type (uint16, float32...)"
        )
    check_size(tuple(shape), dtype, str(path))
    _check_chunk(doc, zarr_format, dtype, path, well)
    attrs = doc.get("attributes", {}) if zarr_format == 3 else doc.get("_attrs", {})
    return tuple(shape), dtype, attrs if isinstance(attrs, dict) else {}, doc


def open_well_dir(path: str | os.PathLike[str] | RemoteLocation) -> OpenWell:
    """Open a well folder on its own (e.g. ``plate.zarr/B/03``), read-only.

    Raises :class:`WellNotFoundError` when ``path`` is not an OME-Zarr well group.
    """
    well_dir: Path | RemoteLocation
    if isinstance(path, RemoteLocation):
        well_dir = path
    else:
        text = os.fspath(path)
        well_dir = open_location(text) if is_url(text) else Path(text)
    zarr_format = fsio.detect_zarr_format(well_dir)
    if zarr_format is None or find_block(fsio.read_attrs(well_dir, zarr_format), "well")[0] is None:
        raise WellNotFoundError(f"{well_dir} is not an OME-Zarr well group")
    name = f"{well_dir.parent.name}{well_dir.name}"
    return open_well(well_dir.parent, well_dir.name, name, zarr_format)


def _label_names(image_dir: Path | RemoteLocation, zarr_format: int, well: str) -> tuple[str, ...]:
    try:
        attrs = fsio.read_attrs(image_dir / "labels", zarr_format)
    except FileNotFoundError:
        return ()
    block, _ = find_block(attrs, "labels")
    if not isinstance(block, list) or not all(
        isinstance(n, str) and n.replace("_", "").isalnum() for n in block
    ):
        raise MetadataError(f"well {well}: labels {block!r} is not a list of label names")
    return tuple(block)
