"""Yokogawa CellVoyager exports: real metadata in, layout and metadata checked, bit-exact."""

from __future__ import annotations

import re
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
import tifffile

from napari_wellzarr.convert.engine import convert
from napari_wellzarr.convert.instrument import wavelength_color
from napari_wellzarr.convert.vendors import cellvoyager, harmony
from napari_wellzarr.errors import MetadataError
from napari_wellzarr.storage.axes import PlaneKey
from napari_wellzarr.storage.config import StorageConfig
from napari_wellzarr.storage.geometry import PlateGeometry
from napari_wellzarr.storage.store import PlateStore

DATA = Path(__file__).resolve().parents[1] / "data"
CV8000_RUN = (
    DATA / "faim-cv8000-minimal" / "CV8000-Minimal-DataSet-2C-3W-4S-FP2-stack_20230918_135839"
)
CV8000 = CV8000_RUN / "CV8000-Minimal-DataSet-2C-3W-4S-FP2-stack"
TYPES = DATA / "cellvoyager-types-metadata-only" / "resources"
AF_ERROR = TYPES / "CV8000_AF_Error"
Z_PROCESSED = TYPES / "CV7000_z_processed"


def _metadata_copy(src: Path, dest: Path) -> Path:
    """The export's metadata files only (no TIFF)."""
    dest.mkdir()
    for f in src.iterdir():
        if not f.name.lower().endswith((".tif", ".tiff")):
            shutil.copy(f, dest / f.name)
    return dest


def _write_images(
    folder: Path, rng: np.random.Generator, shape: tuple[int, int] = (8, 12)
) -> dict[str, np.ndarray]:
    """A small random TIFF under every file name the .mlf lists (the real ones are absent
    or all zero, and 2000 x 2000)."""
    text = (folder / cellvoyager.DATA_FILE).read_text(encoding="utf-8-sig")
    names = re.findall(r'bts:Type="IMG"[^>]*>([^<]+)<', text)
    out = {}
    for name in names:
        data = rng.integers(1, 65535, size=shape, dtype=np.uint16)
        tifffile.imwrite(folder / name, data)
        out[name] = data
    return out


# --- the real exports --------------------------------------------------------------------


def test_cv8000_minimal_layout_and_metadata() -> None:
    # quirks: mrf lists Ch1..Ch4, only Ch1/Ch2 acquired (ActionIndex 1 -> Ch1, 2 -> Ch2);
    # SC_* shading and DC_* dark references beside the images; mrf/mes/wpi with a UTF-8
    # BOM, mlf without; all-zero TIFFs re-written by tifffile; the data is one level down
    assert cellvoyager.detect(CV8000_RUN)
    assert cellvoyager.detect(CV8000)
    assert not harmony.detect(CV8000)
    plan = cellvoyager.scan(CV8000_RUN)
    assert plan.source == CV8000.absolute()
    assert plan.scheme == "cellvoyager"
    assert [w.name for w in plan.wells] == ["D08", "E03", "F08"]
    assert plan.dims == (4, 2, 4, 1)
    assert plan.plane_shape == (2000, 2000)
    assert plan.dtype == "uint16"
    assert plan.missing == ()
    assert plan.channel_names == ("405 BP445/45", "488 BP525/50")
    meta = plan.instrument
    assert meta is not None
    assert meta.plate_name == "CV8000-Minimal-DataSet-2C-3W-4S-FP2-stack"
    assert meta.plate_format == (8, 12)
    assert meta.pixel_size_um == (0.325, 0.325)
    assert meta.z_step_um == 3.0
    assert meta.time_interval_s is None
    assert [(c.excitation_nm, c.emission_nm) for c in meta.channels] == [
        (405.0, 445.0),
        (488.0, 525.0),
    ]
    assert [c.color for c in meta.channels] == ["002FFF", "00FFA1"]  # the .mes colours
    # X/Y: um from the well centre, Y up; the 4 fields tile a 2 x 2 grid of 650 um
    for well in ("D08", "E03", "F08"):
        assert [meta.field_positions_um[well, f] for f in range(4)] == [
            (-402.9, -567.1),
            (-402.9, 82.8),
            (247.0, -567.1),
            (247.0, 82.8),
        ]
    assert meta.warnings == (
        "MeasurementDetail.mrf lists channel(s) Ch3, Ch4 that have no image (not acquired)",
    )
    skipped = {s.path: s.reason for s in meta.skipped}
    assert skipped == {
        "DC_DCAM#1_CAM3.tif": "dark-current reference",
        "DC_DCAM#2_CAM4.tif": "dark-current reference",
        "SC_BP445-45_20x v2_M01_CH01.tif": "shading-correction reference",
        "SC_BP525-50_20x v2_M01_CH02.tif": "shading-correction reference",
        "SC_BP600-37_20x v2_M01_CH03.tif": "shading-correction reference",
        "SC_BP676-29_20x v2_M01_CH04.tif": "shading-correction reference",
    }
    assert plan.n_files == 102
    # each file is where its name says: well, F (field), Z, C (channel)
    pattern = re.compile(r"_([A-P]\d\d)_T0001F(\d{3})L01A(\d\d)Z(\d\d)C(\d\d)\.tif$")
    for well in plan.wells:
        for plane in well.planes:
            w, f, _, z, c = pattern.search(plane.name).groups()  # type: ignore[union-attr]
            assert (w, plane.key) == (well.name, PlaneKey(int(f) - 1, int(c) - 1, int(z) - 1))


