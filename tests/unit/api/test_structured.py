"""Structured Contents over HTTP: on-demand ``/v2/structured-contents/{name}`` and the snapshots
under ``/v2/snapshots/structured-contents`` (the world's builds made them: namespace 0)."""

from __future__ import annotations

import hashlib
import io
import tarfile
from datetime import UTC, datetime
from typing import Any

import msgspec
import pytest
from litestar.testing import TestClient

from feedserver.feeds.snapshots.manifest import STRUCTURED_PREFIX, wme_archive
from feedserver.feeds.snapshots.store import SnapshotStore
from feedserver.ingest.structured import structured_content
from feedserver.models import Article, ArticleBody, Language, Namespace, Project, Version
from feedserver.plans import Plan
from tests.unit.api.conftest import World
from tests.unit.api.test_snapshots import unzstd

EN = "enwiki_namespace_0"
SC = "/v2/snapshots/structured-contents"


@pytest.fixture(scope="module")
def key_sc(world: World) -> str:
    """A customer whose plan has Structured Contents of enwiki only (and no other feed)."""
    world.accounts.create_plan(Plan(name="sc-en", feeds=["structured_contents"],
                                    projects=["enwiki"]))
    world.accounts.create_customer("delta", "sc-en")
    # A title with "/" (subpage), in the state store only.
    world.state.load_articles([Article(
        name="Page 3/Sub", identifier=900, namespace=Namespace(identifier=0),
        is_part_of=Project(identifier="enwiki", url="https://en.wikipedia.org"),
        in_language=Language(identifier="en"), version=Version(identifier=9000),
        date_modified=datetime(2024, 2, 1, tzinfo=UTC),
        article_body=ArticleBody(wikitext="A '''subpage''' with a [[Page 3|link]].\n\n"
                                          "== Part ==\nMore.<ref>Src</ref>"))])
    return world.accounts.create_api_key("delta")[1]


def test_on_demand_is_the_parsed_latest_revision(client: TestClient[Any], world: World,
                                                 key_sc: str) -> None:
    r = client.get("/v2/structured-contents/Page_3", headers=world.headers(key_sc))
    assert r.status_code == 200
    (item,) = r.json()  # enwiki only: the plan's one project
    (article,) = world.state.find_by_name("Page 3", ["enwiki"])
    assert item == msgspec.to_builtins(structured_content(article).content)
    assert item["sections"][0]["name"] == "Abstract"
    r = client.post("/v2/structured-contents/Page 3/Sub", headers=world.headers(key_sc),
                    json={"fields": ["name", "sections", "references"]})
    (sub,) = r.json()
    assert sub["name"] == "Page 3/Sub" and [s["name"] for s in sub["sections"]] \
        == ["Abstract", "Part"]
    assert sub["references"][0]["text"]["value"] == "Src"


def test_on_demand_fields_filters_and_limit(client: TestClient[Any], world: World,
                                            key_sc: str) -> None:
    h = world.headers(key_sc)
    # WME's beta names ask for the fields they became.
    r = client.post("/v2/structured-contents/Page_3", headers=h,
                    json={"fields": ["name", "article_sections", "infobox"]})
    assert r.status_code == 200 and set(r.json()[0]) == {"name", "sections"}
    r = client.post("/v2/structured-contents/Page_3", headers=h, json={
        "filters": [{"field": "version.identifier", "value": 1003}], "fields": ["identifier"]})
    assert r.json() == [{"identifier": 3}]
    flt = '[{"field":"is_part_of.identifier","value":"dewiki"}]'
    assert client.get("/v2/structured-contents/Page_3", headers=h,
                      params={"filters": flt}).status_code == 404  # not in the plan
    for body in ({"fields": ["nope"]}, {"filters": [{"field": "sections", "value": 1}]},
                 {"limit": 11}):
        assert client.post("/v2/structured-contents/Page_3", headers=h,
                           json=body).status_code == 422, body
    assert client.get("/v2/structured-contents/Nope", headers=h).status_code == 404
    assert client.get("/v2/structured-contents/a%7Cb", headers=h).status_code == 422


def test_on_demand_needs_the_feed(client: TestClient[Any], world: World) -> None:
    # A plan with on-demand but not Structured Contents: refused before anything is looked up.
    r = client.get("/v2/structured-contents/Page_3", headers=world.headers(world.key_a))
    assert r.status_code == 403 and r.json()["feed"] == "structured_contents"


def test_on_demand_parses_are_counted(client: TestClient[Any], world: World, key_sc: str
                                      ) -> None:
    client.get("/v2/structured-contents/Page_3", headers=world.headers(key_sc))
    metrics = client.get("/metrics").text
    assert 'feedserver_structured_pages_total{result="ok",source="ondemand"}' in metrics


