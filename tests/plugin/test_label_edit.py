"""Painting a plate's labels in a real napari viewer and saving them back into the plate."""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest

from napari_wellzarr.errors import PlateExistsError
from napari_wellzarr.plugin._reader import read_plate
from napari_wellzarr.plugin._writer import write_layers
from tests.plugin.ngio_plates import WELLS, multiplexed_plate, nuclei, round1
from tests.plugin.test_acquisitions import layers_by_name, well_tile

if TYPE_CHECKING:
    from collections.abc import Callable

pytestmark = pytest.mark.gui
PLUGIN = "napari-wellzarr"
NAMES = [f"{r}{c}" for r, c in WELLS]


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return multiplexed_plate(tmp_path_factory.mktemp("ngio") / "plate.zarr", "0.5")


@pytest.fixture
def plate(pristine: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(pristine, tmp_path / "plate.zarr"))


def digests(root: Path) -> dict[str, str]:
    """Every file of the plate (hidden ones left out) by path: its content's digest."""
    out = {}
    for dirpath, dirnames, files in os.walk(root):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        for name in files:
            if not name.startswith("."):
                path = Path(dirpath) / name
                out[str(path.relative_to(root))] = hashlib.sha1(path.read_bytes()).hexdigest()
    return out


def origin(layer: Any, well: str) -> tuple[int, int]:
    info = layer.metadata["wellzarr"]
    r, c = info["wells"][well]
    return r * info["pitch"][0], c * info["pitch"][1]


def test_paint_fill_and_set_then_save_writes_only_the_edited_wells(
    make_napari_viewer: Callable[..., Any], plate: Path
) -> None:
    before = digests(plate)
    viewer = make_napari_viewer()
    viewer.open(str(plate), plugin=PLUGIN)
    labels = viewer.layers["round1: nuclei"]
    assert labels.editable
    # Paint a 5-pixel square brush stroke in B04 at (20, 30) of the well.
    y, x = origin(labels, "B04")
    labels.brush_size = 5
    labels.paint((0, 0, y + 20, x + 30), 500)
    # Fill the 8 x 8 nucleus at (3, 4) of C03 (block 0, 0: value 201) with 777.
    y, x = origin(labels, "C03")
    labels.fill((0, 0, y + 3, x + 4), 777)
    # Set pixels as napari's undo and data_setitem do: one index array per axis.
    ys, xs = np.array([y + 40, y + 41]), np.array([x + 50, x + 60])
    labels.data_setitem((np.zeros(2, int), np.zeros(2, int), ys, xs), 31)
    shown = {well: well_tile(_as_layer(labels), well) for well in NAMES}
    expected_c03 = nuclei(2)
    expected_c03[0:8, 0:8] = 777
    expected_c03[40, 50] = expected_c03[41, 60] = 31
    np.testing.assert_array_equal(shown["C03"], expected_c03)
    painted = shown["B04"] != nuclei(1)
    assert painted.sum() > 9
    assert (shown["B04"][painted] == 500).all()
    assert painted[20, 30]
    assert not painted[:10].any()
    np.testing.assert_array_equal(shown["B03"], nuclei(0))
    assert labels.data.edited_wells() == ["B04", "C03"]

    viewer.layers.selection = {labels}
    saved = viewer.layers.save(str(plate), selected=True, plugin=PLUGIN)
    assert saved == [str(plate)]

    after = digests(plate)
    changed = {path for path in before if before[path] != after.get(path)}
    assert changed, "nothing was written"
    assert all(p.startswith(("B/04/0/labels/nuclei/", "C/03/0/labels/nuclei/")) for p in changed)
    reopened = layers_by_name(plate)
    for i, well in enumerate(NAMES):
        np.testing.assert_array_equal(well_tile(reopened["round1: nuclei"], well), shown[well])
        np.testing.assert_array_equal(well_tile(reopened["round1: EdU"], well), round1(i)[0])
    # The lower level was rewritten too (nearest neighbour), as other readers show it.
    import zarr

    level1 = zarr.open_array(str(plate / "C" / "03" / "0" / "labels" / "nuclei" / "1"), mode="r")
    np.testing.assert_array_equal(level1[...], expected_c03[::2, ::2])


