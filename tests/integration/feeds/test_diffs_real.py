"""Diffs end to end on a REAL enwiki dump, served by a real uvicorn on 127.0.0.1.

v1 is built from the dump; v2 from a second dump derived in ``tmp_path`` by rewriting the XML
(pages deleted, edited, added); v3 from v2 plus state-store changes (``advance_snapshot``, no
dump). A client downloads base and diffs over HTTP and ``feedserver diff apply`` (a
subprocess, manifest fetched by URL) rebuilds v2 and then v3 exactly; tampered diffs fail.
"""

from __future__ import annotations

import bz2
import os
import re
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import msgspec
import pytest
import zstandard
from prometheus_client import CollectorRegistry

from feedserver.accounts.service import Accounts
from feedserver.api.app import build_app
from feedserver.config import Settings
from feedserver.feeds.diffs.advance import advance_snapshot
from feedserver.feeds.diffs.build import build_diff
from feedserver.feeds.diffs.manifest import DiffManifest
from feedserver.feeds.events.state import StateStore
from feedserver.feeds.snapshots.build import build_snapshots
from feedserver.feeds.snapshots.store import SnapshotStore
from feedserver.formats.hashing import article_hash, root_hash
from feedserver.ingest.events import ArticleChange, to_us
from feedserver.models import ArticleBody, ArticleKey, Event, Version
from feedserver.plans import Plan
from feedserver.storage.blobs import FilesystemBlobStore
from feedserver.storage.db import SQLiteDatabase
from tests.conftest import DUMPS
from tests.fixtures.asgi import serve_in_thread

REAL = DUMPS / "gensim-4.4.0/enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2"
ID = "enwiki_namespace_0"
_PAGE = re.compile(rb"  <page>\n.*?\n  </page>\n", re.S)


def derive_dump(src: Path, dst: Path) -> tuple[list[int], list[int], list[int]]:
    """Write a v2 dump: 5 articles deleted, 5 edited (new revision), 3 added."""
    xml = bz2.decompress(src.read_bytes())
    pages = list(_PAGE.finditer(xml))
    articles = [m for m in pages if b"<redirect" not in m.group(0)
                and b"<ns>0</ns>" in m.group(0)]
    deleted, edited = articles[:5], articles[5:10]
    ids = [int(re.search(rb"<id>(\d+)</id>", m.group(0)).group(1))  # type: ignore[union-attr]
           for m in articles[:10]]
    out, pos, added = [], 0, []
    for m in pages:
        out.append(xml[pos:m.start()])
        pos = m.end()
        if m in deleted:
            continue
        block = m.group(0)
        if m in edited:
            block = _edit(block)
        out.append(block)
    for k in range(3):
        page_id = 90_000_000 + k
        added.append(page_id)
        block = re.sub(rb"<title>.*?</title>", b"<title>Diff test page %d</title>" % k,
                       _edit(edited[0].group(0)), count=1)
        out.append(re.sub(rb"(<ns>0</ns>\n    )<id>\d+</id>", rb"\g<1><id>%d</id>" % page_id,
                          block, count=1))
    out.append(xml[pos:])
    dst.write_bytes(b"".join(out))
    return ids[:5], ids[5:10], added


def _edit(block: bytes) -> bytes:
    block = re.sub(rb"(<revision>\n      <id>)(\d+)",
                   lambda m: m.group(1) + str(int(m.group(2)) + 1).encode(), block, count=1)
    return block.replace(b'<text xml:space="preserve">',
                         b'<text xml:space="preserve">Edited for the diff test. ', 1)


@dataclass
class Server:
    url: str
    key: str
    key_no_diffs: str

    def get(self, path: str, key: str | None = None, **headers: str) -> tuple[int, bytes,
                                                                                  Any]:
        request = urllib.request.Request(self.url + path, headers={
            "Authorization": f"Bearer {key or self.key}", **headers})
        try:
            with urllib.request.urlopen(request, timeout=30) as resp:
                return resp.status, resp.read(), resp.headers
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read(), exc.headers


