"""The app opening everything itself from Settings (nothing injected) on a real PostgreSQL:
accounts, state store, metering and the filesystem blob store."""

from __future__ import annotations

from pathlib import Path

import pytest
from litestar.testing import TestClient
from prometheus_client import CollectorRegistry

from feedserver.accounts.passwords import Passwords
from feedserver.accounts.service import Accounts
from feedserver.api.app import build_app
from feedserver.config import load_settings
from feedserver.feeds.events.state import StateStore
from feedserver.feeds.snapshots.build import build_snapshots
from feedserver.ingest.dump import read_dump
from feedserver.models import Article
from feedserver.storage.blobs import FilesystemBlobStore
from feedserver.storage.db.postgres import PostgresDatabase
from tests.conftest import DUMPS

pytestmark = pytest.mark.integration

CORPUS = DUMPS / "gensim-4.4.0" / "testcorpus.xml.bz2"


def test_app_opens_its_components(fresh_postgres_url: str, tmp_path: Path) -> None:
    settings = load_settings(env={}, data_dir=str(tmp_path), database_url=fresh_postgres_url,
                             token_secret="pg-secret-0123456789abcdef0123456789",
                             chunk_size=1024)
    build_snapshots([CORPUS], FilesystemBlobStore(settings.blob_root), settings,
                    wiki="simplewiki")
    db = PostgresDatabase(fresh_postgres_url, max_size=2)
    try:
        _, records = read_dump(CORPUS, wiki="simplewiki")
        StateStore(db).load_articles(r for r in records if isinstance(r, Article))
        accounts = Accounts(db, settings, passwords=Passwords(time_cost=1, memory_cost=8))
        accounts.create_customer("acme", "free")
        accounts.create_user("ann", "pg password 1", "acme")
    finally:
        db.close()

    app = build_app(settings, registry=CollectorRegistry())
    with TestClient(app) as client:
        assert client.get("/readyz").json()["checks"] == {
            "blobs": "ok", "database": "ok", "events": "ok"}
        tokens = client.post("/v1/login", json={"username": "ann", "password": "pg password 1"})
        assert tokens.status_code == 200, tokens.text
        auth = {"Authorization": f"Bearer {tokens.json()['access_token']}"}
        (snap,) = client.get("/v2/snapshots", headers=auth).json()
        assert snap["identifier"] == "simplewiki_namespace_0" and len(snap["chunks"]) > 1
        r = client.get("/v2/snapshots/simplewiki_namespace_0/chunks/1/download", headers=auth)
        assert r.status_code == 200 and len(r.content) > 0
        found = client.get("/v2/articles/Article1", headers=auth).json()
        assert [a["is_part_of"]["identifier"] for a in found] == ["simplewiki"]
        user = client.post("/v1/get-user", headers=auth).json()
        assert user["chunk_requests_count"] == 1 and user["ondemand_requests_count"] == 1
