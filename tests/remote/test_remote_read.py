"""Plates read over HTTP (a Range server) and S3 (moto), both on localhost."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import numpy as np
import pytest

from napari_wellzarr.errors import (
    CorruptDataError,
    PlateNotFoundError,
    RemoteReadError,
    WellZarrError,
)
from napari_wellzarr.storage.store import PlateStore
from tests.remote.conftest import FOREIGN, copy_foreign, upload

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from tests.remote.servers import RangeServer


def _metadata_requests(server: RangeServer) -> list[str]:
    return [key for _, key, rng in server.log if rng is None]


def test_our_plate_over_http_exact_pixels(
    served: RangeServer, make_remote_plate: Callable[..., dict[str, np.ndarray]]
) -> None:
    pixels = make_remote_plate(served.root / "p.ome.zarr", 5)
    store = PlateStore.open(f"{served.url}/p.ome.zarr")
    assert store.is_remote
    assert store.read_only
    assert store.wells() == list(pixels)
    for name, data in pixels.items():
        assert np.array_equal(store.read_plane(name, 1, 1, 0), data[1, 1, 0])
        assert np.array_equal(store.read_well(name), data)
    info = store.well_info("A02")
    assert info.shape == pixels["A02"].shape
    assert info.n_levels == 2
    # the second level is read too (through the same range road)
    assert store.read_plane("A01", 0, 0, 0, level=1).shape == (48, 40)


def test_requests_to_open_and_read_a_plane_per_well_are_flat_in_metadata(
    tmp_path: Path, make_remote_plate: Callable[..., dict[str, np.ndarray]]
) -> None:
    from tests.remote.servers import RangeServer

    counts = {}
    for n in (4, 24):
        root = tmp_path / f"www{n}"
        root.mkdir()
        make_remote_plate(root / "p.ome.zarr", n, shape=(1, 1, 1, 32, 32))
        with RangeServer(root) as server:
            store = PlateStore.open(f"{server.url}/p.ome.zarr")
            for name in store.wells():
                store.read_plane(name, level=1)
            metadata = _metadata_requests(server)
            counts[n] = (len(metadata), server.requests - len(metadata))
    # documents: the same few whatever the number of wells; pixels: one range per well
    assert counts[4][0] == counts[24][0] <= 8, counts
    assert (counts[4][1], counts[24][1]) == (4, 24), counts


@pytest.mark.parametrize("kind", FOREIGN)
def test_foreign_plates_over_http(served: RangeServer, kind: str) -> None:
    local = PlateStore.open(copy_foreign(kind, served.root))
    remote = PlateStore.open(f"{served.url}/{kind}")
    assert remote.wells() == local.wells()
    assert remote.wells()
    for name in local.wells():
        info = local.well_info(name)
        assert remote.well_info(name).shape == info.shape
        assert np.array_equal(remote.read_well(name), local.read_well(name))


def test_our_plate_and_a_foreign_one_on_s3(
    s3: str, tmp_path: Path, make_remote_plate: Callable[..., dict[str, np.ndarray]]
) -> None:
    pixels = make_remote_plate(tmp_path / "p.ome.zarr", 3)
    upload(s3, "plates", tmp_path / "p.ome.zarr", "screens/p.ome.zarr")
    store = PlateStore.open("s3://plates/screens/p.ome.zarr")
    for name, data in pixels.items():
        assert np.array_equal(store.read_plane(name, 0, 1, 0), data[0, 1, 0])
    local = PlateStore.open(copy_foreign("iohub_plate_v05", tmp_path))
    upload(s3, "plates", tmp_path / "iohub_plate_v05", "iohub")
    remote = PlateStore.open("s3://plates/iohub")
    for name in local.wells():
        assert np.array_equal(remote.read_well(name), local.read_well(name))


def test_s3_credentials_from_the_standard_places(
    s3: str,
    tmp_path: Path,
    make_remote_plate: Callable[..., dict[str, np.ndarray]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pixels = make_remote_plate(tmp_path / "p.ome.zarr", 1)
    upload(s3, "bucket", tmp_path / "p.ome.zarr", "p.ome.zarr")
    plane = pixels["A01"][0, 0, 0]
    # 1. the AWS_* variables (the fixture's)
    assert np.array_equal(PlateStore.open("s3://bucket/p.ome.zarr").read_plane("A01"), plane)
    # 2. no variables, an AWS credentials file
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    credentials = tmp_path / "aws-credentials"
    credentials.write_text(
        "[default]\naws_access_key_id = file-key\naws_secret_access_key = file-secret-xyz\n"
    )
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(credentials))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    assert np.array_equal(PlateStore.open("s3://bucket/p.ome.zarr").read_plane("A01"), plane)
    # 3. no credentials anywhere: anonymous, which a private bucket refuses (so 1 and 2
    # were signed) and a public one serves
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    with pytest.raises(RemoteReadError, match="403"):
        PlateStore.open("s3://bucket/p.ome.zarr")
    upload(s3, "public", tmp_path / "p.ome.zarr", "p.ome.zarr", public=True)
    assert np.array_equal(PlateStore.open("s3://public/p.ome.zarr").read_plane("A01"), plane)


def test_s3_denied_names_the_url_never_the_secret(
    s3: str,
    tmp_path: Path,
    make_remote_plate: Callable[..., dict[str, np.ndarray]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import moto.settings

    make_remote_plate(tmp_path / "p.ome.zarr", 1)
    upload(s3, "locked", tmp_path / "p.ome.zarr", "p.ome.zarr")
    monkeypatch.setattr(moto.settings, "INITIAL_NO_AUTH_ACTION_COUNT", 0)  # enforce IAM
    start = time.perf_counter()
    with pytest.raises(RemoteReadError) as caught:
        PlateStore.open("s3://locked/p.ome.zarr")
    assert time.perf_counter() - start < 15
    message = str(caught.value)
    assert "s3://locked/p.ome.zarr/zarr.json" in message, message
    assert "testing-secret-do-not-leak" not in message


def test_missing_plate_and_object(served: RangeServer) -> None:
    with pytest.raises(PlateNotFoundError, match=r"127\.0\.0\.1.*nothing-here"):
        PlateStore.open(f"{served.url}/nothing-here")


@pytest.mark.parametrize("mode", ["403", "500", "stall"])
def test_server_faults_on_a_shard_are_clear_bounded_and_not_cached(
    served: RangeServer,
    make_remote_plate: Callable[..., dict[str, np.ndarray]],
    mode: str,
) -> None:
    pixels = make_remote_plate(served.root / "p.ome.zarr", 2)
    store = PlateStore.open(f"{served.url}/p.ome.zarr")
    served.faults.modes["A/02/0/0/c"] = mode
    start = time.perf_counter()
    with pytest.raises(RemoteReadError) as caught:
        store.read_plane("A02", 0, 0, 0)
    elapsed = time.perf_counter() - start
    message = str(caught.value)
    assert f"{served.url}/p.ome.zarr/A/02/0/0/c" in message, message
    assert elapsed < 15, elapsed  # WELLZARR_REMOTE_TIMEOUT=3 s, 2 retries at most
    served.faults.modes.clear()  # the server recovers: the next read succeeds
    assert np.array_equal(store.read_plane("A02", 0, 0, 0), pixels["A02"][0, 0, 0])


def test_a_document_that_fails_is_not_taken_for_missing(
    served: RangeServer, make_remote_plate: Callable[..., dict[str, np.ndarray]]
) -> None:
    make_remote_plate(served.root / "p.ome.zarr", 1)
    served.faults.modes["p.ome.zarr/zarr.json"] = "500"
    with pytest.raises(RemoteReadError, match=r"p\.ome\.zarr/zarr\.json"):
        PlateStore.open(f"{served.url}/p.ome.zarr")
    served.faults.modes.clear()
    assert PlateStore.open(f"{served.url}/p.ome.zarr").wells()


def test_garbage_is_reported_as_damage(
    served: RangeServer, make_remote_plate: Callable[..., dict[str, np.ndarray]]
) -> None:
    pixels = make_remote_plate(served.root / "p.ome.zarr", 2)
    store = PlateStore.open(f"{served.url}/p.ome.zarr")
    served.faults.modes["A/01/0/0/c"] = "garbage"
    with pytest.raises(CorruptDataError, match=r"A/01/0/0"):
        store.read_plane("A01", 0, 0, 0)
    served.faults.modes.clear()  # nothing the garbage brought was kept
    for c in (0, 1):
        assert np.array_equal(store.read_plane("A01", 0, c, 0), pixels["A01"][0, c, 0])
    served.faults.modes = {"p.ome.zarr/zarr.json": "garbage"}
    with pytest.raises(WellZarrError, match=r"p\.ome\.zarr/zarr\.json"):
        PlateStore.open(f"{served.url}/p.ome.zarr")
