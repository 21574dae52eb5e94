"""`feedserver snapshot build` on a real dump: on-demand serves what was built with no
`load-state` step, events newer than the snapshot still win, and `load-state` still works."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
from litestar.testing import TestClient
from prometheus_client import CollectorRegistry

from feedserver.accounts.service import Accounts
from feedserver.api.app import build_app
from feedserver.cli import main
from feedserver.config import Settings, load_settings
from feedserver.errors import NotFound
from feedserver.feeds.events.state import StateStore
from feedserver.ingest.events import ArticleChange, to_us
from feedserver.models import ArticleKey, Event
from feedserver.plans import Plan
from feedserver.storage.db import connect
from tests.conftest import DUMPS

PEAR = DUMPS / "pywikibot/article-pear-0.10.xml"  # enwiki, one article: Pear (24278)


@pytest.fixture
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    for key in [k for k in os.environ if k.startswith("FEEDSERVER_")]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("FEEDSERVER_DATA_DIR", str(tmp_path / "var"))
    monkeypatch.setenv("FEEDSERVER_METERING_ENABLED", "false")
    monkeypatch.setenv("FEEDSERVER_TOKEN_SECRET", "cli-snapshot-test-secret-0123456789")
    return load_settings()


def lookup(settings: Settings) -> Iterator[tuple[TestClient[Any], dict[str, str]]]:
    db = connect(settings.database)
    accounts = Accounts(db, settings)
    try:
        accounts.get_plan("od")
    except NotFound:
        accounts.create_plan(Plan(name="od", feeds=["ondemand"]))
        accounts.create_customer("acme", "od")
    key = accounts.create_api_key("acme")[1]
    app = build_app(settings, db=db, registry=CollectorRegistry())
    try:
        with TestClient(app) as client:
            yield client, {"Authorization": f"Bearer {key}"}
    finally:
        db.close()


def revision(settings: Settings) -> int | None:
    for client, headers in lookup(settings):
        r = client.get("/v2/articles/Pear", headers=headers)
        if r.status_code == 404:
            return None
        assert r.status_code == 200, r.text
        [article] = r.json()
        return int(article["version"]["identifier"])
    raise AssertionError("unreachable")


@pytest.mark.usefixtures("shared_data")
def test_build_serves_on_demand_and_newer_events_win(settings: Settings,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["snapshot", "build", "--dump", str(PEAR), "--no-progress"]) == 0
    assert "1 articles loaded into the state store" in capsys.readouterr().err
    built = revision(settings)
    assert built is not None  # no load-state step
    # An edit arrives through the event path (a newer revision): it wins over the snapshot,
    # and a rebuild from the same (older) dump does not take it back.
    db = connect(settings.database)
    try:
        state = StateStore(db)
        current = state.get("enwiki", 0, 24278)
        assert current is not None and current.version is not None
        newer = msgspec.structs.replace(
            current, version=msgspec.structs.replace(current.version, identifier=built + 1),
            event=Event(identifier="e1", type="update"))
        assert current.date_modified is not None
        assert state.apply(ArticleChange(key=ArticleKey("enwiki", 0, 24278), revision=built + 1,
                                         changed_us=to_us(current.date_modified) + 1,
                                         source_kind="edit", article=newer))
    finally:
        db.close()
    assert revision(settings) == built + 1
    assert main(["snapshot", "build", "--dump", str(PEAR), "--no-progress"]) == 0
    assert revision(settings) == built + 1


@pytest.mark.usefixtures("shared_data")
def test_no_load_state_then_load_state(settings: Settings) -> None:
    assert main(["snapshot", "build", "--dump", str(PEAR), "--no-progress",
                 "--no-load-state"]) == 0
    assert revision(settings) is None
    assert main(["snapshot", "load-state", "enwiki_namespace_0"]) == 0
    assert revision(settings) is not None


def test_verify_checks_the_wme_parts(settings: Settings, capsys: pytest.CaptureFixture[str],
                                     shared_data: Path) -> None:
    assert main(["snapshot", "build", "--dump", str(PEAR), "--no-progress",
                 "--no-load-state"]) == 0
    assert main(["snapshot", "verify", "enwiki_namespace_0"]) == 0
    assert ": OK" in capsys.readouterr().out
    [part] = sorted((settings.blob_root / "snapshots").rglob("part_0.gz"))
    part.write_bytes(part.read_bytes()[:-8] + bytes(8))  # the gzip trailer (CRC, size)
    assert main(["snapshot", "verify", "enwiki_namespace_0"]) == 1
    assert "WME part" in capsys.readouterr().err
