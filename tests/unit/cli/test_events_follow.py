"""`feedserver events follow`: what it refuses before it starts, and a stream the server does
not have, in-process against the loopback EventStreams stand-in. Following itself, killed and
restarted, runs as a real process in tests/integration/cli/test_events_follow.py."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from feedserver.cli import main
from tests.conftest import EVENTS
from tests.fixtures.eventstreams import StreamFailure, real_frames, serve_eventstreams


@pytest.fixture(autouse=True)
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for key in [k for k in os.environ if k.startswith("FEEDSERVER_")]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("FEEDSERVER_DATA_DIR", str(tmp_path / "var"))
    monkeypatch.setenv("FEEDSERVER_LOG_FORMAT", "text")
    (tmp_path / "var").mkdir()


def test_refuses_a_topic_the_consumer_does_not_read(capsys: pytest.CaptureFixture[str]) -> None:
    # The defaults: the follower's topic is not among the consumer's input topics, so events
    # would be stored and never become articles. One line, exit 1, nothing started.
    assert main(["events", "follow", "--url", "http://127.0.0.1:9"]) == 1
    err = capsys.readouterr().err.strip()
    assert "FEEDSERVER_EVENT_TOPICS" in err and "feedserver.eventstreams" in err
    assert len(err.splitlines()) == 1


@pytest.mark.parametrize(("argv", "message"), [
    (["--since", "yesterday"], "neither ISO-8601 nor epoch milliseconds"),
    (["--batch-size", "0"], "--batch-size must be at least 1"),
    (["--stream", "../etc"], "stream names must be given and plain"),
])
def test_bad_options_are_one_line(argv: list[str], message: str,
                                  monkeypatch: pytest.MonkeyPatch,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("FEEDSERVER_EVENT_TOPICS", "feedserver.eventstreams")
    monkeypatch.setenv("FEEDSERVER_CONTENT_SOURCE_URL", "http://127.0.0.1:9/w/api.php")
    assert main(["events", "follow", "--url", "http://127.0.0.1:9", *argv]) == 1
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1


async def test_a_stream_the_server_does_not_have_ends_with_one_line(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """A 4xx other than 429 is a configuration error: exit 1 at once, no retry loop."""
    monkeypatch.setenv("FEEDSERVER_EVENT_TOPICS", "feedserver.eventstreams")
    with serve_eventstreams(real_frames(EVENTS, 10),
                            failures=[StreamFailure("404")]) as server:
        argv = ["events", "follow", "--url", server.url, "--stream", "mediawiki.nothing"]
        # The command runs its own event loop, as a separate program would: in a thread.
        assert await asyncio.to_thread(main, argv) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert "answered HTTP 404" in err[-1] and err[-1].startswith("feedserver: error:")
    assert len(server.requests) == 1
