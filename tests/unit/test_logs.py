"""``feedserver.logs``: JSON by default (one object per line, request id where known), text when
``FEEDSERVER_LOG_FORMAT=text``; the same setup in the API, the consumer and the CLI."""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from litestar.testing import TestClient
from prometheus_client import CollectorRegistry

from feedserver.api.app import build_app
from feedserver.config import Settings, load_settings
from feedserver.logs import REQUEST_ID, configure, setup_logging


@pytest.fixture(autouse=True)
def _restore_root() -> Iterator[None]:
    # setup_logging changes the process's root logger: put it back for the other tests.
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def _lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_json_is_the_default() -> None:
    assert Settings().log_format == "json"
    assert load_settings(env={}).log_format == "json"


def test_json_lines_carry_request_id_extra_and_exception() -> None:
    out = io.StringIO()
    setup_logging(Settings(), out)
    log = logging.getLogger("feedserver.test")
    log.info("no request here")
    token = REQUEST_ID.set("req-12345678")
    try:
        log.warning("inside %s", "a request", extra={"status": 429})
        try:
            raise ValueError("boom")
        except ValueError:
            log.exception("failed")
    finally:
        REQUEST_ID.reset(token)
    first, second, third = _lines(out)
    assert first["message"] == "no request here" and "request_id" not in first
    assert first["level"] == "INFO" and first["logger"] == "feedserver.test"
    assert second["request_id"] == "req-12345678" and second["message"] == "inside a request"
    assert second["extra"] == {"status": 429}
    assert "ValueError: boom" in str(third["exception"])


def test_text_when_asked_and_setup_never_stacks_handlers() -> None:
    out = io.StringIO()
    configure("json", stream=io.StringIO())
    setup_logging(load_settings(env={"FEEDSERVER_LOG_FORMAT": "text"}), out)
    token = REQUEST_ID.set("req-abcdefgh")
    try:
        logging.getLogger("feedserver.test").warning("hello")
    finally:
        REQUEST_ID.reset(token)
    (line,) = out.getvalue().splitlines()
    assert "WARNING feedserver.test [req-abcdefgh] hello" in line
    with pytest.raises(json.JSONDecodeError):
        json.loads(line)


def test_default_stream_is_stderr_as_it_is_when_a_line_is_written(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # Set up once, then stderr is swapped (a test runner's capture, a supervisor) and the old
    # one closed: lines go to the new one; none is written to the closed one (which printed
    # "--- Logging error ---" from in-process servers once a test's capture had ended).
    old = io.StringIO()
    monkeypatch.setattr(sys, "stderr", old)
    configure("json")
    old.close()
    new = io.StringIO()
    monkeypatch.setattr(sys, "stderr", new)
    logging.getLogger("feedserver.test").warning("after the swap")
    (line,) = _lines(new)
    assert line["message"] == "after the swap"


def test_api_logs_each_request_with_its_request_id(tmp_path: Path) -> None:
    out = io.StringIO()
    setup_logging(Settings(), out)
    app = build_app(Settings(data_dir=str(tmp_path), metering_enabled=False),
                     registry=CollectorRegistry())
    with TestClient(app) as client:
        response = client.get("/healthz", headers={"X-Request-Id": "trace-0123456789"})
    access = [line for line in _lines(out) if line["logger"] == "feedserver.access"]
    assert access, out.getvalue()
    assert access[-1]["request_id"] == response.headers["x-request-id"] == "trace-0123456789"
    assert access[-1]["message"] == "GET /healthz 200"


def _cli(tmp_path: Path, *args: str, env: dict[str, str] | None = None
         ) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("FEEDSERVER_")}
    base.update(FEEDSERVER_DATA_DIR=str(tmp_path / "var"), **(env or {}))
    return subprocess.run([sys.executable, "-m", "feedserver", *args], env=base,
                          capture_output=True, text=True, timeout=120, check=False)


@pytest.mark.parametrize("fmt", ["json", "text"])
def test_consumer_process_logs_in_the_configured_format(tmp_path: Path, fmt: str) -> None:
    broken = tmp_path / "events.jsonl"
    broken.write_text('{"not": "an event"\n')
    env = {} if fmt == "json" else {"FEEDSERVER_LOG_FORMAT": "text"}
    assert _cli(tmp_path, "events", "load", str(broken), env=env).returncode == 0
    consumed = _cli(tmp_path, "events", "consume", "--once", "--no-seal-batches", env=env)
    assert consumed.returncode == 0, consumed.stderr
    lines = [line for line in consumed.stderr.splitlines() if "dead-lettered" in line]
    assert lines, consumed.stderr
    if fmt == "json":
        record = json.loads(lines[0])
        assert record["level"] == "WARNING"
        assert record["logger"] == "feedserver.feeds.events.consumer"
    else:
        assert " WARNING feedserver.feeds.events.consumer " in lines[0]
