from __future__ import annotations

from typing import Any

import msgspec
import pytest
from litestar.testing import TestClient

from tests.unit.api.conftest import World


def test_projects_only_entitled(client: TestClient[Any], world: World) -> None:
    r = client.get("/v2/projects", headers=world.headers(world.key_a))
    assert r.json() == [{"identifier": "enwiki", "name": "Wikipedia",
                         "url": "https://en.wikipedia.org", "code": "wiki",
                         "in_language": {"identifier": "en"}}]
    r = client.get("/v2/projects/dewiki", headers=world.headers(world.key_a))
    assert r.status_code == 404
    r = client.post("/v2/projects/dewiki", headers=world.headers(world.key_b),
                    json={"fields": ["code"]})
    assert r.json() == {"code": "wiki"}
    r = client.get("/v2/languages", headers=world.headers(world.key_b))
    assert [lang["identifier"] for lang in r.json()] == ["de"]


def test_static_tables(client: TestClient[Any], world: World) -> None:
    h = world.headers(world.key_none)
    codes = client.get("/v2/codes", headers=h).json()
    assert {c["identifier"] for c in codes} >= {"wiki", "wiktionary", "wikivoyage"}
    ns = client.get("/v2/namespaces/14", headers=h).json()
    assert ns["identifier"] == 14 and ns["name"] == "Category"
    assert client.get("/v2/namespaces/2", headers=h).status_code == 404
    r = client.post("/v2/namespaces", headers={**h, "Accept": "application/x-ndjson"},
                    json={"filters": [{"field": "name", "value": "Template"}],
                          "fields": ["identifier"]})
    assert r.text == '{"identifier":10}\n'


def test_ondemand(client: TestClient[Any], world: World) -> None:
    r = client.get("/v2/articles/Page_3", headers=world.headers(world.key_a))
    assert r.status_code == 200
    (article,) = r.json()
    assert article["is_part_of"]["identifier"] == "enwiki" and article["name"] == "Page 3"
    r = client.post("/v2/articles/Page 3", headers=world.headers(world.key_b),
                    json={"fields": ["name", "version.*", "is_part_of.identifier"]})
    assert r.json() == [{"name": "Page 3", "version": {"identifier": 1003, "comment": "edit 3"},
                         "is_part_of": {"identifier": "dewiki"}}]


def test_ondemand_filters_and_limits(client: TestClient[Any], world: World) -> None:
    h = world.headers(world.key_a)
    flt = '[{"field":"is_part_of.identifier","value":"dewiki"}]'
    assert client.get("/v2/articles/Page_3", headers=h, params={"filters": flt}
                      ).status_code == 404  # dewiki is not in A's plan
    flt = '[{"field":"in_language.identifier","value":"en"}]'
    assert client.get("/v2/articles/Page_3", headers=h, params={"filters": flt}
                      ).status_code == 200
    flt = '[{"field":"version.identifier","value":9}]'
    assert client.get("/v2/articles/Page_3", headers=h, params={"filters": flt}
                      ).status_code == 404
    r = client.post("/v2/articles/Page_3", headers=h, json={"limit": 11})
    assert r.status_code == 422 and r.json()["message"] == "limit cannot be greater than 10"
    # WME: zero or negative means the default (3), not an error.
    assert client.get("/v2/articles/Page_3?limit=0", headers=h).status_code == 200
    assert client.post("/v2/articles/Page_3", headers=h, json={"limit": -2}).status_code == 200
    assert client.get("/v2/articles/Nope", headers=h).status_code == 404


def test_ondemand_unknown_paths_are_422(client: TestClient[Any], world: World) -> None:
    """A typo in ``fields`` or ``filters`` is an error (WME), not a silent ``{}``; WME fields
    we do not fill are valid requests."""
    h = world.headers(world.key_a)
    for body in ({"fields": ["nmae"]}, {"fields": ["version.nope"]}, {"fields": ["name.*"]},
                 {"filters": [{"field": "nope", "value": 1}]},
                 {"filters": [{"field": "version", "value": 1}]}):
        r = client.post("/v2/articles/Page_3", headers=h, json=body)
        assert r.status_code == 422, body
    r = client.post("/v2/articles/Page_3", headers=h,
                    json={"fields": ["name", "main_entity.*", "version.scores.revertrisk.*"]})
    assert r.status_code == 200 and r.json() == [{"name": "Page 3"}]
    # Keys WME ignores in a body (the SDK sends its whole Request shape) are ignored.
    r = client.post("/v2/articles/Page_3", headers=h, json={"since": "2024-01-01T00:00:00Z",
                                                          "parts": [0], "fields": ["name"]})
    assert r.status_code == 200 and r.json() == [{"name": "Page 3"}]
    assert client.post("/v2/snapshots", headers=h, json={"fields": ["nope"]}).status_code == 422
    assert client.post("/v2/codes", headers=h, json={"filters": [
        {"field": "nope", "value": "x"}]}).status_code == 422


@pytest.mark.parametrize("accept", ["application/json", "application/x-ndjson"])
def test_ondemand_formats(client: TestClient[Any], world: World, accept: str) -> None:
    r = client.get("/v2/articles/Page_1", headers=world.headers(world.key_a, Accept=accept),
                   params={"fields": "name"})
    assert r.headers["content-type"].startswith(accept)
    assert r.text.strip() in ('[{"name":"Page 1"}]', '{"name":"Page 1"}')


@pytest.mark.parametrize("accept", ["application/json", "application/x-ndjson"])
def test_ondemand_whole_articles_are_their_records(client: TestClient[Any], world: World,
                                                   accept: str) -> None:
    """Without fields or filters the articles are encoded as structs, without building their
    dicts first (and sent without litestar's Response): the bytes must be those of the
    records, with the same headers."""
    r = client.get("/v2/articles/Page_3", headers=world.headers(world.key_a, Accept=accept))
    assert r.status_code == 200 and r.headers["content-type"] == accept
    records = [msgspec.to_builtins(a) for a in world.state.find_by_name("Page 3", ["enwiki"])]
    assert len(records) == 1
    if accept == "application/json":
        assert r.content == msgspec.json.encode(records)
    else:
        assert r.content == b"".join(msgspec.json.encode(x) + b"\n" for x in records)
    assert r.headers["content-length"] == str(len(r.content))
    assert r.headers["x-request-id"]
