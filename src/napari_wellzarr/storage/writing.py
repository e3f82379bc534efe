"""Checking a well's data and laying it out on disk (images, pyramid levels, labels)."""

from __future__ import annotations

import contextlib
import errno
import functools
import json
import os
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

import numpy as np

from napari_wellzarr.errors import WellDataError, WellExistsError
from napari_wellzarr.storage import fsio
from napari_wellzarr.storage._spec import OPENHCS_DIMENSIONS as PLANE_DIMS
from napari_wellzarr.storage._spec import OPENHCS_FILENAME_MAP as PLANE_MAP
from napari_wellzarr.storage._spec import OPENHCS_OUTPUT_PATHS as PLANE_PATHS
from napari_wellzarr.storage._spec import WELLZARR_KEY
from napari_wellzarr.storage.acquisition import PROJECTIONS_PATH, Acquisition
from napari_wellzarr.storage.arrays import to_host
from napari_wellzarr.storage.axes import (
    ALLOWED_DTYPES,
    PlaneKey,
    WellAxes,
    downsample,
    image_meta_for,
    plane_key,
    shrink,
)
from napari_wellzarr.storage.config import Compressor, FieldArrangement, StorageConfig
from napari_wellzarr.storage.metadata import (
    Channel,
    Multiscale,
    WellMeta,
    default_channels,
    ome_attrs,
)
from napari_wellzarr.storage.shards import EncodedShards, ShardGrid, encode_pool

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator, Mapping, Sequence
    from pathlib import Path

__all__ = [
    "PLANE_MAP",
    "WellPayload",
    "assemble_planes",
    "build_acquisitions",
    "build_well",
    "prepare_acquisitions",
    "prepare_well",
    "sharded_v3_metadata",
    "swap_in",
]

LABEL_DTYPES: Final = frozenset(
    np.dtype(t) for t in ("u1", "u2", "u4", "u8", "i1", "i2", "i4", "i8")
)


@dataclass(frozen=True)
class WellPayload:
    """A well's data and metadata, checked and ready to write."""

    name: str
    array: np.ndarray[Any, Any]
    axes: WellAxes
    channels: tuple[Channel, ...]
    pixel_size: tuple[float, float] | None
    z_step: float | None
    plane_names: dict[str, PlaneKey]
    # Label images in well-array shape with a channel axis of length 1.
    labels: dict[str, np.ndarray[Any, Any]]
    acquisition: Acquisition | None = None
    # The well's projection image (one z plane), written to its PROJECTIONS_PATH group.
    projections: WellPayload | None = None


def prepare_well(
    name: str,
    data: object,
    config: StorageConfig,
    *,
    channels: Sequence[str | Channel] | None = None,
    pixel_size: float | tuple[float, float] | None = None,
    z_step: float | None = None,
    plane_names: Mapping[str, PlaneKey | Sequence[int]] | None = None,
    labels: Mapping[str, object] | None = None,
    acquisition: Acquisition | None = None,
    projections: object | None = None,
    projection_names: Mapping[str, PlaneKey | Sequence[int]] | None = None,
) -> WellPayload:
    """Check a well's data and metadata; raise :class:`WellDataError` naming the culprit."""
    array = to_host(data, f"well {name}")
    if not array.dtype.isnative:  # zarr stores little-endian; '>u2' is still uint16
        array = array.astype(array.dtype.newbyteorder("="))
    axes = _check_array(name, array, config)
    if z_step is not None and not (isinstance(z_step, int | float) and z_step > 0):
        raise WellDataError(f"well {name}: z_step {z_step!r} is not a positive number")
    if acquisition is not None:
        acquisition.check(name, array.shape[0])
    projected = None
    if projections is not None:
        projected = prepare_well(
            name, projections, config, channels=channels, pixel_size=pixel_size,
            plane_names=projection_names, acquisition=acquisition,
        )  # fmt: skip
        wanted = (*array.shape[: axes.names.index("z")], 1, *array.shape[-2:])
        if projected.array.shape != wanted:
            raise WellDataError(
                f"well {name}: projections have shape {projected.array.shape}; the well "
                f"needs {wanted} (its shape with one z plane)"
            )
    return WellPayload(
        name,
        array,
        axes,
        _channels(name, array, axes, channels),
        None if pixel_size is None else _pair(pixel_size, name),
        None if z_step is None else float(z_step),
        _plane_names(name, array.shape, axes, plane_names),
        _labels(name, array.shape, axes, labels),
        acquisition,
        projected,
    )