def test_snapshot_list_and_metadata(client: TestClient[Any], world: World, key_sc: str
                                    ) -> None:
    h = world.headers(key_sc)
    r = client.get(SC, headers=h)
    # enwiki's namespace 0 only: dewiki is not in the plan, namespace 10 has none.
    assert [s["identifier"] for s in r.json()] == [EN]
    manifest = SnapshotStore(world.blobs, STRUCTURED_PREFIX).manifest(EN)
    data = client.post(f"{SC}/{EN}", headers=h, json={}).json()
    # As article snapshots: version, size and sha256 are the default tar.gz download's;
    # ``formats`` also gives the zstd NDJSON's (the manifest's).
    wme = wme_archive(manifest.representations)
    assert wme is not None
    assert (data["version"], data["version_number"]) == (wme.archive.md5, 1)
    assert data["size"]["unit_text"] == "MB" and data["size_bytes"] == wme.archive.size
    assert data["content_root_hash"] == manifest.content_root_hash
    assert [(f["format"], f["size_bytes"], f["sha256"]) for f in data["formats"]] == [
        ("tar.gz", wme.archive.size, wme.archive.sha256),
        ("zstd", manifest.size.value, manifest.sha256)]
    assert data["structured"] == {"article_version": world.manifests[EN].version,
                                  "parsed": 40, "degraded": 0, "problems": {}}
    # The SDK's own example asks for "name": valid, and yields nothing.
    r = client.post(SC, headers=h, json={"fields": ["identifier", "name", "date_modified"]})
    assert set(r.json()[0]) == {"identifier", "date_modified"}
    assert client.post(SC, headers=h, json={"fields": ["nope"]}).status_code == 422
    # The article snapshots are a separate feed.
    assert client.get(f"/v2/snapshots/{EN}", headers=h).status_code == 403


def test_snapshot_entitlement(client: TestClient[Any], world: World, key_sc: str) -> None:
    assert client.get(f"{SC}/dewiki_namespace_0", headers=world.headers(key_sc)
                      ).status_code == 403
    assert client.get(f"{SC}/dewiki_namespace_0/download", headers=world.headers(key_sc)
                      ).status_code == 403
    assert client.get(f"{SC}/enwiki_namespace_10", headers=world.headers(key_sc)
                      ).status_code == 404
    assert client.get(f"{SC}/{EN}", headers=world.headers(world.key_a)).status_code == 403
    assert client.get(SC, headers=world.headers(world.key_a)).json() == []
    assert client.get(f"{SC}/enwiki_namespace_x", headers=world.headers(key_sc)
                      ).status_code == 422


def test_snapshot_download_and_chunks(client: TestClient[Any], world: World, key_sc: str
                                      ) -> None:
    h = world.headers(key_sc)
    store = SnapshotStore(world.blobs, STRUCTURED_PREFIX)
    manifest = store.manifest(EN)
    # zstd NDJSON by negotiation: the manifest's checksums.
    zstd = {**h, "Accept": "application/zstd"}
    r = client.get(f"{SC}/{EN}/download", headers=zstd)
    assert r.status_code == 200 and r.headers["etag"] == f'"sha256:{manifest.sha256}"'
    assert hashlib.sha256(r.content).hexdigest() == manifest.sha256
    assert unzstd(r.content).splitlines() == list(store.iter_lines(manifest))
    head = client.head(f"{SC}/{EN}/download", headers=zstd)
    assert int(head.headers["content-length"]) == len(r.content)
    part = client.get(f"{SC}/{EN}/download", headers={**zstd, "Range": "bytes=0-99"})
    assert part.status_code == 206 and part.content == r.content[:100]
    # WME's tar.gz by default, as for article snapshots: its MD5 is the metadata's version,
    # its entries hold the same lines, Ranges and resumes work on it too.
    gz = client.get(f"{SC}/{EN}/download", headers=h)
    assert gz.status_code == 200 and gz.headers["content-type"] == "application/gzip"
    assert gz.headers["etag"] != r.headers["etag"] and gz.headers["vary"] == "Accept"
    with tarfile.open(fileobj=io.BytesIO(gz.content), mode="r|gz") as tar:
        names, lines = [], []
        for member in tar:
            names.append(member.name)
            lines += tar.extractfile(member).read().splitlines()  # type: ignore[union-attr]
    assert names == [f"{EN}_{k}.ndjson" for k in range(len(manifest.chunks))]
    assert lines == list(store.iter_lines(manifest))
    meta = client.get(f"{SC}/{EN}", headers=h).json()
    assert meta["version"] == hashlib.md5(gz.content, usedforsecurity=False).hexdigest()
    tail = client.get(f"{SC}/{EN}/download", headers={**h, "Range": "bytes=100-"})
    assert tail.status_code == 206 and tail.content == gz.content[100:]
    chunks = client.get(f"{SC}/{EN}/chunks", headers=h).json()
    assert [c["identifier"] for c in chunks] == manifest.chunk_identifiers()
    assert len(chunks) > 1
    one = client.get(f"{SC}/{EN}/chunks/1/download", headers=zstd)
    assert hashlib.sha256(one.content).hexdigest() == manifest.chunks[1].sha256
    one_gz = client.get(f"{SC}/{EN}/chunks/1/download", headers=h)
    with tarfile.open(fileobj=io.BytesIO(one_gz.content), mode="r|gz") as tar:
        assert [m.name for m in tar] == ["chunk_1.ndjson"]
    assert client.get(f"{SC}/{EN}/chunks/{EN}_chunk_1", headers=h).json()["index"] == 1
