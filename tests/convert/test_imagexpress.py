"""MetaXpress exports (exported and native layouts) in, with metadata, every file accounted."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest
import tifffile

from napari_wellzarr.convert.engine import convert, scan_source
from napari_wellzarr.convert.instrument import wavelength_color
from napari_wellzarr.convert.vendors import detect_vendor, imagexpress
from napari_wellzarr.core import ConfigError, PlateStore, StorageConfig, WellDataError
from napari_wellzarr.storage.validation import check_plate

if TYPE_CHECKING:
    from collections.abc import Callable

    from napari_wellzarr.convert.plan import ConversionPlan

DATA = Path(__file__).resolve().parents[1] / "data"
EXPORTED = DATA / "ixm_exported"
NATIVE = DATA / "ixm_native"
NATIVE_DIR = "Projection-Mix/2023-02-21/1334"


def _tiffs(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.suffix.lower() == ".tif"}


def _tags(path: Path) -> dict[str, str]:
    with tifffile.TiffFile(path) as tif:
        info = tif.metaseries_metadata["PlaneInfo"]
    return {k: str(v) for k, v in info.items()}


def _accounted(plan: ConversionPlan) -> dict[str, str]:
    """Every file of the plan: relative path -> 'plane', 'projection' or the skip reason."""
    assert plan.instrument is not None
    out: dict[str, str] = {}
    for well in plan.wells:
        for plane in well.planes:
            out[Path(plane.path).relative_to(plan.source).as_posix()] = "plane"
        for plane in well.projections:
            out[Path(plane.path).relative_to(plan.source).as_posix()] = "projection"
    for skipped in plan.instrument.skipped:
        assert skipped.path not in out, f"{skipped.path} both converted and skipped"
        out[skipped.path] = skipped.reason
    return out


def _check_bit_exact(plan: ConversionPlan, store: PlateStore) -> int:
    """Every planned file found by its name in the plate, pixels equal; returns the count."""
    n = 0
    for well in plan.wells:
        for plane in well.planes:
            key = store.plane_key(well.name, plane.name)
            assert key == plane.key
            assert np.array_equal(store.read_plane(well.name, *key), tifffile.imread(plane.path))
            n += 1
        if not well.projections:
            assert store.projection_info(well.name) is None
            continue
        info = store.projection_info(well.name)
        projections = store.read_projections(well.name)
        assert info is not None
        assert projections is not None
        assert projections.shape[2] == 1  # one z plane: projections never join the stack
        for plane in well.projections:
            key = info.plane_names[plane.name]
            assert np.array_equal(projections[key.field, key.c, 0], tifffile.imread(plane.path))
            n += 1
    return n


# -- the exported layout -------------------------------------------------------------


def test_exported_layout_keeps_zstep0_and_names_every_copy() -> None:
    plan = scan_source(EXPORTED)
    assert plan.scheme == imagexpress.NAME
    accounted = _accounted(plan)
    assert set(accounted) == _tiffs(EXPORTED)  # nothing silently lost
    zstep = "9987_Plate_3434/TimePoint_1/ZStep_{}/9987_B02_s1_w{}.TIF"
    # ZStep_0 w1 is the DAPI maximum projection: kept, apart from the z planes
    assert accounted[zstep.format(0, 1)] == "projection"
    assert _tags(EXPORTED / zstep.format(0, 1))["Z Projection Method"] == "Maximum"
    assert accounted[zstep.format(1, 1)] == accounted[zstep.format(2, 1)] == "plane"
    # FITC (projection only) lives in ZStep_0, copied byte for byte into ZStep_1 and 2
    assert accounted[zstep.format(0, 2)] == "plane"
    for z in (1, 2):
        assert accounted[zstep.format(z, 2)] == f"byte-identical copy of {zstep.format(0, 2)}"
        assert (EXPORTED / zstep.format(z, 2)).read_bytes() == (
            EXPORTED / zstep.format(0, 2)
        ).read_bytes()
    # Texas Red's one plane is ZStep_1 (its 'Z Step' tag), its copies named as such
    assert accounted[zstep.format(1, 3)] == "plane"
    for z in (0, 2):
        assert accounted[zstep.format(z, 3)] == f"byte-identical copy of {zstep.format(1, 3)}"
    well = plan.wells[0]
    dapi = [p for p in well.planes if p.key.c == 0]
    assert [p.key.z for p in dapi] == [0, 1]
    assert plan.dims == (1, 3, 2, 1)


def test_exported_layout_metadata_from_htd_and_tags() -> None:
    plan = scan_source(EXPORTED)
    meta = plan.instrument
    assert meta is not None
    assert plan.channel_names == ("DAPI", "FITC", "Texas Red")
    assert [c.emission_nm for c in meta.channels] == [452.0, 520.0, 624.0]
    colors = [c.color for c in meta.channels]
    assert colors == [wavelength_color(nm) for nm in (452.0, 520.0, 624.0)]
    assert len(set(colors)) == 3
    tags = _tags(EXPORTED / "9987_Plate_3434/TimePoint_1/ZStep_1/9987_B02_s1_w1.TIF")
    calibration = float(tags["spatial-calibration-x"])
    assert meta.pixel_size_um == (calibration, calibration) == (1.3672, 1.3672)
    assert meta.plate_format == (8, 12)  # HTD YWells x XWells
    assert meta.plate_name == "9987_Plate_3434"
    # z step from the two DAPI planes' z-position tags
    z1 = float(
        _tags(EXPORTED / "9987_Plate_3434/TimePoint_1/ZStep_1/9987_B02_s1_w1.TIF")["z-position"]
    )
    z2 = float(
        _tags(EXPORTED / "9987_Plate_3434/TimePoint_1/ZStep_2/9987_B02_s1_w1.TIF")["z-position"]
    )
    assert meta.z_step_um == pytest.approx(abs(z2 - z1), abs=1e-3)
    assert meta.field_positions_um[("B02", 0)] == (
        float(tags["OffsetFromWellCenterUmY"]),
        float(tags["OffsetFromWellCenterUmX"]),
    )
    assert meta.projection_methods == {"DAPI": "Maximum", "FITC": "Maximum"}
    # the HTD's Description is not UTF-8 (0x82 0x81): read, and the w4 it lists is named
    assert b"\x82\x81" in (EXPORTED / "9987_Plate_3434/9987.HTD").read_bytes()
    assert any("wavelength 4 (Cy5)" in w for w in meta.warnings)


def test_exported_layout_converts_bit_exact_with_metadata(
    tmp_path: Path, validate_plate: Callable[[Path], None]
) -> None:
    plan = scan_source(EXPORTED)
    dest = tmp_path / "plate.zarr"
    result = convert(plan, dest, StorageConfig(plate=plan.smallest_plate()))
    assert result.complete
    store = PlateStore.open(dest)
    assert _check_bit_exact(plan, store) == len(_tiffs(EXPORTED)) - 4  # 4 copies skipped
    assert store.plate.name == "9987_Plate_3434"
    assert (len(store.rows), len(store.columns)) == (8, 12)
    info = store.well_info("B02")
    assert [(c.label, c.color) for c in info.channels] == [
        ("DAPI", wavelength_color(452.0)),
        ("FITC", wavelength_color(520.0)),
        ("Texas Red", wavelength_color(624.0)),
    ]
    assert info.scale[-2:] == (1.3672, 1.3672)
    assert info.unit == "micrometer"
    assert info.scale[2] == pytest.approx(plan.instrument.z_step_um)  # type: ignore[union-attr]
    assert store.field_positions("B02") == {0: plan.instrument.field_positions_um[("B02", 0)]}  # type: ignore[union-attr]
    assert store.instrument_metadata("B02").channel_projections["DAPI"] == "Maximum"
    assert check_plate(dest).ok
    validate_plate(dest)


# -- the native layout ---------------------------------------------------------------


def test_native_layout_converts_where_the_name_scheme_cannot(tmp_path: Path) -> None:
    # The generic name scheme sees the projection and the z plane as one plane.
    with pytest.raises(WellDataError, match="both well E07 field 1, channel 1, z 1"):
        scan_source(NATIVE, scheme="imagexpress")
    plan = scan_source(NATIVE)  # auto: the MetaXpress source
    assert detect_vendor(NATIVE) is imagexpress
    accounted = _accounted(plan)
    assert set(accounted) == _tiffs(NATIVE)
    for rel, what in accounted.items():
        tags = _tags(NATIVE / rel)
        if "_thumb" in rel:
            assert what.startswith("thumbnail")
        elif what == "projection":
            assert tags["Z Projection Method"] in ("Maximum", "Best Focus")
        else:
            assert what == "plane"
            # a plane is a z plane, or a channel's only image (w3: a projection only)
            assert "Z Step" in tags or "_w3" in rel
    meta = plan.instrument
    assert meta is not None
    # every wave is 'FITC_05' in _IllumSetting_: the image names tell the channels apart
    assert plan.channel_names == ("FITC_05", "FITC_05-2", "FITC_05-3", "FITC_05-4")
    assert meta.pixel_size_um == (1.3668, 1.3668)
    assert meta.plate_format is None  # no .HTD: the plate is the smallest holding the wells
    assert meta.plate_name == "Projection-Mix"
    assert meta.projection_methods == {
        "FITC_05": "Maximum",
        "FITC_05-2": "Best Focus",
        "FITC_05-3": "Maximum",
    }
    z = [
        float(_tags(NATIVE / NATIVE_DIR / f"ZStep_{n}" / name)["z-position"])
        for n, name in (
            (1, "Projection-Mix_E07_s1_w1E78EB128-BD0D-4D94-A6AD-3FF28BB1B105.tif"),
            (2, "Projection-Mix_E07_s1_w189A35A04-20E3-47AD-A1F9-8065B2840EFD.tif"),
        )
    ]
    assert meta.z_step_um == pytest.approx(abs(z[1] - z[0]), abs=1e-3)
    for field, site_file in (
        (0, "Projection-Mix_E07_s1_w3BB87F860-FC67-4B3A-A740-A9EACF8A8F5F.tif"),
        (1, "Projection-Mix_E07_s2_w3B0A47337-5945-4B26-9F5F-4EBA468CDBA9.tif"),
    ):
        tags = _tags(NATIVE / NATIVE_DIR / site_file)
        expected = (float(tags["OffsetFromWellCenterUmY"]), float(tags["OffsetFromWellCenterUmX"]))
        assert meta.field_positions_um[("E07", field)] == pytest.approx(expected, abs=1e-3)

    dest = tmp_path / "native.zarr"
    result = convert(plan, dest, StorageConfig(plate=plan.smallest_plate(), fields="per-field"))
    assert result.complete
    store = PlateStore.open(dest)
    assert _check_bit_exact(plan, store) == len(_tiffs(NATIVE)) - 1  # the thumbnail
    positions = store.field_positions("E07")
    assert positions == {f: meta.field_positions_um[("E07", f)] for f in (0, 1)}
    # per-field images carry their position as an OME-NGFF translation
    image = tifffile_free_attrs(dest / "E" / "07" / "1")
    translation = image["ome"]["multiscales"][0]["datasets"][0]["coordinateTransformations"][1]
    assert translation["type"] == "translation"
    assert translation["translation"][-2:] == pytest.approx(list(positions[1]))


def tifffile_free_attrs(group: Path) -> dict[str, object]:
    import json

    return json.loads((group / "zarr.json").read_text())["attributes"]  # type: ignore[no-any-return]


# -- names, plate formats and hostile metadata ----------------------------------------

HTD_HEAD = '"HTSInfoFile", Version 1.0\r\n"Description", "test"\r\n'


def _one_site_export(tmp_path: Path, htd: str | bytes | None, name: str = "9987_B02.TIF") -> Path:
    root = tmp_path / "export"
    root.mkdir()
    shutil.copy(EXPORTED / "9987_Plate_3434/TimePoint_1/ZStep_1/9987_B02_s1_w3.TIF", root / name)
    if htd is not None:
        data = htd.encode() if isinstance(htd, str) else htd
        (root / "9987.HTD").write_bytes(data)
    return root


def test_one_site_one_wave_name_in_a_384_well_export(tmp_path: Path) -> None:
    htd = (
        HTD_HEAD
        + '"XWells", 24\r\n"YWells", 16\r\n"NWavelengths", 1\r\n'
        + '"WaveName1", "TxRed"\r\n"EndFile"\r\n'
    )
    root = _one_site_export(tmp_path, htd)
    plan = scan_source(root)
    assert plan.scheme == imagexpress.NAME
    assert [p.name for p in plan.wells[0].planes] == ["9987_B02.TIF"]
    assert plan.channel_names == ("TxRed",)
    assert plan.smallest_plate().rows == 16  # one well imaged, still a 384-well plate
    dest = tmp_path / "p.zarr"
    convert(plan, dest, StorageConfig(plate=plan.smallest_plate()))
    store = PlateStore.open(dest)
    assert (len(store.rows), len(store.columns)) == (16, 24)
    assert np.array_equal(store.read_plane("B02"), tifffile.imread(root / "9987_B02.TIF"))


@pytest.mark.parametrize(
    ("htd", "warning"),
    [
        (HTD_HEAD + '"XWells", 24\r\n"YWells", 16\r\n', "truncated"),
        (HTD_HEAD + '"XWells", 99999\r\n"YWells", 77777\r\n"EndFile"\r\n', "not a real plate"),
        (HTD_HEAD + '"XWells", lots\r\n"YWells", 16\r\n"EndFile"\r\n', "not a whole number"),
        (b"\x00\xff\xfe binary junk \x82\x81" * 100, "not a MetaXpress .HTD"),
        (b"x" * (2 << 20), "not an .HTD file"),
    ],
)
def test_hostile_htd_warns_and_falls_back_to_the_files(
    tmp_path: Path, htd: str | bytes, warning: str
) -> None:
    root = _one_site_export(tmp_path, htd)
    plan = scan_source(root, scheme="metaxpress")  # auto: a junk .HTD is no export
    meta = plan.instrument
    assert meta is not None
    found = [w for w in meta.warnings if warning in w]
    assert found, meta.warnings
    assert "9987.HTD" in found[0]  # the message names the file
    assert meta.plate_format is None or meta.plate_format == (16, 24)
    assert plan.smallest_plate().rows <= 16
    assert plan.channel_names == ("Texas Red",)  # from the TIFF tags


def test_files_without_metaseries_tags_fall_back_to_names(tmp_path: Path) -> None:
    root = tmp_path / "plain"
    root.mkdir()
    data = np.arange(64 * 64, dtype=np.uint16).reshape(64, 64)
    for site in (1, 2):
        tifffile.imwrite(
            root / f"P_A01_s{site}_w1{'7F1C0A1E-0000-4000-8000-00000000000' + str(site)}.tif",
            data + site,
        )
    plan = scan_source(root)
    assert plan.scheme == imagexpress.NAME
    assert plan.channel_names == ("w1",)
    assert plan.instrument is not None
    assert plan.instrument.pixel_size_um is None
    assert plan.instrument.field_positions_um == {}


def test_damaged_tiff_is_named(tmp_path: Path) -> None:
    root = _one_site_export(tmp_path, HTD_HEAD + '"EndFile"\r\n')
    (root / "9987_B03.TIF").write_bytes(b"II*\x00garbage")
    with pytest.raises(WellDataError, match=r"9987_B03\.TIF"):
        scan_source(root)


def test_vendor_scheme_by_name_and_options(tmp_path: Path) -> None:
    plain = tmp_path / "plain"
    plain.mkdir()
    tifffile.imwrite(plain / "A01_s1_w1.tif", np.zeros((8, 8), np.uint16))
    assert detect_vendor(plain) is None
    assert scan_source(plain).scheme == "imagexpress"  # the name scheme, as before
    assert scan_source(EXPORTED, scheme="metaxpress").scheme == "metaxpress"
    with pytest.raises(ConfigError, match="channel_names"):
        scan_source(EXPORTED, channel_names=["a", "b", "c"])


def test_cli_report_names_every_file_left_out(tmp_path: Path) -> None:
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-m", "napari_wellzarr.cli", "convert", NATIVE, tmp_path / "p.zarr"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    plan = scan_source(NATIVE)
    assert plan.instrument is not None
    assert plan.instrument.skipped  # the thumbnail
    for item in plan.instrument.skipped:
        assert f"not in the plate: {item.path} ({item.reason})" in done.stderr
    assert "MetaXpress export, plate 'Projection-Mix'" in done.stderr
    assert "pixel size 1.3668 x 1.3668 um" in done.stderr
    store = PlateStore.open(tmp_path / "p.zarr")
    assert store.well_info("E07").channels[1].label == "FITC_05-2"


def test_timepoints_give_the_time_interval(tmp_path: Path) -> None:
    import re

    template = EXPORTED / "9987_Plate_3434/TimePoint_1/ZStep_1/9987_B02_s1_w3.TIF"
    with tifffile.TiffFile(template) as tif:
        description = tif.pages.first.description
    root = tmp_path / "series"
    rng = np.random.default_rng(7)
    written = {}
    for t, clock in ((1, "10:00:00.000"), (2, "10:00:30.000"), (3, "10:01:00.500")):
        folder = root / f"TimePoint_{t}"
        folder.mkdir(parents=True)
        tags = re.sub(
            r'(id="acquisition-time-local" type="[^"]*" value=")[^"]*"',
            rf'\g<1>20240709 {clock}"',
            description,
        )
        data = rng.integers(0, 4000, (32, 32), dtype=np.uint16)
        tifffile.imwrite(folder / "P_C04_s1_w1.TIF", data, description=tags, metadata=None)
        written[f"P_C04_s1_w1_t{t:03d}.TIF"] = data
    (root / "P.HTD").write_text(HTD_HEAD + '"TimePoints", 3\r\n"EndFile"\r\n')
    plan = scan_source(root)
    assert plan.dims == (1, 1, 1, 3)
    assert plan.instrument is not None
    assert plan.instrument.time_interval_s == pytest.approx(30.25)  # the median step
    dest = tmp_path / "t.zarr"
    convert(plan, dest, StorageConfig(plate=plan.smallest_plate(), fields="per-field"))
    store = PlateStore.open(dest)
    info = store.well_info("C04")
    assert info.axes[1] == "t"
    assert info.scale[1] == pytest.approx(30.25)
    assert store.instrument_metadata("C04").time_interval == pytest.approx(30.25)
    for name, data in written.items():
        assert np.array_equal(store.read_plane("C04", *store.plane_key("C04", name)), data)
