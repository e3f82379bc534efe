"""Regenerate the OpenHCS / polystore Zarr plate fixtures in ``tests/data``.

Run it in the separate polystore venv (NOT the project venv)::

    python3.11 -m venv .venv-polystore
    .venv-polystore/bin/pip install polystore==0.6.3
    .venv-polystore/bin/python tests/data/make_openhcs_fixture.py

It writes two small sparse plates (wells A01, A03, B01 of a 2 x 3 layout; column 02 is empty), each
2 fields x 2 channels x 2 z of 32 x 48 uint16 planes with ImageXpress-style file names:

``openhcs_plate/images/``
    Written by the real ``polystore.zarr.ZarrStorageBackend`` (default config) through
    ``save_batch``.  polystore 0.6.3 takes a ``ZarrBatchLayout`` instead of the old
    ``n_fields / n_channels / n_z`` keywords; we declare the field as the HCS image axis, as
    polystore's own tests do, so each field becomes its own image group ``<row>/<col>/<f>/0``
    holding a (c, z, y, x) array.
``openhcs_seed_plate/images/``
    A reproduction (with zarr-python 3 writing zarr v2 + ome-zarr-py) of the layout the seed
    OpenHCS backend (``openhcs/io/zarr.py``) writes: one (field, c, z, y, x) array per well at
    ``<row>/<col>/0/0`` with ``openhcs_filename_map`` / ``openhcs_output_paths`` /
    ``openhcs_dimensions`` attributes, root ``ome.version`` 0.4 and well ``ome.version`` 0.5.
    polystore 0.6.3 can no longer write that layout, so this one is a reproduction.

Each directory gets an ``expected.json`` with, per file name, its (field, channel, z), where the
plane lives, the pixel at (0, 0), the sum of the plane and its min/max.

Pixel values encode their coordinates exactly::

    value[y, x] = 10000 + 1000 * field + 100 * c + 10 * z + well_index + 1024 * (y // 4) + 16 * x

with 0-based field, c, z and well_index (A01=0, A03=1, B01=2): ``value[0, 0] - 10000`` decodes
to the plane's coordinates, no pixel equals the fill value 0, and every pixel can be checked
exactly (runs of 4 equal rows keep the chunks compressible, so the fixture stays small; the x and
y ramps still expose flips and transposes).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import shutil
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
# Sparse: column 02 holds no data, so writers that list only occupied columns drop it.
WELLS: tuple[tuple[str, str], ...] = (("A", "01"), ("A", "03"), ("B", "01"))
PHYSICAL_ROWS = ("A", "B")
PHYSICAL_COLUMNS = ("01", "02", "03")
N_FIELDS = 2
N_CHANNELS = 2
N_Z = 2
HEIGHT = 32
WIDTH = 48
PIXEL_FORMULA = (
    "10000 + 1000*field + 100*c + 10*z + well_index + 1024*(y // 4) + 16*x (0-based indices)"
)


def plane_pixels(field: int, c: int, z: int, well_index: int) -> np.ndarray:
    """Return the exact uint16 plane for one coordinate (see module docstring)."""
    yy = np.arange(HEIGHT, dtype=np.int64)[:, None]
    xx = np.arange(WIDTH, dtype=np.int64)[None, :]
    value = 10000 + 1000 * field + 100 * c + 10 * z + well_index + 1024 * (yy // 4) + 16 * xx
    assert int(value.max()) < 2**16
    return value.astype(np.uint16)


def file_name(row: str, col: str, field: int, c: int, z: int) -> str:
    """ImageXpress-style name: well, site (field), wavelength (channel), z; 1-based."""
    return f"{row}{col}_s{field + 1}_w{c + 1}_z{z + 1:03d}.tif"


def well_items(row: str, col: str, well_index: int) -> list[tuple[str, int, int, int, np.ndarray]]:
    """Planes of one well in the order the seed derives coordinates from (field, c, z)."""
    return [
        (file_name(row, col, f, c, z), f, c, z, plane_pixels(f, c, z, well_index))
        for f in range(N_FIELDS)
        for c in range(N_CHANNELS)
        for z in range(N_Z)
    ]


def plane_record(
    name: str, f: int, c: int, z: int, plane: np.ndarray, **where: Any
) -> dict[str, Any]:
    return {
        "field": f,
        "channel": c,
        "z": z,
        **where,
        "pixel_0_0": int(plane[0, 0]),
        "sum": int(plane.sum(dtype=np.int64)),
        "min": int(plane.min()),
        "max": int(plane.max()),
        "sha256": hashlib.sha256(np.ascontiguousarray(plane).tobytes()).hexdigest(),
    }


def reset(directory: Path) -> Path:
    if directory.exists():
        shutil.rmtree(directory)
    directory.mkdir(parents=True)
    return directory


def versions() -> dict[str, str]:
    out = {"python": sys.version.split()[0]}
    for dist in ("polystore", "zarr", "ome-zarr", "numcodecs", "numpy"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = "not installed"
    return out


def make_polystore_plate(plate_dir: Path) -> None:
    """Write ``plate_dir/images`` with polystore's ZarrStorageBackend (default config)."""
    reset(plate_dir)
    # Work relative to the plate directory: polystore stores the output paths it is given
    # verbatim in the array attributes, and absolute paths would leak this machine's layout.
    with contextlib.chdir(plate_dir):
        files = _write_with_polystore(Path("images"))
    write_expected(
        plate_dir,
        {
            "writer": "polystore.zarr.ZarrStorageBackend() default config, save_batch",
            "layout": "field = HCS image group; array <row>/<col>/<field>/0 has axes (c, z, y, x)",
            "store": "images",
        },
        files,
    )