def prepare_acquisitions(
    name: str,
    images: Mapping[int, Mapping[str, Any]],
    config: StorageConfig,
    known: Sequence[int],
) -> list[tuple[int, WellPayload]]:
    """Check each acquisition of a well (``id -> write_well arguments``), in order.

    ``known``: the plate's acquisition ids (empty: any id).
    """
    parts = []
    for ident, spec in images.items():
        if isinstance(ident, bool) or not isinstance(ident, int) or ident < 0:
            raise WellDataError(f"well {name}: acquisition id {ident!r} is not an int >= 0")
        if known and ident not in known:
            raise WellDataError(
                f"well {name}: acquisition {ident} is not in the plate's acquisitions "
                f"{sorted(known)} (see PlateStore.set_acquisitions)"
            )
        if "data" not in spec:
            raise WellDataError(f"well {name}: acquisition {ident} has no 'data'")
        kwargs = {k: v for k, v in spec.items() if k != "data"}
        parts.append(
            (ident, prepare_well(f"{name} (acquisition {ident})", spec["data"], config, **kwargs))
        )
    if not parts:
        raise WellDataError(f"well {name}: no acquisition to write")
    return parts


def _check_array(name: str, array: np.ndarray[Any, Any], config: StorageConfig) -> WellAxes:
    if array.ndim not in (5, 6):
        raise WellDataError(
            f"well {name}: data has shape {array.shape}; expected (field, c, z, y, x) "
            "or (field, t, c, z, y, x)"
        )
    if 0 in array.shape:
        raise WellDataError(f"well {name}: data shape {array.shape} has an empty axis")
    if array.dtype not in ALLOWED_DTYPES:
        raise WellDataError(
            f"well {name}: dtype {array.dtype} is not supported; use an integer (8-64 bit) "
            "or float32/float64 array"
        )
    axes = WellAxes(array.ndim == 6)
    if axes.has_time and config.fields is FieldArrangement.STACKED:
        raise WellDataError(
            f"well {name}: a time series needs fields='per-field' (a stacked "
            "(field, t, c, z, y, x) image would have 6 axes; OME-NGFF allows 5)"
        )
    return axes


def _pair(value: float | tuple[float, float], well: str) -> tuple[float, float]:
    pair = (value, value) if isinstance(value, int | float) else tuple(value)
    if len(pair) != 2 or not all(isinstance(v, int | float) and v > 0 for v in pair):
        raise WellDataError(f"well {well}: pixel_size {value!r} is not a positive (y, x) pair")
    return float(pair[0]), float(pair[1])


def _channels(
    name: str,
    array: np.ndarray[Any, Any],
    axes: WellAxes,
    channels: Sequence[str | Channel] | None,
) -> tuple[Channel, ...]:
    c_axis = axes.names.index("c")
    n_c = array.shape[c_axis]
    defaults = default_channels(n_c)
    if channels is None:
        base = defaults
    elif len(channels) != n_c:
        given = [getattr(c, "label", c) for c in channels]
        raise WellDataError(
            f"well {name}: {len(channels)} channel name(s) {given} for {n_c} channel(s)"
        )
    else:
        base = tuple(
            c if isinstance(c, Channel) else Channel(str(c), defaults[i].color)
            for i, c in enumerate(channels)
        )
    low, high = _channel_ranges(array, c_axis)
    info = np.iinfo(array.dtype) if array.dtype.kind in "iu" else None
    out = []
    for i, ch in enumerate(base):
        if ch.window is None:
            lo, hi = (info.min, info.max) if info else (low[i], high[i])
            window = (float(lo), float(hi), float(low[i]), float(high[i]))
            ch = Channel(ch.label, ch.color, window, ch.active)
        out.append(ch)
    return tuple(out)


