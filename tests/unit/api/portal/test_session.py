"""Signing in and out: the session cookie's flags, CSRF on every form, revocation on logout."""

from __future__ import annotations

from typing import Any

from litestar.testing import TestClient

from tests.unit.api.portal.conftest import PASSWORD, World, csrf_of, sign_in


def test_entry_sends_visitors_to_login_and_back_where_they_were(
        client: TestClient[Any]) -> None:
    r = client.get("/usage", follow_redirects=False)
    assert (r.status_code, r.headers["location"]) == (303, "/usage/login")
    r = client.get("/usage/finance?month=2026-01", follow_redirects=False)
    assert r.headers["location"] == "/usage/login?next=%2Fusage%2Ffinance%3Fmonth%3D2026-01"
    form = client.get(r.headers["location"])
    assert 'name="next" value="/usage/finance?month=2026-01"' in form.text
    r = client.post("/usage/login", follow_redirects=False, data={
        "csrf": csrf_of(form.text), "username": "Finance", "password": PASSWORD,
        "next": "/usage/finance?month=2026-01"})
    assert (r.status_code, r.headers["location"]) == (303, "/usage/finance?month=2026-01")


def test_session_cookie_flags(client: TestClient[Any]) -> None:
    form = client.get("/usage/login")
    login_cookie = form.headers["set-cookie"]
    assert "HttpOnly" in login_cookie and "SameSite=strict" in login_cookie
    r = client.post("/usage/login", follow_redirects=False, data={
        "csrf": csrf_of(form.text), "username": "alice", "password": PASSWORD})
    session = next(c for c in r.headers.get_list("set-cookie") if c.startswith("fs_portal="))
    assert "HttpOnly" in session and "SameSite=lax" in session and "Path=/usage" in session
    assert "Secure" not in session  # plain http here
    assert r.headers["location"] == "/usage"
    assert client.get("/usage", follow_redirects=False).headers["location"] == "/usage/account"


def test_cookie_is_secure_behind_a_tls_proxy(client: TestClient[Any]) -> None:
    tls = {"X-Forwarded-Proto": "https"}
    form = client.get("/usage/login", headers=tls)
    assert "Secure" in form.headers["set-cookie"]
    # the test client keeps Secure cookies for https only: hand it back as a browser would
    token = csrf_of(form.text)
    r = client.post("/usage/login", follow_redirects=False,
                    headers={**tls, "Cookie": f"fs_portal_login={token}"},
                    data={"csrf": token, "username": "alice", "password": PASSWORD})
    session = next(c for c in r.headers.get_list("set-cookie") if c.startswith("fs_portal="))
    assert "Secure" in session


def test_login_form_needs_its_csrf_token(client: TestClient[Any]) -> None:
    client.get("/usage/login")
    r = client.post("/usage/login", data={"csrf": "forged", "username": "alice",
                                          "password": PASSWORD})
    assert r.status_code == 403 and "expired or did not come from this site" in r.text
    assert "fs_portal=" not in r.headers.get("set-cookie", "")


def test_wrong_password_is_one_message_and_no_session(client: TestClient[Any]) -> None:
    form = client.get("/usage/login")
    for username in ("alice", "nobody"):
        r = client.post("/usage/login", data={"csrf": csrf_of(form.text),
                                              "username": username, "password": "wrong one"})
        assert r.status_code == 401
        assert "Incorrect username or password." in r.text
        assert f'value="{username}"' in r.text  # the username stays filled in
    assert client.get("/usage", follow_redirects=False).headers["location"] == "/usage/login"


def test_every_form_post_needs_the_session_csrf_token(client: TestClient[Any]) -> None:
    csrf = sign_in(client, "finance")
    for path in ("/usage/logout", "/usage/finance/verify", "/usage/finance/corrections",
                 "/usage/account/keys", "/usage/account/password"):
        r = client.post(path, data={"csrf": "not-it"})
        assert r.status_code == 403, path
    # A page of another site posting the right token is still refused (Origin).
    r = client.post("/usage/account/keys", data={"csrf": csrf, "name": "x"},
                    headers={"Origin": "https://evil.example"})
    assert r.status_code == 403
    r = client.post("/usage/account/keys", data={"csrf": csrf, "name": "x"},
                    headers={"Origin": "http://testserver.local"})
    assert r.status_code == 200


def test_logout_revokes_the_session_tokens(client: TestClient[Any], world: World) -> None:
    csrf = sign_in(client, "alice")
    raw = client.cookies.get("fs_portal")
    assert raw
    access = raw.split("!")[0]
    # the session's access token works as an API bearer token until logout
    assert client.post("/v1/get-user", headers={"Authorization": f"Bearer {access}"},
                       ).status_code == 200
    r = client.post("/usage/logout", data={"csrf": csrf}, follow_redirects=False)
    assert r.headers["location"] == "/usage/login?notice=signed-out"
    assert client.post("/v1/get-user", headers={"Authorization": f"Bearer {access}"},
                       ).status_code == 401
    # replaying the old cookie gets the login page, not the account
    client.cookies.set("fs_portal", raw)
    r = client.get("/usage/account", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"].startswith("/usage/login")


def test_api_keys_are_not_sessions(client: TestClient[Any], world: World) -> None:
    client.cookies.set("fs_portal", world.keys["Acme"] + "!x")
    assert client.get("/usage/account", follow_redirects=False).status_code == 303


def test_open_redirects_are_refused(client: TestClient[Any]) -> None:
    for target in ("https://evil.example/", "//evil.example", "/v1/login", "/usage\\@evil"):
        client.cookies.clear()
        form = client.get("/usage/login")
        r = client.post("/usage/login", follow_redirects=False, data={
            "csrf": csrf_of(form.text), "username": "alice", "password": PASSWORD,
            "next": target})
        assert r.headers["location"] == "/usage", target


def test_pages_carry_a_strict_content_security_policy(client: TestClient[Any]) -> None:
    r = client.get("/usage/login")
    csp = r.headers["content-security-policy"]
    assert "default-src 'none'" in csp and "script-src" not in csp
    assert r.headers["cache-control"] == "no-store"
    assert "<script" not in r.text
    css = client.get("/usage/static/portal.css")
    assert css.status_code == 200 and css.headers["content-type"].startswith("text/css")


def test_hostile_session_cookies_are_signed_out_never_errors(client: TestClient[Any]) -> None:
    for value in ("", "!", "a!b", "x" * 5000, "fs_abcdefgh_" + "y" * 40 + "!z",
                  "eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.!fsr_x", "%C3%A9!%00"):
        client.cookies.set("fs_portal", value)
        r = client.get("/usage/account", follow_redirects=False)
        assert r.status_code == 303, value
        assert r.headers["location"].startswith("/usage/login")