@pytest.fixture
def world(tmp_path: Path, shared_data: Path) -> Iterator[tuple[Settings, FilesystemBlobStore,
                                                              StateStore, Server]]:
    settings = Settings(data_dir=str(tmp_path / "var"), chunk_size=256 * 1024,
                        metering_enabled=False, token_secret="diff-test-secret-0123456789abcdef")
    blobs = FilesystemBlobStore(settings.blob_root)
    db = SQLiteDatabase(tmp_path / "var" / "feedserver.db")
    state = StateStore(db)
    accounts = Accounts(db, settings)
    accounts.create_plan(Plan(name="diffs", feeds=["snapshots", "diffs"], projects=["enwiki"]))
    accounts.create_plan(Plan(name="snapshots-only", feeds=["snapshots"]))
    accounts.create_customer("acme", "diffs")
    accounts.create_customer("initech", "snapshots-only")
    key = accounts.create_api_key("acme")[1]
    other = accounts.create_api_key("initech")[1]
    app = build_app(settings, blobs=blobs, db=db, accounts=accounts, state=state,
                     registry=CollectorRegistry())
    try:
        with serve_in_thread(app) as url:
            yield settings, blobs, state, Server(url, key, other)
    finally:
        db.close()


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FEEDSERVER_")}
    return subprocess.run([sys.executable, "-m", "feedserver", *args], env=env,
                          capture_output=True, text=True, timeout=300, check=False)


