"""A generated MetaXpress export (``.HTD`` + MetaSeries-tagged TIFFs) and its metadata cost."""

from __future__ import annotations

import re
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import tifffile

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = ROOT / "tests/data/ixm_exported/9987_Plate_3434/TimePoint_1/ZStep_1/9987_B02_s1_w1.TIF"
ROWS, COLUMNS = 32, 48  # 1536 wells
SITES, WAVES = 2, 2


def make_ix_export(dest: Path, shape: tuple[int, int] = (64, 64)) -> Path:
    """A 1536-well exported layout: the real file's MetaSeries tags, small synthetic planes."""
    from napari_wellzarr.storage.geometry import row_letters

    plate = dest / f"ix1536_{shape[0]}"
    if (plate / "done").is_file():
        return plate
    shutil.rmtree(plate, ignore_errors=True)
    folder = plate / "TimePoint_1"
    folder.mkdir(parents=True)
    with tifffile.TiffFile(TEMPLATE) as tif:
        description = tif.pages.first.description
    htd = (
        '"HTSInfoFile", Version 1.0\r\n"Description", "bench"\r\n"TimePoints", 1\r\n'
        f'"XWells", {COLUMNS}\r\n"YWells", {ROWS}\r\n"XSites", {SITES}\r\n"YSites", 1\r\n'
        f'"NWavelengths", {WAVES}\r\n"WaveName1", "DAPI"\r\n"WaveName2", "FITC"\r\n"EndFile"\r\n'
    )
    (plate / "bench.HTD").write_text(htd)
    rng = np.random.default_rng(2024)
    pixels = rng.integers(100, 4000, size=(8, *shape), dtype=np.uint16)
    n = 0
    for r in range(ROWS):
        for c in range(COLUMNS):
            well = f"{row_letters(r)}{c + 1:02d}"
            for s in range(1, SITES + 1):
                for w in range(1, WAVES + 1):
                    tags = _tags(description, well, s, w, r, c)
                    name = folder / f"bench_{well}_s{s}_w{w}.TIF"
                    tifffile.imwrite(name, pixels[n % 8], description=tags, metadata=None)
                    n += 1
    (plate / "done").write_text("")
    return plate


def _tags(description: str, well: str, site: int, wave: int, row: int, column: int) -> str:
    values = {
        "stage-label": f"{well} : Site {site}",
        "stage-position-x": f"{column * 9000 + site * 350:.1f}",
        "stage-position-y": f"{row * 9000:.1f}",
        "OffsetFromWellCenterUmX": f"{(site - 1.5) * 350:.2f}",
        "OffsetFromWellCenterUmY": "0",
        "_IllumSetting_": ["DAPI", "FITC"][wave - 1],
        "wavelength": ["452", "520"][wave - 1],
    }
    for key, value in values.items():
        description = re.sub(
            rf'(id="{re.escape(key)}" type="[^"]*" value=")[^"]*"', rf'\g<1>{value}"', description
        )
    return description


def _best(run: Any, repeats: int = 2) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return min(times)


def measure(plate: Path, work: Path) -> dict[str, Any]:
    """Scans with and without the metadata, names + headers only, the conversion (seconds).

    The metadata cost is the MetaXpress scan minus the same scan with the MetaSeries
    parsing switched off (each the best of 2, warm page cache).
    """
    from napari_wellzarr.convert.engine import convert, scan_source
    from napari_wellzarr.convert.vendors import imagexpress
    from napari_wellzarr.storage.config import StorageConfig

    plan = scan_source(plate)  # the MetaXpress source: .HTD + every file's tags
    with_meta = _best(lambda: scan_source(plate))
    parse = imagexpress.parse_metaseries
    imagexpress.parse_metaseries = lambda _: {}  # type: ignore[assignment]
    try:
        without = _best(lambda: scan_source(plate))
    finally:
        imagexpress.parse_metaseries = parse
    names_only = _best(lambda: scan_source(plate, scheme="imagexpress"))
    dest = work / "ix1536.zarr"
    shutil.rmtree(dest, ignore_errors=True)
    result = convert(plan, dest, StorageConfig(plate=plan.smallest_plate()))
    shutil.rmtree(dest, ignore_errors=True)
    assert result.complete, result.failed[:3]
    return {
        "files": sum(len(w.planes) for w in plan.wells),
        "plane": list(plan.plane_shape),
        "scan_with_metadata_s": with_meta,
        "scan_without_metadata_s": without,
        "scan_names_headers_s": names_only,
        "convert_s": result.seconds,
        "metadata_share": max(0.0, with_meta - without) / result.seconds,
        "scan_share": with_meta / result.seconds,
        "positions": len(plan.instrument.field_positions_um) if plan.instrument else 0,
    }
