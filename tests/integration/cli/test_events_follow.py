"""``feedserver events follow`` + ``feedserver events consume`` as real processes, against a
loopback EventStreams (replaying events built from real data, dropping connections every few
hundred events) and a loopback Action API (answering from a real enwiki dump).

1. Exactly once into the ARTICLE topic: the follower is killed with SIGKILL several times
   mid-stream and the consumer once, each restarted; every event of the followed wiki ends as
   exactly one article, with the dump's text, fetched many revisions per request.
2. Hostile input on the command's path: an HTML error page (200 and 503), 429, a server that
   accepts and never answers, malformed frames, non-JSON data, unknown schemas and other
   wikis' events: clear log lines, retries, counts in the follower's /metrics, no crash.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest

from feedserver.errors import StorageError
from feedserver.models import Article
from feedserver.storage.db import SQLiteDatabase
from tests.conftest import DUMPS, EVENTS, ROOT, free_port
from tests.fixtures.action_api import ActionApi, load_articles, serve_action_api
from tests.fixtures.eventstreams import (
    PAGE_CHANGE,
    RECENTCHANGE,
    Frame,
    StreamFailure,
    distinct,
    serve_eventstreams,
)
from tests.fixtures.recentchange import (
    edit_of,
    from_page_change,
    page_change_of,
    real_page_changes,
)

pytestmark = pytest.mark.integration

TOPIC = "feedserver.eventstreams"
ARTICLES = "feedserver.articles"
DEAD = "feedserver.dead-letter"
WAIT = 180.0
UA = "feedserver-tests/1 (https://example.org/feedserver; ops@example.org)"
ENWIKI = "gensim-4.4.0/enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2"


@pytest.fixture(scope="module")
def articles() -> list[Article]:
    return load_articles(DUMPS, [ENWIKI])


def _frame(stream: str, event: dict[str, Any], i: int) -> Frame:
    return Frame(stream, json.dumps(event, separators=(",", ":")), 1_728_000_000_000 + i // 3)


def frames(articles: list[Article], cycles: int) -> list[Frame]:
    """Per cycle: a recentchange edit and a page_change edit of every article (fresh meta.ids
    each cycle), interleaved with the real events of two other wikis (commonswiki,
    testwikidatawiki) and their recentchange equivalents, which the follower must skip."""
    others = real_page_changes(EVENTS)
    events: list[tuple[str, dict[str, Any]]] = []
    for cycle in range(cycles):
        for i, article in enumerate(articles):
            rc = edit_of(article, rcid=cycle * 1000 + i + 1)
            rc["meta"]["id"] = str(uuid.uuid5(uuid.NAMESPACE_URL, f"{rc['meta']['id']}/{cycle}"))
            pc = page_change_of(article)
            pc["meta"]["id"] = str(uuid.uuid5(uuid.NAMESPACE_URL, f"{pc['meta']['id']}/{cycle}"))
            events += [(RECENTCHANGE, rc), (PAGE_CHANGE, pc)]
            if i % 8 == 0:
                other = json.loads(json.dumps(others[(i // 8) % len(others)]))
                other["meta"]["id"] = str(uuid.uuid5(uuid.NAMESPACE_URL,
                                                     f"{other['meta']['id']}/{cycle}/{i}"))
                events += [(PAGE_CHANGE, other), (RECENTCHANGE, from_page_change(other, i))]
    return [_frame(stream, event, i) for i, (stream, event) in enumerate(events)]


def env(data: Path, stream_url: str, api_url: str, **extra: str) -> dict[str, str]:
    out = {k: v for k, v in os.environ.items() if not k.startswith("FEEDSERVER_")}
    out.update({
        "PYTHONPATH": str(ROOT), "FEEDSERVER_DATA_DIR": str(data),
        "FEEDSERVER_LOG_FORMAT": "json", "FEEDSERVER_LOG_LEVEL": "INFO",
        "FEEDSERVER_EVENT_TOPICS": TOPIC, "FEEDSERVER_ARTICLE_PARTITIONS": "4",
        "FEEDSERVER_EVENTSTREAMS_URL": stream_url,
        "FEEDSERVER_EVENTSTREAMS_STREAMS": f"{RECENTCHANGE},{PAGE_CHANGE}",
        "FEEDSERVER_CONTENT_SOURCE_URL": api_url, "FEEDSERVER_USER_AGENT": UA,
    })
    out.update({f"FEEDSERVER_{k.upper()}": v for k, v in extra.items()})
    return out


def feedserver(environ: Mapping[str, str], *argv: str, log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as err:
        return subprocess.Popen([sys.executable, "-m", "feedserver", *argv], cwd=ROOT,
                                env=dict(environ), stdout=subprocess.PIPE, stderr=err)


def records(data: Path, topic: str) -> list[tuple[bytes, bytes | None]]:
    """(value, headers) of a topic in the embedded log, in order (all partitions)."""
    path = data / "feedserver.db"
    if not path.exists():
        return []
    db = SQLiteDatabase(path)
    try:
        rows = db.fetchall("SELECT value, headers FROM eventlog_records WHERE topic = ? "
                           "ORDER BY part, pos", (topic,))
    except StorageError:  # tables not created yet by the first process
        return []
    finally:
        db.close()
    return [(bytes(v), bytes(h) if h is not None else None) for v, h in rows]


def count(data: Path, topic: str) -> int:
    """Records in a topic, read-only and cheap: polled often while the processes write, so a
    kill lands close to the count it waits for."""
    path = data / "feedserver.db"
    if not path.exists():
        return 0
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
    try:
        (n,) = conn.execute("SELECT COUNT(*) FROM eventlog_records WHERE topic = ?",
                            (topic,)).fetchone()
    except sqlite3.OperationalError:  # tables not created yet by the first process
        return 0
    finally:
        conn.close()
    return int(n)


def wait_for(data: Path, topic: str, n: int,
             *procs: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        if count(data, topic) >= n:
            return
        for proc in procs:
            if proc.poll() is not None:
                pytest.fail(f"{proc.args} exited with {proc.returncode}: "
                            f"{log.read_text()[-3000:]}")
        time.sleep(0.01)
    pytest.fail(f"{topic} did not reach {n} records within {WAIT}s "
                f"(has {count(data, topic)}): {log.read_text()[-3000:]}")


def kill(proc: subprocess.Popen[bytes]) -> None:
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)


def stop(proc: subprocess.Popen[bytes]) -> str:
    """SIGTERM, then the process's stdout; it must end cleanly."""
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, proc.returncode
    return out.decode()


