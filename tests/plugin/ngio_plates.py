"""Plates written by ngio (Fractal's library) at test time, with pixels that name themselves.

``multiplexed_plate``: wells B03, B04, C03; in each, acquisition 0 ("round1", image
``0``: channels EdU and DAPI, uint16, 64 x 96, two levels, labels ``nuclei`` uint32 and a
``well_ROI_table``) and acquisition 1 ("round2", image ``1``: channel GFP, uint8,
48 x 80).  Each well holds one (stitched) image per acquisition, as Fractal writes it.
A plate-level ``condition_table`` names each well's drug.

ngio is imported only in a child process: importing it before ome-zarr-models makes the
latter reject valid 0.4 plates in the same process (its pydantic-zarr models no longer
accept their own ``ArraySpec``), which would break the validator tests that run later.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any, Final

import numpy as np

WELLS: Final = (("B", "03"), ("B", "04"), ("C", "03"))
ROUND1: Final = (2, 64, 96)  # c, y, x
ROUND2: Final = (1, 48, 80)
CONDITIONS: Final = {"B03": "DMSO", "B04": "taxol", "C03": "DMSO"}


def round1(well: int) -> np.ndarray:
    c, y, x = np.indices(ROUND1)
    return ((well * 2 + c) * 7000 + y * 96 + x + 1).astype(np.uint16)


def round2(well: int) -> np.ndarray:
    _, y, x = np.indices(ROUND2)
    return ((y + 2 * x + 10 * well) % 251 + 1).astype(np.uint8)


def nuclei(well: int) -> np.ndarray:
    y, x = np.indices(ROUND1[1:])
    return ((y // 8) * 12 + x // 8 + 1 + 100 * well).astype(np.uint32)


def _in_child(job: dict[str, Any]) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    subprocess.run(
        [sys.executable, "-W", "ignore", "-m", "tests.plugin.ngio_plates", json.dumps(job)],
        check=True,
        env=env,
        cwd=Path(__file__).resolve().parents[2],
        timeout=300,
    )


def multiplexed_plate(
    root: Path,
    version: str = "0.4",
    *,
    labelled: tuple[int, ...] = (0, 1, 2),
    round2_wells: tuple[int, ...] = (0, 1, 2),
) -> Path:
    """Write the multiplexed plate at ``root`` with ngio (in a child process); return ``root``.

    ``labelled``: the wells (by index) whose round-1 image has labels;
    ``round2_wells``: the wells imaged in round 2.
    """
    job = {"op": "plate", "root": str(root), "version": version,
           "labelled": list(labelled), "round2_wells": list(round2_wells)}  # fmt: skip
    _in_child(job)
    return root


def round2_image(path: Path, well: int, factor: int, dtype: str) -> None:
    """Rewrite a round-2 image with ngio: ``round2(well) * factor`` as ``dtype``."""
    _in_child({"op": "image", "path": str(path), "well": well, "factor": factor, "dtype": dtype})


def _write_plate(
    root: Path, version: str, labelled: tuple[int, ...], round2_wells: tuple[int, ...]
) -> None:
    import pandas as pd
    from ngio import ConditionTable, ImageInWellPath, create_empty_plate, create_ome_zarr_from_array

    images = []
    for i, (r, c) in enumerate(WELLS):
        images.append(ImageInWellPath(row=r, column=c, path="0", acquisition_id=0,
                                      acquisition_name="round1"))  # fmt: skip
        if i in round2_wells:
            images.append(ImageInWellPath(row=r, column=c, path="1", acquisition_id=1,
                                          acquisition_name="round2"))  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # anndata: "writing zarr v2 data ... default"
        plate = create_empty_plate(root, name="multiplex", images=images, ngff_version=version)
        for i, (r, c) in enumerate(WELLS):
            kwargs: dict[str, Any] = {
                "pixelsize": 0.5,
                "axes_names": "cyx",
                "ngff_version": version,
            }
            image = create_ome_zarr_from_array(
                root / r / c / "0", round1(i), channels_meta=["EdU", "DAPI"], levels=2,
                overwrite=True, **kwargs,
            )  # fmt: skip
            if i in labelled:
                label = image.derive_label("nuclei")
                label.set_array(nuclei(i))
                label.consolidate()
            image.add_table("well_ROI_table", image.build_image_roi_table("image"))
            if i in round2_wells:
                kwargs["pixelsize"] = 0.65
                create_ome_zarr_from_array(
                    root / r / c / "1", round2(i), channels_meta=["GFP"], levels=1,
                    overwrite=True, **kwargs,
                )  # fmt: skip
        frame = pd.DataFrame(
            {
                "row": [r for r, _ in WELLS],
                "column": [c for _, c in WELLS],
                "drug": [CONDITIONS[f"{r}{c}"] for r, c in WELLS],
                "dose_uM": [0.0 if CONDITIONS[f"{r}{c}"] == "DMSO" else 1.0 for r, c in WELLS],
            }
        )
        plate.add_table("condition_table", ConditionTable(frame))


def _write_round2(path: Path, well: int, factor: int, dtype: str) -> None:
    from ngio import create_ome_zarr_from_array

    data = round2(well).astype(dtype) * factor
    create_ome_zarr_from_array(
        path, data, pixelsize=0.65, axes_names="cyx", channels_meta=["GFP"], levels=1,
        overwrite=True,
    )  # fmt: skip


if __name__ == "__main__":
    job = json.loads(sys.argv[1])
    if job["op"] == "plate":
        labelled, rounds = tuple(job["labelled"]), tuple(job["round2_wells"])
        _write_plate(Path(job["root"]), job["version"], labelled, rounds)
    else:
        _write_round2(Path(job["path"]), job["well"], job["factor"], job["dtype"])
