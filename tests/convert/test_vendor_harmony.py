"""Opera Phenix / Operetta (Harmony) exports: real ones in, bit-exact, with their metadata."""

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
from napari_wellzarr.errors import MetadataError, WellDataError
from napari_wellzarr.storage.axes import PlaneKey
from napari_wellzarr.storage.config import StorageConfig
from napari_wellzarr.storage.geometry import PlateGeometry
from napari_wellzarr.storage.store import PlateStore

DATA = Path(__file__).resolve().parents[1] / "data"
OPERETTA = DATA / "operetta-compose-cls" / "operetta_plate"
PHENIX = DATA / "pe2loaddata-phenix-version1" / "Version1"


def _copy_operetta(tmp_path: Path) -> Path:
    dest = tmp_path / "operetta_plate"
    shutil.copytree(OPERETTA, dest)
    return dest


def _edit_index(export: Path, edit: object) -> Path:
    index = export / "Images" / "Index.idx.xml"
    text = index.read_text(encoding="utf-8-sig")
    index.write_text(edit(text) if callable(edit) else str(edit), encoding="utf-8")
    return index


def _check_plate(plate: Path, plan: object) -> PlateStore:
    """Every source plane of the plan is bit-exact in the plate and findable by file name."""
    store = PlateStore.open(plate)
    for well in plan.wells:  # type: ignore[attr-defined]
        for plane in well.planes:
            source = tifffile.imread(plane.path)
            got = store.read_plane(well.name, *plane.key)
            assert got.dtype == source.dtype
            np.testing.assert_array_equal(got, source, err_msg=plane.path)
            assert store.plane_key(well.name, Path(plane.path).name) == plane.key
    return store


# --- the real exports --------------------------------------------------------------------


def test_operetta_cls_export_converts_bit_exact_with_its_metadata(tmp_path: Path) -> None:
    # quirks: HarmonyV5 index with a UTF-8 BOM and CRLF, LZW TIFFs (needs imagecodecs),
    # TimepointID 0, a trimmed export of 1 well of a 384-well plate, fields at +-645.814 um
    assert harmony.detect(OPERETTA)
    assert harmony.detect(OPERETTA / "Images")
    plan = harmony.scan(OPERETTA)
    assert plan.scheme == "harmony"
    assert plan.dims == (2, 1, 1, 1)
    assert plan.plane_shape == (1080, 1080)
    assert plan.dtype == "uint16"
    assert plan.channel_names == ("Fluorescein (FITC)",)
    assert [w.name for w in plan.wells] == ["C03"]
    assert plan.missing == ()
    meta = plan.instrument
    assert meta is not None
    assert meta.plate_name == "Test_Sample_BALL"
    assert meta.plate_format == (16, 24)
    assert meta.pixel_size_um == pytest.approx((1.1959521619135234, 1.1959521619135234))
    (channel,) = meta.channels
    assert (channel.excitation_nm, channel.emission_nm) == (475.0, 525.0)
    assert channel.color == wavelength_color(525.0)
    # PositionY grows up, image rows down: field 1 (y +645.8 um) is the upper one
    assert meta.field_positions_um == {
        ("C03", 0): pytest.approx((-645.814, -645.814)),
        ("C03", 1): pytest.approx((-645.814, 645.814)),
    }
    # Assaylayout/Unnamed.xml: layer 'Compound' with every value empty -> no condition
    assert meta.conditions == {}
    assert meta.z_step_um is None
    assert meta.time_interval_s is None
    assert meta.warnings == ()
    assert meta.skipped == ()

    rows, cols = meta.plate_format
    result = convert(
        plan,
        tmp_path / "p.zarr",
        StorageConfig(plate=PlateGeometry(rows, cols)),
        pixel_size=meta.pixel_size_um,
    )
    assert result.written == ("C03",)
    store = _check_plate(tmp_path / "p.zarr", plan)
    assert len(store.rows) == 16
    assert len(store.columns) == 24


