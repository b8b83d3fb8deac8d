"""An S3 server that returns 500s or drops connections: retries with backoff, then a clear error.

A small HTTP proxy on 127.0.0.1 sits in front of the moto server and injects faults.
"""

from __future__ import annotations

import http.client
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Literal
from urllib.parse import urlparse

import pytest

from llmops.artifacts import ArtifactStore, S3Backend, StoreError
from llmops.db import Database

from .conftest import ModelMaker, files_equal

pytestmark = pytest.mark.integration


class FaultProxy(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, upstream: str) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.upstream = urlparse(upstream)
        self.mode: Literal["500", "drop"] = "500"
        self.failures_left = 0
        self.faults_injected = 0
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def should_fail(self) -> bool:
        with self.lock:
            if self.failures_left > 0:
                self.failures_left -= 1
                self.faults_injected += 1
                return True
            return False


class _Handler(BaseHTTPRequestHandler):
    server: FaultProxy
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: object) -> None:
        pass

    def _relay(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        if self.server.should_fail():
            if self.server.mode == "drop":
                self.close_connection = True
                self.connection.close()
                return
            error = b"<Error><Code>InternalError</Code><Message>injected</Message></Error>"
            self.send_response(500)
            self.send_header("Content-Length", str(len(error)))
            self.end_headers()
            self.wfile.write(error)
            return
        upstream = http.client.HTTPConnection(
            self.server.upstream.hostname, self.server.upstream.port, timeout=30
        )
        headers = {k: v for k, v in self.headers.items() if k.lower() != "connection"}
        upstream.request(self.command, self.path, body=body, headers=headers)
        resp = upstream.getresponse()
        data = resp.read()
        self.send_response(resp.status)
        for key, value in resp.getheaders():
            if key.lower() not in ("transfer-encoding", "connection", "content-length"):
                self.send_header(key, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)
        upstream.close()

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _relay


@pytest.fixture
def proxy(s3_endpoint: str) -> Iterator[FaultProxy]:
    server = FaultProxy(s3_endpoint)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def faulty_store(proxy: FaultProxy, bucket: str, tmp_path: Path, retries: int) -> ArtifactStore:
    backend = S3Backend(bucket, "store", endpoint_url=proxy.url, retries=retries, backoff_s=0.01)
    db = Database(f"sqlite:///{tmp_path / 'registry.db'}")
    return ArtifactStore(db, backend, actor="tester")


@pytest.mark.parametrize("mode", ["500", "drop"])
def test_transient_faults_are_retried(
    proxy: FaultProxy, s3_bucket: str, tmp_path: Path, make_model: ModelMaker, mode: str
) -> None:
    store = faulty_store(proxy, s3_bucket, tmp_path, retries=6)
    model = make_model()
    proxy.mode = mode  # type: ignore[assignment]
    proxy.failures_left = 3
    assert store.push(model, name="m").created
    proxy.failures_left = 3
    store.pull("m", tmp_path / "out")
    assert proxy.faults_injected == 6
    assert files_equal(model, tmp_path / "out")
    store.db.dispose()


def test_a_server_that_keeps_failing_gives_a_clear_error_and_no_version(
    proxy: FaultProxy, s3_bucket: str, tmp_path: Path, make_model: ModelMaker
) -> None:
    store = faulty_store(proxy, s3_bucket, tmp_path, retries=3)
    proxy.failures_left = 10**9
    started = time.monotonic()
    with pytest.raises(StoreError, match=r"kept failing on .* after 3 attempts"):
        store.push(make_model(), name="m")
    assert time.monotonic() - started < 60
    proxy.failures_left = 0
    assert store.ls() == []
    store.db.dispose()
