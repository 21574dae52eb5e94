"""The socket hand-over (``S3BlobStore.open_socket``) against a store that keeps connections
alive, as S3 and MinIO do (moto_server closes after every answer, so it cannot show this): a
range consumed whole leaves its connection at a message boundary and the pool reuses it; a
range left mid-body closes its connection, and the next read opens a new one and is right.

The store here is a small real HTTP/1.1 server on loopback answering ranged GETs of one
object with ``Content-Length`` bodies; it counts the TCP connections it accepted.
"""

from __future__ import annotations

import re
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from feedserver.storage.blobs import SocketRange
from feedserver.storage.blobs.s3 import S3BlobStore
from tests.integration.storage.socket_ranges import drain

pytestmark = pytest.mark.integration

DATA = bytes(range(256)) * 2000  # 512,000 bytes


class _Server(ThreadingHTTPServer):
    connections = 0

    def get_request(self) -> tuple[socket.socket, object]:
        self.connections += 1
        return super().get_request()

    def handle_error(self, request: object, client_address: object) -> None:
        del request, client_address  # the cut connection's reset is the point of the test


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive unless the client closes

    def do_GET(self) -> None:
        match = re.fullmatch(r"bytes=(\d+)-(\d+)", self.headers.get("Range", ""))
        start, last = (int(match[1]), int(match[2])) if match else (0, len(DATA) - 1)
        body = DATA[start:last + 1]
        self.send_response(206 if match else 200)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Content-Type", "binary/octet-stream")
        self.send_header("ETag", '"x"')
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        del format, args


@pytest.fixture
def keepalive() -> Iterator[_Server]:
    server = _Server(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)




def test_a_range_consumed_whole_returns_its_connection_and_a_cut_one_closes_it(
        keepalive: _Server) -> None:
    host, port = keepalive.server_address[:2]
    store = S3BlobStore("bucket", endpoint_url=f"http://{host!s}:{port}",
                        access_key_id="testing", secret_access_key="testing")
    assert store.splices()
    for start, stop in ((0, len(DATA)), (10, 5000), (4999, 400_001)):
        got = store.open_socket("obj", start, stop)
        assert isinstance(got, SocketRange)
        assert drain(got) == DATA[start:stop]
        got.close(complete=True)
    assert keepalive.connections == 1  # one connection, reused at each message boundary
    cut = store.open_socket("obj", 0, len(DATA))
    assert isinstance(cut, SocketRange)
    cut.close(complete=False)  # mid-body: the rest of the body must never be read as a reply
    got = store.open_socket("obj", 7, 70_000)
    assert isinstance(got, SocketRange)
    assert drain(got) == DATA[7:70_000]
    got.close(complete=True)
    assert keepalive.connections == 2
