"""The SDK's hourly batch calls: list, info, HEAD, download, read, for the hour the real
page_change events were consumed in. A batch must hold the latest Article of every page of its
project and namespace that changed in that hour, as the article topic has them."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest

from feedserver.feeds.batches.hours import hour_of
from tests.fixtures.wme_sdk import assert_parsed
from tests.integration.wme_sdk.sdk import (
    archive_lines,
    is_wme_archive,
    raw_download,
    served,
)
from tests.integration.wme_sdk.server import WMEServer, article_records
from tests.integration.wme_sdk.test_sdk_snapshots import md5

pytestmark = pytest.mark.integration


def _prefix(hour: Any) -> str:
    return f"batches/{hour:%Y-%m-%d}/{hour:%H}"


def _expected(server: WMEServer) -> dict[Any, dict[str, dict[int, dict[str, Any]]]]:
    """Per hour, per batch identifier, per page id: the last Article the topic holds."""
    out: dict[Any, dict[str, dict[int, dict[str, Any]]]] = {}
    for record in article_records(server):
        article = json.loads(record.value)
        ident = f"{article['is_part_of']['identifier']}_namespace_" \
                f"{article['namespace']['identifier']}"
        hour = hour_of(record.timestamp_ms)
        out.setdefault(hour, {}).setdefault(ident, {})[article["identifier"]] = article
    return out


def test_batches_of_the_hour(api: Any, wme_server: WMEServer, token: str) -> None:
    expected = _expected(wme_server)
    assert expected, "the consumer produced no Article"
    for hour in wme_server.batch_hours:
        got = api.get_batches(hour)
        sent = served(wme_server, token, _prefix(hour))
        assert sorted(b.identifier for b in got) == sorted(expected.get(hour, {}))
        for obj, item in zip(got, sent, strict=True):
            assert_parsed(obj, item)
            assert obj.size.unit_text == "MB"
            one = api.get_batch(hour, obj.identifier)
            assert_parsed(one, served(wme_server, token, f"{_prefix(hour)}/{obj.identifier}"))


def keeper(into: list[Any]) -> Any:
    """An SDK read callback keeping every item (a falsy return would stop the SDK's read)."""
    def keep(item: Any) -> bool:
        into.append(item)
        return True
    return keep


def test_head_download_and_read_batch(api: Any, wme_server: WMEServer, token: str) -> None:
    expected = _expected(wme_server)
    hour = next(h for h in wme_server.batch_hours if expected.get(h))
    for identifier, pages in expected[hour].items():
        path = f"{_prefix(hour)}/{identifier}/download"
        data = raw_download(wme_server, token, path).content
        head = api.head_batch(hour, identifier)
        assert head["Content-Length"] == len(data) and head["Accept-Ranges"] == "bytes"
        out = io.BytesIO()
        api.download_batch(hour, identifier, out)
        assert out.getvalue() == data
        got = {a["identifier"]: a for a in map(json.loads, archive_lines(data))}
        assert got == pages
        # WME's tar.gz, its MD5 the batch metadata's version; the SDK reads what was built.
        assert is_wme_archive(data)
        assert api.get_batch(hour, identifier).version == md5(data)
        read: list[Any] = []
        api.read_batch(hour, identifier, keeper(read))
        records = [json.loads(line) for line in archive_lines(data)]
        assert len(read) == len(records) == len(pages)
        for obj, record in zip(read, records, strict=True):
            assert_parsed(obj, record)
            assert record == pages[record["identifier"]]
