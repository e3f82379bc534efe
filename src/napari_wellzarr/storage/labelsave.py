"""Saving a label image into a well of an existing plate: staged, then swapped in whole."""

from __future__ import annotations

import contextlib
import shutil
from typing import TYPE_CHECKING, Any, Final

import numpy as np

from napari_wellzarr.errors import MetadataError, WellDataError
from napari_wellzarr.storage import fsio
from napari_wellzarr.storage.axes import ImageAxes
from napari_wellzarr.storage.metadata import (
    Dataset,
    Multiscale,
    find_block,
    ome_attrs,
    parse_image,
)
from napari_wellzarr.storage.reading import open_well

if TYPE_CHECKING:
    from collections.abc import Iterable
    from pathlib import Path

__all__ = ["recover_saves", "save_labels"]

#: The metadata documents of a zarr group or array (never its chunks).
_DOCS: Final = ("zarr.json", ".zgroup", ".zarray", ".zattrs")


def save_labels(
    root: Path,
    well_path: str,
    well_name: str,
    zarr_format: int,
    name: str,
    stack: np.ndarray[Any, Any],
    *,
    acquisition: int | None = None,
) -> None:
    """Write label image ``name`` of one well: ``stack`` is ``(field, [t,] z, y, x)``.

    An existing label image keeps its array documents (shapes, chunks, codecs); only
    its pixels change, its lower levels resampled by nearest neighbour.  A new one
    gets the levels of its image.  Each image's label group is built in the plate's
    staging directory and swapped in at once, so a reader (or a killed save) sees the
    old labels or the new ones, never a mix; the image data is not touched.

    Raises
    ------
    WellDataError
        When ``stack`` does not have the well's shape or is not of integers.
    """
    if not name.replace("_", "").isalnum():
        raise WellDataError(f"well {well_name}: {name!r} is no label name (letters, digits, _)")
    if stack.dtype.kind not in "iub":
        raise WellDataError(f"well {well_name}: label {name!r} has dtype {stack.dtype}")
    well = open_well(root, well_path, well_name, zarr_format, acquisition)
    info = well.info
    expected = tuple(s for a, s in zip(info.axes, info.shape, strict=True) if a != "c")
    if stack.shape != expected:
        raise WellDataError(
            f"well {well_name}: label {name!r} is {stack.shape}, the well's planes make "
            f"{expected} ({[a for a in info.axes if a != 'c']})"
        )
    block = np.expand_dims(stack, info.axes.index("c"))
    for f, image in enumerate(well.images):
        part = block if info.stacked else block[f]
        image_dir = root / well_path / image.path
        _save_image_labels(root, image_dir, image, name, part, zarr_format, f"{well_name} {f}")


def recover_saves(root: Path, names: Iterable[str]) -> list[Path]:
    """Finish the saves of labels ``names`` killed between their two renames; return them.

    Where the file system has no atomic exchange, a save renames the old label group
    aside before renaming the new one in (:func:`fsio.replace_dir`): each aside copy
    left in the plate's wells is put back, or removed when the new group is in place.
    """
    done = []
    for name in sorted(set(names)):
        pattern = f"*/*/*/labels/{fsio.aside_of(root / name).name}"
        for aside in sorted(root.glob(pattern)):
            if fsio.recover_aside(aside.parent / name):
                done.append(aside.parent / name)
    return done


def _save_image_labels(
    root: Path,
    image_dir: Path,
    image: ImageAxes,
    name: str,
    block: np.ndarray[Any, Any],
    zarr_format: int,
    where: str,
) -> None:
    target = image_dir / "labels" / name
    stage = fsio.staging_dir(root, f"labels-{name}")
    staged = stage / name
    try:
        fsio.recover_aside(target)  # a save killed between its two renames
        if fsio.detect_zarr_format(target) is not None:
            _restage(target, staged, block, zarr_format, where)
        else:
            _stage_new(image, staged, block, zarr_format, where)
        fsio.replace_dir(staged, target)
        _list_label(image_dir / "labels", name, zarr_format, image)
    finally:
        fsio.remove_tree(stage)
        with contextlib.suppress(OSError):
            stage.parent.rmdir()  # the plate's staging folder, when nothing else is staged


def _copy_docs(source: Path, dest: Path) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    for doc in _DOCS:
        if (source / doc).is_file():
            shutil.copyfile(source / doc, dest / doc)


