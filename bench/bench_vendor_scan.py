"""Instrument metadata vs conversion: is reading a 1536-well export's index cheap?

One command::

    .venv/bin/python bench/bench_vendor_scan.py                 # 1536 wells, 2 fields x 2 ch
    .venv/bin/python bench/bench_vendor_scan.py --wells 384 --side 64 --repeats 3

Two exports are generated in the temp directory from the structure of the real ones in
``tests/data`` (Harmony V5 ``Index.idx.xml`` with every per-image element the Operetta export
has, LZW TIFFs; CellVoyager ``MeasurementData.mlf`` + ``MeasurementDetail.mrf``), each
``wells`` x 2 fields x 2 channels x 1 z of ``--side`` x ``--side`` uint16 planes (128 by
default: small planes make the conversion fast, so the metadata's share is far larger than
with real 1080 x 1080 or 2000 x 2000 planes). Timed, best of
``--repeats``, in this process:

* ``metadata``: reading the index alone (``harmony.read_index`` / ``cellvoyager.read_measurement``),
  in a fresh interpreter (and ``metadata (in this process)``, where the collector has the
  generated exports' objects to walk too);
* ``vendor scan``: the whole plan (metadata + every TIFF header);
* ``name scan``: the file-name scan of the same folder (``scan_source(scheme="opera")``),
  the path these exports took before (Harmony only: CellVoyager names have no scheme);
* ``convert``: ``convert(plan, ...)`` serial, default storage.

The table gives each time and its share of the conversion time. With ``--baseline SRC``
(another checkout's ``src``, e.g. main's), the metadata step of that code is timed too, in a
subprocess on the same generated files, in the same run::

    git worktree add /tmp/main-src main
    .venv/bin/python bench/bench_vendor_scan.py --side 256 --baseline /tmp/main-src/src
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from collections.abc import Callable

FIELDS, CHANNELS = 2, 2
_IMAGE = """    <Image Version="1">
      <id>{id}</id>
      <State>Ok</State>
      <URL>{url}</URL>
      <Row>{row}</Row>
      <Col>{col}</Col>
      <FieldID>{field}</FieldID>
      <PlaneID>1</PlaneID>
      <TimepointID>0</TimepointID>
      <ChannelID>{ch}</ChannelID>
      <FlimID>1</FlimID>
      <ChannelName>Channel {ch}</ChannelName>
      <ImageType>Signal</ImageType>
      <AcquisitionType>NonConfocal</AcquisitionType>
      <IlluminationType>Epifluorescence</IlluminationType>
      <ChannelType>Fluorescence</ChannelType>
      <ImageResolutionX Unit="m">1.1959521619135234E-06</ImageResolutionX>
      <ImageResolutionY Unit="m">1.1959521619135234E-06</ImageResolutionY>
      <ImageSizeX>{side}</ImageSizeX>
      <ImageSizeY>{side}</ImageSizeY>
      <BinningX>2</BinningX>
      <BinningY>2</BinningY>
      <MaxIntensity>65535</MaxIntensity>
      <CameraType>AndorZylaCam</CameraType>
      <PositionX Unit="m">{x}</PositionX>
      <PositionY Unit="m">0.000645814</PositionY>
      <PositionZ Unit="m">2E-05</PositionZ>
      <AbsPositionZ Unit="m">0.137510493</AbsPositionZ>
      <MeasurementTimeOffset Unit="s">0</MeasurementTimeOffset>
      <AbsTime>2022-12-19T10:19:26.58+01:00</AbsTime>
      <MainExcitationWavelength Unit="nm">475</MainExcitationWavelength>
      <MainEmissionWavelength Unit="nm">{em}</MainEmissionWavelength>
      <ObjectiveMagnification Unit="">10</ObjectiveMagnification>
      <ObjectiveNA Unit="">0.3</ObjectiveNA>
      <ExposureTime Unit="s">0.006</ExposureTime>
    </Image>