def scrape(port: int) -> dict[str, float]:
    """The follower's /metrics as {"name{labels}": value}."""
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            out[name] = float(value)
    return out


@pytest.fixture
def api(articles: list[Article]) -> Iterator[ActionApi]:
    with serve_action_api(articles) as server:
        yield server


def test_follow_and_consume_exactly_once_into_the_article_topic_across_kills(
        tmp_path: Path, articles: list[Article], api: ActionApi) -> None:
    stream = frames(articles, cycles=3)
    want = distinct(stream, {"enwiki"})
    assert len(want) == 6 * len(articles)  # 3 cycles x (recentchange + page_change)
    data = tmp_path / "var"
    log = tmp_path / "processes.log"
    kills: list[int] = []
    with serve_eventstreams(stream, drop_every=150, retry_ms=0, idle_close=30.0) as server:
        environ = env(data, server.url, api.url)
        follow_argv = ("events", "follow", "--wiki", "enwiki", "--batch-size", "20")
        consume_argv = ("events", "consume", "--no-seal-batches", "--batch-size", "40")
        consumer = feedserver(environ, *consume_argv, log=log)
        follower = feedserver(environ, *follow_argv, log=log)
        try:
            for threshold in (60, 200, 340):
                wait_for(data, TOPIC, threshold, follower, consumer, log=log)
                kill(follower)
                kills.append(count(data, TOPIC))
                if threshold == 160:
                    # The consumer too, once, while it has work in hand.
                    kill(consumer)
                    consumer = feedserver(environ, *consume_argv, log=log)
                follower = feedserver(environ, *follow_argv, log=log)
            wait_for(data, TOPIC, len(want), follower, consumer, log=log)
            wait_for(data, ARTICLES, len(want), follower, consumer, log=log)
            time.sleep(0.5)  # anything extra (a duplicate) would show up now
            followed = stop(follower)
            consumed = stop(consumer)
        finally:
            for proc in (follower, consumer):
                if proc.poll() is None:
                    kill(proc)
    assert "followed EventStreams" in followed and "consumed" in consumed
    # Killed mid-stream each time, and every restart resumed from a stored position.
    assert all(k < len(want) for k in kills)
    assert sum(1 for r in server.requests if r.last_event_id is None) == 1
    assert all(r.user_agent == UA for r in server.requests)
    # The input topic: each event of the followed wiki once, in stream order.
    assert [v.decode() for v, _ in records(data, TOPIC)] == want
    # The article topic: one article per event, none twice, each with the dump's text.
    out = [msgspec.json.decode(v, type=Article) for v, _ in records(data, ARTICLES)]
    ids = [a.event.identifier for a in out if a.event]
    assert len(ids) == len(set(ids)) == len(want)
    texts = {a.version.identifier: a.article_body for a in articles if a.version}
    assert all(a.event and a.event.type == "update" for a in out)
    assert all(a.version and a.article_body == texts[a.version.identifier] for a in out)
    # Text came many revisions per request (at most the API's 50), never one per revision.
    asked = [len(r.params["revids"].split("|")) for r in api.revision_requests()
             if "revids" in r.params]
    assert max(asked) <= 50 and sum(asked) >= 3 * len(asked)
    assert all(r.user_agent == UA and r.params.get("maxlag") == "5"
               for r in api.revision_requests())