def _restage(
    target: Path, staged: Path, block: np.ndarray[Any, Any], zarr_format: int, where: str
) -> None:
    """Stage ``target``'s documents with ``block``'s pixels at every level."""
    import zarr
    from zarr.storage import LocalStore

    meta, _ = parse_image(fsio.read_attrs(target, zarr_format), f"{where} labels")
    label = ImageAxes.parse(target.name, meta, f"{where} labels")
    level0 = label.from_well(block, with_field=label.stacked)
    _copy_docs(target, staged)
    store = LocalStore(staged)
    for dataset in meta.multiscale.datasets:
        _copy_docs(target / dataset.path, staged / dataset.path)
        array = zarr.open_array(
            store=store,
            path=dataset.path,
            mode="r+",
            zarr_format=zarr_format,  # type: ignore[arg-type]
            config={"write_empty_chunks": True},
        )
        array[...] = _resample(level0, tuple(array.shape), label.roles, where).astype(array.dtype)


def _resample(
    data: np.ndarray[Any, Any], shape: tuple[int, ...], roles: tuple[str, ...], where: str
) -> np.ndarray[Any, Any]:
    """``data`` at ``shape`` by nearest neighbour in y and x (other axes must match)."""
    if len(shape) != data.ndim or any(
        n != m for n, m, r in zip(shape, data.shape, roles, strict=True) if r not in ("y", "x")
    ):
        raise MetadataError(f"{where}: a label level of shape {shape} for labels {data.shape}")
    out = data
    for axis, role in enumerate(roles):
        if role in ("y", "x") and shape[axis] != data.shape[axis]:
            picks = (np.arange(shape[axis]) * data.shape[axis]) // shape[axis]
            out = np.take(out, picks, axis=axis)
    return out


def _stage_new(
    image: ImageAxes, staged: Path, block: np.ndarray[Any, Any], zarr_format: int, where: str
) -> None:
    """Stage a new label image with the levels (and scales) of ``image``, no channel axis."""
    import zarr
    from zarr.storage import LocalStore

    keep = [i for i, r in enumerate(image.roles) if r != "c"]
    source = image.meta.multiscale
    multiscale = Multiscale(
        tuple(source.axes[i] for i in keep),
        tuple(
            Dataset(
                d.path,
                tuple(d.scale[i] for i in keep) if len(d.scale) == len(image.roles) else d.scale,
            )
            for d in source.datasets
        ),
        staged.name,
    )
    roles = tuple(image.roles[i] for i in keep)
    label = ImageAxes(staged.name, image.meta, roles)
    level0 = label.from_well(block, with_field=image.stacked)
    version = "0.5" if zarr_format == 3 else "0.4"
    image_label: dict[str, Any] = {"source": {"image": "../../"}}
    if version != "0.5":
        image_label["version"] = version
    blocks = {"multiscales": [multiscale.to_json()], "image-label": image_label}
    fsio.write_group(staged, ome_attrs(version, blocks), zarr_format)
    store = LocalStore(staged)
    shape = level0.shape
    for dataset in source.datasets:
        level = _resample(level0, shape, roles, where)
        chunks = tuple(s if r in ("y", "x") else 1 for s, r in zip(shape, roles, strict=True))
        extra: dict[str, Any] = {"dimension_names": [a.name for a in multiscale.axes]}
        if zarr_format == 2:
            extra = {"chunk_key_encoding": {"name": "v2", "separator": "/"}}
        array = zarr.create_array(
            store=store,
            name=dataset.path,
            shape=shape,
            chunks=chunks,
            dtype=level0.dtype,
            fill_value=0,
            zarr_format=zarr_format,  # type: ignore[arg-type]
            config={"write_empty_chunks": True},
            **extra,
        )
        array[...] = level
        shape = tuple(
            -(-s // 2) if r in ("y", "x") else s for s, r in zip(shape, roles, strict=True)
        )


def _list_label(labels_dir: Path, name: str, zarr_format: int, image: ImageAxes) -> None:
    """Add ``name`` to the ``labels`` group's list (creating the group) unless listed."""
    try:
        attrs = fsio.read_attrs(labels_dir, zarr_format)
    except FileNotFoundError:
        attrs = {}
    block, _ = find_block(attrs, "labels")
    names = list(block) if isinstance(block, list) else []
    if name in names:
        return
    version = "0.5" if zarr_format == 3 else "0.4"
    fsio.write_group(labels_dir, ome_attrs(version, {"labels": [*names, name]}), zarr_format)
