"""Action API content source against a real local HTTP server on 127.0.0.1."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import pytest

from feedserver.errors import Unavailable
from feedserver.feeds.content import ActionApiContentSource


class _Wiki:
    def __init__(self) -> None:
        self.texts = {1: "one", 2: "two [[Category:X]]"}
        self.hidden = {3}
        self.failures = 0  # answer 503 this many times first
        self.requests: list[dict[str, list[str]]] = []


@pytest.fixture
def wiki() -> Iterator[tuple[str, _Wiki]]:
    state = _Wiki()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            query = parse_qs(urlsplit(self.path).query)
            state.requests.append(query)
            if state.failures > 0:
                state.failures -= 1
                self.send_response(503)
                self.end_headers()
                return
            revs = []
            for rev in map(int, query["revids"][0].split("|")):
                if rev in state.texts:
                    revs.append({"revid": rev, "slots": {"main": {"content": state.texts[rev]}}})
                elif rev in state.hidden:
                    revs.append({"revid": rev, "slots": {"main": {"texthidden": True}}})
            body = json.dumps({"query": {"pages": [{"pageid": 7, "revisions": revs}]}}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/w/api.php", state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


async def test_fetch_texts_hidden_and_missing_absent(wiki: tuple[str, _Wiki]) -> None:
    url, state = wiki
    source = ActionApiContentSource(url, backoff=0.01)
    try:
        texts = await source.fetch("enwiki", "https://en.wikipedia.org", [1, 2, 3, 4])
    finally:
        await source.close()
    assert texts == {1: "one", 2: "two [[Category:X]]"}
    (query,) = state.requests
    assert query["revids"] == ["1|2|3|4"] and query["rvslots"] == ["main"]
    assert query["formatversion"] == ["2"] and query["rvprop"] == ["content|ids|timestamp"]


async def test_retries_then_succeeds_and_batches(wiki: tuple[str, _Wiki]) -> None:
    url, state = wiki
    state.failures = 2
    source = ActionApiContentSource(url, backoff=0.01, retries=3)
    try:
        texts = await source.fetch("enwiki", None, list(range(1, 120)))
    finally:
        await source.close()
    assert set(texts) == {1, 2}
    assert len(state.requests) == 2 + 3  # two 503s, then 119 revisions in batches of 50


async def test_gives_up_with_unavailable(wiki: tuple[str, _Wiki]) -> None:
    url, state = wiki
    state.failures = 10
    source = ActionApiContentSource(url, backoff=0.01, retries=2)
    try:
        with pytest.raises(Unavailable, match="after 3 attempts"):
            await source.fetch("enwiki", None, [1])
    finally:
        await source.close()


async def test_unreachable_server_is_unavailable() -> None:
    source = ActionApiContentSource("http://127.0.0.1:9/w/api.php", backoff=0.01, retries=1,
                                    timeout=2.0)
    try:
        with pytest.raises(Unavailable):
            await source.fetch("enwiki", None, [1])
    finally:
        await source.close()


def test_endpoint_template() -> None:
    source = ActionApiContentSource("https://{domain}/w/api.php")
    assert source.endpoint("enwiki", "https://en.wikipedia.org") == \
        "https://en.wikipedia.org/w/api.php"
