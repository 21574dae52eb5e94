"""A small real world for API unit tests: snapshots built with the real builder into a
filesystem blob store, a SQLite state store and the real accounts service, two customers with
disjoint plans. The app runs in-process (litestar ``TestClient``); no network."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import TestClient
from prometheus_client import CollectorRegistry

from feedserver.accounts.service import Accounts
from feedserver.api.app import build_app
from feedserver.config import Settings
from feedserver.feeds.events.state import StateStore
from feedserver.feeds.snapshots.build import build_from_records
from feedserver.feeds.snapshots.manifest import Manifest
from feedserver.ingest.siteinfo import DumpInfo
from feedserver.models import Article, ArticleBody, Language, Namespace, Project, Version
from feedserver.plans import Plan
from feedserver.storage.blobs import FilesystemBlobStore
from feedserver.storage.db import SQLiteDatabase


def make_articles(wiki: str, lang: str, ns: int, count: int, *, start: int = 1) -> list[Article]:
    return [
        Article(
            name=f"Page {i}" if ns == 0 else f"Template:Page {i}",
            identifier=i,
            date_modified=datetime(2024, 1, 1, 12, 0, i % 60, tzinfo=UTC),
            url=f"https://{lang}.wikipedia.org/wiki/Page_{i}",
            namespace=Namespace(identifier=ns),
            in_language=Language(identifier=lang),
            is_part_of=Project(identifier=wiki, url=f"https://{lang}.wikipedia.org"),
            article_body=ArticleBody(wikitext=f"'''Page {i}''' of {wiki}. " + "x" * (i * 37)),
            version=Version(identifier=1000 + i, comment=f"edit {i}"),
        )
        for i in range(start, start + count)
    ]


def dump_info(wiki: str, lang: str) -> DumpInfo:
    return DumpInfo(wiki=wiki, site_name="Wikipedia", base_url=f"https://{lang}.wikipedia.org",
                    language=lang, namespaces={0: "", 10: "Template"}, schema_version="0.11",
                    source=f"{wiki}-test.xml")


@dataclass
class World:
    settings: Settings
    blobs: FilesystemBlobStore
    db: SQLiteDatabase
    accounts: Accounts
    state: StateStore
    manifests: dict[str, Manifest]
    key_a: str  # customer A: enwiki only
    key_b: str  # customer B: dewiki only
    key_none: str  # customer C: a plan without snapshots/ondemand

    def headers(self, key: str, **extra: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {key}", **extra}


def build_world(tmp_path: Path, **overrides: Any) -> World:
    values: dict[str, Any] = {"data_dir": str(tmp_path), "chunk_size": 4096,
                              "metering_enabled": False,
                              "token_secret": "unit-test-secret-0123456789abcdef", **overrides}
    settings = Settings(**values)
    blobs = FilesystemBlobStore(tmp_path / "blobs")
    db = SQLiteDatabase(tmp_path / "feedserver.db")
    state = StateStore(db)
    manifests: dict[str, Manifest] = {}
    for wiki, lang, ns, count in (("enwiki", "en", 0, 40), ("enwiki", "en", 10, 3),
                                  ("dewiki", "de", 0, 12)):
        records = make_articles(wiki, lang, ns, count)
        for m in build_from_records(dump_info(wiki, lang), records, blobs, settings):
            manifests[m.identifier] = m
        state.load_articles(records)
    # A second version of dewiki ns0, so ``?version=1`` is an older one.
    for m in build_from_records(dump_info("dewiki", "de"), make_articles("dewiki", "de", 0, 13),
                                blobs, settings):
        manifests[m.identifier] = m
    accounts = Accounts(db, settings)
    accounts.create_plan(Plan(name="en-only", feeds=["snapshots", "ondemand"],
                              projects=["enwiki"]))
    accounts.create_plan(Plan(name="de-only", feeds=["snapshots", "ondemand"],
                              projects=["dewiki"]))
    accounts.create_plan(Plan(name="nothing", feeds=["realtime"]))
    keys = []
    for customer, plan in (("alpha", "en-only"), ("beta", "de-only"), ("gamma", "nothing")):
        accounts.create_customer(customer, plan)
        keys.append(accounts.create_api_key(customer)[1])
    accounts.create_user("alice", "correct horse battery", "alpha")
    return World(settings, blobs, db, accounts, state, manifests, *keys)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    # Module-scoped: building snapshots and hashing passwords dominates the test time, and
    # no test changes what the world holds (token revocation only touches its own tokens).
    return build_world(tmp_path_factory.mktemp("world"))


@pytest.fixture
def client(world: World) -> Iterator[TestClient[Any]]:
    app = build_app(world.settings, blobs=world.blobs, db=world.db, accounts=world.accounts,
                     state=world.state, registry=CollectorRegistry())
    with TestClient(app) as c:
        yield c
