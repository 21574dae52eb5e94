"""Admin CLI round trip through ``feedserver.cli.main`` on a temporary SQLite database."""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest

from feedserver.accounts.service import Accounts
from feedserver.cli import main
from feedserver.config import load_settings
from feedserver.storage.db import connect


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("FEEDSERVER_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("FEEDSERVER_DATABASE_URL", raising=False)
    monkeypatch.delenv("FEEDSERVER_CONFIG", raising=False)
    monkeypatch.delenv("FEEDSERVER_MODE", raising=False)
    return tmp_path


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_round_trip(env: Path, capsys: pytest.CaptureFixture[str],
                    monkeypatch: pytest.MonkeyPatch) -> None:
    assert run(capsys, "customers", "create", "Acme", "--plan", "pro")[0] == 0
    code, out, _ = run(capsys, "customers", "list")
    assert code == 0 and re.search(r"Acme\s+pro\s+active", out)

    code, out, err = run(capsys, "keys", "create", "Acme", "--name", "ci")
    assert code == 0 and "not shown again" in err
    key = out.strip()
    assert re.fullmatch(r"fs_[a-z0-9]{8}_[A-Za-z0-9_-]{43}", key)
    prefix = key[3:11]
    code, out, _ = run(capsys, "keys", "list", "Acme")
    assert f"fs_{prefix}" in out and "active" in out and key not in out

    monkeypatch.setattr("sys.stdin", io.StringIO("s3cret-password\n"))
    code, out, _ = run(capsys, "users", "create", "Bob", "--customer", "Acme", "--admin",
                       "--password-stdin")
    assert code == 0 and "'bob'" in out

    plan_file = env / "plan.json"
    plan_file.write_text('{"feeds": ["snapshots", "realtime"], "projects": ["simplewiki"]}')
    assert run(capsys, "plans", "create", "research", "--from-json", str(plan_file))[0] == 0
    code, out, _ = run(capsys, "plans", "show", "research")
    assert code == 0 and '"realtime"' in out
    assert "research" in run(capsys, "plans", "list")[1]
    assert run(capsys, "customers", "set-plan", "Acme", "research")[0] == 0

    # What the CLI wrote is what the server authenticates.
    settings = load_settings()
    db = connect(settings.database)
    try:
        accounts = Accounts(db, settings)
        principal = accounts.authenticate_api_key(key)
        assert principal.customer_name == "Acme" and principal.plan.name == "research"
        assert accounts.login("bob", "s3cret-password").access_token
    finally:
        db.close()

    code, out, err = run(capsys, "keys", "rotate", prefix, "--grace", "60")
    assert code == 0 and out.strip() != key and "stops working at" in err
    assert run(capsys, "keys", "revoke", f"fs_{prefix}")[0] == 0
    assert "revoked" in run(capsys, "keys", "list")[1]
    assert run(capsys, "customers", "disable", "Acme")[0] == 0
    assert "disabled" in run(capsys, "customers", "list")[1]


def test_errors_are_one_line(env: Path, capsys: pytest.CaptureFixture[str],
                             monkeypatch: pytest.MonkeyPatch) -> None:
    cases = [
        ("customers", "create", "Acme", "--plan", "platinum"),
        ("customers", "set-plan", "Nobody", "free"),
        ("keys", "revoke", "abcdefgh"),
        ("keys", "revoke", "not-a-prefix"),
        ("plans", "show", "nope"),
        ("plans", "create", "x", "--from-json", str(env / "missing.json")),
    ]
    for argv in cases:
        code, _, err = run(capsys, *argv)
        assert code == 1, argv
        assert err.startswith("feedserver: error: ") and err.count("\n") == 1, err
    assert run(capsys, "customers", "create", "Acme")[0] == 0
    code, _, err = run(capsys, "customers", "create", "Acme")
    assert code == 1 and "already exists" in err
    (env / "bad.json").write_text('{"feeds": ["everything"]}')
    code, _, err = run(capsys, "plans", "create", "x", "--from-json", str(env / "bad.json"))
    assert code == 1 and "invalid plan" in err
    monkeypatch.setattr("sys.stdin", io.StringIO(""))  # not a terminal, no --password-stdin
    code, _, err = run(capsys, "users", "create", "eve", "--customer", "Acme")
    assert code == 1 and "--password-stdin" in err
    monkeypatch.setattr("sys.stdin", io.StringIO("short\n"))
    code, _, err = run(capsys, "users", "create", "eve", "--customer", "Acme",
                       "--password-stdin")
    assert code == 1 and "password must be" in err