def _channel_ranges(
    array: np.ndarray[Any, Any], c_axis: int
) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    """Each channel's (min, max), channels in parallel on the codec threads."""

    def one(c: int) -> tuple[Any, Any]:
        channel = array[(slice(None),) * c_axis + (c,)]
        if array.dtype.kind == "f":  # NaN and inf have no place in a display window
            finite = np.where(np.isfinite(channel), channel, np.nan)
            low, high = _nan_range(finite, None)
            return low, high
        return channel.min(), channel.max()

    ranges = list(encode_pool().map(one, range(array.shape[c_axis])))
    return np.array([r[0] for r in ranges]), np.array([r[1] for r in ranges])


def _nan_range(
    array: np.ndarray[Any, Any], axes: tuple[int, ...] | None
) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # an all-NaN channel
        low, high = np.nanmin(array, axis=axes), np.nanmax(array, axis=axes)
    return np.nan_to_num(low, nan=0.0), np.nan_to_num(high, nan=1.0)


def _plane_names(
    name: str,
    shape: tuple[int, ...],
    axes: WellAxes,
    plane_names: Mapping[str, PlaneKey | Sequence[int]] | None,
) -> dict[str, PlaneKey]:
    out: dict[str, PlaneKey] = {}
    seen: dict[PlaneKey, str] = {}
    for file_name, coord in (plane_names or {}).items():
        if (
            not isinstance(file_name, str)
            or not file_name
            or "/" in file_name
            or file_name in (".", "..")
        ):
            raise WellDataError(f"well {name}: plane name {file_name!r} is not a file name")
        key = plane_key(coord, f"well {name}: plane {file_name!r}")
        index = axes.plane_index(key)
        if any(i >= s for i, s in zip(index, shape, strict=False)):
            raise WellDataError(
                f"well {name}: plane {file_name!r} at {tuple(key)} is outside the well array "
                f"of shape {shape}"
            )
        if key in seen:
            raise WellDataError(
                f"well {name}: {file_name!r} and {seen[key]!r} map to the same plane {tuple(key)}"
            )
        seen[key] = file_name
        out[file_name] = key
    return out


def _labels(
    name: str, shape: tuple[int, ...], axes: WellAxes, labels: Mapping[str, object] | None
) -> dict[str, np.ndarray[Any, Any]]:
    out = {}
    c_axis = axes.names.index("c")
    expected = shape[:c_axis] + shape[c_axis + 1 :]
    for label, data in (labels or {}).items():
        if not isinstance(label, str) or not label.replace("_", "").isalnum():
            raise WellDataError(f"well {name}: label name {label!r} is not alphanumeric")
        array = to_host(data, f"well {name}: label {label!r}")
        if array.shape != expected:
            raise WellDataError(
                f"well {name}: label {label!r} has shape {array.shape}; the well's pixels "
                f"need {expected} (the well's shape without its channel axis)"
            )
        if array.dtype not in LABEL_DTYPES:
            raise WellDataError(
                f"well {name}: label {label!r} has dtype {array.dtype}; labels are integers"
            )
        out[label] = np.expand_dims(array, c_axis)
    return out


# -- planes -> well array ---------------------------------------------------------------


def assemble_planes(
    name: str,
    planes: Iterable[tuple[PlaneKey | Sequence[int], object]],
    names: Sequence[str] | None,
    shape: Sequence[int] | None,
    strict: bool,
) -> tuple[np.ndarray[Any, Any], dict[str, PlaneKey] | None, list[PlaneKey]]:
    """Stack 2D planes by their coordinates into a well array.

    Returns ``(array, file-name map or None, missing plane keys)``.
    """
    keyed: dict[PlaneKey, np.ndarray[Any, Any]] = {}
    labels: dict[PlaneKey, str] = {}
    for i, (coord, plane) in enumerate(planes):
        what = names[i] if names is not None and i < len(names) else f"plane #{i}"
        key = plane_key(coord, f"well {name}: {what}")
        if key in keyed:
            raise WellDataError(
                f"well {name}: {what!r} and {labels[key]!r} both have coordinate "
                f"(field={key.field}, c={key.c}, z={key.z}, t={key.t})"
            )
        keyed[key] = _plane(name, plane, what, keyed, labels)
        labels[key] = what
    if not keyed:
        raise WellDataError(f"well {name}: no planes given")
    if names is not None and len(names) != len(keyed):
        raise WellDataError(f"well {name}: {len(names)} names for {len(keyed)} planes")
    has_time = any(k.t for k in keyed) or (shape is not None and len(shape) == 4)
    axes = WellAxes(has_time)
    first = next(iter(keyed.values()))
    array = np.zeros((*_dims(name, keyed, shape, has_time), *first.shape), dtype=first.dtype)
    for key, plane in keyed.items():
        array[axes.plane_index(key)] = plane
    missing = [k for k in axes.keys(array.shape) if k not in keyed]
    if missing and strict:
        raise WellDataError(
            f"well {name}: {len(missing)} plane(s) missing (strict mode), e.g. "
            f"{[tuple(k) for k in missing[:5]]}"
        )
    return array, (dict(zip(names, keyed, strict=True)) if names is not None else None), missing


