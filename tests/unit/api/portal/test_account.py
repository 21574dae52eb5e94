"""The customer's own pages: usage and quotas left, API keys, password."""

from __future__ import annotations

import re
from typing import Any

from litestar.testing import TestClient

from tests.unit.api.portal.conftest import MONTH, PASSWORD, World, csrf_of, sign_in

KEY = re.compile(r'id="new-key-value">(fs_[a-z0-9]{8}_[A-Za-z0-9_-]+)<')


def test_own_usage_and_quota_left(client: TestClient[Any], world: World) -> None:
    sign_in(client, "alice")
    page = client.get(f"/usage/account?month={MONTH}")
    assert page.status_code == 200
    assert "Your usage" in page.text and "3.50 GB" in page.text  # 2.5 + 1.0 GB (+40 kB)
    quotas = {q["quota"]: q for q in client.get(
        f"/usage/account/download/quotas.json?month={MONTH}").json()}
    assert quotas["bytes"] == {"quota": "bytes", "used": 3_500_040_000,
                               "limit": 50_000_000_000, "left": 46_499_960_000}
    assert "Globex" not in page.text


def test_keys_create_show_once_rotate_and_revoke(client: TestClient[Any], world: World) -> None:
    csrf = sign_in(client, "alice")
    created = client.post("/usage/account/keys", data={"csrf": csrf, "name": "new pipeline"})
    assert created.status_code == 200 and "shown once" in created.text
    assert created.headers["cache-control"] == "no-store"
    found = KEY.search(created.text)
    assert found
    key = found.group(1)
    prefix = key[3:11]
    api = {"Authorization": f"Bearer {key}"}
    assert client.post("/v1/get-user", headers=api).status_code == 200
    # the listing never shows the secret again
    listing = client.get("/usage/account/keys").text
    assert key not in listing and f"fs_{prefix}_" in listing and "new pipeline" in listing

    rotated = client.post(f"/usage/account/keys/{prefix}/rotate", data={"csrf": csrf})
    found = KEY.search(rotated.text)
    assert rotated.status_code == 200 and found
    new_key = found.group(1)
    assert new_key != key
    assert client.post("/v1/get-user", headers=api).status_code == 401  # old key refused
    assert client.post("/v1/get-user", headers={"Authorization": f"Bearer {new_key}"},
                       ).status_code == 200

    new_prefix = new_key[3:11]
    r = client.post(f"/usage/account/keys/{new_prefix}/revoke", data={"csrf": csrf},
                    follow_redirects=False)
    assert r.headers["location"] == "/usage/account/keys?notice=revoked"
    assert client.post("/v1/get-user", headers={"Authorization": f"Bearer {new_key}"},
                       ).status_code == 401
    assert f'id="key-{new_prefix}"' in client.get("/usage/account/keys").text


def test_password_change(client: TestClient[Any], world: World) -> None:
    csrf = sign_in(client, "bob")
    new = "a brand new password"
    for data, status in (({"current": "wrong password", "new": new, "confirm": new}, 422),
                         ({"current": PASSWORD, "new": new, "confirm": new + "x"}, 422),
                         ({"current": PASSWORD, "new": "short", "confirm": "short"}, 422)):
        r = client.post("/usage/account/password", data={"csrf": csrf, **data})
        assert r.status_code == status, data
    old_session = client.cookies.get("fs_portal")
    r = client.post("/usage/account/password", follow_redirects=False,
                    data={"csrf": csrf, "current": PASSWORD, "new": new, "confirm": new})
    assert r.headers["location"] == "/usage/account/password?notice=password"
    # this browser keeps a (new) session; the old session's tokens are revoked
    assert client.get("/usage/account").status_code == 200
    assert client.cookies.get("fs_portal") != old_session
    other = {"Authorization": f"Bearer {(old_session or '').split('!')[0]}"}
    assert client.post("/v1/get-user", headers=other).status_code == 401
    assert client.post("/v1/login", json={"username": "bob", "password": new}).status_code == 200
    assert client.post("/v1/login", json={"username": "bob",
                                          "password": PASSWORD}).status_code == 401


def test_account_links_stay_on_account_pages(client: TestClient[Any]) -> None:
    sign_in(client, "alice")
    page = client.get(f"/usage/account?month={MONTH}").text
    assert "/usage/finance" not in page  # no admin nav, no drill-down links
    form = client.get("/usage/account/password").text
    assert csrf_of(form)