def _as_layer(layer: Any) -> tuple[Any, dict[str, Any], str]:
    return (layer.data, {"metadata": layer.metadata}, "labels")


def test_a_new_labels_layer_saved_to_the_plate_becomes_each_wells_labels(
    make_napari_viewer: Callable[..., Any], plate: Path
) -> None:
    viewer = make_napari_viewer()
    viewer.open(str(plate), plugin=PLUGIN)
    edu = viewer.layers["round1: EdU"]
    cells = viewer.add_labels(np.zeros(edu.data.shape, np.uint16), name="cells v2", scale=edu.scale)
    y, x = origin(edu, "B03")
    cells.data_setitem((np.zeros(3, int), np.zeros(3, int), y + np.arange(3), x + np.arange(3)), 4)
    viewer.layers.selection = {cells}
    viewer.layers.save(str(plate), selected=True, plugin=PLUGIN)
    reopened = layers_by_name(plate)
    assert "round1: cells_v2" in reopened
    expected = np.zeros((64, 96), np.uint16)
    expected[np.arange(3), np.arange(3)] = 4
    np.testing.assert_array_equal(well_tile(reopened["round1: cells_v2"], "B03"), expected)
    assert not well_tile(reopened["round1: cells_v2"], "C03").any()
    np.testing.assert_array_equal(well_tile(reopened["round1: nuclei"], "B03"), nuclei(0))


def test_other_layers_are_still_never_written_into_an_existing_plate(plate: Path) -> None:
    before = digests(plate)
    layers = read_plate(plate)
    with pytest.raises(PlateExistsError, match="already exists"):
        write_layers(str(plate), layers)
    image = np.zeros(layers[0][0].shape, np.uint16)
    with pytest.raises(PlateExistsError, match="only saves labels layers"):
        write_layers(str(plate), [(image, {"name": "x"}, "image"), layers[2]])
    assert digests(plate) == before


CHILD = textwrap.dedent(
    """
    import sys
    import numpy as np
    from napari_wellzarr.plugin._reader import read_plate
    from napari_wellzarr.plugin._writer import write_layers
    from tests.plugin.ngio_plates import nuclei

    path = sys.argv[1]
    data, meta, _ = next(t for t in read_plate(path) if t[1]["name"] == "round1: nuclei")
    info = meta["metadata"]["wellzarr"]
    (h, w), (py, px) = info["tile"], info["pitch"]
    print("ready", flush=True)
    for k in range(1, 10**6):  # save versions 1, 2, 1, 2... until killed
        version = 1 + k % 2
        for i, well in enumerate(["B03", "B04", "C03"]):
            r, c = info["wells"][well]
            data[0, 0, r * py : r * py + h, c * px : c * px + w] = nuclei(i) + 1000 * version
        write_layers(path, [(data, meta, "labels")])
    """
)


def test_a_save_killed_midway_leaves_old_or_new_labels_never_a_mix(plate: Path) -> None:
    import zarr

    images = {p: d for p, d in digests(plate).items() if "/labels/" not in p}
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path.cwd()), *sys.path])}
    versions: set[int] = set()
    interrupted = 0  # kills that landed inside a save: its staged labels are left behind
    for delay in (0.3, 0.6, 0.9, 1.2, 1.5):
        with subprocess.Popen(
            [sys.executable, "-W", "ignore", "-c", CHILD, str(plate)],
            stdout=subprocess.PIPE,
            env=env,
        ) as child:
            try:
                assert child.stdout is not None
                assert child.stdout.readline().strip() == b"ready"
                time.sleep(delay)
                child.send_signal(signal.SIGKILL)
                assert child.wait(timeout=30) == -signal.SIGKILL
            finally:
                if child.poll() is None:
                    child.kill()
                    child.wait(timeout=30)
        staging = plate / ".wellzarr-staging"
        interrupted += staging.is_dir() and any(staging.iterdir())
        for i, (r, c) in enumerate(WELLS):
            group = plate / r / c / "0" / "labels" / "nuclei"
            level0 = zarr.open_array(str(group / "0"), mode="r")[...].astype(np.int64)
            level1 = zarr.open_array(str(group / "1"), mode="r")[...].astype(np.int64)
            offsets = np.unique(level0 - nuclei(i))
            assert len(offsets) == 1, (delay, r, c, offsets)  # one version, not a mix
            assert offsets[0] in (0, 1000, 2000), (delay, r, c, offsets)
            np.testing.assert_array_equal(level1, level0[::2, ::2])
            versions.add(int(offsets[0]))
        assert {p: d for p, d in digests(plate).items() if "/labels/" not in p} == images
        layers = layers_by_name(plate)  # the plate still opens, every well shown
        for i, well in enumerate(NAMES):
            np.testing.assert_array_equal(well_tile(layers["round1: EdU"], well), round1(i)[0])
    assert versions & {1000, 2000}, "no save finished before a kill: the test proved nothing"
    assert interrupted, "no kill landed inside a save: the test proved nothing"


