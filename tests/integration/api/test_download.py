"""End to end over real HTTP: a snapshot built from a real enwiki dump by the real builder,
accounts from the real service, the app under uvicorn on 127.0.0.1, an httpx client.

1. log in, list, HEAD, fetch the download in parallel Range requests, reassemble, check the
   SHA-256 against the manifest, decompress and compare the records with ``read_dump``;
2. an isolation matrix: customer A (enwiki only) and B (simplewiki only, built from a second
   real dump) can never read what only the other's plan allows: listing, metadata, chunks,
   downloads, on-demand, and guessed identifiers or versions.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import httpx
import msgspec
import pytest
import zstandard
from prometheus_client import CollectorRegistry

from feedserver.accounts.service import Accounts
from feedserver.api.app import build_app
from feedserver.config import Settings
from feedserver.feeds.events.state import StateStore
from feedserver.feeds.snapshots.build import build_snapshots
from feedserver.feeds.snapshots.manifest import Manifest
from feedserver.ingest.dump import read_dump
from feedserver.models import Article
from feedserver.plans import Plan
from feedserver.storage.blobs import FilesystemBlobStore
from feedserver.storage.db import SQLiteDatabase
from tests.conftest import DUMPS
from tests.fixtures.asgi import serve_in_thread

pytestmark = pytest.mark.integration

DUMP = (DUMPS / "gensim-4.4.0"
        / "enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2")
CORPUS = DUMPS / "gensim-4.4.0" / "testcorpus.xml.bz2"
NS0 = "enwiki_namespace_0"
SIMPLE = "simplewiki_namespace_0"
PASSWORD = "integration password 1"


@dataclass
class Server:
    url: str
    manifests: dict[str, Manifest]
    settings: Settings


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("api")
    # Small chunks, so the download is several chunk files back to back.
    settings = Settings(data_dir=str(tmp), chunk_size=256 * 1024, metering_enabled=True,
                        token_secret="integration-secret-0123456789abcdef")
    blobs = FilesystemBlobStore(tmp / "blobs")
    db = SQLiteDatabase(tmp / "feedserver.db")
    manifests = {m.identifier: m for m in build_snapshots([DUMP], blobs, settings)}
    manifests.update({m.identifier: m for m in build_snapshots([CORPUS], blobs, settings,
                                                                wiki="simplewiki")})
    assert len(manifests[NS0].chunks) >= 3
    state = StateStore(db)
    for path, wiki in ((DUMP, None), (CORPUS, "simplewiki")):
        _, records = read_dump(path, wiki=wiki)
        state.load_articles(r for r in records if isinstance(r, Article))
    accounts = Accounts(db, settings)
    accounts.create_plan(Plan(name="en", feeds=["snapshots", "ondemand"], projects=["enwiki"]))
    accounts.create_plan(Plan(name="simple", feeds=["snapshots", "ondemand"],
                              projects=["simplewiki"]))
    for customer, plan in (("acme", "en"), ("globex", "simple")):
        accounts.create_customer(customer, plan)
        accounts.create_user(f"{customer}-user", PASSWORD, customer)
    app = build_app(settings, blobs=blobs, db=db, accounts=accounts, state=state,
                     registry=CollectorRegistry())
    try:
        with serve_in_thread(app) as url:
            yield Server(url, manifests, settings)
    finally:
        db.close()


def login(client: httpx.Client, username: str) -> dict[str, str]:
    r = client.post("/v1/login", json={"username": username, "password": PASSWORD})
    assert r.status_code == 200, r.text
    return {"Authorization": f"Bearer {r.json()['access_token']}"}


def unzstd(data: bytes) -> bytes:
    with zstandard.ZstdDecompressor().stream_reader(io.BytesIO(data),
                                                    read_across_frames=True) as reader:
        return reader.read()


def test_parallel_range_download_matches_dump(server: Server) -> None:
    with httpx.Client(base_url=server.url, timeout=30) as client:
        auth = login(client, "acme-user")
        listed = client.get("/v2/snapshots", headers=auth).json()
        assert [s["identifier"] for s in listed] == [NS0]
        meta = client.get(f"/v2/snapshots/{NS0}", headers=auth).json()
        # The native zstd NDJSON (the default is WME's tar.gz: tests/unit/api/
        # test_wme_downloads.py), whose checksums the metadata lists under ``formats``.
        native = next(f for f in meta["formats"] if f["format"] == "zstd")
        auth = {**auth, "Accept": "application/zstd"}
        head = client.head(f"/v2/snapshots/{NS0}/download", headers=auth)
        assert head.status_code == 200 and head.headers["accept-ranges"] == "bytes"
        size = int(head.headers["content-length"])
        assert size == native["size_bytes"]
        assert head.headers["etag"] == f'"sha256:{native["sha256"]}"'

    # Ranges that do not line up with chunk boundaries, fetched by several threads.
    step = size // 7 + 1
    spans = [(start, min(size, start + step) - 1) for start in range(0, size, step)]

    def fetch(span: tuple[int, int]) -> bytes:
        with httpx.Client(base_url=server.url, timeout=30) as c:
            r = c.get(f"/v2/snapshots/{NS0}/download",
                      headers={**auth, "Range": f"bytes={span[0]}-{span[1]}",
                               "If-Range": head.headers["etag"]})
            assert r.status_code == 206, r.text
            assert r.headers["content-range"] == f"bytes {span[0]}-{span[1]}/{size}"
            return r.content

    with ThreadPoolExecutor(max_workers=4) as pool:
        data = b"".join(pool.map(fetch, spans))
    assert hashlib.sha256(data).hexdigest() == native["sha256"] == server.manifests[NS0].sha256

    got = [msgspec.json.decode(line, type=Article) for line in unzstd(data).splitlines()]
    _, records = read_dump(DUMP, namespaces={0})
    want = {a.identifier: a for a in records if isinstance(a, Article)}
    assert len(got) == len(want) == meta["article_count"]
    for article in got:
        # The snapshot attaches redirect pages to their target (WME); the rest is identical.
        assert msgspec.structs.replace(article, redirects=None) == msgspec.structs.replace(
            want[article.identifier], redirects=None)
    assert any(a.redirects for a in got)


def _status(client: httpx.Client, method: str, path: str, auth: dict[str, str]) -> int:
    return client.request(method, path, headers=auth).status_code


@pytest.mark.parametrize(("user", "own", "other", "own_title", "other_title"), [
    ("acme-user", NS0, SIMPLE, "Anarchism", "Article1"),
    ("globex-user", SIMPLE, NS0, "Article1", "Anarchism"),
])
def test_isolation_matrix(server: Server, user: str, own: str, other: str, own_title: str,
                          other_title: str) -> None:
    own_wiki, other_wiki = own.split("_namespace_")[0], other.split("_namespace_")[0]
    with httpx.Client(base_url=server.url, timeout=30) as client:
        auth = login(client, user)
        listed = client.get("/v2/snapshots", headers=auth).json()
        assert [s["identifier"] for s in listed] == [own]
        posted = client.post("/v2/snapshots", headers=auth, json={
            "filters": [{"field": "is_part_of.identifier", "value": other_wiki}]})
        assert posted.status_code == 200 and posted.json() == []
        forbidden = [
            ("GET", f"/v2/snapshots/{other}"),
            ("POST", f"/v2/snapshots/{other}"),
            ("GET", f"/v2/snapshots/{other}?version=1"),
            ("GET", f"/v2/snapshots/{other}?version=99"),  # guessed version: same answer
            ("HEAD", f"/v2/snapshots/{other}/download"),
            ("GET", f"/v2/snapshots/{other}/download"),
            ("GET", f"/v2/snapshots/{other}/download?version=1"),
            ("GET", f"/v2/snapshots/{other}/chunks"),
            ("GET", f"/v2/snapshots/{other}/chunks/0"),
            ("GET", f"/v2/snapshots/{other}/chunks/{other}_chunk_0"),
            ("HEAD", f"/v2/snapshots/{other}/chunks/0/download"),
            ("GET", f"/v2/snapshots/{other}/chunks/0/download"),
            ("GET", f"/v2/snapshots/{other_wiki}_namespace_14"),  # guessed, absent: still 403
            ("GET", "/v2/snapshots/dewiki_namespace_0"),
        ]
        for method, path in forbidden:
            assert _status(client, method, path, auth) == 403, (method, path)
        # A chunk of the other snapshot, asked for through one's own snapshot.
        assert _status(client, "GET", f"/v2/snapshots/{own}/chunks/{other}_chunk_0/download",
                       auth) == 404
        # On-demand: the other project's titles are invisible (404, the same as absent).
        assert client.get(f"/v2/articles/{other_title}", headers=auth).status_code == 404
        r = client.post(f"/v2/articles/{own_title}", headers=auth, json={
            "filters": [{"field": "is_part_of.identifier", "value": other_wiki}]})
        assert r.status_code == 404
        r = client.get(f"/v2/articles/{own_title}", headers=auth)
        assert r.status_code == 200, r.text
        assert {a["is_part_of"]["identifier"] for a in r.json()} == {own_wiki}
        # Metadata derived from snapshots only shows what the plan covers.
        assert [p["identifier"] for p in client.get("/v2/projects", headers=auth).json()] == [
            own_wiki]
        assert client.get(f"/v2/projects/{other_wiki}", headers=auth).status_code == 404
