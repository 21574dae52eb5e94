"""The SDK's Structured Contents calls: on-demand ``get_structured_contents`` and the
structured snapshots (list, info, HEAD, download, read).

They skip, naming what is missing, while the server's OpenAPI document has no such route: the
structured contents endpoints are being built on their own branch. Once a route exists, its
test runs and must pass."""

from __future__ import annotations

import io
import json
from typing import Any

import httpx
import pytest

from tests.fixtures.wme_sdk import assert_parsed
from tests.integration.wme_sdk.sdk import (
    archive_lines,
    is_wme_archive,
    raw_download,
    served,
)
from tests.integration.wme_sdk.server import WMEServer

NO_TAR_GZ = ("structured-contents snapshots are not served as WME tar.gz yet: their build "
             "can add the WME representation the article snapshots have (feeds.snapshots.wme)")

pytestmark = pytest.mark.integration

MISSING = ("structured contents endpoints are not served yet ({route} is not in the API): "
           "the structured branch builds /v2/structured-contents/{{name}} and "
           "/v2/snapshots/structured-contents")


def _require(server: WMEServer, route: str) -> None:
    paths = httpx.get(f"{server.url}/schema/openapi.json", timeout=30).json()["paths"]
    if not any(p.startswith(route) for p in paths):
        pytest.skip(MISSING.format(route=route))


def test_structured_contents_on_demand(api: Any, wme_server: WMEServer, token: str) -> None:
    _require(wme_server, "/v2/structured-contents/")
    got = api.get_structured_contents("Anarchism")
    sent = served(wme_server, token, "structured-contents/Anarchism")
    assert got and len(got) == len(sent)
    for obj, item in zip(got, sent, strict=True):
        assert_parsed(obj, item)


def test_structured_snapshots(api: Any, wme_server: WMEServer, token: str) -> None:
    _require(wme_server, "/v2/snapshots/structured-contents")
    got = api.get_structured_snapshots()
    sent = served(wme_server, token, "snapshots/structured-contents")
    assert got and len(got) == len(sent)
    for obj, item in zip(got, sent, strict=True):
        assert_parsed(obj, item)
    identifier = sent[0]["identifier"]
    assert_parsed(api.get_structured_snapshot(identifier),
                  served(wme_server, token, f"snapshots/structured-contents/{identifier}"))
    data = raw_download(wme_server, token,
                        f"snapshots/structured-contents/{identifier}/download").content
    head = api.head_structured_snapshot(identifier)
    assert head["Content-Length"] == len(data) and head["Accept-Ranges"] == "bytes"
    out = io.BytesIO()
    api.download_structured_snapshot(identifier, out)
    assert out.getvalue() == data
    if not is_wme_archive(data):
        pytest.skip(NO_TAR_GZ)
    read: list[Any] = []
    api.read_structured_snapshot(identifier, lambda item: read.append(item) or True)
    lines = archive_lines(data)
    assert len(read) == len(lines)
    for obj, line in zip(read, lines, strict=True):
        assert_parsed(obj, json.loads(line))