def test_phenix_index_with_five_of_six_files_absent(tmp_path: Path) -> None:
    # quirks: 6 Cell Painting channels of one plane whose PositionZ differs per channel;
    # brightfield emission "0 nm"; the copy holds one TIFF of the six the index lists
    plan = harmony.scan(PHENIX)
    assert plan.dims == (1, 6, 1, 1)  # one PlaneID: one z, whatever PositionZ says
    assert plan.channel_names == (
        "Alexa 647",
        "Alexa 568",
        "488 long",
        "Alexa 488",
        "HOECHST 33342",
        "Brightfield",
    )
    meta = plan.instrument
    assert meta is not None
    assert meta.plate_name == "BR00121482"
    assert meta.plate_format == (16, 24)
    assert meta.pixel_size_um == pytest.approx((0.5979760809567617, 0.5979760809567617))
    assert [(c.excitation_nm, c.emission_nm) for c in meta.channels] == [
        (640.0, 706.0),
        (561.0, 599.0),
        (488.0, 599.0),
        (488.0, 522.0),
        (405.0, 456.0),
        (740.0, None),
    ]
    assert meta.channels[4].color == wavelength_color(456.0)
    assert meta.channels[5].color is None  # brightfield: no emission, no colour
    assert meta.z_step_um is None
    assert meta.field_positions_um == {("A01", 0): (0.0, 0.0)}
    # the absent files are missing planes named by file, and said in a warning
    missing = {m.name: m.key for m in plan.missing}
    assert missing == {
        f"r01c01f01p01-ch{c}sk1fk1fl1.tiff": PlaneKey(0, c - 1, 0, 0) for c in (1, 2, 3, 4, 6)
    }
    (warning,) = meta.warnings
    assert "5 of the 6 image files listed in Index.idx.xml do not exist" in warning
    assert "r01c01f01p01-ch1sk1fk1fl1.tiff" in warning

    with pytest.raises(Exception, match=r"strict mode: 5 plane\(s\).*ch1sk1fk1fl1\.tiff"):
        convert(plan, tmp_path / "strict.zarr", StorageConfig(), strict=True)
    result = convert(plan, tmp_path / "p.zarr", StorageConfig())
    assert result.missing_planes == 5
    store = _check_plate(tmp_path / "p.zarr", plan)
    for key in missing.values():
        assert not store.read_plane("A01", *key).any()


def test_v6_index_xml_with_channels_in_maps_and_timepoints_from_1(tmp_path: Path) -> None:
    """Index.xml (V6/V7): channel fields only in Maps, TimepointID counting from 1."""
    export = _copy_operetta(tmp_path)
    images = export / "Images"
    v5 = (images / "Index.idx.xml").read_text(encoding="utf-8-sig")
    (images / "Index.idx.xml").unlink()
    moved = ("ChannelName", "ImageResolutionX", "ImageResolutionY", "MainEmissionWavelength")
    entry = "".join(re.search(rf"<{t}[^>]*>[^<]*</{t}>", v5).group(0) for t in moved)  # type: ignore[union-attr]
    v6 = v5.replace("HarmonyV5", "HarmonyV6")
    for tag in moved:
        v6 = re.sub(rf"\s*<{tag}[^>]*>[^<]*</{tag}>", "", v6)
    v6 = re.sub(
        r"<Maps>.*</Maps>",
        f'<Maps><Map><Entry ChannelID="1">{entry}</Entry></Map></Maps>',
        v6,
        flags=re.S,
    )
    # a second timepoint: the same two fields 90 s later (TimepointID 1 -> 2)
    first = re.search(r"<Images>(.*)</Images>", v6, flags=re.S).group(1)  # type: ignore[union-attr]
    later = (
        first.replace("sk1fk1fl1", "sk2fk1fl1")
        .replace("<TimepointID>0</TimepointID>", "<TimepointID>2</TimepointID>")
        .replace("T10:19:2", "T10:20:5")
    )
    v6 = v6.replace("<TimepointID>0</TimepointID>", "<TimepointID>1</TimepointID>")
    v6 = v6.replace("</Images>", later + "</Images>")
    (images / "Index.xml").write_text(v6, encoding="utf-8")
    for f in (1, 2):
        name = f"r03c03f{f:02d}p01-ch1sk"
        data = tifffile.imread(images / f"{name}1fk1fl1.tiff")
        tifffile.imwrite(images / f"{name}2fk1fl1.tiff", data[::-1].copy())

    plan = harmony.scan(export)
    assert plan.dims == (2, 1, 1, 2)  # timepoints 1 and 2 -> t 0 and 1
    assert plan.channel_names == ("Fluorescein (FITC)",)  # from the Maps section
    meta = plan.instrument
    assert meta is not None
    assert meta.warnings == ()
    assert meta.pixel_size_um == pytest.approx((1.1959521619135234, 1.1959521619135234))
    assert meta.channels[0].emission_nm == 525.0
    assert meta.time_interval_s == pytest.approx(90.0)
    keys = {Path(p.path).name: p.key for p in plan.wells[0].planes}
    assert keys["r03c03f02p01-ch1sk2fk1fl1.tiff"] == PlaneKey(1, 0, 0, 1)
    convert(plan, tmp_path / "p.zarr", StorageConfig(fields="per-field"))
    _check_plate(tmp_path / "p.zarr", plan)


