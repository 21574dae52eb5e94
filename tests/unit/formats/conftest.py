"""Fixtures for the format writers: real articles from a shared dump, and the WME SDK's reader."""

from __future__ import annotations

import importlib
import io
import sys
from collections.abc import Callable
from typing import Any

import pytest

from feedserver.formats.hashing import ENCODER
from feedserver.ingest.dump import read_dump
from feedserver.models import Article
from tests.conftest import DUMPS, SHARED

SAMPLE = DUMPS / "operations-dumps-mwbzutils" / "sample-pages-articles.xml.bz2"
SDK = SHARED / "clients" / "wme-sdk-python"


@pytest.fixture(scope="session")
def articles() -> list[Article]:
    """Every article of a real (elwikivoyage) dump, as the snapshot build reads them."""
    if not SAMPLE.is_file():
        pytest.fail(f"real test data missing: {SAMPLE}")
    _, records = read_dump(SAMPLE, wiki=None, namespaces=None)
    return [r for r in records if isinstance(r, Article)]


@pytest.fixture(scope="session")
def article_lines(articles: list[Article]) -> list[bytes]:
    """Their canonical NDJSON lines (without newline), exactly as chunks store them."""
    return [ENCODER.encode(article) for article in articles]


@pytest.fixture(scope="session")
def sdk_read_all() -> Callable[[bytes], list[dict[str, Any]]]:
    """The official WME SDK's archive reader (``Client.read_all``), unmodified, over bytes.

    The reader uses no connection, so the client is created without ``__init__`` (which would
    open an HTTP/2 client): what runs is exactly the SDK's gzip (zlib-ng, threaded) + tarfile
    stream code that ``read_snapshot`` / ``read_chunk`` run on a download."""
    if not SDK.is_dir():
        pytest.fail(f"WME SDK missing: {SDK}")
    sys.path.insert(0, str(SDK))
    try:
        api_client = importlib.import_module("modules.api.api_client")
    finally:
        sys.path.remove(str(SDK))
    client = api_client.Client.__new__(api_client.Client)

    def read(data: bytes) -> list[dict[str, Any]]:
        got: list[dict[str, Any]] = []

        def keep(obj: dict[str, Any]) -> bool:
            got.append(obj)
            return True

        client.read_all(io.BytesIO(data), keep)
        return got

    return read
