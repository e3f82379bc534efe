"""Regenerate the iohub-written HCS plate fixtures in ``tests/data``.

Run it in a separate venv (NOT the project venv; iohub 0.3.0a7 is the newest release
that installs on Python 3.11)::

    python3.11 -m venv .venv-iohub
    .venv-iohub/bin/pip install iohub==0.3.0a7
    .venv-iohub/bin/python tests/data/make_iohub_fixture.py

It writes ``iohub_plate_v04`` (OME-NGFF 0.4, zarr v2) and ``iohub_plate_v05`` (0.5,
zarr v3): a sparse 2 x 3 plate with wells A/1, A/3 and B/2, each with two fields (iohub
"positions" ``0`` and ``1``) of (t=2, c=2, z=2, y=16, x=24) uint16, channels "DAPI" and
"GFP", pixel size 0.5 um (y, x) and z step 2 um.  Pixel values encode their coordinates::

    value = 1 + 1000 * ((((well * 2 + field) * 2 + t) * 2 + c) * 2 + z) + 24 * y + x

with well = 0, 1, 2 for A1, A3, B2.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
WELLS = (("A", "1"), ("A", "3"), ("B", "2"))
SHAPE = (2, 2, 2, 16, 24)  # t, c, z, y, x


def pixels(well: int, field: int) -> np.ndarray:
    t, c, z, y, x = np.indices(SHAPE)
    base = (((well * 2 + field) * 2 + t) * 2 + c) * 2 + z
    return (1 + 1000 * base + 24 * y + x).astype(np.uint16)


def main() -> None:
    from iohub.ngff import open_ome_zarr
    from iohub.ngff.models import TransformationMeta

    for version in ("0.4", "0.5"):
        out = HERE / f"iohub_plate_v0{version[-1]}"
        shutil.rmtree(out, ignore_errors=True)
        with open_ome_zarr(
            out,
            layout="hcs",
            mode="w-",
            channel_names=["DAPI", "GFP"],
            version=version,
            disable_path_checking=True,
        ) as plate:
            for w, (row, col) in enumerate(WELLS):
                for field in range(2):
                    pos = plate.create_position(row, col, str(field))
                    pos.create_image(
                        "0",
                        pixels(w, field),
                        transform=[TransformationMeta(type="scale", scale=[1, 1, 2.0, 0.5, 0.5])],
                    )
        print(f"wrote {out}")


if __name__ == "__main__":
    main()
