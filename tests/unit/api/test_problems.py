"""Pins the problem+json shape (RFC 9457 + WME ``message``) for every kind of error."""

from __future__ import annotations

from typing import Any

import pytest
from litestar import Litestar, get
from litestar.testing import TestClient

from feedserver.api.problems import handle_exception
from feedserver.errors import QuotaExceeded, SnapshotNotFound
from tests.unit.api.conftest import World

KEYS = {"type", "title", "status", "detail", "instance", "message"}


def check_shape(r: Any, status: int, slug: str) -> dict[str, Any]:
    assert r.status_code == status
    assert r.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = r.json()
    assert set(body) >= KEYS
    assert body["type"] == f"https://feedserver.dev/problems/{slug}"
    assert body["status"] == status and body["message"] == body["detail"]
    return body


def test_feed_error_shape(client: TestClient[Any], world: World) -> None:
    r = client.get("/v2/snapshots/frwiki_namespace_0", headers=world.headers(world.key_a))
    body = check_shape(r, 403, "forbidden")
    assert body["instance"] == "/v2/snapshots/frwiki_namespace_0"
    assert body["title"] == "Forbidden"


def test_litestar_errors(client: TestClient[Any], world: World) -> None:
    check_shape(client.get("/nowhere"), 404, "not-found")
    r = client.delete("/v2/snapshots", headers=world.headers(world.key_a))
    check_shape(r, 405, "method-not-allowed")
    assert "allow" in r.headers
    big = b"{" + b" " * (world.settings.max_body_bytes + 10) + b"}"
    r = client.post("/v2/snapshots", headers=world.headers(world.key_a), content=big)
    check_shape(r, 413, "payload-too-large")


def test_unexpected_error_leaks_nothing() -> None:
    @get("/boom")
    async def boom() -> None:
        raise RuntimeError("secret database password in /etc/secret")

    @get("/quota")
    async def quota() -> None:
        raise QuotaExceeded("monthly snapshot downloads used up", retry_after=90.5)

    @get("/missing")
    async def missing() -> None:
        raise SnapshotNotFound("enwiki_namespace_0", 3)

    app = Litestar([boom, quota, missing], exception_handlers={Exception: handle_exception})
    with TestClient(app) as c:
        r = c.get("/boom")
        body = check_shape(r, 500, "internal")
        assert "secret" not in r.text and body["detail"].startswith("Internal error")
        r = c.get("/quota")
        check_shape(r, 429, "quota-exceeded")
        assert r.headers["retry-after"] == "91"
        body = check_shape(c.get("/missing"), 404, "snapshot-not-found")
        assert body["identifier"] == "enwiki_namespace_0"


@pytest.mark.parametrize("path", ["/healthz", "/readyz", "/metrics", "/schema/openapi.json"])
def test_open_endpoints(client: TestClient[Any], path: str) -> None:
    assert client.get(path).status_code == 200