def _plane(
    name: str,
    plane: object,
    what: str,
    keyed: Mapping[PlaneKey, np.ndarray[Any, Any]],
    labels: Mapping[PlaneKey, str],
) -> np.ndarray[Any, Any]:
    array = to_host(plane, f"well {name}: {what}")
    if array.ndim != 2:
        raise WellDataError(f"well {name}: {what!r} has shape {array.shape}; planes are 2D")
    for key, first in keyed.items():
        if array.shape != first.shape or array.dtype != first.dtype:
            raise WellDataError(
                f"well {name}: {what!r} is {array.shape} {array.dtype}, but {labels[key]!r} "
                f"is {first.shape} {first.dtype}"
            )
        break
    return array


def _dims(
    name: str, keyed: Mapping[PlaneKey, object], shape: Sequence[int] | None, has_time: bool
) -> tuple[int, ...]:
    needed = [max(getattr(k, a) for k in keyed) + 1 for a in ("field", "c", "z", "t")]
    if shape is None:
        f, c, z, t = needed
    else:
        given = [int(s) for s in shape] + ([1] if len(shape) == 3 else [])
        if len(given) != 4 or any(g < n for g, n in zip(given, needed, strict=True)):
            raise WellDataError(
                f"well {name}: shape {tuple(shape)} (fields, channels, z[, t]) is too small for "
                f"the planes' coordinates, which need at least {tuple(needed[: len(shape)])}"
            )
        f, c, z, t = given
    return (f, t, c, z) if has_time else (f, c, z)


# -- on disk -------------------------------------------------------------------------


def build_well(
    stage: Path,
    payload: WellPayload,
    config: StorageConfig,
    version: str,
    dataset_paths: Sequence[str] | None = None,
) -> None:
    """Write a checked well into the empty directory ``stage``.

    The shards' chunks are encoded on the codec threads while the documents are
    written here; the shard files come last.  (Order inside ``stage`` does not matter
    to readers: the store renames it into place only once it is complete.)
    """
    from zarr.storage import LocalStore

    zstore = LocalStore(stage)
    stacked = config.fields is FieldArrangement.STACKED
    fields: list[slice | int] = [slice(None)] if stacked else list(range(payload.array.shape[0]))
    paths = [str(i) for i in range(len(fields))]
    names_attrs = _openhcs_attrs(payload.plane_names, payload.array.shape)
    pending: list[tuple[Path, EncodedShards]] = []
    acquisition = payload.acquisition or Acquisition()
    try:
        for path, f in zip(paths, fields, strict=True):
            meta = image_meta_for(
                stacked=stacked,
                has_time=payload.axes.has_time,
                shapes=config.level_shapes(payload.array[f].shape, payload.array.nbytes),
                channels=payload.channels,
                pixel_size=payload.pixel_size,
                z_step=payload.z_step,
                name=payload.name if stacked else f"{payload.name} field {path}",
                dataset_paths=dataset_paths,
                time_interval=acquisition.time_interval,
                position=None if stacked else acquisition.field_positions.get(int(path)),
            )
            first_attrs = names_attrs if stacked else None
            _write_levels(
                zstore,
                path,
                payload.array[f],
                meta.multiscale,
                config,
                first_attrs,
                False,
                pending,
                payload.array.nbytes,
            )
            if payload.labels:
                _write_labels(
                    zstore, stage, path, payload, f, meta.multiscale, config, version, pending
                )
            fsio.write_group(
                stage / path, ome_attrs(version, meta.blocks()), config.zarr_format, staged=True
            )
        if payload.projections is not None:
            build_well(stage / PROJECTIONS_PATH, payload.projections, config, version)
        attrs = _well_attrs(paths, names_attrs, config, version)
        attrs[WELLZARR_KEY].update(acquisition.to_block(payload.projections is not None))
        fsio.write_group(stage, attrs, config.zarr_format, staged=True)
        for target, shards in pending:
            shards.write(target)
    finally:  # after a failure, chunks still queued need no encoding any more
        for _, shards in pending:
            shards.cancel()


