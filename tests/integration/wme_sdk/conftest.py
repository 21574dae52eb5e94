"""Fixtures of the WME SDK suite: one real server per session, the SDK on ``sys.path``, tokens."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.wme_sdk import sdk_on_path
from tests.integration.wme_sdk.sdk import login
from tests.integration.wme_sdk.server import PASSWORD, USERNAME, WMEServer, running_server


@pytest.fixture(scope="session")
def wme_server(tmp_path_factory: pytest.TempPathFactory, shared_data: Path
               ) -> Iterator[WMEServer]:
    with running_server(tmp_path_factory.mktemp("wme_sdk")) as server:
        yield server


@pytest.fixture(scope="session")
def sdk_path() -> Iterator[Path]:
    """The SDK's root on ``sys.path`` for the session (imported unmodified from there)."""
    with sdk_on_path() as root:
        yield root


@pytest.fixture(scope="session")
def tokens(wme_server: WMEServer) -> dict[str, Any]:
    """One login for the read-only tests (the auth tests log in on their own)."""
    return login(wme_server, USERNAME, PASSWORD)


@pytest.fixture(scope="session")
def token(tokens: dict[str, Any]) -> str:
    access: str = tokens["access_token"]
    return access


@pytest.fixture()
def api(wme_server: WMEServer, token: str, sdk_path: Path) -> Iterator[Any]:
    from tests.integration.wme_sdk.sdk import api_client

    client = api_client(wme_server, token)
    try:
        yield client
    finally:
        client.http_client.close()
