"""The SDK's ``AuthClient`` against our ``/v1``: login, refresh, revoke, and get-user.

The AuthClient keeps its tokens in ``tokenstore.json`` in the working directory and decides
from the timestamps in it whether to log in, refresh or reuse; the tests age those timestamps
(the file is the SDK's own state, its code is untouched) to walk it through every path.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration.wme_sdk.sdk import api_client
from tests.integration.wme_sdk.server import PASSWORD, USERNAME, WMEServer

pytestmark = pytest.mark.integration


@pytest.fixture()
def auth(wme_server: WMEServer, sdk_path: Path, tmp_path: Path,
         monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """The SDK's AuthClient, credentials from the environment as its docs say, its base URL
    pointed at our server, its token store in a scratch directory."""
    monkeypatch.setenv("WME_USERNAME", USERNAME)
    monkeypatch.setenv("WME_PASSWORD", PASSWORD)
    monkeypatch.chdir(tmp_path)
    from modules.auth.auth_client import AuthClient

    with AuthClient() as client:
        client.client.base_url = f"{wme_server.url}/v1"
        yield client


def _age(store: Path, **ages: timedelta) -> None:
    data = json.loads(store.read_text())
    for name, age in ages.items():
        data[f"{name}_generated_at"] = (datetime.now() - age).isoformat()
    store.write_text(json.dumps(data))


def _works(server: WMEServer, token: str) -> bool:
    from modules.api.exceptions import APIStatusError

    client = api_client(server, token)
    try:
        client.get_codes()
        return True
    except APIStatusError as exc:
        assert exc.response is not None and exc.response.status_code == 401
        return False
    finally:
        client.http_client.close()


def test_login_refresh_relogin_and_revoke(auth: Any, wme_server: WMEServer,
                                          tmp_path: Path) -> None:
    store = tmp_path / "tokenstore.json"
    first = auth.get_access_token()  # no store yet: logs in
    saved = json.loads(store.read_text())
    assert saved["access_token"] == first and saved["refresh_token"]
    assert auth.get_access_token() == first  # fresh: reused, no request
    assert _works(wme_server, first)

    _age(store, access_token=timedelta(hours=25))  # expired access token: refreshed
    refreshed = auth.get_access_token()
    assert refreshed != first and _works(wme_server, refreshed)
    # WME issues no new refresh token on refresh; the SDK keeps the one it had.
    assert json.loads(store.read_text())["refresh_token"] == saved["refresh_token"]

    _age(store, access_token=timedelta(hours=25), refresh_token=timedelta(days=31))
    again = auth.get_access_token()  # refresh token too old for the SDK: logs in again
    assert again not in (first, refreshed) and _works(wme_server, again)
    refresh_token = json.loads(store.read_text())["refresh_token"]

    auth.clear_state()  # revokes the refresh token (204) and deletes the store
    assert not store.exists()
    # Revoking a refresh token revokes the access tokens minted from it (WME) ...
    assert not _works(wme_server, again)
    # ... and the refresh token itself.
    with pytest.raises(httpx.HTTPStatusError) as refused:
        auth.refresh_token(refresh_token)
    assert refused.value.response.status_code == 401


def test_bad_password_is_401(auth: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    auth.password = "not the password"
    with pytest.raises(httpx.HTTPStatusError) as refused:
        auth.login()
    assert refused.value.response.status_code == 401


def test_get_user_reports_integer_usage_and_limits(auth: Any) -> None:
    """``POST /v1/get-user`` (the SDK has no method for it: sent with its own client)."""
    token = auth.get_access_token()
    r = auth.client.post("/get-user", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 200, r.text
    user = r.json()
    assert user["username"] == USERNAME
    assert isinstance(user["groups"], list) and isinstance(user["apis"], list)
    # Every WME count and limit is an integer, and the limits are the plan's caps.
    for name in ("ondemand_requests_count", "ondemand_limit", "snapshot_requests_count",
                 "snapshot_limit", "chunk_requests_count", "chunk_limit"):
        assert type(user[name]) is int, (name, user[name])
    assert (user["ondemand_limit"], user["snapshot_limit"], user["chunk_limit"]) == (
        50000, 30, 1500)
