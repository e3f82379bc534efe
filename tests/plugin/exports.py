"""The small real exports of ``tests/data``, and what their own files say (read independently)."""

from __future__ import annotations

import hashlib
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import tifffile

DATA = Path(__file__).parents[1] / "data"
CV8000 = (
    DATA
    / "faim-cv8000-minimal"
    / "CV8000-Minimal-DataSet-2C-3W-4S-FP2-stack_20230918_135839"
    / "CV8000-Minimal-DataSet-2C-3W-4S-FP2-stack"
)
EXPORTS = {
    "ixm_exported": DATA / "ixm_exported" / "9987_Plate_3434",
    "ixm_native": DATA / "ixm_native" / "Projection-Mix",
    "operetta": DATA / "operetta-compose-cls" / "operetta_plate",
    "phenix": DATA / "pe2loaddata-phenix-version1" / "Version1",
    "cv8000": CV8000,
}


@dataclass(frozen=True)
class Truth:
    """What an export's metadata files say, read with the standard library and tifffile."""

    channels: tuple[str, ...]  # names (for MetaXpress native: each starts with its name)
    pixel_um: float
    z_step_um: float | None
    fields: int  # (well, field) pairs with a stage position
    left_out: int  # files not in the plate (thumbnails, duplicates, references)
    #: A file name token of each channel's images (``_w1``, ``-ch1``, ``C01``).
    tokens: tuple[str, ...]


def _metaseries(path: Path) -> dict[str, object]:
    with tifffile.TiffFile(path) as tif:
        info: dict[str, object] = tif.metaseries_metadata["PlaneInfo"]
    return info


def _ixm(root: Path) -> Truth:
    tiffs = sorted(p for p in root.rglob("*") if p.suffix.lower() in (".tif", ".tiff"))
    thumbs = [p for p in tiffs if "_thumb" in p.name]
    images = [p for p in tiffs if p not in thumbs]
    htd = next(root.rglob("*.HTD"), None)
    waves = sorted({int(m) for p in images for m in re.findall(r"_w(\d)", p.name)})
    if htd is not None:
        text = htd.read_text(encoding="latin-1")
        named = dict(re.findall(r'"WaveName(\d)", "([^"]*)"', text))
        names = tuple(named[str(w)] for w in waves)
    else:
        names = tuple(str(_metaseries(images[0])["_IllumSetting_"]) for _ in waves)
    digests: dict[str, int] = {}
    for p in images:
        key = hashlib.sha256(p.read_bytes()).hexdigest()
        digests[key] = digests.get(key, 0) + 1
    w1 = sorted(p for p in images if "_w1" in p.name and "ZStep_" in str(p.parent.name))
    zs = sorted({float(str(_metaseries(p)["z-position"])) for p in w1})
    sites = {m for p in images for m in re.findall(r"_([A-P]\d\d_s\d)", p.name)}
    return Truth(
        channels=names,
        pixel_um=float(str(_metaseries(images[0])["spatial-calibration-x"])),
        z_step_um=round(zs[1] - zs[0], 2) if len(zs) > 1 else None,
        fields=len(sites) or 1,
        left_out=len(thumbs) + sum(n - 1 for n in digests.values()),
        tokens=tuple(f"_w{w}" for w in waves),
    )


def _harmony(root: Path) -> Truth:
    index = next(root.rglob("Index.idx.xml"))
    tree = ET.parse(index)  # a shipped test file
    ns = {"h": tree.getroot().tag.split("}")[0].strip("{")}
    images = tree.getroot().findall("h:Images/h:Image", ns)
    names: dict[int, str] = {}
    fields = set()
    for image in images:
        c = int(image.findtext("h:ChannelID", "", ns))
        names.setdefault(c, image.findtext("h:ChannelName", "", ns))
        fields.add(tuple(image.findtext(f"h:{k}", "", ns) for k in ("Row", "Col", "FieldID")))
    resolution = float(images[0].findtext("h:ImageResolutionX", "", ns)) * 1e6
    order = sorted(names)
    return Truth(
        channels=tuple(names[c] for c in order),
        pixel_um=resolution,
        z_step_um=None,
        fields=len(fields),
        left_out=0,
        tokens=tuple(f"-ch{c}" for c in order),
    )


def _cellvoyager(root: Path) -> Truth:
    mrf = (root / "MeasurementDetail.mrf").read_text(encoding="utf-8-sig")
    mlf = (root / "MeasurementData.mlf").read_text(encoding="utf-8-sig")
    records = re.findall(r"<bts:MeasurementRecord ([^>]*)>", mlf)
    images = [r for r in records if 'bts:Type="IMG"' in r]
    attr = re.compile(r'bts:(\w+)="([^"]*)"')
    parsed = [dict(attr.findall(r)) for r in images]
    zs = sorted({float(r["Z"]) for r in parsed})
    channels = sorted({int(r["Ch"]) for r in parsed})
    listed = set(re.findall(r">([^<]+\.tif)<", mlf))
    on_disk = {p.name for p in root.glob("*.tif")}
    mes = next(root.glob("*.mes")).read_text(encoding="utf-8-sig")
    names = []
    for c in channels:
        block = re.search(rf'<bts:Channel bts:Ch="{c}"[^>]*>', mes)
        assert block is not None
        found = dict(attr.findall(block.group(0)))
        names.append(f"{found['Target']} {found['Acquisition']}")
    return Truth(
        channels=tuple(names),
        pixel_um=float(re.findall(r'bts:HorizontalPixelDimension="([^"]+)"', mrf)[0]),
        z_step_um=zs[1] - zs[0] if len(zs) > 1 else None,
        fields=len({(r["Row"], r["Column"], r["FieldIndex"]) for r in parsed}),
        left_out=len(on_disk - listed),
        tokens=tuple(f"C{c:02d}" for c in channels),
    )


def truth(name: str) -> Truth:
    """The truth of the export called ``name`` in :data:`EXPORTS`."""
    root = EXPORTS[name]
    if name.startswith("ixm"):
        return _ixm(root)
    if name == "cv8000":
        return _cellvoyager(root)
    return _harmony(root)
