"""The main job's demo: write a small sample plate with the core and describe it."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Sequence

    from napari_wellzarr.storage.store import PlateStore

DEFAULT_OUTPUT = Path("demo-output")
DEMO_WELLS = ("B02", "B03", "C05", "D07", "E10", "G11")
DEMO_CHANNELS = ("DAPI", "Phalloidin", "EdU")


def write_demo_plate(
    path: Path,
    *,
    wells: Sequence[str] = DEMO_WELLS,
    n_fields: int = 2,
    shape: tuple[int, int] = (256, 256),
    overwrite: bool = False,
) -> Path:
    """Write the demo plate (3 channels, nuclei-like pixels) at ``path`` and return it."""
    from napari_wellzarr.plugin._sample_data import write_synthetic_plate

    return write_synthetic_plate(
        path, wells=wells, n_fields=n_fields, shape=shape, overwrite=overwrite
    )


def _bytes_on_disk(root: Path) -> tuple[int, int]:
    files = [p for p in root.rglob("*") if p.is_file()]
    return sum(p.stat().st_size for p in files), len(files)


def describe(store: PlateStore) -> list[str]:
    """Lines describing a plate: size, wells, per-well layout, storage, bytes on disk."""
    rows, columns = len(store.rows), len(store.columns)
    wells = store.wells()
    lines = [
        f"plate     {store.root}",
        f"format    OME-NGFF {store.ngff_version} (zarr v{store.zarr_format}), "
        f"{rows} rows x {columns} columns = {rows * columns} wells",
        f"wells     {len(wells)} written: {', '.join(wells)}",
    ]
    for name in wells:
        info = store.well_info(name)
        shape = " x ".join(f"{a}={s}" for a, s in zip(info.axes, info.shape, strict=True))
        channels = ", ".join(f"{c.label} (#{c.color})" for c in info.channels)
        lines.append(f"  {name}  {shape}  {info.dtype}  levels={info.n_levels}  [{channels}]")
    config = store.config
    if config is not None:
        options = ", ".join(f"{k}={v}" for k, v in config.to_dict().items())
        lines.append(f"storage   {options}")
    size, n_files = _bytes_on_disk(store.root)
    lines.append(f"on disk   {size:,} bytes in {n_files} files")
    return lines


def _headless() -> bool:
    """No screen a person looks at: none at all, Xvfb (xvfb-run), CI, or no terminal."""
    no_display = not os.environ.get("DISPLAY") and not os.environ.get("WAYLAND_DISPLAY")
    xvfb = "xvfb-run" in os.environ.get("XAUTHORITY", "")
    return no_display or xvfb or bool(os.environ.get("CI")) or not sys.stdin.isatty()


def show(plate: Path, screenshot: Path, *, gui_loop: bool) -> Path:
    """Open ``plate`` in napari with this plugin, save a screenshot, optionally keep the window."""
    import napari

    viewer = napari.Viewer(title=f"napari-wellzarr demo: {plate.name}", show=True)
    viewer.window.resize(1280, 860)
    layers = viewer.open(str(plate), plugin="napari-wellzarr")
    viewer.layers.selection.active = layers[0]  # show a channel's controls, not the map's
    viewer.reset_view()
    from qtpy.QtWidgets import QApplication

    QApplication.processEvents()  # lay out the status bar before it is photographed
    screenshot.parent.mkdir(parents=True, exist_ok=True)
    viewer.screenshot(str(screenshot), canvas_only=False, flash=False)
    if gui_loop:
        napari.run()
    else:
        viewer.close()
    return screenshot


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m napari_wellzarr.demo``."""
    from napari_wellzarr.errors import PlateExistsError
    from napari_wellzarr.storage.store import PlateStore

    parser = argparse.ArgumentParser(prog="python -m napari_wellzarr.demo", description=__doc__)
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="output directory")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing demo plate")
    parser.add_argument(
        "--screenshot", type=Path, default=None, help="PNG path (default OUTPUT/screenshot.png)"
    )
    parser.add_argument(
        "--no-viewer", action="store_true", help="only write and describe the plate"
    )
    parser.add_argument(
        "--no-gui-loop",
        action="store_true",
        help="exit after the screenshot (implied headless / CI)",
    )
    args = parser.parse_args(argv)

    plate = args.output / "plate.ome.zarr"
    try:
        write_demo_plate(plate, overwrite=args.overwrite)
    except PlateExistsError as err:
        print(f"error: {err} (use --overwrite)", file=sys.stderr)
        return 1
    with PlateStore.open(plate) as store:
        print("\n".join(describe(store)))
    if args.no_viewer:
        return 0
    screenshot = args.screenshot or args.output / "screenshot.png"
    gui_loop = not (args.no_gui_loop or _headless())
    print(f"screenshot {show(plate, screenshot, gui_loop=gui_loop).resolve()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
