"""Fixtures of the remote tests: a Range HTTP server and a moto S3 server on localhost."""

from __future__ import annotations

import shutil
from typing import TYPE_CHECKING

import pytest

from tests.remote.servers import RangeServer, free_port

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from pathlib import Path

    import numpy as np

DATA = __import__("pathlib").Path(__file__).parents[1] / "data"
FOREIGN = ("iohub_plate_v04", "iohub_plate_v05", "openhcs_plate", "openhcs_seed_plate")


@pytest.fixture(autouse=True)
def _short_timeouts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WELLZARR_REMOTE_TIMEOUT", "3")


@pytest.fixture
def served(tmp_path: Path) -> Iterator[RangeServer]:
    """A Range HTTP server on ``tmp_path / "www"`` (a free localhost port; stopped after)."""
    root = tmp_path / "www"
    root.mkdir()
    with RangeServer(root) as server:
        yield server


@pytest.fixture
def make_remote_plate(
    rng: np.random.Generator,
) -> Callable[..., dict[str, np.ndarray]]:
    """Write one of our plates with ``wells`` wells at ``path``; return its pixels by well."""
    from napari_wellzarr.storage.config import StorageConfig
    from napari_wellzarr.storage.geometry import PlateGeometry
    from napari_wellzarr.storage.store import PlateStore

    def make(
        path: Path, n_wells: int, shape: tuple[int, ...] = (2, 2, 1, 96, 80)
    ) -> dict[str, np.ndarray]:
        geometry = PlateGeometry.from_wells(384 if n_wells > 96 else 96)
        config = StorageConfig(plate=geometry, pyramid_levels=2)
        out = {}
        with PlateStore.create(path, config) as store:
            names = [f"{r}{c}" for r in store.rows for c in store.columns][:n_wells]
            for name in names:
                out[name] = rng.integers(0, 60000, shape, dtype="u2")
                store.write_well(name, out[name])
        return out

    return make


def copy_foreign(name: str, dest: Path) -> Path:
    """Copy the committed foreign plate ``name`` under ``dest`` (OpenHCS: its ``images``)."""
    source = DATA / name
    if (source / "images").is_dir():
        source = source / "images"
    target = dest / name
    shutil.copytree(source, target)
    return target


@pytest.fixture
def s3(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A moto S3 server on a free localhost port, found through the ``AWS_*`` variables."""
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing-key-id")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing-secret-do-not-leak")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ALLOW_HTTP", "true")
    try:
        yield endpoint
    finally:
        server.stop()


def upload(endpoint: str, bucket: str, folder: Path, prefix: str, *, public: bool = False) -> None:
    """Put every file under ``folder`` into ``s3://bucket/prefix/...`` (world-readable?)."""
    import boto3

    client = boto3.client("s3", endpoint_url=endpoint)
    acl: dict[str, str] = {"ACL": "public-read"} if public else {}
    client.create_bucket(Bucket=bucket, **acl)
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            key = f"{prefix}/{path.relative_to(folder).as_posix()}"
            client.put_object(Bucket=bucket, Key=key, Body=path.read_bytes(), **acl)