"""
_RECORD = (
    '<bts:MeasurementRecord bts:Type="IMG" bts:Time="2023-09-18T13:58:44.438+02:00" '
    'bts:Column="{col}" bts:Row="{row}" bts:TimePoint="1" bts:FieldIndex="{field}" '
    'bts:ZIndex="1" bts:TimelineIndex="1" bts:ActionIndex="{ch}" bts:Action="3D" '
    'bts:X="{x}" bts:Y="402.9" bts:Z="0.0" bts:Ch="{ch}">{name}</bts:MeasurementRecord>\n'
)
_NS = 'xmlns:bts="http://www.yokogawa.co.jp/BTS/BTSSchema/1.0"'


def _wells(n: int) -> list[tuple[int, int]]:
    rows, cols = {96: (8, 12), 384: (16, 24), 1536: (32, 48)}[n]
    return [(r, c) for r in range(1, rows + 1) for c in range(1, cols + 1)]


def make_harmony(root: Path, n_wells: int, side: int) -> Path:
    """A Harmony V5 export of ``n_wells`` wells (LZW TIFFs)."""
    import tifffile

    images = root / "Images"
    images.mkdir(parents=True)
    rng = np.random.default_rng(0)
    plane = rng.integers(100, 4000, (side, side), dtype=np.uint16)
    entries = []
    for r, c in _wells(n_wells):
        for f in range(1, FIELDS + 1):
            for ch in range(1, CHANNELS + 1):
                url = f"r{r:02d}c{c:02d}f{f:02d}p01-ch{ch}sk1fk1fl1.tiff"
                tifffile.imwrite(images / url, plane, compression="lzw")
                entries.append(
                    _IMAGE.format(
                        id=f"{r:02d}{c:02d}K1F{f}P1R{ch}",
                        url=url,
                        row=r,
                        col=c,
                        field=f,
                        ch=ch,
                        side=side,
                        x=(f - 1.5) * 0.0013,
                        em=[525, 600][ch - 1],
                    )
                )
    rows, cols = _wells(n_wells)[-1]
    (images / "Index.idx.xml").write_text(
        '<?xml version="1.0" encoding="utf-8"?>\n<EvaluationInputData Version="1" '
        'xmlns="http://www.perkinelmer.com/PEHH/HarmonyV5">\n<Plates><Plate>'
        f"<PlateID>bench</PlateID><Name>bench</Name><PlateRows>{rows}</PlateRows>"
        f"<PlateColumns>{cols}</PlateColumns></Plate></Plates>\n<Images>\n"
        + "".join(entries)
        + "</Images>\n</EvaluationInputData>\n",
        encoding="utf-8",
    )
    return root


def make_cellvoyager(root: Path, n_wells: int, side: int) -> Path:
    """A CellVoyager export of ``n_wells`` wells."""
    import tifffile

    from napari_wellzarr.storage.geometry import Well

    root.mkdir(parents=True)
    plane = np.random.default_rng(1).integers(100, 4000, (side, side), dtype=np.uint16)
    records = []
    for r, c in _wells(n_wells):
        label = Well(r - 1, c - 1).label
        for f in range(1, FIELDS + 1):
            for ch in range(1, CHANNELS + 1):
                name = f"bench_{label}_T0001F{f:03d}L01A{ch:02d}Z01C{ch:02d}.tif"
                tifffile.imwrite(root / name, plane)
                records.append(
                    _RECORD.format(col=c, row=r, field=f, ch=ch, x=(f - 1.5) * 650, name=name)
                )
    (root / "MeasurementData.mlf").write_text(
        f'<?xml version="1.0" encoding="utf-8"?>\n<bts:MeasurementData {_NS}>\n'
        + "".join(records)
        + "</bts:MeasurementData>\n",
        encoding="utf-8",
    )
    rows, cols = _wells(n_wells)[-1]
    channels = "".join(
        f'<bts:MeasurementChannel bts:Ch="{ch}" bts:HorizontalPixelDimension="0.325" '
        f'bts:VerticalPixelDimension="0.325" bts:HorizontalPixels="{side}" '
        f'bts:VerticalPixels="{side}" bts:InputBitDepth="16" />'
        for ch in range(1, CHANNELS + 1)
    )
    (root / "MeasurementDetail.mrf").write_text(
        f'<?xml version="1.0" encoding="utf-8"?>\n<bts:MeasurementDetail {_NS} '
        f'bts:RowCount="{rows}" bts:ColumnCount="{cols}" bts:Title="bench" bts:Status="0">'
        f"{channels}</bts:MeasurementDetail>\n",
        encoding="utf-8",
    )
    return root


def best(repeats: int, run: Callable[[], object]) -> float:
    """Best wall time of ``repeats`` runs."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return min(times)