def test_cv8000_layout_converts_bit_exact(tmp_path: Path, rng: np.random.Generator) -> None:
    """The real metadata with small random images under its file names."""
    folder = _metadata_copy(CV8000, tmp_path / "export")
    truth = _write_images(folder, rng)
    plan = cellvoyager.scan(folder)
    assert plan.dims == (4, 2, 4, 1)
    assert plan.plane_shape == (8, 12)
    assert plan.instrument is not None
    assert plan.instrument.warnings[-1] == (
        "MeasurementDetail.mrf gives images of 2000 x 2000 pixels, the TIFFs hold 8 x 12: "
        "the TIFFs' size is used"
    )
    convert(plan, tmp_path / "p.zarr", StorageConfig(plate=PlateGeometry(8, 12)), pixel_size=0.325)
    store = PlateStore.open(tmp_path / "p.zarr")
    assert sorted(store.wells()) == ["D08", "E03", "F08"]
    n = 0
    for well in plan.wells:
        for plane in well.planes:
            got = store.read_plane(well.name, *plane.key)
            np.testing.assert_array_equal(got, truth[plane.name], err_msg=plane.name)
            assert store.plane_key(well.name, plane.name) == plane.key
            n += 1
    assert n == len(truth) == 96


def test_metadata_only_export_is_read_and_refused_clearly() -> None:
    # quirks: no image was ever committed; 4 ERR records (autofocus failures, no ZIndex,
    # Ch or file name); mrf Status="4096"
    m = cellvoyager.read_measurement(AF_ERROR)
    assert len(m.images) == 1860
    meta = m.instrument
    assert meta.plate_name == "20250403-Illumination-QC-40x"
    assert meta.plate_format == (8, 12)
    assert meta.pixel_size_um == (0.1625, 0.1625)
    assert meta.z_step_um == 1.0
    assert meta.time_interval_s == pytest.approx(206.866, abs=1e-3)
    assert m.channel_names == ("405 BP445/45", "488 BP525/50", "561 BP600/37", "640 BP676/29")
    assert len(m.errors) == 4
    assert (
        m.errors[0] == "AF Error at F06 No. 5 (20250403-Illumination-QC-40x) "
        "(row 6, column 6, field 5, timepoint 4)"
    )
    assert [w for w in meta.warnings if w.startswith("autofocus failure")] == [
        f"autofocus failure (ERR record, no image): {e}" for e in m.errors
    ]
    assert (
        meta.warnings[-1]
        == "MeasurementDetail.mrf reports Status=4096 (the measurement had errors)"
    )
    assert sorted(m.gaps) == [("F06", f, 3) for f in (4, 10, 13, 14)]
    # a failed field's position comes from its ERR record (X 1050, Y 350)
    assert meta.field_positions_um["F06", 4] == (-350.0, 1050.0)
    assert meta.field_positions_um["F06", 4] == meta.field_positions_um["C06", 4]
    with pytest.raises(
        MetadataError, match=r"none of the 1860 image files listed in .*MeasurementData\.mlf"
    ):
        cellvoyager.scan(AF_ERROR)


