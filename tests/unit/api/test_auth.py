from __future__ import annotations

from typing import Any

from litestar.testing import TestClient

from tests.unit.api.conftest import World

LOGIN = {"username": "alice", "password": "correct horse battery"}


def test_login_refresh_revoke(client: TestClient[Any], world: World) -> None:
    r = client.post("/v1/login", json=LOGIN)
    assert r.status_code == 200
    tokens = r.json()
    assert {"id_token", "access_token", "refresh_token", "expires_in"} <= set(tokens)
    bearer = {"Authorization": f"Bearer {tokens['access_token']}"}
    assert client.get("/v2/snapshots", headers=bearer).status_code == 200
    r = client.post("/v1/token-refresh", json={"username": "alice",
                                               "refresh_token": tokens["refresh_token"]})
    assert r.status_code == 200 and "access_token" in r.json()
    r = client.post("/v1/token-revoke", json={"refresh_token": tokens["refresh_token"]})
    assert r.status_code == 204 and r.content == b""
    r = client.post("/v1/token-refresh", json={"username": "alice",
                                               "refresh_token": tokens["refresh_token"]})
    assert r.status_code == 401


def test_login_failures(client: TestClient[Any]) -> None:
    r = client.post("/v1/login", json={"username": "alice", "password": "wrong"})
    assert r.status_code == 401
    assert r.json()["message"] == "Incorrect username or password."
    assert client.post("/v1/login", content=b"{nope").status_code == 400
    assert client.post("/v1/login", json={"username": "alice"}).status_code == 422
    assert client.post("/v1/login", json={"username": "", "password": "x"}).status_code == 422


def test_get_user(client: TestClient[Any], world: World) -> None:
    tokens = client.post("/v1/login", json=LOGIN).json()
    r = client.post("/v1/get-user", headers={"Authorization": f"Bearer {tokens['access_token']}"})
    assert r.status_code == 200
    data = r.json()
    assert data["username"] == "alice" and data["groups"] == ["en-only"]
    assert data["ondemand_requests_count"] == 0 and "snapshot_limit" in data
    # WME's counts and limits are integers; a plan without caps reports 0 (WME's value when
    # no limit is configured), never null, which WME's clients cannot read as a number.
    for name in ("ondemand_requests_count", "ondemand_limit", "snapshot_requests_count",
                 "snapshot_limit", "chunk_requests_count", "chunk_limit"):
        assert type(data[name]) is int, (name, data[name])


def test_credentials(client: TestClient[Any], world: World) -> None:
    for headers in ({}, {"Authorization": "Bearer nonsense"}, {"Authorization": "Basic eDp5"},
                    {"X-API-Key": "fs_bogus_key"}, {"Authorization": "Bearer "},
                    {"Authorization": "Bearer " + "a" * 10000}):
        r = client.get("/v2/snapshots", headers=headers)
        assert r.status_code == 401, headers
        assert r.headers["www-authenticate"].startswith("Bearer")
        assert r.headers["content-type"] == "application/problem+json"
    assert client.get("/v2/snapshots", headers={"X-API-Key": world.key_a}).status_code == 200


def test_raw_token_without_bearer(client: TestClient[Any], world: World) -> None:
    """WME strips an optional "Bearer " prefix: the bare token (or API key) works too."""
    token = client.post("/v1/login", json=LOGIN).json()["access_token"]
    assert client.get("/v2/snapshots", headers={"Authorization": token}).status_code == 200
    assert client.get("/v2/snapshots", headers={"Authorization": world.key_a}
                      ).status_code == 200
    assert client.get("/v2/snapshots", headers={"Authorization": "nonsense"}).status_code == 401


def test_forbidden_feed(client: TestClient[Any], world: World) -> None:
    r = client.get("/v2/snapshots/enwiki_namespace_0", headers=world.headers(world.key_none))
    assert r.status_code == 403
    assert r.json()["type"] == "https://feedserver.dev/problems/forbidden"
    r = client.get("/v2/articles/Page_1", headers=world.headers(world.key_none))
    assert r.status_code == 404  # nothing visible: same answer as a missing title