def build_acquisitions(
    stage: Path,
    parts: Sequence[tuple[int, WellPayload]],
    config: StorageConfig,
    version: str,
    dataset_paths: Sequence[str] | None = None,
) -> None:
    """Write a well holding the images of several acquisitions into the empty ``stage``.

    Each ``(id, payload)`` is laid out as a well of its own would be (one image, or one
    per field); its images are then numbered on after the previous acquisition's and
    listed in the well with their ``acquisition`` id.
    """
    paths: list[str] = []
    ids: list[int] = []
    for index, (ident, payload) in enumerate(parts):
        if payload.projections is not None or payload.plane_names:
            raise WellDataError(
                f"well {payload.name}: projections and file-name maps are stored for wells "
                "of one acquisition only"
            )
        part = stage / f"acquisition{index}"
        part.mkdir()
        build_well(part, payload, config, version, dataset_paths)
        stacked = config.fields is FieldArrangement.STACKED
        for image in ["0"] if stacked else [str(f) for f in range(payload.array.shape[0])]:
            paths.append(str(len(paths)))
            (part / image).rename(stage / paths[-1])
            ids.append(ident)
        fsio.remove_tree(part)
    attrs = _well_attrs(paths, {}, config, version, tuple(ids))
    attrs[WELLZARR_KEY].update(Acquisition().to_block(False))
    fsio.write_group(stage, attrs, config.zarr_format, staged=True)


def _well_attrs(
    paths: list[str],
    names_attrs: dict[str, Any],
    config: StorageConfig,
    version: str,
    acquisitions: tuple[int, ...] = (),
) -> dict[str, Any]:
    from napari_wellzarr import __version__

    attrs = ome_attrs(version, {"well": WellMeta(tuple(paths), acquisitions).to_block()})
    blosc = config.compressor in (Compressor.BLOSC_ZSTD, Compressor.BLOSC_LZ4)
    attrs[WELLZARR_KEY] = {
        "version": __version__,
        "all_chunks_written": True,  # a missing chunk file is damage, not an empty plane
        "blosc_frames": blosc and config.zarr_format == 2,
    }
    if config.fields is not FieldArrangement.STACKED:
        attrs.update(names_attrs)
    return attrs


def _write_labels(
    zstore: Any,
    stage: Path,
    image: str,
    payload: WellPayload,
    f: slice | int,
    multiscale: Multiscale,
    config: StorageConfig,
    version: str,
    pending: list[tuple[Path, EncodedShards]],
) -> None:
    fmt = config.zarr_format
    names = sorted(payload.labels)
    fsio.write_group(
        stage / image / "labels", ome_attrs(version, {"labels": names}), fmt, staged=True
    )
    for label in names:
        label_ms = Multiscale(multiscale.axes, multiscale.datasets, label)
        image_label: dict[str, Any] = {"source": {"image": "../../"}}
        if version != "0.5":
            image_label["version"] = version
        blocks = {"multiscales": [label_ms.to_json()], "image-label": image_label}
        fsio.write_group(
            stage / image / "labels" / label, ome_attrs(version, blocks), fmt, staged=True
        )
        path = f"{image}/labels/{label}"
        label_data = payload.labels[label][f]
        well_bytes = payload.array.nbytes  # the image's levels, whatever the label's dtype
        _write_levels(zstore, path, label_data, label_ms, config, None, True, pending, well_bytes)


