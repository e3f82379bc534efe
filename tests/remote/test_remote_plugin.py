"""URLs in napari, the CLI and every write destination."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest

from napari_wellzarr.errors import RemoteReadError, RemoteWriteError, StoreReadOnlyError
from napari_wellzarr.plugin._reader import get_reader
from napari_wellzarr.storage.config import StorageConfig
from napari_wellzarr.storage.store import PlateStore

if TYPE_CHECKING:
    from collections.abc import Callable

    from tests.remote.servers import RangeServer

PLUGIN = "napari-wellzarr"
CLI = [sys.executable, "-m", "napari_wellzarr.cli"]
URLS = ("s3://bucket/x.ome.zarr", "https://example.org/p.zarr", "gs://b/p", "http://h/p")


def _cli(*args: Any, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    return subprocess.run(
        [*CLI, *map(str, args)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=cwd,
        env=env,
    )


def _tile(layer: Any, well: str) -> np.ndarray:
    """The full-resolution pixels of ``well``'s tile in a mosaic layer (field 0, z 0)."""
    meta = layer.metadata["wellzarr"]
    row, column = meta["wells"][well]
    (h, w), (ph, pw) = meta["tile"], meta["pitch"]
    data = layer.data[0] if layer.multiscale else layer.data
    y, x = row * ph, column * pw
    return np.asarray(data[0, 0, y : y + h, x : x + w])


def test_viewer_opens_a_plate_url_lazily(
    make_napari_viewer: Callable[..., Any],
    served: RangeServer,
    make_remote_plate: Callable[..., dict[str, np.ndarray]],
) -> None:
    pixels = make_remote_plate(served.root / "plate.zarr", 3)
    url = f"{served.url}/plate.zarr"
    assert get_reader(url) is not None
    served.reset()
    viewer = make_napari_viewer()
    layers = viewer.open(url, plugin=PLUGIN)
    assert [layer.name for layer in layers][-1] == "plate map"
    documents = [key for _, key, rng in served.log if rng is None]
    # the plate's document (asked by get_reader, the view and the store), its layout
    # record, and the documents of the wells the view takes its tile size from
    # (+2: napari's first draw may ask a well document twice while the first request is
    # still in flight; the count stays flat in the plate size, test_remote_requests)
    assert len(documents) <= 19, documents
    for c, layer in enumerate(layers[:2]):
        for well, data in pixels.items():
            assert np.array_equal(_tile(layer, well), data[0, c, 0]), (well, c)
    # pixels came as byte ranges of the shards, and repeated reads from the caches
    assert any(rng is not None for _, _, rng in served.log)
    before = served.requests
    for well in pixels:
        _tile(layers[0], well)
    assert served.requests == before
    screen = viewer.screenshot(canvas_only=True, flash=False)
    assert screen.max() > 0  # drawn


def test_get_reader_declines_urls_it_does_not_serve(served: RangeServer) -> None:
    start = time.perf_counter()
    assert get_reader("ftp://example.org/plate.zarr") is None
    assert get_reader("file:///nowhere/plate.zarr") is None
    assert time.perf_counter() - start < 0.5
    assert get_reader(f"{served.url}/no-plate-here") is None


def test_cli_info_and_validate_take_urls(
    served: RangeServer, make_remote_plate: Callable[..., dict[str, np.ndarray]]
) -> None:
    make_remote_plate(served.root / "plate.zarr", 2)
    url = f"{served.url}/plate.zarr"
    info = _cli("info", url, cwd=served.root)
    assert info.returncode == 0, info.stderr
    assert "2 well(s)" in info.stdout
    assert url in info.stdout
    checked = _cli("validate", "--deep", url, cwd=served.root)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "valid HCS plate" in checked.stdout


