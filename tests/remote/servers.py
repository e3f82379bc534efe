"""Test servers on localhost: a static HTTP server that answers Range requests, and S3 (moto)."""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence
    from pathlib import Path


@dataclass
class Faults:
    """What the server does wrong: ``{key substring: mode}``, mode in 403/404/500/stall/garbage."""

    modes: dict[str, str] = field(default_factory=dict)
    stall_seconds: float = 30.0

    def mode(self, key: str) -> str | None:
        for part, mode in self.modes.items():
            if part in key:
                return mode
        return None


class RangeServer:
    """A static file server for ``root`` on 127.0.0.1 that answers ``Range: bytes=...`` (206).

    Counts every request (``requests``, ``log``) and connection (``connections``);
    ``latency`` seconds are slept before each answer; ``faults`` inject errors.
    """

    def __init__(self, root: Path, *, latency: float = 0.0) -> None:
        self.root = root.resolve()
        self.latency = latency
        self.faults = Faults()
        self.log: list[tuple[str, str, str | None]] = []
        #: ``[arrival, answered]`` (``time.monotonic()``) of each request in ``log``.
        self.times: list[list[float]] = []
        #: How many TCP connections clients opened.
        self.connections = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def setup(self) -> None:
                super().setup()
                with server._lock:
                    server.connections += 1

            def do_HEAD(self) -> None:
                server._answer(self, head=True)

            def do_GET(self) -> None:
                server._answer(self, head=False)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self._thread = threading.Thread(  # (a short poll: shutdown() waits for one)
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def requests(self) -> int:
        with self._lock:
            return len(self.log)

    def reset(self) -> None:
        with self._lock:
            self.log.clear()
            self.times.clear()

    def round_trips(self, among: Sequence[int] | None = None) -> int:
        """How many requests a client waited for one after another (see :meth:`critical_path`)."""
        return len(self.critical_path(among))

    def critical_path(self, among: Sequence[int] | None = None) -> list[int]:
        """The longest chain of requests each sent after the one before it was answered.

        Indexes into ``log`` (of the requests ``among``, default all), in order: the round
        trips a client made in turn, whatever it fetched alongside.
        """
        with self._lock:
            spans = [(t[0], t[1]) for t in self.times]
        chosen = range(len(spans)) if among is None else among
        depth: dict[int, tuple[int, int | None]] = {}
        for i in sorted(chosen, key=lambda i: spans[i][0]):
            before = [j for j in depth if spans[j][1] <= spans[i][0]]
            best = max(before, key=lambda j: depth[j][0], default=None)
            depth[i] = (1 + (depth[best][0] if best is not None else 0), best)
        last = max(depth, key=lambda i: depth[i][0], default=None)
        chain = []
        while last is not None:
            chain.append(last)
            last = depth[last][1]
        return chain[::-1]

    def __enter__(self) -> RangeServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self.httpd.shutdown()
        self.httpd.server_close()
        self._thread.join(timeout=10)

    def _answer(self, h: BaseHTTPRequestHandler, *, head: bool) -> None:
        key = h.path.split("?", 1)[0].lstrip("/")
        rng = h.headers.get("Range")
        span = [time.monotonic(), float("inf")]
        with self._lock:
            self.log.append((h.command, key, rng))
            self.times.append(span)
        h.wellzarr_span = span  # type: ignore[attr-defined]
        try:
            self._reply(h, key, rng, head=head)
        finally:
            span[1] = min(span[1], time.monotonic())

    def _reply(self, h: BaseHTTPRequestHandler, key: str, rng: str | None, *, head: bool) -> None:
        if self.latency:
            time.sleep(self.latency)
        mode = self.faults.mode(key)
        if mode in ("403", "404", "500"):
            self._send(h, int(mode), b"nope", head=head)
            return
        if mode == "stall":
            self._stop.wait(self.faults.stall_seconds)
            return
        path = (self.root / key).resolve()
        if not path.is_relative_to(self.root) or not path.is_file():
            self._send(h, 404, b"not found", head=head)
            return
        data = path.read_bytes()
        if mode == "garbage":
            data = os.urandom(len(data)) if data else b"\xff"
        size = len(data)
        if rng is None:
            self._send(h, 200, data, head=head)
            return
        spec = rng.strip().removeprefix("bytes=")
        if "," in spec:
            self._send(h, 416, b"multi-range not supported", head=head)
            return
        first, _, last = spec.partition("-")
        if first == "":
            start, end = max(0, size - int(last)), size - 1
        else:
            start = int(first)
            end = min(int(last), size - 1) if last else size - 1
        if start >= size or start > end:
            self._send(h, 416, b"", head=head, extra={"Content-Range": f"bytes */{size}"})
            return
        extra = {"Content-Range": f"bytes {start}-{end}/{size}"}
        self._send(h, 206, data[start : end + 1], head=head, extra=extra)

    @staticmethod
    def _send(
        h: BaseHTTPRequestHandler,
        status: int,
        body: bytes,
        *,
        head: bool,
        extra: dict[str, str] | None = None,
    ) -> None:
        span = getattr(h, "wellzarr_span", None)
        if span is not None:  # answered: a request sent after this is a further round trip
            span[1] = time.monotonic()
        h.send_response(status)
        h.send_header("Content-Length", str(len(body)))
        h.send_header("Accept-Ranges", "bytes")
        for name, value in (extra or {}).items():
            h.send_header(name, value)
        h.end_headers()
        if not head:
            try:
                h.wfile.write(body)
            except (BrokenPipeError, ConnectionResetError):
                pass


@contextlib.contextmanager
def serving(server: Any, **more: str) -> Iterator[Any]:
    """``server`` (an S3 test server with ``env`` and ``stop``) found through its ``AWS_*``
    variables (and ``more``) until the block ends; then the variables go and it stops."""
    import pytest

    with pytest.MonkeyPatch.context() as patch:
        for key, value in {**server.env, **more}.items():
            patch.setenv(key, value)
        try:
            yield server
        finally:
            server.stop()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def pump(src: socket.socket, dst: socket.socket) -> None:
    """Copy ``src`` to ``dst`` until ``src`` ends, then end ``dst``'s writing side."""
    try:
        while data := src.recv(1 << 16):
            dst.sendall(data)
    except OSError:
        pass
    finally:
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)