def _write_with_polystore(images: Path) -> dict[str, dict[str, Any]]:
    from polystore.zarr import ZarrStorageBackend
    from polystore.zarr_batch import ZarrBatchAxis, ZarrBatchAxisRole, ZarrBatchLayout

    backend = ZarrStorageBackend()  # default ZarrConfig: zlib level 3, WELL chunks
    layout = ZarrBatchLayout(
        axes=(
            ZarrBatchAxis(
                "field",
                tuple(str(f + 1) for f in range(N_FIELDS)),
                ZarrBatchAxisRole.HCS_IMAGE,
            ),
            ZarrBatchAxis("c", tuple(str(c + 1) for c in range(N_CHANNELS))),
            ZarrBatchAxis("z", tuple(str(z + 1) for z in range(N_Z))),
        ),
        item_coordinates=tuple(
            (f, c, z) for f in range(N_FIELDS) for c in range(N_CHANNELS) for z in range(N_Z)
        ),
    )
    files: dict[str, dict[str, Any]] = {}
    for well_index, (row, col) in enumerate(WELLS):
        items = well_items(row, col, well_index)
        backend.save_batch(
            [plane for *_, plane in items],
            [images / name for name, *_ in items],
            chunk_name=f"{row}{col}",
            batch_layout=layout,
            row=row,
            col=col,
        )
        for name, f, c, z, plane in items:
            files[name] = plane_record(
                name,
                f,
                c,
                z,
                plane,
                well=f"{row}{col}",
                array=f"{row}/{col}/{f}/0",
                index=[c, z],
            )

    # Round trip through polystore itself, so the fixture is known to be readable by it.
    names = sorted(files)
    loaded = backend.load_batch([images / name for name in names])
    for name, plane in zip(names, loaded, strict=True):
        rec = files[name]
        expected = plane_pixels(rec["field"], rec["channel"], rec["z"], _well_index(rec["well"]))
        np.testing.assert_array_equal(plane, expected)
    listed = sorted(p.name for p in backend.list_files(images, extensions={".tif"}))
    assert listed == names, listed
    return files