def _write_levels(
    zstore: Any,
    path: str,
    image: np.ndarray[Any, Any],
    multiscale: Multiscale,
    config: StorageConfig,
    attrs: dict[str, Any] | None,
    nearest: bool,
    pending: list[tuple[Path, EncodedShards]],
    well_bytes: int,
) -> None:
    """Write an image's levels; sharded levels go to ``pending``, still being encoded.

    ``well_bytes``: the raw bytes of the well's image array, which (with the plate) decide
    its levels (:meth:`StorageConfig.level_factors`), also for its labels.
    """
    level = image
    dims = tuple(a.name for a in multiscale.axes)
    factors = config.level_factors(image.shape[-2:], well_bytes)
    for index, dataset in enumerate(multiscale.datasets):
        step = factors[index] // factors[index - 1] if index else 1
        if index and nearest:
            level = level[..., ::step, ::step]
        elif index:
            # 2x steps keep the 2x2 means plates were always written with (ties to even);
            # larger ones are the viewer's own block means, so both show the same pixels.
            level = downsample(level) if step == 2 else _shrunk(level, step.bit_length() - 1)
        name = f"{path}/{dataset.path}"
        level_attrs = attrs if index == 0 and attrs else None
        key = (level.shape, level.dtype.str, config, dims)
        direct = _sharded_metadata(*key)
        if direct is None:
            _write_zarr_array(zstore, name, level, config, level_attrs, dims)
        else:
            target = zstore.root / name
            indent = _json_indent()
            doc = (
                _array_doc(direct[0], level_attrs, indent)
                if level_attrs
                else _plain_doc(*key, indent)
            )
            pending.append((target, _start_sharded_array(target, level, direct[1], doc)))


