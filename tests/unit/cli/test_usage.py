from __future__ import annotations

from pathlib import Path

import msgspec
import pytest
import zstandard

from feedserver.cli import main
from feedserver.metering.batch_rows import batch_rows
from feedserver.metering.journal import Journal, decode_line
from feedserver.metering.ledger import Ledger
from feedserver.storage.db import SQLiteDatabase
from tests.unit.metering.conftest import old_line, rec, response_line


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("FEEDSERVER_DATA_DIR", str(tmp_path))
    return tmp_path


def test_verify_then_tamper(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = SQLiteDatabase(data_dir / "feedserver.db")
    Ledger(db).append([rec(i) for i in range(3)])
    assert main(["usage", "verify"]) == 0
    assert "3 rows, hash chain intact" in capsys.readouterr().out
    db.execute("DELETE FROM usage_ledger WHERE seq = 2")
    assert main(["usage", "verify"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("feedserver: error: usage ledger: row seq 2 is missing")
    db.close()


def test_report_json_and_bad_month(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = SQLiteDatabase(data_dir / "feedserver.db")
    Ledger(db).append([rec(i, quantity=5) for i in range(3)])
    db.close()
    assert main(["usage", "report", "--month", "2026-11", "--format", "json"]) == 0
    report = msgspec.json.decode(capsys.readouterr().out)
    assert report["customers"][0]["totals"] == {"bytes": 15}
    out = data_dir / "r.csv"
    assert main(["usage", "report", "--month", "2026-11", "--output", str(out)]) == 0
    assert out.read_text().startswith("kind,month,customer_id")
    assert main(["usage", "report", "--month", "November"]) == 1
    assert "month must be YYYY-MM" in capsys.readouterr().err


def test_replay_commits_a_dead_servers_journal(data_dir: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    journal = Journal(data_dir / "usage-journal")
    journal.open()
    journal.append(response_line(1))  # requests + bytes
    journal.append(old_line(rec(2)))  # a line an older server wrote: one record
    journal.close(delete_if_empty=False)
    assert main(["usage", "replay"]) == 0
    assert "3 records, 3 new ledger rows" in capsys.readouterr().out
    assert main(["usage", "replay"]) == 0
    assert "0 records" in capsys.readouterr().out


def test_evidence_prints_the_responses_a_batch_row_sums(
        data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # Finance's per-request view of a batch row: the records of each response in the batch's
    # evidence, the same ids and quantities the per-response rows would have had.
    db = SQLiteDatabase(data_dir / "feedserver.db")
    ledger = Ledger(db)
    lines = [response_line(i, bytes_sent=i + 1) for i in range(5)]
    batch = batch_rows(b"".join(lines))
    ledger.append_batch(batch)
    row = next(r for r in batch.records if r.meter == "bytes")
    expected = sorted((r.usage_id, r.meter, r.quantity) for line in lines
                      for r in decode_line(line))
    for name in (row.usage_id, row.request_id, batch.evidence.digest):
        assert main(["usage", "evidence", name]) == 0
        printed = [msgspec.json.decode(x) for x in capsys.readouterr().out.splitlines()]
        assert sorted((p["usage_id"], p["meter"], p["quantity"]) for p in printed) == expected
    ledger.append([rec(9)])  # a row of one response has no batch evidence
    for name in (rec(9).usage_id, "batch:" + "0" * 64, "\u0663" * 5000):
        assert main(["usage", "evidence", name]) == 1
        err = capsys.readouterr().err
        assert err.startswith("feedserver: error: no batch evidence") and err.count("\n") == 1
    # Evidence edited after the fact no longer matches the digest its rows name.
    db.execute("UPDATE usage_evidence SET lines = ?",
               (zstandard.ZstdCompressor().compress(lines[0]),))
    assert main(["usage", "evidence", row.usage_id]) == 1
    assert "do not match their SHA-256: edited" in capsys.readouterr().err
    db.execute("UPDATE usage_evidence SET lines = ?", (b"not zstd",))
    assert main(["usage", "evidence", row.usage_id]) == 1
    assert "not readable" in capsys.readouterr().err
    db.close()