def make_seed_plate(plate_dir: Path) -> None:
    """Reproduce the seed backend's on-disk layout (zarr v2, '/' chunk keys)."""
    import numcodecs
    import zarr
    from ome_zarr.format import FormatV04
    from ome_zarr.writer import write_multiscales_metadata, write_plate_metadata

    images = reset(plate_dir) / "images"
    fmt = FormatV04()
    root = zarr.open_group(zarr.storage.LocalStore(images), mode="a", zarr_format=2)
    root.attrs["ome"] = {"version": "0.4"}  # seed: set before the plate metadata
    files: dict[str, dict[str, Any]] = {}
    for well_index, (row, col) in enumerate(WELLS):
        # Seed: plate metadata lists only rows/cols holding data, sorted as strings.
        present = sorted(f"{r}/{c}" for r, c in WELLS[: well_index + 1])
        seen_rows = sorted({p.split("/")[0] for p in present})
        seen_cols = sorted({p.split("/")[1] for p in present})
        write_plate_metadata(
            root,
            seen_rows,
            seen_cols,
            [
                {
                    "path": p,
                    "rowIndex": seen_rows.index(p.split("/")[0]),
                    "columnIndex": seen_cols.index(p.split("/")[1]),
                }
                for p in present
            ],
            acquisitions=[{"id": 0, "name": "default_acquisition", "maximumfieldcount": 1}],
            field_count=1,
            name="OpenHCS_Plate",
            fmt=fmt,
        )
        row_group = root.require_group(row)
        well_group = row_group.create_group(col)
        # Seed writes its own 0.5 "ome" block, then ome-zarr's 0.4 "well" block beside it.
        well_group.attrs["ome"] = {
            "version": "0.5",
            "well": {"images": [{"path": "0", "acquisition": 0}], "version": "0.5"},
        }
        well_group.attrs["well"] = {"images": [{"path": "0"}], "version": "0.4"}
        field_group = well_group.create_group("0")
        items = well_items(row, col, well_index)
        stacked = np.stack([plane for *_, plane in items]).reshape(
            N_FIELDS, N_CHANNELS, N_Z, HEIGHT, WIDTH
        )
        arr = field_group.create_array(
            "0",
            shape=stacked.shape,
            dtype=stacked.dtype,
            chunks=stacked.shape,  # seed default: ZarrChunkStrategy.WELL
            compressors=numcodecs.Zlib(level=3),  # seed default: zlib level 3
            chunk_key_encoding={"name": "v2", "separator": "/"},
        )
        arr[:] = stacked
        axes = [
            {"name": "field", "type": "field"},
            {"name": "c", "type": "channel"},
            {"name": "z", "type": "space"},
            {"name": "y", "type": "space"},
            {"name": "x", "type": "space"},
        ]
        write_multiscales_metadata(
            field_group,
            datasets=[
                {
                    "path": "0",
                    "coordinateTransformations": [{"type": "scale", "scale": [1.0] * 5}],
                }
            ],
            fmt=fmt,
            axes=axes,
        )
        filename_map = {}
        for i, (name, f, c, z, plane) in enumerate(items):
            # Seed derives the coordinates from list position, which matches here by design.
            assert (f, c, z) == (i // (N_CHANNELS * N_Z), (i % (N_CHANNELS * N_Z)) // N_Z, i % N_Z)
            filename_map[name] = [f, c, z]
            files[name] = plane_record(
                name, f, c, z, plane, well=f"{row}{col}", array=f"{row}/{col}/0/0", index=[f, c, z]
            )
        arr.attrs["openhcs_filename_map"] = filename_map
        arr.attrs["openhcs_output_paths"] = [str(Path("images") / n) for n, *_ in items]
        arr.attrs["openhcs_dimensions"] = {
            "n_fields": N_FIELDS,
            "n_channels": N_CHANNELS,
            "n_z": N_Z,
        }
    write_expected(
        plate_dir,
        {
            "writer": "reproduction of the seed openhcs/io/zarr.py layout "
            "(zarr-python 3 writing zarr v2 + ome-zarr-py FormatV04 metadata)",
            "layout": "one array per well <row>/<col>/0/0 with axes (field, c, z, y, x)",
            "store": "images",
        },
        files,
    )


def _well_index(well: str) -> int:
    return [f"{r}{c}" for r, c in WELLS].index(well)


def write_expected(plate_dir: Path, info: dict[str, str], files: dict[str, dict[str, Any]]) -> None:
    doc = {
        **info,
        "versions": versions(),
        "wells": [f"{r}{c}" for r, c in WELLS],
        "physical_rows": list(PHYSICAL_ROWS),
        "physical_columns": list(PHYSICAL_COLUMNS),
        "missing_wells": [
            f"{r}{c}" for r in PHYSICAL_ROWS for c in PHYSICAL_COLUMNS if (r, c) not in WELLS
        ],
        "well_index": {f"{r}{c}": i for i, (r, c) in enumerate(WELLS)},
        "n_fields": N_FIELDS,
        "n_channels": N_CHANNELS,
        "n_z": N_Z,
        "plane_shape": [HEIGHT, WIDTH],
        "dtype": "uint16",
        "pixel_formula": PIXEL_FORMULA,
        "files": dict(sorted(files.items())),
    }
    (plate_dir / "expected.json").write_text(json.dumps(doc, indent=1) + "\n")


def main() -> None:
    logging.basicConfig(level=logging.WARNING)
    make_polystore_plate(HERE / "openhcs_plate")
    make_seed_plate(HERE / "openhcs_seed_plate")
    # polystore 0.6.3 leaves its plate-metadata lock file (``images.metadata.lock``) beside
    # the store; it is not part of the plate.
    for lock in HERE.glob("*/*.metadata.lock"):
        lock.unlink()


if __name__ == "__main__":
    main()