@pytest.mark.parametrize("url", [u for u in URLS if not u.startswith("s3:")])
def test_every_write_destination_refuses_urls(
    tmp_path: Path, url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from napari_wellzarr.convert.engine import convert
    from napari_wellzarr.openhcs.backend import ZarrStorageBackend
    from napari_wellzarr.plugin._writer import write_image
    from napari_wellzarr.plugin.conversion import ConversionOptions

    monkeypatch.chdir(tmp_path)
    with pytest.raises(RemoteWriteError, match="writing to a URL is not supported"):
        PlateStore.create(url)
    with pytest.raises(RemoteWriteError):
        write_image(url, np.zeros((1, 8, 8), "u2"), {"name": "x"})
    with pytest.raises(RemoteWriteError):
        convert(None, url, StorageConfig())  # type: ignore[arg-type]  # refused first
    with ZarrStorageBackend() as backend:
        with pytest.raises(RemoteWriteError):
            backend.save(np.zeros((8, 8), "u2"), f"{url}/A01.tif")
        for read in (backend.load, backend.exists, backend.list_dir, backend.is_symlink):
            with pytest.raises(RemoteReadError, match="local plates only"):
                read(f"{url}/A01.tif")
    with pytest.raises((RemoteWriteError, StoreReadOnlyError)):
        PlateStore.open(url, "r+")
    # the converter widget's options: Run stays disabled, with the reason
    with pytest.raises(RemoteWriteError):
        ConversionOptions(output=Path(url)).storage_config()
    assert list(tmp_path.iterdir()) == []  # no folder "s3:", "https:"...


def test_s3_is_written_by_plates_and_conversions_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # (conversions to s3:// are tested against a real S3 server in tests/cluster)
    from napari_wellzarr.openhcs.backend import ZarrStorageBackend
    from napari_wellzarr.plugin._writer import write_image
    from napari_wellzarr.plugin.conversion import ConversionOptions, Source

    url = "s3://bucket/x.ome.zarr"
    monkeypatch.chdir(tmp_path)
    with pytest.raises(RemoteWriteError):
        write_image(url, np.zeros((1, 8, 8), "u2"), {"name": "x"})
    with ZarrStorageBackend() as backend, pytest.raises(RemoteWriteError):
        backend.save(np.zeros((8, 8), "u2"), f"{url}/A01.tif")
    folder = ConversionOptions(output=Path(url))
    assert folder.dest == url  # the widget's Path field keeps the URL
    folder.storage_config()  # accepted: images from a folder may go to S3
    with pytest.raises(RemoteWriteError, match="not supported for this scheme"):
        ConversionOptions(output=Path("gs://b/p")).storage_config()
    layers = ConversionOptions(output=Path(url), source_kind=Source.LAYERS)
    with pytest.raises(RemoteWriteError):
        layers.storage_config()
    assert list(tmp_path.iterdir()) == []


def test_cli_convert_to_a_url_fails_and_writes_nothing(tmp_path: Path) -> None:
    import tifffile

    (tmp_path / "src").mkdir()  # a real source: main converted it into a folder "s3:"
    tifffile.imwrite(tmp_path / "src" / "screen_A01_s1_w1.tif", np.ones((16, 16), "u2"))
    done = _cli("convert", "-q", tmp_path / "src", "gs://bucket/x.ome.zarr", cwd=tmp_path)
    assert done.returncode != 0
    assert "gs://bucket/x.ome.zarr" in done.stderr
    assert "not supported" in done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["src"]


def test_first_screen_requests_do_not_grow_with_the_wells(
    make_napari_viewer: Callable[..., Any],
    tmp_path: Path,
    make_remote_plate: Callable[..., dict[str, np.ndarray]],
) -> None:
    """The whole plate comes from the plate overview: one shard, whatever the wells."""
    from tests.remote.servers import RangeServer

    counts, ranged = {}, {}
    for n in (24, 96):
        root = tmp_path / f"www{n}"
        root.mkdir()
        pixels = make_remote_plate(root / "p.zarr", n, shape=(2, 2, 1, 32, 32))
        assert PlateStore.open(root / "p.zarr").overview() is not None
        with RangeServer(root) as server:
            viewer = make_napari_viewer()
            layers = viewer.open(f"{server.url}/p.zarr", plugin=PLUGIN)
            viewer.reset_view()
            viewer.screenshot(canvas_only=True, flash=False)
            counts[n] = server.requests
            ranged[n] = {key.split("/")[1] for _, key, rng in server.log if rng is not None}
            for well in (next(iter(pixels)), list(pixels)[-1]):  # exact pixels, from it
                assert np.array_equal(_tile(layers[1], well), pixels[well][0, 1, 0])
            viewer.close()
    # pixels: byte ranges of the overview's shard only; requests: the same few
    assert ranged[24] == ranged[96] == {".wellzarr-overview"}, ranged
    assert counts[96] <= counts[24] + 2, counts


def test_a_slow_plate_loads_under_naparis_activity_indicator_and_the_window_stays_live(
    make_napari_viewer: Callable[..., Any],
    served: RangeServer,
    make_remote_plate: Callable[..., dict[str, np.ndarray]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from napari.utils import progress
    from qtpy.QtCore import QTimer

    from napari_wellzarr.plugin import loading

    make_remote_plate(served.root / "p.zarr", 4)
    viewer = make_napari_viewer(show=True)
    served.latency = 0.2  # every request: the first screen takes a few of them
    monkeypatch.setattr(loading, "QUIET_S", 0.0)  # the bar from the start (else after 0.15 s)
    seen: list[list[str]] = []
    timer = QTimer()
    timer.setInterval(20)
    # runs only while the window handles events: during the open if it stays live
    timer.timeout.connect(lambda: seen.append([str(p.desc) for p in progress._all_instances]))
    timer.start()
    try:
        layers = viewer.open(f"{served.url}/p.zarr", plugin=PLUGIN)
    finally:
        timer.stop()
    assert [layer.name for layer in layers][-1] == "plate map"
    loading = [names for names in seen if any("napari-wellzarr: loading" in n for n in names)]
    assert len(loading) >= 3, seen  # the window ticked several times while it loaded
    assert not [p for p in progress._all_instances if "napari-wellzarr" in str(p.desc)]
    served.reset()
    viewer.screenshot(canvas_only=True, flash=False)
    ranged = [key for _, key, rng in served.log if rng is not None]
    assert ranged == []  # napari's first draw: from what was loaded
