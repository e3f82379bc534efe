"""The public test helpers (``napari_wellzarr.testing``): every strategy draws what it says."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from napari_wellzarr.storage.config import StorageConfig
from napari_wellzarr.testing import strategies

if TYPE_CHECKING:
    from napari_wellzarr.storage.geometry import PlateGeometry, Well
    from napari_wellzarr.storage.metadata import PlateMeta

SOME = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
#: A level-0 array document as the strategies mutate it.
DOC = {"shape": [2, 1, 1, 16, 16], "data_type": "uint16", "fill_value": 0, "zarr_format": 3}


def test_every_public_function_is_documented() -> None:
    for name in strategies.__all__:
        value = getattr(strategies, name)
        if callable(value) and not isinstance(value, st.SearchStrategy):
            assert value.__doc__, f"{name} has no docstring"


@SOME
@given(st.data())
def test_every_module_level_strategy_draws(data: st.DataObject) -> None:
    drawn = 0
    for name in strategies.__all__:
        value = getattr(strategies, name)
        if isinstance(value, st.SearchStrategy):
            data.draw(value, label=name)
            drawn += 1
    assert drawn >= 20


@SOME
@given(strategies.ngff_versions, strategies.json_values, strategies.loose_json_values)
def test_versions_and_json_values(version: str, strict: Any, loose: Any) -> None:
    assert version in ("0.4", "0.5")
    assert json.loads(json.dumps(strict, allow_nan=False)) == strict
    json.dumps(loose)  # Python's json writes NaN and big integers


@SOME
@given(strategies.plate_metas(), strategies.geometry_and_well())
def test_valid_plates_and_wells(meta: PlateMeta, case: tuple[PlateGeometry, Well]) -> None:
    keys = [(w.row_index, w.column_index) for w in meta.wells]
    assert keys == sorted(set(keys))
    for well in meta.wells:
        assert well.path == f"{meta.rows[well.row_index]}/{meta.columns[well.column_index]}"
    plate, well = case
    assert plate.well(plate.name(well)) == well


@SOME
@given(strategies.small_plates())
def test_small_plates_are_valid_and_fit(case: dict[str, Any]) -> None:
    config = case["config"]
    assert isinstance(config, StorageConfig)
    assert StorageConfig.from_dict(config.to_dict()) == config
    assert 1 <= len(case["wells"]) <= 3
    for well in case["wells"]:
        assert config.plate.name(well)  # on the plate
    assert len(case["shape"]) == 5
    assert case["dtype"] in strategies.PIXEL_DTYPES


@SOME
@given(st.data())
def test_array_document_mutations_change_one_named_key(data: st.DataObject) -> None:
    keys = sorted(DOC)
    key, value = data.draw(strategies.array_document_mutations(DOC, keys))
    assert key in keys
    if value is not strategies.DELETE:
        json.dumps(value)
    near = data.draw(strategies.near_values(DOC))
    assert isinstance(near, dict)
    assert set(near) <= set(DOC)
    assert len(set(DOC) - set(near)) <= 1
