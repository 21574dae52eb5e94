"""Driving the unmodified SDK against the server, and what the server sends for the same
requests (to compare with ``tests.fixtures.wme_sdk.assert_parsed``)."""

from __future__ import annotations

import io
import json
import tarfile
import threading
from collections.abc import Callable
from typing import Any

import httpx
import zstandard

from tests.integration.wme_sdk.server import WMEServer

STREAM_TIMEOUT = 60.0


def api_client(server: WMEServer, token: str, **kwargs: Any) -> Any:
    """The SDK's ``Client`` with its three base URLs pointed at ``server`` (nothing else)."""
    from modules.api.api_client import Client

    return Client(access_token=token, base_url=f"{server.url}/", realtime_url=f"{server.url}/",
                  max_retries=0, **kwargs)


def login(server: WMEServer, username: str, password: str) -> dict[str, Any]:
    r = httpx.post(f"{server.url}/v1/login", json={"username": username, "password": password},
                   timeout=30)
    assert r.status_code == 200, r.text
    data: dict[str, Any] = r.json()
    return data


def served(server: WMEServer, token: str, path: str, body: dict[str, Any] | None = None,
           ) -> Any:
    """What the server sends for ``POST /v2/{path}`` (the SDK's own request), as JSON."""
    r = httpx.post(f"{server.url}/v2/{path}", json=body or {}, timeout=30,
                   headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 200, (path, r.status_code, r.text)
    return r.json()


def raw_download(server: WMEServer, token: str, path: str, accept: str | None = None
                 ) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}", **({"Accept": accept} if accept else {})}
    r = httpx.get(f"{server.url}/v2/{path}", timeout=60, follow_redirects=True,
                  headers=headers)
    assert r.status_code == 200, (path, r.status_code, r.text[:300])
    return r


def archive_lines(data: bytes) -> list[bytes]:
    """NDJSON lines of a download in either format: WME's tar.gz (one or more ``.ndjson``
    members) or our native zstd NDJSON."""
    if data[:2] == b"\x1f\x8b":
        lines: list[bytes] = []
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
            for member in tar:
                f = tar.extractfile(member)
                if f is not None:
                    lines.extend(line for line in f.read().splitlines() if line.strip())
        return lines
    assert data[:4] == b"\x28\xb5\x2f\xfd", f"neither gzip nor zstd: {data[:8]!r}"
    with zstandard.ZstdDecompressor().stream_reader(io.BytesIO(data),
                                                    read_across_frames=True) as reader:
        return [line for line in reader.read().splitlines() if line.strip()]


def is_wme_archive(data: bytes) -> bool:
    return data[:2] == b"\x1f\x8b"


def stream(client: Any, req: Any, want: int, timeout: float = STREAM_TIMEOUT
           ) -> list[Any]:
    """``client.stream_articles(req, cbk)`` until ``want`` articles arrived. The SDK streams
    with no timeout; if they do not all come, the client is closed from here, which ends the
    SDK's read, so the test fails instead of hanging."""
    got: list[Any] = []
    errors: list[BaseException] = []

    def cbk(article: Any) -> bool:
        got.append(article)
        return len(got) < want

    def run() -> None:
        try:
            client.stream_articles(req, cbk)
        except Exception as exc:  # reported below, with what arrived
            errors.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        client.http_client.close()
        thread.join(10)
        raise AssertionError(f"stream gave {len(got)} of {want} articles in {timeout} s")
    if errors:
        raise errors[0]
    return got


def served_stream(server: WMEServer, token: str, body: dict[str, Any], want: int,
                  timeout: float = STREAM_TIMEOUT,
                  check: Callable[[dict[str, Any]], bool] | None = None) -> list[dict[str, Any]]:
    """The first ``want`` NDJSON articles the realtime endpoint sends for ``body``."""
    out: list[dict[str, Any]] = []
    with httpx.stream("POST", f"{server.url}/v2/articles", json=body,
                      headers={"Authorization": f"Bearer {token}",
                               "Accept": "application/x-ndjson"},
                      timeout=httpx.Timeout(timeout)) as r:
        assert r.status_code == 200, r.read()
        for line in r.iter_lines():
            if not line.strip():
                continue
            item = json.loads(line)
            if check is None or check(item):
                out.append(item)
            if len(out) >= want:
                break
    return out
