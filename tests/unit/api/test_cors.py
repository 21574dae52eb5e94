"""CORS as WME sends it: any origin, GET/POST/OPTIONS/HEAD, any header; preflights answered
before authentication; configurable (``cors_allow_origins``)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import msgspec
import pytest
from litestar.testing import TestClient
from prometheus_client import CollectorRegistry

from feedserver.api.app import build_app
from feedserver.api.cors import cors_headers
from tests.unit.api.conftest import World

ORIGIN = "https://labs.example"


def test_cors_headers_pure() -> None:
    assert cors_headers(["*"], None, preflight=False) == []  # not a CORS request
    assert cors_headers(["*"], ORIGIN, preflight=False) == [
        (b"access-control-allow-origin", b"*")]
    assert cors_headers([ORIGIN], ORIGIN, preflight=False) == [
        (b"access-control-allow-origin", ORIGIN.encode()), (b"vary", b"Origin")]
    assert cors_headers(["https://other.example"], ORIGIN, preflight=True) == []
    assert cors_headers([], ORIGIN, preflight=True) == []  # CORS off
    assert dict(cors_headers(["*"], ORIGIN, preflight=True)) == {
        b"access-control-allow-origin": b"*",
        b"access-control-allow-methods": b"GET,POST,OPTIONS,HEAD",
        b"access-control-allow-headers": b"*"}


def _client(world: World, origins: list[str]) -> Iterator[TestClient[Any]]:
    settings = msgspec.structs.replace(world.settings, cors_allow_origins=origins)
    app = build_app(settings, blobs=world.blobs, db=world.db, accounts=world.accounts,
                     state=world.state, registry=CollectorRegistry())
    with TestClient(app) as c:
        yield c


@pytest.fixture
def any_origin(world: World) -> Iterator[TestClient[Any]]:
    yield from _client(world, ["*"])


@pytest.fixture
def no_cors(world: World) -> Iterator[TestClient[Any]]:
    yield from _client(world, [])


@pytest.mark.parametrize("path", ["/v2/snapshots", "/v2/articles/Page_1", "/v2/codes",
                                  "/v1/login", "/v2/articles",
                                  "/v2/batches/2026-01-01/00"])
def test_preflight_needs_no_credentials(any_origin: TestClient[Any], path: str) -> None:
    r = any_origin.options(path, headers={
        "Origin": ORIGIN, "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization, content-type"})
    assert r.status_code == 204, r.text
    assert r.headers["access-control-allow-origin"] == "*"
    assert r.headers["access-control-allow-methods"] == "GET,POST,OPTIONS,HEAD"
    assert r.headers["access-control-allow-headers"] == "authorization, content-type"


def test_answers_carry_the_origin_header(any_origin: TestClient[Any], world: World) -> None:
    ok = any_origin.get("/v2/snapshots", headers={**world.headers(world.key_a),
                                                  "Origin": ORIGIN})
    assert ok.status_code == 200 and ok.headers["access-control-allow-origin"] == "*"
    # Errors too: a browser must be able to read the 401 problem.
    denied = any_origin.get("/v2/snapshots", headers={"Origin": ORIGIN})
    assert denied.status_code == 401 and denied.headers["access-control-allow-origin"] == "*"
    plain = any_origin.get("/v2/snapshots", headers=world.headers(world.key_a))
    assert "access-control-allow-origin" not in plain.headers  # no Origin: not CORS


def test_cors_can_be_turned_off(no_cors: TestClient[Any], world: World) -> None:
    r = no_cors.get("/v2/snapshots", headers={**world.headers(world.key_a), "Origin": ORIGIN})
    assert r.status_code == 200 and "access-control-allow-origin" not in r.headers
    pre = no_cors.options("/v2/snapshots", headers={"Origin": ORIGIN,
                                                    "Access-Control-Request-Method": "GET"})
    assert "access-control-allow-origin" not in pre.headers


def test_one_middleware_for_the_whole_app(any_origin: TestClient[Any], world: World) -> None:
    """CORS wraps the application, not routers: an unknown path's 404 and a wrong method's
    405 carry the headers too (a browser must be able to read those problems), as do the
    operational endpoints and the usage report."""
    for method, path in (("GET", "/v2/nowhere"), ("GET", "/no/such/path"),
                         ("DELETE", "/v2/snapshots"), ("GET", "/healthz"),
                         ("GET", "/v1/usage")):
        r = any_origin.request(method, path, headers={**world.headers(world.key_a),
                                                     "Origin": ORIGIN})
        assert r.headers["access-control-allow-origin"] == "*", (method, path, r.status_code)
    r = any_origin.get("/v2/nowhere", headers={"Origin": ORIGIN})
    assert r.status_code == 404 and r.headers["access-control-allow-origin"] == "*"
    pre = any_origin.options("/v2/nowhere", headers={"Origin": ORIGIN,
                                                      "Access-Control-Request-Method": "GET"})
    assert pre.status_code == 204 and pre.headers["access-control-allow-origin"] == "*"


def test_portal_pages_are_left_out(any_origin: TestClient[Any]) -> None:
    # The portal is a same-origin app signed in with a session cookie: no CORS there.
    r = any_origin.get("/usage/login", headers={"Origin": ORIGIN})
    assert r.status_code == 200 and "access-control-allow-origin" not in r.headers


def test_listed_origins_only(world: World) -> None:
    for c in _client(world, [ORIGIN]):
        ok = c.get("/v2/nowhere", headers={"Origin": ORIGIN})
        assert ok.status_code == 404
        assert ok.headers["access-control-allow-origin"] == ORIGIN
        assert ok.headers["vary"] == "Origin"
        other = c.get("/v2/nowhere", headers={"Origin": "https://evil.example"})
        assert "access-control-allow-origin" not in other.headers