class CountingS3:
    """A moto S3 server on 127.0.0.1 behind a forwarder that logs each request's line.

    ``log`` holds ``(method, path)`` of every request that passed (read from the
    request lines the clients send; bodies of puts are skipped by their length);
    ``env`` finds it through the ``AWS_*`` variables.
    """

    def __init__(self) -> None:
        from moto.server import ThreadedMotoServer

        self._upstream = free_port()
        self._server = ThreadedMotoServer(
            ip_address="127.0.0.1", port=self._upstream, verbose=False
        )
        self._server.start()
        self.log: list[tuple[str, str]] = []
        self._lock = threading.Lock()
        self._listener = socket.socket()
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(64)
        self.endpoint = f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        self.env = {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": "testing-key-id",
            "AWS_SECRET_ACCESS_KEY": "testing-secret-do-not-leak",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_ALLOW_HTTP": "true",
        }
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def requests(self) -> int:
        with self._lock:
            return len(self.log)

    def reset(self) -> None:
        with self._lock:
            self.log.clear()

    def stop(self) -> None:
        self._listener.close()
        self._server.stop()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(("127.0.0.1", self._upstream), timeout=10)
            except OSError:
                client.close()
                continue
            server.settimeout(None)
            threading.Thread(target=self._serve, args=(client, server), daemon=True).start()

    def _serve(self, client: socket.socket, server: socket.socket) -> None:
        answers = threading.Thread(target=pump, args=(server, client), daemon=True)
        answers.start()
        try:
            self._requests(client, server)
            answers.join(timeout=60)
        finally:
            client.close()
            server.close()

    def _requests(self, src: socket.socket, dst: socket.socket) -> None:
        """Forward the client's bytes, logging each request line (heads parsed, bodies skipped)."""
        buffer, body = b"", 0
        try:
            while data := src.recv(1 << 16):
                dst.sendall(data)
                buffer += data
                while True:
                    if body:
                        taken = min(body, len(buffer))
                        buffer, body = buffer[taken:], body - taken
                        if body:
                            break
                    end = buffer.find(b"\r\n\r\n")
                    if end < 0:
                        break
                    head, buffer = buffer[:end].decode("latin-1"), buffer[end + 4 :]
                    line, *fields = head.split("\r\n")
                    method, path = line.split(" ")[:2]
                    with self._lock:
                        self.log.append((method, path))
                    for header in fields:
                        name, _, value = header.partition(":")
                        if name.strip().lower() == "content-length":
                            body = int(value.strip())
        except (OSError, ValueError):
            pass
        finally:
            with contextlib.suppress(OSError):
                dst.shutdown(socket.SHUT_WR)
