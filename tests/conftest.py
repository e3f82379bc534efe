"""Shared fixtures of the core tests: OME-NGFF versions, plates, pixels, validators, snapshots.

Kept small and core-only: nothing here imports napari or Qt, and the validators are
imported only when a test asks for them.
"""

from __future__ import annotations

import hashlib
import zlib
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest

from tests.helpers import write_plate

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from pathlib import Path

    from napari_wellzarr.storage.config import StorageConfig

#: The OME-NGFF versions every format-dependent test runs on.
NGFF_VERSIONS = ("0.4", "0.5")


@pytest.fixture(params=NGFF_VERSIONS, ids=[f"ngff{v}" for v in NGFF_VERSIONS])
def ngff_version(request: pytest.FixtureRequest) -> str:
    """Each OME-NGFF version in turn: "0.4" (zarr v2) and "0.5" (zarr v3)."""
    return str(request.param)


@pytest.fixture
def make_plate(tmp_path: Path) -> Callable[..., Path]:
    """``make_plate(wells=None, config=None, *, path=None, write=None, **options) -> Path``.

    Writes a plate (see :func:`write_plate`) at ``path``, by default a new
    ``plate.zarr`` (then ``plate-2.zarr``...) under the test's ``tmp_path``.
    """
    made: list[Path] = []

    def make(
        wells: Mapping[str, np.ndarray] | None = None,
        config: StorageConfig | None = None,
        *,
        path: Path | None = None,
        write: Mapping[str, Any] | None = None,
        **options: Any,
    ) -> Path:
        if path is None:
            path = tmp_path / ("plate.zarr" if not made else f"plate-{len(made) + 1}.zarr")
        made.append(path)
        return write_plate(path, wells, config, write=write, **options)

    return make


@pytest.fixture
def rng(request: pytest.FixtureRequest) -> np.random.Generator:
    """A generator seeded from the test's id: reproducible, different per test."""
    return np.random.default_rng(zlib.crc32(request.node.nodeid.encode()))


def random_pixels(rng: np.random.Generator, shape: tuple[int, ...], dtype: Any) -> np.ndarray:
    """Random pixels spanning the dtype's whole range (ints) or a wide range (floats)."""
    dt = np.dtype(dtype)
    if dt.kind in "iu":
        info = np.iinfo(dt)
        return rng.integers(info.min, info.max, size=shape, dtype=dt, endpoint=True)
    return (rng.standard_normal(shape) * 1000.0).astype(dt)


@pytest.fixture
def pixels(rng: np.random.Generator) -> Callable[..., np.ndarray]:
    """``pixels(shape, dtype="u2")``: random pixels from the test's generator."""

    def make(shape: tuple[int, ...], dtype: Any = "u2") -> np.ndarray:
        return random_pixels(rng, shape, dtype)

    return make


def _ome_zarr_models(path: Path) -> Any:
    import ome_zarr_models
    import zarr

    return ome_zarr_models.open_ome_zarr(zarr.open_group(str(path), mode="r"))


def _yaozarrs(path: Path) -> Any:
    import yaozarrs

    return yaozarrs.validate_zarr_store(str(path))


@pytest.fixture
def validate_plate() -> Callable[[Path], None]:
    """``validate_plate(path)``: both offline validators must accept ``path`` as an HCS plate."""

    def check(path: Path) -> None:
        from ome_zarr_models.v04.hcs import HCS as HCS04
        from ome_zarr_models.v05.hcs import HCS as HCS05

        model = _ome_zarr_models(path)
        assert isinstance(model, HCS04 | HCS05), f"ome-zarr-models read {path} as {type(model)}"
        _yaozarrs(path)

    return check


@pytest.fixture
def ome_zarr_models_validate() -> Callable[[Path], Any]:
    """``ome_zarr_models_validate(path)``: the ome-zarr-models object of ``path``."""
    return _ome_zarr_models


@pytest.fixture
def yaozarrs_validate() -> Callable[[Path], Any]:
    """``yaozarrs_validate(path)``: yaozarrs' structural + metadata validation of ``path``."""
    return _yaozarrs


def tree_digest(root: Path) -> dict[str, str]:
    """Every file under ``root`` (relative path -> sha1 of its bytes)."""
    return {
        str(p.relative_to(root)): hashlib.sha1(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture
def snapshot() -> Callable[[Path], dict[str, str]]:
    """``snapshot(root)``: a digest of every file under ``root``, to prove nothing changed."""
    return tree_digest
