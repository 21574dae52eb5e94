"""``feedserver usage void|amend|credit|export`` and the kept ``usage verify`` result."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime
from pathlib import Path

import msgspec
import pytest

from feedserver.accounts.admin import AccountAdmin
from feedserver.cli import main
from feedserver.metering.ledger import Ledger
from feedserver.metering.verification import last
from feedserver.storage.db import SQLiteDatabase
from tests.unit.metering.conftest import rec

# The current month, so it is open whatever day the tests run.
NOW = datetime.now(UTC)
MONTH = NOW.strftime("%Y-%m")


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("FEEDSERVER_DATA_DIR", str(tmp_path))
    db = SQLiteDatabase(tmp_path / "feedserver.db")
    AccountAdmin(db).create_customer("Acme")
    Ledger(db).append([rec(i, customer="acme", quantity=100, ts=NOW) for i in range(3)])
    db.close()
    return tmp_path


def test_void_amend_credit_then_verify(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    first, second = rec(0).usage_id, rec(1).usage_id
    assert main(["usage", "void", first, "--reason", "test traffic", "--actor", "ann",
                 "--key", "k1"]) == 0
    assert f"void of {first} appended" in capsys.readouterr().out
    # the same key again: no second void
    assert main(["usage", "void", first, "--reason", "test traffic", "--key", "k1"]) == 0
    assert main(["usage", "void", first, "--reason", "again"]) == 1
    assert "already void" in capsys.readouterr().err
    assert main(["usage", "amend", second, "--quantity", "40", "--reason", "overcount"]) == 0
    assert "bytes -60" in capsys.readouterr().out
    assert main(["usage", "credit", "Acme", "--amount", "nope", "--reason", "x y z"]) == 1
    assert "amount must be a number" in capsys.readouterr().err
    assert main(["usage", "verify"]) == 0
    out = capsys.readouterr().out
    assert "5 rows, hash chain intact (head seq 5" in out
    db = SQLiteDatabase(data_dir / "feedserver.db")
    kept = last(db)
    db.close()
    assert kept is not None and kept.ok and kept.source == "cli" and kept.rows == 5

    assert main(["usage", "report", "--month", MONTH]) == 0
    net = [r for r in csv.reader(io.StringIO(capsys.readouterr().out)) if r[0] == "net"]
    assert net == [["net", MONTH, "acme", "acme", "", "bytes", "140", "", "", ""]]


def test_export_files(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = data_dir / "rows.csv"
    assert main(["usage", "export", "--format", "csv", "--month", MONTH,
                 "--output", str(out)]) == 0
    assert len(out.read_text().splitlines()) == 4
    assert main(["usage", "export", "--format", "cloudevents", "--month", MONTH]) == 0
    events = [msgspec.json.decode(line) for line in capsys.readouterr().out.splitlines()]
    assert [e["data"]["value"] for e in events] == [100, 100, 100]
    # Stripe needs the customer mapped first: one line naming who is missing
    assert main(["usage", "export", "--format", "stripe-meter-events", "--month", MONTH]) == 1
    assert "without a Stripe customer id" in capsys.readouterr().err
