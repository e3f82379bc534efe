"""Test servers of the cluster tests: moto S3 behind a TCP gate that can be cut (a partition)."""

from __future__ import annotations

import contextlib
import hashlib
import socket
import threading
from typing import TYPE_CHECKING, Any

from tests.remote.servers import free_port, pump

if TYPE_CHECKING:
    from pathlib import Path

BUCKET = "plates"


class Gate:
    """A TCP forwarder on 127.0.0.1: ``cut()`` drops every connection and refuses new ones.

    Put in front of a server, it is a network partition that ``restore()`` heals (the
    server behind keeps its data, as a real S3 service does).
    """

    def __init__(self, upstream: int) -> None:
        self.upstream = upstream
        self.port = free_port()
        self._lock = threading.Lock()
        self._conns: list[socket.socket] = []
        self._listener: socket.socket | None = None
        self.restore()

    def restore(self) -> None:
        """Accept connections again (on the same port)."""
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def cut(self) -> None:
        """Close the listener and every open connection."""
        with self._lock:
            listener, self._listener = self._listener, None
            conns, self._conns = self._conns, []
        if listener is not None:
            listener.close()
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
            conn.close()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(("127.0.0.1", self.upstream), timeout=5)
            except OSError:
                client.close()
                continue
            server.settimeout(None)
            with self._lock:
                if self._listener is not listener:
                    client.close()
                    server.close()
                    return
                self._conns += [client, server]
            threading.Thread(target=self._carry, args=(client, server), daemon=True).start()

    def _carry(self, client: socket.socket, server: socket.socket) -> None:
        """Pump both ways until both ends are done, then close the pair (no descriptor kept)."""
        up = threading.Thread(target=pump, args=(client, server), daemon=True)
        up.start()
        pump(server, client)
        up.join()
        with self._lock:
            self._conns = [conn for conn in self._conns if conn not in (client, server)]
        client.close()
        server.close()


class S3:
    """A moto S3 server on localhost behind a :class:`Gate`; ``env`` finds it."""

    def __init__(self) -> None:
        from moto.server import ThreadedMotoServer

        self._port = free_port()
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=self._port, verbose=False)
        self._server.start()
        self.gate = Gate(self._port)
        self.endpoint = f"http://127.0.0.1:{self.gate.port}"
        self.env = {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": "testing-key-id",
            "AWS_SECRET_ACCESS_KEY": "testing-secret",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_ALLOW_HTTP": "true",
            "WELLZARR_REMOTE_TIMEOUT": "3",
        }
        self.client().create_bucket(Bucket=BUCKET)

    def client(self) -> Any:
        """A boto3 S3 client of the server (straight, not through the gate)."""
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=f"http://127.0.0.1:{self._port}",
            aws_access_key_id="testing-key-id",
            aws_secret_access_key="testing-secret",
            region_name="us-east-1",
        )

    def url(self, name: str) -> str:
        """``s3://plates/<name>``."""
        return f"s3://{BUCKET}/{name}"

    def digest(self, name: str, *, hidden: bool = False) -> dict[str, str]:
        """sha1 of every object under ``name/`` (hidden bookkeeping left out unless asked)."""
        client = self.client()
        out = {}
        for page in client.get_paginator("list_objects_v2").paginate(
            Bucket=BUCKET, Prefix=f"{name}/"
        ):
            for item in page.get("Contents", []):
                rel = item["Key"][len(name) + 1 :]
                if not hidden and any(
                    p.startswith(".") and p not in (".zattrs", ".zgroup", ".zarray")
                    for p in rel.split("/")
                ):
                    continue
                body = client.get_object(Bucket=BUCKET, Key=item["Key"])["Body"].read()
                out[rel] = hashlib.sha1(body).hexdigest()
        return out

    def keys(self, name: str) -> list[str]:
        """Every key under ``name/``, relative."""
        return sorted(self.digest(name, hidden=True))

    def put(self, name: str, key: str, data: bytes) -> None:
        """Put one object (a test's fake leftover)."""
        self.client().put_object(Bucket=BUCKET, Key=f"{name}/{key}", Body=data)

    def stop(self) -> None:
        """Stop the gate and the server."""
        self.gate.cut()
        self._server.stop()


def upload_folder(s3: S3, folder: Path, prefix: str) -> None:
    """Put every file of ``folder`` under ``s3://plates/prefix/``."""
    client = s3.client()
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            key = f"{prefix}/{path.relative_to(folder).as_posix()}"
            client.put_object(Bucket=BUCKET, Key=key, Body=path.read_bytes())
