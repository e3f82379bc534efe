"""A well's images: how they are laid out on disk and how they map to the well's axes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, NamedTuple

import numpy as np

from napari_wellzarr.errors import MetadataError, WellDataError
from napari_wellzarr.storage.metadata import (
    SPACE_UNIT,
    TIME_UNIT,
    Axis,
    Channel,
    Dataset,
    ImageMeta,
    Multiscale,
)

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = [
    "FIELD_AXIS",
    "ImageAxes",
    "PlaneKey",
    "WellAxes",
    "downsample",
    "image_meta_for",
    "plane_key",
    "shrink",
]

FIELD_AXIS: Final = Axis("field", "field")
_CANONICAL: Final = ("field", "t", "c", "z", "y", "x")
#: dtypes a well may hold (OME-Zarr and napari both handle these).
ALLOWED_DTYPES: Final = frozenset(
    np.dtype(t) for t in ("u1", "u2", "u4", "i1", "i2", "i4", "f4", "f8", "u8", "i8")
)


class PlaneKey(NamedTuple):
    """The coordinate of one 2D plane in a well (0-based)."""

    field: int
    c: int
    z: int
    t: int = 0


@dataclass(frozen=True)
class WellAxes:
    """The axes of a well array: field, optional time, channel, z, y, x."""

    has_time: bool

    @property
    def names(self) -> tuple[str, ...]:
        """Axis names of the well array."""
        return tuple(a for a in _CANONICAL if a != "t" or self.has_time)

    @property
    def ndim(self) -> int:
        """Number of axes of the well array."""
        return 6 if self.has_time else 5

    def plane_index(self, key: PlaneKey) -> tuple[int, ...]:
        """Index of ``key``'s plane in the well array."""
        if self.has_time:
            return (key.field, key.t, key.c, key.z)
        if key.t:
            raise WellDataError(f"plane {tuple(key)} has t={key.t}, but the well has no time axis")
        return (key.field, key.c, key.z)

    def keys(self, shape: Sequence[int]) -> list[PlaneKey]:
        """Every plane key of a well array of ``shape``, in storage order."""
        if self.has_time:
            f, t, c, z = shape[:4]
        else:
            (f, c, z), t = shape[:3], 1
        return [
            PlaneKey(fi, ci, zi, ti)
            for fi in range(f)
            for ti in range(t)
            for ci in range(c)
            for zi in range(z)
        ]