def test_autofocus_failures_are_named_as_missing_planes(
    tmp_path: Path, rng: np.random.Generator
) -> None:
    # a QC plate: each timepoint images one well in one channel (C06 t1 ... F06 t4); the
    # autofocus failed on 4 fields of F06 at t4. Images are written for F06 field 1 only.
    folder = _metadata_copy(AF_ERROR, tmp_path / "export")
    mlf = (folder / cellvoyager.DATA_FILE).read_text(encoding="utf-8")
    names = re.findall(r'bts:Type="IMG"[^>]*>([^<]+_F06_T0004F001L04A01Z\d\dC04\.tif)<', mlf)
    assert len(names) == 31
    for name in names:
        tifffile.imwrite(folder / name, rng.integers(0, 9, (4, 4), dtype=np.uint16))
    plan = cellvoyager.scan(folder)
    assert plan.dims == (16, 4, 31, 4)
    assert [w.name for w in plan.wells] == ["F06"]  # the other wells have no file
    meta = plan.instrument
    assert meta is not None
    assert any("wells with no file at all are left out: C06, D06, E06" in w for w in meta.warnings)
    failed = {
        (m.key.field, m.key.t)
        for m in plan.missing
        if m.name.endswith("(autofocus failure (ERR record))")
    }
    assert failed == {(4, 3), (10, 3), (13, 3), (14, 3)}
    absent = [m for m in plan.missing if m.name.endswith(".tif")]  # listed, not on disk
    assert len(absent) == 11 * 31
    assert all(m.key.t == 3 and m.key.c == 3 for m in absent)


def test_instrument_projection_and_action_channels() -> None:
    # quirks: ActionIndex 1..3 acquire Ch3, Ch4, Ch1; ZIndex 1 only with
    # ZImageProcessing="Maximum" (a projection made by the instrument); a 384-well plate;
    # the mrf lists Ch2 and Ch5 (Ch5 without a shading file) that were never acquired
    m = cellvoyager.read_measurement(Z_PROCESSED)
    meta = m.instrument
    assert len(m.images) == 135
    assert m.channel_names == ("405 BP445/45", "561 BP600/37", "640 BP676/29")  # Ch order
    by_name = {im.path: im.key for im in m.images}
    assert by_name["AssayPlate_Cellvis_#384-1.5H-N_C03_T0001F001L01A01Z01C03.tif"] == PlaneKey(
        0, 1, 0, 0
    )
    assert by_name["AssayPlate_Cellvis_#384-1.5H-N_C03_T0001F001L01A03Z01C01.tif"] == PlaneKey(
        0, 0, 0, 0
    )
    assert {im.well.label for im in m.images} == {"C03", "C04", "D03", "D04", "E03"}
    assert meta.plate_format == (16, 24)
    assert meta.pixel_size_um == pytest.approx((0.10833333333333334, 0.10833333333333334))
    assert meta.z_step_um is None
    assert meta.channels[0].color == "1B54FF"
    assert meta.warnings == (
        "MeasurementDetail.mrf lists channel(s) Ch2, Ch5 that have no image (not acquired)",
        "the images are z projections made by the instrument (Maximum; ZImageProcessing in "
        "the .mlf): each is stored as the well's single z plane",
    )


# --- hostile or broken metadata ------------------------------------------------------------


def _mlf_copy(tmp_path: Path, edit: object) -> Path:
    folder = _metadata_copy(CV8000, tmp_path / "export")
    mlf = folder / cellvoyager.DATA_FILE
    text = mlf.read_text(encoding="utf-8")
    mlf.write_text(edit(text) if callable(edit) else str(edit), encoding="utf-8")
    return folder