_BASELINE = """
import sys, time
from pathlib import Path
from napari_wellzarr.convert.vendors import cellvoyager, harmony
read = harmony.read_index if sys.argv[1] == "harmony" else cellvoyager.read_measurement
times = []
for _ in range(int(sys.argv[3])):
    start = time.perf_counter()
    read(Path(sys.argv[2]))
    times.append(time.perf_counter() - start)
print(min(times))
"""


def metadata_times(
    sources: dict[str, str], name: str, folder: Path, repeats: int
) -> dict[str, float]:
    """Best time of the metadata step of each package (label -> ``src``), in subprocesses.

    Each package runs in a fresh interpreter (the same for all, so the collector has as
    much to walk), one read at a time, taking turns, so a load change hits all alike.
    """
    best_of = dict.fromkeys(sources, float("inf"))
    for _ in range(repeats):
        for label, src in sources.items():
            out = subprocess.run(
                [sys.executable, "-c", _BASELINE, name, str(folder), "1"],
                env={**os.environ, "PYTHONPATH": src},
                check=True,
                capture_output=True,
                text=True,
                timeout=600,
            )
            best_of[label] = min(best_of[label], float(out.stdout.split()[-1]))
    return best_of


def main() -> None:
    from napari_wellzarr.convert.engine import convert
    from napari_wellzarr.convert.sources import scan_source
    from napari_wellzarr.convert.vendors import cellvoyager, harmony
    from napari_wellzarr.storage.config import StorageConfig
    from napari_wellzarr.storage.geometry import PlateGeometry

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--wells", type=int, default=1536, choices=(96, 384, 1536))
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--side", type=int, default=128)
    parser.add_argument("--baseline", help="another checkout's src: time its metadata step too")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="wellzarr-vendor-bench-") as tmp:
        base = Path(tmp)
        exports = {
            "harmony": make_harmony(base / "harmony", args.wells, args.side),
            "cellvoyager": make_cellvoyager(base / "cellvoyager", args.wells, args.side),
        }
        print(
            f"{args.wells} wells x {FIELDS} fields x {CHANNELS} channels of "
            f"{args.side}x{args.side} uint16, best of {args.repeats}\n"
        )
        print("| export | step | seconds | share of convert |\n|---|---|---|---|")
        for name, folder in exports.items():
            vendor = harmony if name == "harmony" else cellvoyager
            meta = harmony.read_index if name == "harmony" else cellvoyager.read_measurement
            plan = vendor.scan(folder)
            rows, cols = _wells(args.wells)[-1]
            config = StorageConfig(plate=PlateGeometry(rows, cols))
            dest = base / f"{name}.zarr"

            def run_convert() -> None:
                shutil.rmtree(dest, ignore_errors=True)  # noqa: B023
                convert(plan, dest, config)  # noqa: B023

            here = str(Path(harmony.__file__).parents[3])
            sources = {"metadata": here}
            if args.baseline:
                sources = {"metadata (baseline)": args.baseline, **sources}
            steps = metadata_times(sources, name, folder, args.repeats)
            steps |= {
                "metadata (in this process)": best(args.repeats, lambda: meta(folder)),  # noqa: B023
                "vendor scan": best(args.repeats, lambda: vendor.scan(folder)),  # noqa: B023
            }
            if name == "harmony":
                steps["name scan"] = best(
                    args.repeats,
                    lambda: scan_source(folder, scheme="opera"),  # noqa: B023
                )
            steps["convert"] = best(1, run_convert)
            for step, seconds in steps.items():
                share = seconds / steps["convert"]
                print(f"| {name} | {step} | {seconds:.2f} | {share:.1%} |")


if __name__ == "__main__":
    main()