@dataclass(frozen=True)
class ImageAxes:
    """How one image group's axes map onto the well array's axes."""

    path: str
    meta: ImageMeta
    # For each axis of the image, the name of the well axis it holds.
    roles: tuple[str, ...]

    @classmethod
    def parse(cls, path: str, meta: ImageMeta, where: str) -> ImageAxes:
        """Assign each image axis a well-array role or refuse the image."""
        axes = meta.multiscale.axes
        spaces = [i for i, a in enumerate(axes) if _is_space(a)]
        if len(spaces) < 2 or len(spaces) > 3:
            raise MetadataError(f"image {where}: {len(spaces)} space axes; 2 or 3 expected")
        roles: list[str] = [""] * len(axes)
        for i, role in zip(spaces[::-1], ("x", "y", "z"), strict=False):
            roles[i] = role
        for i, axis in enumerate(axes):
            if roles[i]:
                continue
            kind = (axis.type or "").lower()
            if kind == "time" or axis.name == "t":
                roles[i] = "t"
            elif kind == "channel" or axis.name == "c":
                roles[i] = "c"
            elif axis.name == "field" or kind == "field":
                roles[i] = "field"
            else:
                raise MetadataError(
                    f"image {where}: axis {axis.name!r} of type {axis.type!r} is not "
                    "field, time, channel or space"
                )
        if len(set(roles)) != len(roles):
            raise MetadataError(f"image {where}: axes {[a.name for a in axes]} repeat a role")
        return cls(path, meta, tuple(roles))

    @property
    def stacked(self) -> bool:
        """Whether this one image holds every field of its well."""
        return "field" in self.roles

    @property
    def has_time(self) -> bool:
        """Whether the image has a time axis."""
        return "t" in self.roles

    def well_shape(self, image_shape: Sequence[int], n_fields: int) -> tuple[int, ...]:
        """The well array shape that images of ``image_shape`` make up."""
        sizes = dict(zip(self.roles, image_shape, strict=True))
        sizes.setdefault("field", n_fields)
        return tuple(sizes.get(a, 1) for a in WellAxes(self.has_time).names)

    def to_well(self, block: np.ndarray[Any, Any], *, with_field: bool) -> np.ndarray[Any, Any]:
        """Reorder an image block (all axes kept) into well-axis order."""
        order = [a for a in WellAxes(self.has_time).names if with_field or a != "field"]
        present = [a for a in order if a in self.roles]
        block = np.moveaxis(block, [self.roles.index(a) for a in present], range(len(present)))
        for i, axis in enumerate(order):
            if axis not in self.roles:
                block = np.expand_dims(block, i)
        return block

    def from_well(self, block: np.ndarray[Any, Any], *, with_field: bool) -> np.ndarray[Any, Any]:
        """Undo :meth:`to_well`: a block in well-axis order back in this image's axis order.

        The well axes the image does not have must be of size 1.
        """
        order = [a for a in WellAxes(self.has_time).names if with_field or a != "field"]
        if block.ndim != len(order):
            raise WellDataError(f"image {self.path}: a block of {block.ndim} axes, not {order}")
        missing = [i for i, a in enumerate(order) if a not in self.roles]
        if any(block.shape[i] != 1 for i in missing):
            raise WellDataError(
                f"image {self.path}: the block {block.shape} ({order}) has data on axes "
                f"the image {self.roles} does not have"
            )
        block = np.squeeze(block, axis=tuple(missing)) if missing else block
        present = [a for a in order if a in self.roles]
        return np.moveaxis(block, range(len(present)), [self.roles.index(a) for a in present])

    def selection(self, key: PlaneKey, *, field_in_image: bool) -> tuple[int | slice, ...]:
        """The image index of ``key``'s plane (y and x whole)."""
        values = {"field": key.field, "t": key.t, "c": key.c, "z": key.z}
        index: list[int | slice] = []
        for role in self.roles:
            if role in ("y", "x"):
                index.append(slice(None))
            elif role == "field" and not field_in_image:
                raise AssertionError("field axis in a per-field image")
            else:
                index.append(values[role])
        for role, value in values.items():
            if role not in self.roles and value != 0 and (role != "field" or field_in_image):
                raise WellDataError(f"plane {tuple(key)}: the image has no {role!r} axis")
        return tuple(index)


def _is_space(axis: Axis) -> bool:
    return (axis.type or "").lower() == "space" or (axis.type is None and axis.name in "zyx")


def image_meta_for(
    *,
    stacked: bool,
    has_time: bool,
    shapes: Sequence[tuple[int, ...]],
    channels: Sequence[Channel],
    pixel_size: tuple[float, float] | None,
    z_step: float | None,
    name: str,
    dataset_paths: Sequence[str] | None = None,
    time_interval: float | None = None,
    position: tuple[float, float] | None = None,
) -> ImageMeta:
    """Build an image's metadata; ``shapes`` are the resolution levels' array shapes.

    ``dataset_paths`` names the levels (default ``0``, ``1``, ...; ome-zarr-py writes
    ``s0``, ``s1``, ...).  ``time_interval`` (seconds) is the ``t`` scale; ``position``
    ``(y, x)`` in micrometres becomes each level's ``translation`` (with a pixel size).
    """
    unit = SPACE_UNIT if pixel_size is not None or z_step is not None else None
    axes: list[Axis] = [FIELD_AXIS] if stacked else []
    if has_time:
        axes.append(Axis("t", "time", TIME_UNIT if time_interval is not None else None))
    axes += [Axis("c", "channel"), Axis("z", "space", unit), Axis("y", "space", unit)]
    axes.append(Axis("x", "space", unit))
    py, px = pixel_size if pixel_size is not None else (1.0, 1.0)
    base_y, base_x = shapes[0][-2:]
    datasets = []
    for level, shape in enumerate(shapes):
        fy, fx = base_y / shape[-2], base_x / shape[-1]
        lead = (1.0,) * (len(axes) - 3)
        if has_time and time_interval is not None:
            lead = (*lead[:-2], float(time_interval), 1.0)  # (t, c)
        path = dataset_paths[level] if dataset_paths else str(level)
        shift = None
        if position is not None and pixel_size is not None:
            shift = (*(0.0,) * (len(axes) - 2), float(position[0]), float(position[1]))
        datasets.append(Dataset(path, (*lead, z_step or 1.0, py * fy, px * fx), shift))
    return ImageMeta(Multiscale(tuple(axes), tuple(datasets), name), tuple(channels))