def _shrunk(image: np.ndarray[Any, Any], halvings: int) -> np.ndarray[Any, Any]:
    """:func:`shrink` plane by plane: a plane's uint32 sums at a time, not the image's."""
    h, w = image.shape[-2:]
    f = 2**halvings
    out = np.empty((*image.shape[:-2], -(-h // f), -(-w // f)), dtype=image.dtype)
    for index in np.ndindex(*image.shape[:-2]):
        out[index] = shrink(image[index], halvings)
    return out


def _start_sharded_array(
    target: Path, level: np.ndarray[Any, Any], layout: ShardGrid, doc: bytes
) -> EncodedShards:
    """Write a sharded array's document ``doc``; its shards come back still being encoded.

    The shards are written by the core, without zarr's async road (see shards.py: for
    plane-sized chunks it costs more than the codec).
    """
    encoded = layout.encode(level)  # first, so that the codec threads start at once
    target.mkdir(parents=True)
    fsio.write_staged_file(target / "zarr.json", doc)
    return encoded


def _json_indent() -> Any:
    import zarr

    return zarr.config.get("json_indent")


def _array_doc(doc: Mapping[str, Any], attrs: Mapping[str, Any] | None, indent: Any) -> bytes:
    """A sharded array's ``zarr.json``, byte for byte as zarr writes it.

    ``doc`` is the array metadata's ``to_dict()`` (built once per shape by zarr); the
    attributes replace its empty ones in place, and it is dumped as zarr dumps it.
    """
    if attrs:
        doc = {**doc, "attributes": dict(attrs)}  # (the key keeps its place)
    return json.dumps(doc, allow_nan=True, indent=indent).encode()


@functools.lru_cache(maxsize=64)
def _plain_doc(
    shape: tuple[int, ...], dtype: str, config: StorageConfig, dims: tuple[str, ...], indent: Any
) -> bytes:
    """:func:`_array_doc` without attributes (a well's lower levels), once per shape."""
    direct = _sharded_metadata(shape, dtype, config, dims)
    if direct is None:
        raise ValueError(f"{shape} {dtype}: not a sharded array of plane chunks")
    return _array_doc(direct[0], None, indent)


def _write_zarr_array(
    zstore: Any,
    name: str,
    level: np.ndarray[Any, Any],
    config: StorageConfig,
    attrs: dict[str, Any] | None,
    dims: tuple[str, ...],
) -> None:
    import zarr

    chunks, shards = config.chunking(level.shape)
    with _zarr_writes_settle():
        zarr.create_array(
            store=zstore,
            name=name,
            data=level,
            chunks=chunks,
            shards=shards,
            **config.zarr_codecs(),
            fill_value=0,
            # Every chunk is stored, even an all-zero one, so that a missing chunk file
            # always means damage, never "this plane was empty".
            config={"write_empty_chunks": True},
            zarr_format=config.zarr_format,  # type: ignore[arg-type]
            attributes=attrs,
            dimension_names=list(dims) if config.zarr_format == 3 else None,
            chunk_key_encoding=config.chunk_key_encoding(),
        )


@contextlib.contextmanager
def _zarr_writes_settle(timeout: float = 30.0) -> Iterator[None]:
    """On a failure inside zarr, wait for its other writes before the caller cleans up.

    zarr runs an array's writes as concurrent tasks and raises the first failure while
    the others still run: a caller that removes the staging folder at once would see
    them create it again (a leak, on a full disk exactly when space is short).
    """
    try:
        yield
    except BaseException:
        import asyncio

        from zarr.core.sync import sync

        async def others() -> None:
            me = asyncio.current_task()
            pending = [t for t in asyncio.all_tasks() if t is not me]
            if pending:
                await asyncio.wait(pending, timeout=timeout)

        with contextlib.suppress(Exception):
            sync(others())
        raise


@functools.lru_cache(maxsize=64)
def _sharded_metadata(
    shape: tuple[int, ...], dtype: str, config: StorageConfig, dims: tuple[str, ...]
) -> tuple[dict[str, Any], ShardGrid] | None:
    """The zarr metadata of a sharded array (no attributes, as a dict) and its layout.

    None unless ``config`` shards and :class:`ShardGrid` handles the result (zarr
    then writes the array itself).
    """
    chunks, shards = config.chunking(shape)
    if shards is None or config.zarr_format != 3:
        return None
    metadata = sharded_v3_metadata(
        shape, dtype, (chunks, shards), config, dims, key_encoding=config.chunk_key_encoding()
    )
    doc = metadata.to_dict()
    layout = ShardGrid.parse(doc)
    return None if layout is None else (doc, layout)


def sharded_v3_metadata(
    shape: tuple[int, ...],
    dtype: Any,
    chunking: tuple[tuple[int, ...], tuple[int, ...]],
    config: StorageConfig,
    dims: Sequence[str],
    *,
    key_encoding: Any = None,
) -> Any:
    """The zarr v3 metadata of a sharded array: ``chunking`` is (chunks, shards)."""
    import zarr
    from zarr.storage import MemoryStore

    chunks, shards = chunking
    array = zarr.create_array(
        store=MemoryStore(),
        shape=shape,
        dtype=dtype,
        chunks=chunks,
        shards=shards,
        **config.zarr_codecs(),
        fill_value=0,
        zarr_format=3,
        dimension_names=list(dims),
        chunk_key_encoding=key_encoding,
    )
    return array.metadata


def _openhcs_attrs(names: Mapping[str, PlaneKey], shape: tuple[int, ...]) -> dict[str, Any]:
    if not names:
        return {}
    has_time = len(shape) == 6
    dims = {"n_fields": shape[0], "n_channels": shape[-4], "n_z": shape[-3]}
    if has_time:
        dims["n_t"] = shape[1]
    return {
        PLANE_MAP: {n: list(k) if has_time else list(k[:3]) for n, k in names.items()},
        PLANE_PATHS: list(names),
        PLANE_DIMS: dims,
    }


def swap_in(
    root: Path, stage: Path, path: str, name: str, zarr_format: int, overwrite: bool
) -> None:
    """Rename the complete well ``stage`` to ``root/path`` (the caller holds the plate lock).

    Raises :class:`WellExistsError` when the well is there (unless ``overwrite``) or
    another process put it there meanwhile.
    """
    row_dir = root / path.split("/")[0]
    if not fsio.is_group(row_dir, zarr_format):
        fsio.write_group(row_dir, {}, zarr_format)
    final = root / path
    if final.exists():
        complete = fsio.detect_zarr_format(final) is not None
        if complete and not overwrite:
            raise WellExistsError(
                f"well {name} already exists in {root}; pass overwrite=True to replace it"
            )
        fsio.remove_tree(final)
    try:
        os.rename(stage, final)
    except OSError as err:
        if err.errno in (errno.ENOTEMPTY, errno.EEXIST):
            raise WellExistsError(
                f"well {name} was written by another process at the same time; kept that version"
            ) from err
        raise
