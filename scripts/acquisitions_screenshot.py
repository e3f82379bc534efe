"""Screenshot of a two-round multiplexed plate written by ngio, in napari (docs/acquisitions.png).

Run from the repository root (ngio comes with the ``testing`` extra)::

    xvfb-run -a python scripts/acquisitions_screenshot.py
"""

from __future__ import annotations

import tempfile
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
WELLS = [(r, c) for r in ("B", "C") for c in ("02", "03", "04")]
DRUGS = {"02": "DMSO", "03": "taxol", "04": "nocodazole"}


def cells(seed: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Round nuclei on a dark background: (intensity, labels)."""
    rng = np.random.default_rng(seed)
    y, x = np.indices((size, size))
    image = np.full((size, size), 200.0)
    labels = np.zeros((size, size), np.uint32)
    for n in range(1, 19):
        cy, cx, radius = rng.uniform(10, size - 10), rng.uniform(10, size - 10), rng.uniform(6, 10)
        inside = (y - cy) ** 2 + (x - cx) ** 2 < radius**2
        image[inside] = rng.uniform(2000, 4000)
        labels[inside & (labels == 0)] = n
    return image.astype(np.uint16), labels


def write_plate(root: Path) -> None:
    """Write the two-acquisition ngio plate the screenshot shows."""
    import pandas as pd
    from ngio import ConditionTable, ImageInWellPath, create_empty_plate, create_ome_zarr_from_array

    images = []
    for r, c in WELLS:
        for path, ident, name in (("0", 0, "round1"), ("1", 1, "round2")):
            images.append(ImageInWellPath(row=r, column=c, path=path, acquisition_id=ident,
                                          acquisition_name=name))  # fmt: skip
    plate = create_empty_plate(root, name="multiplex", images=images, ngff_version="0.5")
    for i, (r, c) in enumerate(WELLS):
        dapi, labels = cells(i, 128)
        edu = np.where(labels % (2 + i % 3) == 0, dapi, 200).astype(np.uint16)
        image = create_ome_zarr_from_array(
            root / r / c / "0", np.stack([dapi, edu]), pixelsize=0.5, axes_names="cyx",
            channels_meta=["DAPI", "EdU"], levels=2, ngff_version="0.5", overwrite=True,
        )  # fmt: skip
        label = image.derive_label("nuclei")
        label.set_array(labels)
        label.consolidate()
        image.add_table("well_ROI_table", image.build_image_roi_table("image"))
        tubulin = (np.asarray(cells(100 + i, 100)[0], float) * 0.8).astype(np.uint16)
        create_ome_zarr_from_array(
            root / r / c / "1", tubulin[None], pixelsize=0.64, axes_names="cyx",
            channels_meta=["tubulin"], levels=1, ngff_version="0.5", overwrite=True,
        )  # fmt: skip
    frame = pd.DataFrame(
        {"row": [r for r, _ in WELLS], "column": [c for _, c in WELLS],
         "drug": [DRUGS[c] for _, c in WELLS]}
    )  # fmt: skip
    plate.add_table("condition_table", ConditionTable(frame))


def main() -> None:
    """Open the plate in napari and save the screenshot under docs/."""
    import napari

    with tempfile.TemporaryDirectory() as tmp:
        plate = Path(tmp) / "multiplex.zarr"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            write_plate(plate)
        viewer = napari.Viewer(show=True)
        viewer.window.resize(1200, 760)
        viewer.open(str(plate), plugin="napari-wellzarr")
        viewer.layers["round1: well_ROI_table"].visible = True
        viewer.layers["round1: nuclei"].opacity = 0.35
        viewer.layers["round2: tubulin"].colormap = "magenta"
        viewer.layers["round2: tubulin"].visible = False
        viewer.layers.selection.active = viewer.layers["plate map"]
        viewer.reset_view()
        out = ROOT / "docs" / "acquisitions.png"
        viewer.screenshot(str(out), canvas_only=False, flash=False)
        print(out, [layer.name for layer in viewer.layers])
        viewer.close()


if __name__ == "__main__":
    main()
