"""Sources on S3: exports uploaded to a bucket, scanned and converted from ``s3://``.

Each real export of ``tests/data`` is uploaded to the moto server and converted from its
URL to a folder and to S3; both equal the conversion of the same folder, file for file.
Faults (a deleted object, a 403) fail the well with the URL named, and ``--resume``
then equals a clean run; the credentials appear nowhere.
"""

from __future__ import annotations

import dataclasses
import http.client
import json
import os
import pickle
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from napari_wellzarr.convert.engine import convert, scan_source
from napari_wellzarr.errors import ConfigError
from napari_wellzarr.storage.config import StorageConfig
from napari_wellzarr.storage.validation import check_plate
from tests.cluster.conftest import WELLS, Reference
from tests.cluster.servers import BUCKET, upload_folder
from tests.convert.helpers import plate_digest
from tests.plugin.exports import EXPORTS

if TYPE_CHECKING:
    from collections.abc import Iterator

    from napari_wellzarr.convert.plan import ConversionPlan
    from tests.cluster.servers import S3

ROOT = Path(__file__).parents[2]
SECRETS = ("testing-secret", "testing-key-id")


def _source_url(s3: S3, name: str, folder: Path) -> str:
    # the export keeps its folder's name: the plate is named after it
    return s3.url(f"sources/{name}/{folder.name}")


@pytest.fixture(scope="module")
def exports(s3_server: S3) -> dict[str, str]:
    """Every real export uploaded once: ``{name: s3:// URL}``."""
    out = {}
    for name, folder in EXPORTS.items():
        url = _source_url(s3_server, name, folder)
        upload_folder(s3_server, folder, url.removeprefix(f"s3://{BUCKET}/"))
        out[name] = url
    return out


@pytest.fixture(scope="module")
def synthetic(s3_server: S3, reference: Reference) -> str:
    """The cluster tests' 8-well source uploaded once."""
    url = s3_server.url("sources/synthetic/src")
    upload_folder(s3_server, reference.src, "sources/synthetic/src")
    return url


def _no_secret(*texts: str | bytes) -> None:
    for text in texts:
        raw = text.encode() if isinstance(text, str) else text
        for secret in SECRETS:
            assert secret.encode() not in raw


def _one_well(plan: ConversionPlan) -> ConversionPlan:
    """The plan's first well alone (the CV8000 export has 2000 x 2000 x 32 planes a well)."""
    well = plan.wells[0]
    missing = tuple(m for m in plan.missing if m.well == well.name)
    return dataclasses.replace(plan, wells=(well,), missing=missing)


def _clean(plan: ConversionPlan, plate: Path, config: StorageConfig, *, s3: bool) -> dict[str, str]:
    """The digest of ``plan`` converted into the folder ``plate``.

    ``s3``: for an S3 plate, which has the same whole-plate overview (its client builds it).
    """
    del s3  # the same clean plate either way
    assert convert(plan, plate, config).complete
    return plate_digest(plate)


@pytest.mark.parametrize("name", sorted(EXPORTS))
def test_an_export_on_s3_converts_as_its_folder_does(
    s3_server: S3, exports: dict[str, str], name: str, tmp_path: Path
) -> None:
    url = exports[name]
    local, remote = scan_source(EXPORTS[name]), scan_source(url)
    below = Path(local.source).relative_to(EXPORTS[name]).as_posix()  # (Harmony: Images/)
    assert str(remote.source) == (url if below == "." else f"{url}/{below}")
    assert remote.summary() == {**local.summary(), "source": str(remote.source)}
    planes = [p.path for w in remote.wells for p in (*w.planes, *w.projections)]
    assert planes
    assert all(p.startswith(f"{url}/") for p in planes)
    _no_secret(pickle.dumps(remote.wells))  # what the workers are sent: URLs only
    if name == "cv8000":
        local, remote = _one_well(local), _one_well(remote)
    config = StorageConfig(plate=local.smallest_plate())
    plate = f"{name}.zarr"
    # S3 -> folder, equal to folder -> folder (the plate document names its folder)
    dest = tmp_path / "from-s3" / plate
    assert convert(remote, dest, config).complete
    assert plate_digest(dest) == _clean(local, tmp_path / "clean" / plate, config, s3=False)
    # S3 -> S3: equal, object for object (each kind of plate writing once is enough)
    if name in ("ixm_exported", "operetta", "cv8000"):
        target = s3_server.url(f"plates-from-s3/{plate}")
        assert convert(remote, target, config).complete
        want = _clean(local, tmp_path / "clean-s3" / plate, config, s3=True)
        assert s3_server.digest(f"plates-from-s3/{plate}") == want
        assert check_plate(target).ok


def test_cli_converts_an_s3_source_with_worker_processes_and_leaks_no_secret(
    s3_server: S3, synthetic: str, reference: Reference, tmp_path: Path
) -> None:
    dest = tmp_path / "cli.zarr"
    done = _cli("convert", synthetic, dest, "--workers", "2", "--json")
    assert done.returncode == 0, done.stderr
    assert sorted(json.loads(done.stdout)["written"]) == sorted(WELLS)
    assert plate_digest(dest) == reference.digest(dest.name)
    _no_secret(done.stdout, done.stderr, *(p.read_bytes() for p in dest.rglob("*") if p.is_file()))


