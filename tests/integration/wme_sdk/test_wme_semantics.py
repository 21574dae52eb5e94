"""WME request semantics the Python SDK does not exercise by itself, over real HTTP against the
same server: other WME clients (the Go SDK, browsers, curl scripts) depend on them."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import httpx
import pytest

from feedserver.config import load_settings
from tests.integration.wme_sdk.server import WMEServer, article_records

pytestmark = pytest.mark.integration


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_realtime_get_with_json_body(wme_server: WMEServer, token: str) -> None:
    """WME's Go SDK streams with a GET carrying a JSON body: it must be read like a POST's
    (else the stream opens at the tail and sends nothing of the past)."""
    want = len(article_records(wme_server))
    body = json.dumps({"since": (wme_server.events_from - timedelta(seconds=1)).isoformat()})
    got: list[dict[str, Any]] = []
    with httpx.stream("GET", f"{wme_server.url}/v2/articles", content=body,
                      headers={**_auth(token), "Content-Type": "application/json",
                               "Accept": "application/x-ndjson"},
                      timeout=httpx.Timeout(60)) as r:
        assert r.status_code == 200
        for line in r.iter_lines():
            if line.strip():
                got.append(json.loads(line))
            if len(got) >= want:
                break
    assert len(got) == want


def test_fifty_partitions_in_ten_parts(wme_server: WMEServer, token: str) -> None:
    """WME's topic has 50 partitions; part p is partitions 5p..5p+4."""
    assert load_settings(wme_server.env).article_partitions == 50
    records = article_records(wme_server)
    assert max(r.partition for r in records) < 50
    last = max(records, key=lambda r: r.partition)
    part = last.partition // 5
    want = sorted((r.partition, r.offset) for r in records if r.partition // 5 == part)
    body = {"parts": [part], "offsets": {str(p): 0 for p in range(5 * part, 5 * part + 5)}}
    got: list[tuple[int, int]] = []
    with httpx.stream("POST", f"{wme_server.url}/v2/articles", json=body,
                      headers={**_auth(token), "Accept": "application/x-ndjson"},
                      timeout=httpx.Timeout(60)) as r:
        assert r.status_code == 200
        for line in r.iter_lines():
            if line.strip():
                event = json.loads(line)["event"]
                got.append((event["partition"], event["offset"]))
            if len(got) >= len(want):
                break
    assert sorted(got) == want


@pytest.mark.parametrize(("limit", "status", "count"), [
    (None, 200, 2), (0, 200, 2), (-4, 200, 2), (1, 200, 1), (10, 200, 2), (11, 422, None)])
def test_ondemand_limit(wme_server: WMEServer, token: str, limit: int | None, status: int,
                        count: int | None) -> None:
    body = {} if limit is None else {"limit": limit}
    r = httpx.post(f"{wme_server.url}/v2/articles/Article1", json=body, headers=_auth(token),
                   timeout=30)
    assert r.status_code == status, r.text
    if count is not None:
        assert len(r.json()) == count
    else:
        assert r.json()["message"] == "limit cannot be greater than 10"


@pytest.mark.parametrize(("path", "body"), [
    ("articles/Anarchism", {"fields": ["nmae"]}),
    ("articles/Anarchism", {"filters": [{"field": "is_part_of", "value": "enwiki"}]}),
    ("snapshots", {"fields": ["identifer"]}),
    ("projects", {"filters": [{"field": "language", "value": "en"}]}),
])
def test_unknown_paths_are_422(wme_server: WMEServer, token: str, path: str,
                               body: dict[str, Any]) -> None:
    r = httpx.post(f"{wme_server.url}/v2/{path}", json=body, headers=_auth(token), timeout=30)
    assert r.status_code == 422, r.text


def test_raw_token_and_cors(wme_server: WMEServer, token: str) -> None:
    r = httpx.post(f"{wme_server.url}/v2/codes", json={}, timeout=30,
                   headers={"Authorization": token, "Origin": "https://labs.example"})
    assert r.status_code == 200 and r.headers["access-control-allow-origin"] == "*"
    pre = httpx.options(f"{wme_server.url}/v2/articles/Anarchism", timeout=30, headers={
        "Origin": "https://labs.example", "Access-Control-Request-Method": "POST"})
    assert pre.status_code == 204
    assert pre.headers["access-control-allow-methods"] == "GET,POST,OPTIONS,HEAD"
