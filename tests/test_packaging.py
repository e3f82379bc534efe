"""How the package is installed and what napari sees of it, without starting napari."""

from __future__ import annotations

import importlib.metadata
import importlib.resources
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DIST = "napari-wellzarr"
HEAVY = ("napari", "PyQt5", "PyQt6", "PySide2", "PySide6", "qtpy", "dask", "ome_zarr")

# Runs in a fresh interpreter: reports the heavy modules that the imports themselves pulled in,
# not any that the environment had loaded before (site hooks and the like).
PROBE = """
import importlib, json, sys
heavy = tuple(sys.argv[1].split(","))
def loaded():
    return {m for m in sys.modules if m in heavy or m.startswith(tuple(h + "." for h in heavy))}
before = loaded()
for name in sys.argv[2:]:
    importlib.import_module(name)
print(json.dumps(sorted(loaded() - before)))
"""


def heavy_imports(*modules: str, extra: tuple[str, ...] = ()) -> list[str]:
    proc = subprocess.run(
        [sys.executable, "-c", PROBE, ",".join(HEAVY + extra), *modules],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    result: list[str] = json.loads(proc.stdout.splitlines()[-1])
    return result


@pytest.mark.parametrize("module", ["napari_wellzarr", "napari_wellzarr.core"])
def test_import_is_cheap(module: str) -> None:
    # napari imports every plugin's manifest at start-up; the package itself must stay light.
    assert heavy_imports(module) == []


@pytest.mark.parametrize(
    "module",
    [
        "napari_wellzarr.testing",
        "napari_wellzarr.plugin._reader",
        "napari_wellzarr.plugin._writer",
        "napari_wellzarr.plugin._widget",
        "napari_wellzarr.plugin._sample_data",
    ],
)
def test_hooks_and_testing_do_not_import_hypothesis(module: str) -> None:
    # The Hypothesis strategies are for tests: only their own module imports Hypothesis.
    assert [m for m in heavy_imports(module, extra=("hypothesis",)) if "hypothesis" in m] == []


def test_the_strategies_module_imports_hypothesis() -> None:
    # Guards the test above: the probe sees Hypothesis when something does import it.
    loaded = heavy_imports("napari_wellzarr.testing.strategies", extra=("hypothesis",))
    assert "hypothesis" in loaded


def test_probe_sees_heavy_imports() -> None:
    # Guards the test above against a probe that can never report anything.
    assert "dask" in heavy_imports("dask")


def test_manifest_found_through_installed_distribution() -> None:
    from npe2 import PluginManager, PluginManifest

    pm = PluginManager()  # a private one: discovery here must not leak into napari's tests
    pm.discover()
    discovered = pm.get_manifest(DIST)  # KeyError when discovery missed the plugin
    assert discovered.name == DIST
    assert PluginManifest.from_distribution(DIST) == discovered
    assert discovered == PluginManifest.from_file(ROOT / "napari.yaml")


def test_package_manifest_is_the_root_file() -> None:
    shipped = importlib.resources.files("napari_wellzarr") / "napari.yaml"
    assert shipped.read_text(encoding="utf-8") == (ROOT / "napari.yaml").read_text(encoding="utf-8")


def test_entry_point_names_the_manifest() -> None:
    eps = importlib.metadata.entry_points(group="napari.manifest", name=DIST)
    assert [ep.value for ep in eps] == ["napari_wellzarr:napari.yaml"]
    (ep,) = eps
    assert ep.dist is not None
    assert ep.dist.name == DIST