def test_assay_layout_gives_per_well_conditions(tmp_path: Path) -> None:
    export = _copy_operetta(tmp_path)
    layout = export / "Assaylayout" / "Unnamed.xml"
    text = layout.read_bytes().decode("utf-8-sig")
    c03 = "<Row>3</Row>\r\n      <Col>3</Col>\r\n      <Value />"
    assert c03 in text  # the real file: CRLF, empty values
    text = text.replace(c03, c03.replace("<Value />", "<Value>DMSO</Value>"))
    second = re.search(r"<Layer>.*</Layer>", text, flags=re.S).group(0)  # type: ignore[union-attr]
    second = second.replace("<Name>Compound</Name>", "<Name>Concentration</Name>").replace(
        "<Value>DMSO</Value>", "<Value>10 uM</Value>"
    )
    layout.write_bytes(text.replace("</AssayLayout>", second + "</AssayLayout>").encode())
    meta = harmony.read_index(export).instrument
    assert meta.conditions == {"C03": {"Compound": "DMSO", "Concentration": "10 uM"}}


def test_tiffs_the_index_does_not_list_are_reported_skipped(tmp_path: Path) -> None:
    export = _copy_operetta(tmp_path)
    shutil.copy(
        export / "Images" / "r03c03f01p01-ch1sk1fk1fl1.tiff", export / "Images" / "extra.tiff"
    )
    plan = harmony.scan(export)
    assert plan.instrument is not None
    assert [(s.path, s.reason) for s in plan.instrument.skipped] == [
        ("extra.tiff", "not listed in Index.idx.xml")
    ]
    assert plan.n_files == 3
    assert plan.dims == (2, 1, 1, 1)


def test_detect_tells_the_formats_apart() -> None:
    cv = DATA / "faim-cv8000-minimal"
    assert not harmony.detect(cv / next(p.name for p in cv.iterdir() if p.is_dir()))
    assert not cellvoyager.detect(OPERETTA)
    assert not harmony.detect(DATA / "openhcs_plate")


# --- hostile or broken metadata ------------------------------------------------------------


