"""``usage export --push`` against a real HTTP receiver on loopback that fails on purpose:
503s, 429s and responses lost AFTER the request took effect. Each record must be applied
exactly once, and the values must be the ledger's (corrections negative)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from feedserver.accounts.admin import AccountAdmin
from feedserver.cli import main
from feedserver.errors import UpstreamError
from feedserver.metering.corrections import Correction, correct
from feedserver.metering.exports import cloud_event, stripe_events
from feedserver.metering.ledger import Ledger
from feedserver.metering.push import Pusher
from feedserver.metering.rows import RowQuery, select_rows
from feedserver.storage.db import SQLiteDatabase
from tests.fixtures.billing_receiver import billing_receiver
from tests.unit.metering.conftest import rec

pytestmark = pytest.mark.integration

MONTH = "2026-11"


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Ten usage rows of two customers, one voided, one credit; both mapped to Stripe."""
    monkeypatch.setenv("FEEDSERVER_DATA_DIR", str(tmp_path))
    db = SQLiteDatabase(tmp_path / "feedserver.db")
    admin = AccountAdmin(db)
    ids = {}
    for name, stripe in (("Acme", "cus_Acme1"), ("Globex", "cus_Globex2")):
        ids[name] = admin.create_customer(name).id
        admin.set_stripe_customer(name, stripe)
    ledger = Ledger(db)
    ledger.append([rec(i, customer=ids["Acme" if i % 2 else "Globex"], quantity=100 + i,
                       ts=datetime(2026, 11, 1 + i, tzinfo=UTC)) for i in range(9)])
    correct(ledger, Correction(kind="void", usage_id=rec(3).usage_id, reason="test traffic",
                               actor="finance"))
    correct(ledger, Correction(kind="credit", customer_id=ids["Acme"], amount="5",
                               currency="USD", reason="goodwill", actor="finance",
                               month=MONTH))
    db.close()
    yield tmp_path


def rows(data_dir: Path) -> list:  # type: ignore[type-arg]
    db = SQLiteDatabase(data_dir / "feedserver.db")
    try:
        return list(select_rows(db, RowQuery(month=MONTH)))
    finally:
        db.close()


def flaky(key: str, attempt: int) -> str:
    # every request: refused, then applied but its answer lost, then answered
    return {1: "503", 2: "lost"}.get(attempt, "ok")


def test_cloudevents_batches_count_once_across_retries_and_lost_answers(data_dir: Path) -> None:
    events = [cloud_event(r, "http://feedserver.test") for r in rows(data_dir)]
    assert len(events) == 11
    slept: list[float] = []
    with billing_receiver(flaky) as receiver, httpx.Client(timeout=10) as client:
        result = Pusher(client, receiver.url, token="sekret", retries=3,
                        sleep=slept.append).cloudevents(events, batch_size=4)
        # Re-running the whole push (an operator unsure whether it worked) changes nothing.
        Pusher(client, receiver.url, sleep=slept.append).cloudevents(events, batch_size=4)
    assert (result.records, result.requests, result.retries) == (11, 9, 6)
    assert dict(receiver.applied) == {e.id: 1 for e in events}
    assert receiver.values == {e.id: e.data.value for e in events}
    assert sum(receiver.values.values()) == sum(e.data.value for e in events)
    assert "Bearer sekret" in receiver.auth
    assert len(slept) == 6  # bounded backoff between attempts, never a real wait here


def test_stripe_events_one_per_request_count_once(data_dir: Path) -> None:
    ledger_rows = rows(data_dir)
    events, credits = stripe_events(ledger_rows, {r.customer_id: "cus_x" for r in ledger_rows})
    assert (len(events), credits) == (10, 1)

    def plan(key: str, attempt: int) -> str:
        # different failures for different events; the key is the event's identifier
        kind = ("429", "lost", "503")[int(key[-1], 16) % 3]
        return kind if attempt == 1 else "ok"

    with billing_receiver(plan) as receiver, httpx.Client(timeout=10) as client:
        Pusher(client, receiver.url, sleep=lambda _s: None).stripe(events)
    assert dict(receiver.applied) == {e.identifier: 1 for e in events}
    void = next(e for e in events if e.payload.value.startswith("-"))
    assert receiver.values[void.identifier] == -103


def test_push_gives_up_with_a_typed_error(data_dir: Path) -> None:
    events = [cloud_event(r, "http://feedserver.test") for r in rows(data_dir)]
    with (billing_receiver(lambda _k, _a: "503") as receiver, httpx.Client(timeout=10) as c,
          pytest.raises(UpstreamError, match="failed after 3 attempts")):
        Pusher(c, receiver.url, retries=2, sleep=lambda _s: None).cloudevents(events, 100)
    assert receiver.applied == {}


def test_cli_push_and_files(data_dir: Path, monkeypatch: pytest.MonkeyPatch,
                            capsys: pytest.CaptureFixture[str]) -> None:
    with billing_receiver(lambda _k, attempt: "503" if attempt == 1 else "ok") as receiver:
        monkeypatch.setenv("FEEDSERVER_USAGE_EXPORT_URL", receiver.url)
        assert main(["usage", "export", "--format", "stripe-meter-events", "--month", MONTH,
                     "--push"]) == 0
        out = capsys.readouterr()
        assert "10 stripe-meter-events pushed in 20 requests (10 retries)" in out.out
        assert "1 credit row(s) left out" in out.err
        assert sum(receiver.applied.values()) == 10
        assert main(["usage", "export", "--format", "cloudevents", "--month", MONTH,
                     "--push"]) == 0
        # the same usage ids again (the receiver keys records by id): only the credit is new
        assert "11 cloudevents pushed in 2 requests (1 retries)" in capsys.readouterr().out
        assert sum(receiver.applied.values()) == 11
    assert main(["usage", "export", "--format", "csv", "--month", MONTH, "--push"]) == 1
    assert "not csv" in capsys.readouterr().err