def test_truncated_mlf_is_an_error_naming_the_file(tmp_path: Path) -> None:
    folder = _mlf_copy(tmp_path, lambda t: t[: len(t) // 3])
    with pytest.raises(MetadataError, match=r"MeasurementData\.mlf' is not well-formed XML"):
        cellvoyager.scan(folder)


def test_entity_bomb_mlf_is_refused_at_once(tmp_path: Path) -> None:
    lol = "".join(
        f'<!ENTITY l{i} "{("&l" + str(i - 1) + ";") * 10 if i else "lol"}">' for i in range(10)
    )
    folder = _mlf_copy(tmp_path, f"<?xml version='1.0'?><!DOCTYPE M [{lol}]><M>&l9;</M>")
    start = time.monotonic()
    with pytest.raises(MetadataError, match=r"MeasurementData\.mlf' declares XML entities"):
        cellvoyager.scan(folder)
    assert time.monotonic() - start < 5


def test_mlf_of_error_records_only(tmp_path: Path) -> None:
    folder = _mlf_copy(tmp_path, lambda t: t.replace('bts:Type="IMG"', 'bts:Type="ERR"'))
    with pytest.raises(MetadataError, match="lists no image"):
        cellvoyager.read_measurement(folder)


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ('bts:Row="4"', 'bts:Row="4000000"', r"record 1: Row 4000000 lies outside 1\.\.32"),
        ('bts:Ch="1"', 'bts:Ch="one"', r"record 1: Ch 'one' is not an integer"),
        (
            'bts:ZIndex="2"',
            'bts:ZIndex="1"',
            r"lists '.*D08_T0001F001L01A01Z01C01\.tif' and '.*Z02C01\.tif' as the same plane",
        ),
        (
            "_D08_T0001F001L01A01Z02C01.tif<",
            "_D08_T0001F001L01A01Z01C01.tif<",
            r"lists '.*D08_T0001F001L01A01Z01C01\.tif' for two planes",
        ),
    ],
)
def test_bad_records_are_errors_naming_the_record(
    tmp_path: Path, old: str, new: str, message: str
) -> None:
    folder = _mlf_copy(tmp_path, lambda t: t.replace(old, new, 1))
    with pytest.raises(MetadataError, match=message):
        cellvoyager.scan(folder)


def test_wrong_namespace_warns_and_broken_detail_falls_back(
    tmp_path: Path, rng: np.random.Generator
) -> None:
    folder = _mlf_copy(tmp_path, lambda t: t.replace("BTSSchema/1.0", "BTSSchema/9.9"))
    (folder / cellvoyager.DETAIL_FILE).write_text("<bts:MeasurementDetail", encoding="utf-8")
    _write_images(folder, rng, (4, 4))
    plan = cellvoyager.scan(folder)
    meta = plan.instrument
    assert meta is not None
    assert plan.dims == (4, 2, 4, 1)
    assert meta.pixel_size_um is None
    assert meta.plate_format is None
    assert "BTSSchema/9.9" in meta.warnings[0]
    assert meta.warnings[1].startswith("MeasurementDetail.mrf ignored:")
    assert "not well-formed" in meta.warnings[1]


def test_absurd_detail_values_are_warnings(tmp_path: Path) -> None:
    folder = _metadata_copy(Z_PROCESSED, tmp_path / "export")
    mrf = folder / cellvoyager.DETAIL_FILE
    text = mrf.read_text(encoding="utf-8-sig")
    text = text.replace('bts:RowCount="16"', 'bts:RowCount="1000000000"')
    text = text.replace(
        'HorizontalPixelDimension="0.10833333333333334"', 'HorizontalPixelDimension="1e308"'
    )
    mrf.write_text(text, encoding="utf-8")
    meta = cellvoyager.read_measurement(folder).instrument
    assert meta.plate_format is None
    assert meta.pixel_size_um is None
    assert any("1000000000x24" in w for w in meta.warnings)
    assert sum("implausible" in w for w in meta.warnings) == 3


def test_emission_colour_when_the_settings_have_none(tmp_path: Path) -> None:
    folder = _metadata_copy(CV8000, tmp_path / "export")
    mes = folder / "Minimal-3C3W2S-FP2-stack.mes"
    mes.write_text(re.sub(r'bts:Color="[^"]*"', "", mes.read_text(encoding="utf-8-sig")), "utf-8")
    meta = cellvoyager.read_measurement(folder).instrument
    assert [c.color for c in meta.channels] == [wavelength_color(445.0), wavelength_color(525.0)]
    mes.unlink()
    m = cellvoyager.read_measurement(folder)
    assert m.channel_names == ("Ch1", "Ch2")
    assert m.instrument.pixel_size_um == (0.325, 0.325)
