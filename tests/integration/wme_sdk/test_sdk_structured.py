"""The SDK's Structured Contents calls: on-demand ``get_structured_contents`` and the
structured snapshots (list, info, HEAD, download, read), against Structured Contents built
from the real dumps by ``feedserver snapshot build``.

What the SDK parsed must equal what the server sent, and what the server sent must be what
the parser makes of the article (on-demand) or what the published version holds (snapshots).
"""

from __future__ import annotations

import hashlib
import io
import json
from typing import Any

import msgspec
import pytest

from feedserver.feeds.snapshots.manifest import STRUCTURED_PREFIX
from feedserver.feeds.snapshots.store import SnapshotStore
from feedserver.ingest.structured import structured_content
from feedserver.storage.blobs import FilesystemBlobStore
from tests.fixtures.wme_sdk import assert_parsed
from tests.integration.wme_sdk.sdk import archive_lines, is_wme_archive, raw_download, served
from tests.integration.wme_sdk.server import WMEServer
from tests.integration.wme_sdk.test_sdk_ondemand import _state_record
from tests.integration.wme_sdk.test_sdk_snapshots import md5

pytestmark = pytest.mark.integration

# What the SDK's example asks of the snapshot list (``example/structured-contents-snapshots``)
# plus the other fields its StructuredContent model reads from snapshot metadata.
SNAPSHOT_FIELDS = ["identifier", "name", "date_modified", "is_part_of", "in_language"]


def _store(server: WMEServer) -> SnapshotStore:
    return SnapshotStore(FilesystemBlobStore(server.data_dir / "blobs"), STRUCTURED_PREFIX)


@pytest.mark.parametrize(("name", "project"), [
    ("Andre Agassi", "enwiki"),  # 169 references, citation templates, an infobox, 5 tables
    ("Αθήνα", "elwikivoyage"),  # Greek: a climate infobox, lists
])
def test_structured_contents_on_demand(api: Any, wme_server: WMEServer, token: str,
                                       name: str, project: str) -> None:
    got = api.get_structured_contents(name)
    sent = served(wme_server, token, f"structured-contents/{name}")
    assert len(got) == len(sent) == 1
    assert_parsed(got[0], sent[0])
    # The on-demand record is the parser's record of the latest revision (the state store).
    from feedserver.models import Article

    article = msgspec.convert(_state_record(wme_server, project, name), Article)
    assert sent[0] == msgspec.to_builtins(structured_content(article).content)
    assert sent[0]["sections"][0]["name"] == "Abstract"


def test_structured_contents_request_semantics(api: Any, wme_server: WMEServer,
                                               token: str) -> None:
    from modules.api.api_client import Request

    # The SDK example's request: project filter, limit, and WME's beta field names.
    req = Request(limit=1, filters=[{"field": "is_part_of.identifier", "value": "enwiki"}],
                  fields=["name", "abstract", "article_sections", "infobox"])
    (got,) = api.get_structured_contents("Andre Agassi", req)
    (sent,) = served(wme_server, token, "structured-contents/Andre Agassi", req.to_json())
    assert set(sent) == {"name", "abstract", "sections", "infoboxes"}
    assert_parsed(got, sent)
    assert got.article_sections and got.infoboxes
    assert api.get_structured_contents("Article1", Request(limit=5)) != []


def test_structured_snapshots(api: Any, wme_server: WMEServer, token: str) -> None:
    from modules.api.api_client import Request
    from modules.api.exceptions import APIDataError

    assert sorted(wme_server.structured) == ["dewiki_namespace_0", "elwikivoyage_namespace_0",
                                             "enwiki_namespace_0", "simplewiki_namespace_0"]
    sent = served(wme_server, token, "snapshots/structured-contents")
    assert [s["identifier"] for s in sent] == sorted(wme_server.structured)
    # The SDK parses snapshot metadata with its StructuredContent model, which reads
    # ``version`` as an object; WME (its own testdata, example responses) and we send the
    # version string, so the whole object fails in the SDK (against WME as well). With the
    # fields its own example asks for, the call works.
    assert all(isinstance(s["version"], str) for s in sent)
    with pytest.raises(APIDataError):
        api.get_structured_snapshots()
    req = Request(fields=SNAPSHOT_FIELDS)
    got = api.get_structured_snapshots(req)
    sent = served(wme_server, token, "snapshots/structured-contents", req.to_json())
    assert len(got) == len(sent) == len(wme_server.structured)
    for obj, item in zip(got, sent, strict=True):
        assert_parsed(obj, item)
    identifier = "enwiki_namespace_0"
    one = api.get_structured_snapshot(identifier, req)
    assert_parsed(one, served(wme_server, token, f"snapshots/structured-contents/{identifier}",
                              req.to_json()))
    assert one.identifier == identifier and one.is_part_of.identifier == "enwiki"


def test_structured_snapshot_download(api: Any, wme_server: WMEServer, token: str) -> None:
    identifier = "elwikivoyage_namespace_0"
    path = f"snapshots/structured-contents/{identifier}/download"
    data = raw_download(wme_server, token, path).content
    head = api.head_structured_snapshot(identifier)
    assert head["Content-Length"] == len(data) and head["Accept-Ranges"] == "bytes"
    store = _store(wme_server)
    manifest = store.manifest(identifier)
    # WME's tar.gz by default, as for article snapshots: its MD5 is the metadata's version.
    assert is_wme_archive(data)
    assert head["ETag"] == f"sha256:{hashlib.sha256(data).hexdigest()}"
    meta = served(wme_server, token, f"snapshots/structured-contents/{identifier}")
    assert meta["version"] == md5(data) and meta["size"]["unit_text"] == "MB"
    out = io.BytesIO()
    api.download_structured_snapshot(identifier, out)
    assert out.getvalue() == data
    lines = archive_lines(data)
    assert lines == list(store.iter_lines(manifest))
    # The native zstd NDJSON is a header away, its checksum the manifest's.
    native = raw_download(wme_server, token, path, accept="application/zstd").content
    assert hashlib.sha256(native).hexdigest() == manifest.sha256
    assert archive_lines(native) == lines
    read: list[Any] = []
    api.read_structured_snapshot(identifier, lambda item: read.append(item) or True)
    assert len(read) == len(lines)
    for obj, line in zip(read, lines, strict=True):
        assert_parsed(obj, json.loads(line))