def test_hostile_stream_on_the_command_path(tmp_path: Path, articles: list[Article],
                                            api: ActionApi) -> None:
    stream = frames(articles[:30], cycles=1)
    want = distinct(stream, {"enwiki"})
    data = tmp_path / "var"
    log = tmp_path / "follow.log"
    port = free_port()
    failures = [StreamFailure("html"), StreamFailure("429", retry_after="1"),
                StreamFailure("hang"), StreamFailure("html503")]
    bad: dict[int, list[Any]] = {10: ["not_json", "bad_id"], 20: ["unknown_schema"],
                                 30: ["error_event", "bad_envelope"]}
    with serve_eventstreams(stream, failures=failures, bad=bad, hang_seconds=5.0,
                            drop_every=1000, idle_close=30.0) as server:
        # A one-second read timeout: the server that never answers must be given up on.
        environ = env(data, server.url, api.url, eventstreams_timeout="1")
        follower = feedserver(environ, "events", "follow", "--wiki", "enwiki",
                              "--metrics-port", str(port), log=log)
        try:
            wait_for(data, TOPIC, len(want), follower, log=log)
            metrics = scrape(port)
            assert follower.poll() is None  # still following: no crash, no exit
            followed = stop(follower)
        finally:
            if follower.poll() is None:
                kill(follower)
    assert [v.decode() for v, _ in records(data, TOPIC)] == want
    assert "followed EventStreams" in followed
    reconnects = {cause: metrics.get(
        f'feedserver_eventstreams_reconnects_total{{cause="{cause}"}}', 0)
        for cause in ("html", "rate_limited", "timeout")}
    assert reconnects == {"html": 2, "rate_limited": 1, "timeout": 1}
    dead = {reason: metrics.get(
        f'feedserver_eventstreams_dead_lettered_total{{reason="{reason}"}}', 0)
        for reason in ("frame", "json", "schema", "unsupported")}
    assert dead == {"frame": 2, "json": 1, "schema": 1, "unsupported": 1}
    assert metrics['feedserver_eventstreams_events_total{result="other_wiki"}'] == \
        sum(1 for f in stream if f.wiki != "enwiki")
    assert metrics['feedserver_eventstreams_events_total{result="appended"}'] == len(want)
    # The dead letters are kept, with their reason, in the dead-letter topic.
    # (The embedded log keeps record headers as msgpack.)
    headers = [dict(msgspec.msgpack.decode(h or b"\x90", type=list[tuple[str, bytes]]))
               for _, h in records(data, DEAD)]
    reasons = sorted(h["feedserver-reason"].split(b":")[0].decode() for h in headers)
    assert reasons == ["frame", "frame", "json", "schema", "unsupported"]
    # The HTML page: one clear line naming what came instead of an event stream, then a retry.
    lines = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    html = [r["message"] for r in lines if "instead of an event stream" in r["message"]]
    assert len(html) == 1 and "text/html" in html[0] and "Wikimedia Error" in html[0]
    # Five answers before the stream began: four failures, then the stream (no retry storm).
    assert len(server.requests) == 5