def shrink(data: np.ndarray[Any, Any], halvings: int) -> np.ndarray[Any, Any]:
    """Average the last two axes of ``data`` down by ``2**halvings`` (block means).

    Blocks at the far edges are completed by repeating the edge pixels, so y and x
    become ``ceil(size / 2**halvings)``; integers are rounded half up back to the
    dtype.  Stored levels of factor 4 or 8 and the viewer's computed ones both come
    from here, so they are the same pixels.
    """
    if halvings <= 0:
        return data
    f = 2**halvings
    h, w = data.shape[-2:]
    hh, ww = -(-h // f), -(-w // f)
    if (hh * f, ww * f) != (h, w):
        pad = [(0, 0)] * (data.ndim - 2) + [(0, hh * f - h), (0, ww * f - w)]
        data = np.pad(data, pad, mode="edge")
    # Exact in uint32 for 8/16-bit pixels (at most 2**16 of them summed per block).
    if data.dtype.kind == "u" and data.dtype.itemsize <= 2 and halvings <= 8:
        return _block_means_exact(data, f)
    # Pairwise sums of strided views: several times faster than a reduction over blocks;
    # the first one widens to the sum's dtype (no separate copy of the data).
    total: np.ndarray[Any, np.dtype[Any]] = np.add(
        data[..., 0::2, :], data[..., 1::2, :], dtype=np.float64
    )
    total = np.add(total[..., 0::2], total[..., 1::2])
    for _ in range(halvings - 1):
        total = np.add(total[..., 0::2, :], total[..., 1::2, :])
        total = np.add(total[..., 0::2], total[..., 1::2])
    n = f * f
    out: np.ndarray[Any, Any]
    if data.dtype.kind in "iu":
        out = np.floor(total / n + 0.5).astype(data.dtype)
    else:
        out = (total / n).astype(data.dtype)
    return out


def _block_means_exact(data: np.ndarray[Any, Any], f: int) -> np.ndarray[Any, Any]:
    """:func:`shrink` of 8/16-bit unsigned pixels (padded): integer sums, rounded half up.

    The ``f`` rows of each block are added into one uint32 buffer (contiguous rows, the
    first sum widening the data), then columns in pairs: fewer passes and buffers than
    pairwise steps on both axes, and a shift for the division.
    """
    rows = np.add(data[..., 0::f, :], data[..., 1::f, :], dtype=np.uint32)
    for i in range(2, f):
        np.add(rows, data[..., i::f, :], out=rows)
    total = rows
    while total.shape[-1] > rows.shape[-1] // f:
        total = np.add(total[..., 0::2], total[..., 1::2])
    total += f * f // 2
    total >>= 2 * (f.bit_length() - 1)  # // (f * f), a power of two
    out: np.ndarray[Any, Any] = total.astype(data.dtype)
    return out


def downsample(data: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    """Halve the last two axes by 2x2 averaging (edge pixels repeated for odd sizes).

    Integer data is rounded back to its dtype, so overviews keep the source's range.
    """
    y, x = data.shape[-2:]
    pad = [(0, 0)] * (data.ndim - 2) + [(0, y % 2), (0, x % 2)]
    if y % 2 or x % 2:
        data = np.pad(data, pad, mode="edge")
    blocks = data.reshape(*data.shape[:-2], data.shape[-2] // 2, 2, data.shape[-1] // 2, 2)
    mean = blocks.mean(axis=(-3, -1), dtype=np.float64)
    if np.issubdtype(data.dtype, np.integer):
        mean = np.rint(mean)
    out: np.ndarray[Any, Any] = mean.astype(data.dtype)
    return out


def plane_key(coord: object, what: str) -> PlaneKey:
    """Turn ``(field, c, z[, t])`` into a :class:`PlaneKey`, refusing anything else."""
    if isinstance(coord, PlaneKey):
        values: tuple[Any, ...] = tuple(coord)
    elif isinstance(coord, list | tuple) and len(coord) in (3, 4):
        values = tuple(coord)
    else:
        raise WellDataError(f"{what}: coordinate {coord!r} is not (field, c, z[, t])")
    if not all(
        isinstance(v, int | np.integer) and not isinstance(v, bool) and v >= 0 for v in values
    ):
        raise WellDataError(f"{what}: coordinate {coord!r} must hold integers >= 0")
    return PlaneKey(*(int(v) for v in values))