def test_truncated_index_is_an_error_naming_the_file(tmp_path: Path) -> None:
    export = _copy_operetta(tmp_path)
    index = _edit_index(export, lambda t: t[: len(t) // 2])
    with pytest.raises(MetadataError, match=rf"{re.escape(str(index))}.*not well-formed"):
        harmony.scan(export)


def test_entity_bomb_is_refused_at_once(tmp_path: Path) -> None:
    export = _copy_operetta(tmp_path)
    lol = "".join(
        f'<!ENTITY l{i} "{("&l" + str(i - 1) + ";") * 10 if i else "lol"}">' for i in range(10)
    )
    bomb = (
        f'<?xml version="1.0"?><!DOCTYPE E [{lol}]><EvaluationInputData>&l9;</EvaluationInputData>'
    )
    index = _edit_index(export, bomb)
    start = time.monotonic()
    with pytest.raises(MetadataError, match=rf"{re.escape(str(index))}.*entities"):
        harmony.scan(export)
    assert time.monotonic() - start < 5


def test_wrong_root_is_an_error_and_wrong_namespace_a_warning(tmp_path: Path) -> None:
    export = _copy_operetta(tmp_path)
    _edit_index(export, lambda t: t.replace("HarmonyV5", "SomethingElse"))
    plan = harmony.scan(export)
    assert plan.dims == (2, 1, 1, 1)
    assert plan.instrument is not None
    assert any("SomethingElse" in w for w in plan.instrument.warnings)
    _edit_index(export, lambda t: t.replace("EvaluationInputData", "Evaluation"))
    with pytest.raises(MetadataError, match="root element is <Evaluation>"):
        harmony.scan(export)


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        (
            "<Row>3</Row>\n      <Col>3</Col>\n      <FieldID>1",
            "<Row>100000000</Row>\n      <Col>3</Col>\n      <FieldID>1",
            r"image 0303K1F1P1R1: Row 100000000 lies outside 1\.\.32",
        ),
        (
            "<FieldID>1</FieldID>",
            "<FieldID>one</FieldID>",
            r"image 0303K1F1P1R1: FieldID 'one' is not an integer",
        ),
        ("<URL>r03c03f01p01-ch1sk1fk1fl1.tiff</URL>", "<URL />", r"image 0303K1F1P1R1 has no URL"),
        (
            "<FieldID>2</FieldID>",
            "<FieldID>1</FieldID>",
            r"lists 'r03c03f01p01.*' and 'r03c03f02p01.*' as the same plane",
        ),
    ],
)
def test_bad_image_entries_are_errors_naming_the_image(
    tmp_path: Path, old: str, new: str, message: str
) -> None:
    export = _copy_operetta(tmp_path)
    _edit_index(export, lambda t: t.replace(old, new, 1))
    with pytest.raises(MetadataError, match=message):
        harmony.scan(export)


def test_absurd_plate_size_resolution_and_positions_are_warnings(tmp_path: Path) -> None:
    export = _copy_operetta(tmp_path)

    def absurd(text: str) -> str:
        text = text.replace("<PlateRows>16</PlateRows>", "<PlateRows>99999999999</PlateRows>")
        text = text.replace("1.1959521619135234E-06", "1E+300")
        return text.replace("-0.000645814", "12345")

    _edit_index(export, absurd)
    plan = harmony.scan(export)
    meta = plan.instrument
    assert meta is not None
    assert meta.plate_format is None
    assert meta.pixel_size_um is None
    assert meta.field_positions_um == {("C03", 1): pytest.approx((-645.814, 645.814))}
    assert len(meta.warnings) == 3
    assert "99999999999x24" in meta.warnings[0]


def test_absurd_image_size_in_the_index_does_not_allocate(tmp_path: Path) -> None:
    export = _copy_operetta(tmp_path)
    _edit_index(export, lambda t: t.replace("<ImageSizeX>1080", "<ImageSizeX>99999999999"))
    plan = harmony.scan(export)  # the TIFFs' own headers give the plane shape
    assert plan.plane_shape == (1080, 1080)
    assert plan.instrument is not None
    assert plan.instrument.warnings == (
        "Index.idx.xml gives images of 1080 x 1e+11 pixels, the TIFFs hold 1080 x 1080: "
        "the TIFFs' size is used",
    )


def test_url_cannot_leave_the_index_folder(tmp_path: Path) -> None:
    export = _copy_operetta(tmp_path)
    shutil.copy(export / "Images" / "r03c03f01p01-ch1sk1fk1fl1.tiff", tmp_path / "outside.tiff")
    _edit_index(
        export,
        lambda t: t.replace("<URL>r03c03f01p01-ch1sk1fk1fl1.tiff", "<URL>../../outside.tiff"),
    )
    plan = harmony.scan(export)
    assert all(Path(p.path).parent == export / "Images" for p in plan.wells[0].planes)
    assert [m.name for m in plan.missing] == ["outside.tiff"]


def test_index_whose_files_are_all_absent_is_a_clear_error(tmp_path: Path) -> None:
    export = _copy_operetta(tmp_path)
    for tiff in (export / "Images").glob("*.tiff"):
        tiff.unlink()
    with pytest.raises(
        MetadataError, match=r"none of the 2 image files listed in .*Index\.idx\.xml"
    ):
        harmony.scan(export)


def test_no_index_and_unreadable_tiff(tmp_path: Path) -> None:
    with pytest.raises(MetadataError, match="no Harmony index"):
        harmony.scan(tmp_path)
    export = _copy_operetta(tmp_path)
    (export / "Images" / "r03c03f02p01-ch1sk1fk1fl1.tiff").write_bytes(b"II*\x00garbage")
    with pytest.raises(WellDataError, match=r"r03c03f02p01-ch1sk1fk1fl1\.tiff"):
        harmony.scan(export)