def test_real_dump_diffs_over_http_reproduce_each_version(
    world: tuple[Settings, FilesystemBlobStore, StateStore, Server], tmp_path: Path
) -> None:
    settings, blobs, state, server = world
    store = SnapshotStore(blobs)
    (v1,) = build_snapshots([REAL], blobs, settings, namespaces={0})
    deleted, edited, added = derive_dump(REAL, tmp_path / "v2.xml")
    (v2,) = build_snapshots([tmp_path / "v2.xml"], blobs, settings, namespaces={0})
    built = build_diff(blobs, settings, ID)
    assert built is not None
    d12 = built[0]
    assert (d12.counts.delete, d12.counts.update, d12.counts.add) == (5, 5, 3)
    assert v2.article_count == v1.article_count - 5 + 3

    # Events path: two deletes, two edits and one new page reach the state store after v2.
    articles = {a.identifier: a for a in store.iter_articles(v2)}
    when = v2.date_modified + timedelta(seconds=1)
    changes = []
    for n, page_id in enumerate([added[0], edited[0]]):
        a = msgspec.structs.replace(articles[page_id], event=Event(
            identifier=f"del-{n}", type="delete"))
        changes.append(_change(a, when))
    for n, page_id in enumerate([edited[1], deleted_neighbour(articles, deleted + edited)]):
        old = articles[page_id]
        assert old.version is not None
        a = msgspec.structs.replace(
            old, version=Version(identifier=old.version.identifier + 10, comment="event edit"),
            article_body=ArticleBody(wikitext=f"Edited by event {n}."), redirects=None,
            event=Event(identifier=f"edit-{n}", type="update"))
        changes.append(_change(a, when))
    new = msgspec.structs.replace(articles[edited[2]], identifier=91_000_000,
                                  name="Created by event",
                                  event=Event(identifier="create", type="update"))
    changes.append(_change(new, when))
    state.apply_many(changes)
    done = advance_snapshot(blobs, settings, state, ID, until=when + timedelta(seconds=1))
    assert done is not None
    v3, d23 = done.manifest, done.diff
    assert (d23.counts.delete, d23.counts.update, d23.counts.add) == (2, 2, 1)
    assert v3.events_until == when + timedelta(seconds=1)

    # Client side, over HTTP: base v1, diffs 1->2 (in two Range requests) and 2->3.
    # The base as served by default: WME's tar.gz (diff apply reads it as it reads .zst).
    base = tmp_path / "client" / "v1.tar.gz"
    base.parent.mkdir()
    status, body, _ = server.get(f"/v2/snapshots/{ID}/download?version=1")
    assert status == 200 and body[:2] == b"\x1f\x8b"
    base.write_bytes(body)
    d12_file = _download_in_ranges(server, f"/v2/diffs/{ID}/download?version=2", d12,
                                   tmp_path / "client" / "d12.zst")
    status, body, _ = server.get(f"/v2/diffs/{ID}/download")  # latest: 2->3
    assert status == 200
    d23_file = tmp_path / "client" / "d23.zst"
    d23_file.write_bytes(body)

    out2 = tmp_path / "client" / "v2.ndjson"
    ok = cli("diff", "apply", "--base", str(base), "--diff", str(d12_file), "--manifest",
             f"{server.url}/v2/diffs/{ID}/manifest?version=2", "--token", server.key,
             "-o", str(out2))
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert ok.stdout.startswith("OK:") and v2.content_root_hash in ok.stdout
    assert sorted(out2.read_bytes().splitlines()) == sorted(store.iter_lines(v2))
    assert root_hash(article_hash(x) for x in out2.read_bytes().splitlines()) == (
        v2.content_root_hash)

    out3 = tmp_path / "client" / "v3.ndjson"
    ok = cli("diff", "apply", "--base", str(out2), "--diff", str(d23_file), "--manifest",
             f"{server.url}/v2/diffs/{ID}/manifest?version=3", "--token", server.key,
             "-o", str(out3))
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert sorted(out3.read_bytes().splitlines()) == sorted(store.iter_lines(v3))

    # Tampering: one flipped byte in the download, one dropped line, the wrong base.
    manifest_file = tmp_path / "client" / "d12.json"
    manifest_file.write_bytes(server.get(f"/v2/diffs/{ID}/manifest?version=2")[1])
    flipped = tmp_path / "client" / "flipped.zst"
    data = bytearray(d12_file.read_bytes())
    data[len(data) // 2] ^= 0x20
    flipped.write_bytes(bytes(data))
    lines = zstandard.ZstdDecompressor().decompressobj().decompress(
        d12_file.read_bytes()).splitlines()
    dropped = tmp_path / "client" / "dropped.ndjson"
    dropped.write_bytes(b"".join(x + b"\n" for x in lines[:3] + lines[4:]))
    for diff, basefile in ((flipped, base), (dropped, base), (d12_file, out2)):
        bad = cli("diff", "apply", "--base", str(basefile), "--diff", str(diff),
                  "--manifest", str(manifest_file), "-o", str(tmp_path / "client" / "bad"))
        assert bad.returncode == 2 and bad.stdout.startswith("MISMATCH"), bad.stdout
        assert not (tmp_path / "client" / "bad").exists()


def test_diff_metadata_entitlements_and_errors(
    world: tuple[Settings, FilesystemBlobStore, StateStore, Server], tmp_path: Path
) -> None:
    settings, blobs, _, server = world
    build_snapshots([REAL], blobs, settings, namespaces={0})
    derive_dump(REAL, tmp_path / "v2.xml")
    build_snapshots([tmp_path / "v2.xml"], blobs, settings, namespaces={0})
    built = build_diff(blobs, settings, ID)
    assert built is not None
    m = built[0]
    status, body, _ = server.get("/v2/diffs")
    listed = msgspec.json.decode(body)
    assert status == 200 and [d["identifier"] for d in listed] == [ID]
    status, body, _ = server.get(f"/v2/diffs/{ID}")
    meta = msgspec.json.decode(body)
    assert (meta["base_version"], meta["version_number"], meta["versions"]) == (1, 2, [2])
    assert meta["content_root_hash"] == m.content_root_hash
    assert meta["counts"] == {"add": 3, "update": 5, "delete": 5}
    status, body, headers = server.get(f"/v2/diffs/{ID}/chunks/0/download")
    assert status == 200 and body == blobs.get_bytes(m.chunks[0].key)
    etag = headers["ETag"]
    assert server.get(f"/v2/diffs/{ID}/download", **{"If-None-Match": etag})[0] == 200
    whole_etag = server.get(f"/v2/diffs/{ID}/download")[2]["ETag"]
    assert server.get(f"/v2/diffs/{ID}/download", **{"If-None-Match": whole_etag})[0] == 304
    assert server.get(f"/v2/diffs/{ID}", key=server.key_no_diffs)[0] == 403
    assert server.get("/v2/diffs", key=server.key_no_diffs)[1] == b"[]"
    assert server.get(f"/v2/diffs/{ID}?version=9")[0] == 404
    assert server.get("/v2/diffs/enwiki_namespace_0%2F..")[0] in (404, 422)
    assert server.get(f"/v2/diffs/{ID}/chunks/99")[0] == 404


def deleted_neighbour(articles: dict[int, Any], skip: list[int]) -> int:
    return next(i for i in sorted(articles) if i not in skip and i < 90_000_000)


def _change(article: Any, when: Any) -> ArticleChange:
    rev = article.version.identifier if article.version else 0
    return ArticleChange(key=ArticleKey("enwiki", 0, article.identifier), article=article,
                         source_kind="delete" if article.event.type == "delete" else "edit",
                         revision=rev, changed_us=to_us(when))


def _download_in_ranges(server: Server, path: str, manifest: DiffManifest, dst: Path) -> Path:
    size = int(manifest.size.value)
    half = size // 2
    first = server.get(path, Range=f"bytes=0-{half - 1}")
    second = server.get(path, Range=f"bytes={half}-")
    assert (first[0], second[0]) == (206, 206)
    dst.write_bytes(first[1] + second[1])
    assert len(dst.read_bytes()) == size
    return dst