FALLBACK_CHILD = textwrap.dedent(
    """
    import os
    import signal
    import sys
    from napari_wellzarr.plugin._reader import read_plate
    from napari_wellzarr.plugin._writer import write_layers
    from napari_wellzarr.storage import fsio
    from tests.plugin.ngio_plates import nuclei

    path, moment = sys.argv[1], sys.argv[2]
    fsio.exchange = lambda new, old: False  # as on a system without renameat2
    rename = os.rename

    def rename_then_die(src, dst):
        rename(src, dst)
        aside = str(dst).endswith(".wellzarr-aside")
        moved_in = ".wellzarr-staging" in str(src) and str(dst).endswith("nuclei")
        if (moment == "aside" and aside) or (moment == "in" and moved_in):
            os.kill(os.getpid(), signal.SIGKILL)

    os.rename = rename_then_die
    data, meta, _ = next(t for t in read_plate(path) if t[1]["name"] == "round1: nuclei")
    info = meta["metadata"]["wellzarr"]
    (h, w), (py, px) = info["tile"], info["pitch"]
    for i, well in enumerate(["B03", "B04", "C03"]):
        r, c = info["wells"][well]
        data[0, 0, r * py : r * py + h, c * px : c * px + w] = nuclei(i) + 1000
    write_layers(path, [(data, meta, "labels")])
    """
)


@pytest.mark.parametrize(("moment", "b03"), [("aside", 0), ("in", 1000)])
def test_without_renameat2_a_save_killed_between_its_renames_loses_no_labels(
    plate: Path, moment: str, b03: int, validate_plate: Callable[[Path], None]
) -> None:
    """Killed after the old labels went aside (or after the new came in): never missing."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path.cwd()), *sys.path])}
    done = subprocess.run(
        [sys.executable, "-W", "ignore", "-c", FALLBACK_CHILD, str(plate), moment],
        env=env,
        timeout=120,
        check=False,
    )
    assert done.returncode == -signal.SIGKILL
    labels_dir = plate / "B" / "03" / "0" / "labels"
    aside = labels_dir / ".nuclei.wellzarr-aside"
    assert aside.is_dir()  # the kill landed between the two renames
    assert (labels_dir / "nuclei").is_dir() == (moment == "in")
    layers = layers_by_name(plate)  # no warning: B03's labels are read from the aside copy
    for i, well in enumerate(NAMES):
        offset = b03 if well == "B03" else 0
        np.testing.assert_array_equal(well_tile(layers["round1: nuclei"], well), nuclei(i) + offset)
    # The next save puts the aside copy back (or removes it) before its own swap.
    data, meta, _ = layers["round1: nuclei"]
    data = data[0] if meta.get("multiscale") else data
    info = meta["metadata"]["wellzarr"]
    (h, w), (py, px) = info["tile"], info["pitch"]
    r, c = info["wells"]["B04"]
    data[0, 0, r * py : r * py + h, c * px : c * px + w] = nuclei(1) + 2000
    write_layers(str(plate), [(data, meta, "labels")])
    assert not aside.exists()
    assert (labels_dir / "nuclei" / "zarr.json").is_file()
    again = layers_by_name(plate)
    for i, well in enumerate(NAMES):
        offset = 2000 if well == "B04" else b03 if well == "B03" else 0
        np.testing.assert_array_equal(well_tile(again["round1: nuclei"], well), nuclei(i) + offset)
    validate_plate(plate)