def test_wavelength_colors() -> None:
    assert wavelength_color(456.0) is not None
    assert wavelength_color(456.0)[4:] == "FF"
    assert wavelength_color(525.0)[2:4] == "FF"  # type: ignore[index]  # green
    assert wavelength_color(706.0) == "FF0000"  # far red stays visible
    for nothing in (None, 0.0, -5.0, float("nan"), 5000.0):
        assert wavelength_color(nothing) is None


def test_index_with_bytes_that_are_not_utf8(tmp_path: Path) -> None:
    export = _copy_operetta(tmp_path)
    index = export / "Images" / "Index.idx.xml"
    raw = index.read_bytes().replace(b"Fluorescein (FITC)", b"Fluorescein \xff\xfe", 1)
    index.write_bytes(raw)
    with pytest.raises(MetadataError, match=rf"{re.escape(str(index))}.*not well-formed"):
        harmony.scan(export)


def test_huge_index_is_refused_before_reading(tmp_path: Path) -> None:
    from napari_wellzarr.convert.vendors.xmlread import MAX_XML_BYTES

    export = _copy_operetta(tmp_path)
    index = export / "Images" / "Index.idx.xml"
    with index.open("r+b") as f:
        f.truncate(MAX_XML_BYTES + 1)  # sparse: no disk space used
    start = time.monotonic()
    with pytest.raises(MetadataError, match=r"Index\.idx\.xml' is 1073741825 bytes, more than"):
        harmony.scan(export)
    assert time.monotonic() - start < 5


def test_entity_bomb_in_utf16_and_a_harmless_doctype(tmp_path: Path) -> None:
    export = _copy_operetta(tmp_path)
    index = export / "Images" / "Index.idx.xml"
    v5 = index.read_bytes().decode("utf-8-sig")
    lol = "".join(
        f'<!ENTITY l{i} "{("&l" + str(i - 1) + ";") * 10 if i else "lol"}">' for i in range(10)
    )
    bomb = f'<?xml version="1.0" encoding="utf-16"?><!DOCTYPE E [{lol}]><E>&l9;</E>'
    index.write_bytes(bomb.encode("utf-16"))
    with pytest.raises(MetadataError, match="declares XML entities"):
        harmony.scan(export)
    # a DOCTYPE without entities is harmless: read (by defusedxml) like any index
    body = v5.split("?>", 1)[1]
    index.write_text(f'<?xml version="1.0"?><!DOCTYPE EvaluationInputData>{body}', "utf-8")
    assert harmony.scan(export).dims == (2, 1, 1, 1)


def test_read_records_streams_the_fields_asked_for(tmp_path: Path) -> None:
    import gc

    from napari_wellzarr.convert.vendors.xmlread import read_records
    from napari_wellzarr.errors import MetadataError

    index = tmp_path / "Index.idx.xml"
    index.write_text(
        '<?xml version="1.0"?><E xmlns="urn:h"><Wells><Well><Image id="a"/></Well></Wells>'
        "<Images><Image><Row> 3 </Row><Row>4</Row><Col>2</Col><Other>x</Other></Image>"
        "<Image><Row>5</Row><Col/></Image></Images></E>",
        encoding="utf-8",
    )
    root, records = read_records(index, "Image", {"Row", "Col"})
    assert records == [{"Row": "3", "Col": "2"}, {"Row": "5", "Col": ""}]  # the first Row
    images = root.findall("{urn:h}Images/{urn:h}Image")
    assert [len(im) for im in images] == [0, 0]  # emptied as they were read
    assert root.find("{urn:h}Wells/{urn:h}Well/{urn:h}Image").get("id") == "a"  # type: ignore[union-attr]
    assert gc.isenabled()
    gc.disable()
    try:
        read_records(index, "Image", {"Row"})
        assert not gc.isenabled()  # the caller's choice is kept
    finally:
        gc.enable()
    index.write_text(index.read_text()[:-20], encoding="utf-8")
    with pytest.raises(MetadataError, match=r"Index\.idx\.xml.*not well-formed"):
        read_records(index, "Image", {"Row"})
    assert gc.isenabled()