def test_an_http_source_is_refused_clearly() -> None:
    with pytest.raises(ConfigError, match=r"local folders and s3:// URLs, not https://"):
        scan_source("https://user:pw@example.org/export")
    done = _cli("convert", "https://user:pw@example.org/export", "out.zarr")
    assert done.returncode == 2
    assert "s3://" in done.stderr
    assert "pw" not in done.stderr


def test_an_object_deleted_mid_run_fails_its_well_then_resume_equals_a_clean_run(
    s3_server: S3, synthetic: str, reference: Reference, tmp_path: Path
) -> None:
    plan = scan_source(synthetic)
    victim = plan.well("B02").planes[0].path  # deleted after the scan, before the run
    key = victim.removeprefix(f"s3://{BUCKET}/")
    body = s3_server.client().get_object(Bucket=BUCKET, Key=key)["Body"].read()
    s3_server.client().delete_object(Bucket=BUCKET, Key=key)
    dest = tmp_path / "missing.zarr"
    try:
        done = convert(plan, dest, StorageConfig())
    finally:
        s3_server.client().put_object(Bucket=BUCKET, Key=key, Body=body)
    assert not done.complete
    failed = dict(done.failed)
    assert list(failed) == ["B02"]  # (the wells after it were not started)
    assert victim in failed["B02"]
    assert "no such object" in failed["B02"]
    _no_secret(failed["B02"], done.resume_hint)
    again = convert(scan_source(synthetic), dest, StorageConfig(), resume=True)
    assert again.complete
    assert "B02" in again.written
    assert plate_digest(dest) == reference.digest(dest.name)


class _Denier:
    """An HTTP proxy to the S3 server that answers 403 to pixel GETs of some keys.

    A pixel GET is one that is not the scan's read of a file's head (``Range: bytes=0-``):
    a whole GET, or a ranged GET of an uncompressed file's pixels.
    """

    def __init__(self, upstream: str) -> None:
        host, port = upstream.removeprefix("http://").split(":")
        self.deny: set[str] = set()
        denier = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _relay(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                if (
                    self.command == "GET"
                    and not self.headers.get("Range", "").startswith("bytes=0-")
                    and self.path.split("?")[0].lstrip("/") in denier.deny
                ):
                    text = b"<Error><Code>AccessDenied</Code><Message>denied</Message></Error>"
                    self.send_response(403)
                    self.send_header("Content-Length", str(len(text)))
                    self.end_headers()
                    self.wfile.write(text)
                    return
                conn = http.client.HTTPConnection(host, int(port), timeout=10)
                try:
                    conn.request(self.command, self.path, body, dict(self.headers))
                    answer = conn.getresponse()
                    data = answer.read()
                    self.send_response(answer.status)
                    for k, v in answer.getheaders():
                        if k.lower() not in ("transfer-encoding", "connection", "content-length"):
                            self.send_header(k, v)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                finally:
                    conn.close()

            do_GET = do_PUT = do_HEAD = do_POST = do_DELETE = _relay

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def denier(s3_server: S3) -> Iterator[_Denier]:
    proxy = _Denier(s3_server.endpoint)
    try:
        yield proxy
    finally:
        proxy.close()


def test_a_403_mid_run_is_a_clear_error_then_resume_equals_a_clean_run(
    s3_server: S3, synthetic: str, reference: Reference, denier: _Denier, tmp_path: Path
) -> None:
    # The scan reads ranges of every file; a worker's whole GET of one file is denied.
    victim = scan_source(synthetic).well("A03").planes[-1].path
    denier.deny.add(victim.removeprefix("s3://"))
    dest = tmp_path / "denied.zarr"
    env = {"AWS_ENDPOINT_URL": denier.endpoint}
    done = _cli("convert", synthetic, dest, "--json", env=env)
    assert done.returncode == 1, done.stderr
    failed = json.loads(done.stdout)["failed"]
    assert list(failed) == ["A03"]
    assert victim in failed["A03"]
    assert "403" in failed["A03"]
    assert f"well A03 failed: {failed['A03']}" in done.stderr
    assert "--resume" in done.stderr
    _no_secret(done.stdout, done.stderr)
    denier.deny.clear()
    again = _cli("convert", synthetic, dest, "--resume", "--json", env=env)
    assert again.returncode == 0, again.stderr
    assert "A03" in json.loads(again.stdout)["written"]
    assert plate_digest(dest) == reference.digest(dest.name)


def _cli(*args: Any, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "napari_wellzarr.cli", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, **(env or {})},
    )


def test_the_converter_sessions_source_field_scans_an_s3_export(
    s3_server: S3, exports: dict[str, str]
) -> None:
    from napari_wellzarr.plugin.conversion import ConversionOptions, scan_job

    url = exports["ixm_native"]
    options = ConversionOptions(source=Path(url))  # what the Path field makes of the text
    assert options.scan_key.folder == url
    job = scan_job(options.scan_key.folder, "auto", None, threading.Event())
    for _ in range(600):  # (0.05 s each: 30 s at most)
        try:
            next(job)
        except StopIteration as stop:
            plan = stop.value
            break
    else:
        raise AssertionError("the scan did not end in 30 s")
    assert not isinstance(plan, str), plan
    assert str(plan.source) == url
    assert plan.summary() == {**scan_source(EXPORTS["ixm_native"]).summary(), "source": url}
