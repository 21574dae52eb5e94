"""The portal's entitlement matrix: every route, as a visitor, a customer and another customer.

Customer A (alice, Acme) tries every portal URL with customer B's (Globex) ids, key prefixes and
names put into the path and the query. A must never receive B's data: finance pages are refused,
account pages and downloads only ever contain A's own rows, and B's keys cannot be rotated or
revoked. The route list is read from the app, so a new portal route without a row here fails.
"""

from __future__ import annotations

from typing import Any

import pytest
from litestar.testing import TestClient

from tests.unit.api.portal.conftest import DAY1, MONTH, World, sign_in

FINANCE_TABLES = ("customers", "feeds", "feed-days", "invoice", "quotas", "corrections", "rows",
                  "report")


def b_urls(world: World) -> dict[tuple[str, str], list[str]]:
    """(method, route template) -> concrete URLs aimed at customer B."""
    b = world.ids["Globex"]
    day = DAY1.strftime("%Y-%m-%d")
    q = f"month={MONTH}&customer={b}&feed=snapshots"
    return {
        ("GET", "/usage"): ["/usage"],
        ("GET", "/usage/login"): ["/usage/login"],
        ("POST", "/usage/login"): [],  # signing in is covered in test_session
        ("POST", "/usage/logout"): [],
        ("GET", "/usage/static/{file_path:path}"): ["/usage/static/portal.css"],
        ("GET", "/usage/finance"): [f"/usage/finance?month={MONTH}&customer={b}"],
        ("GET", "/usage/finance/customers/{customer_id:str}"): [
            f"/usage/finance/customers/{b}?month={MONTH}"],
        ("GET", "/usage/finance/customers/{customer_id:str}/feeds/{feed:str}"): [
            f"/usage/finance/customers/{b}/feeds/snapshots?month={MONTH}"],
        ("GET", "/usage/finance/customers/{customer_id:str}/feeds/{feed:str}/days/{day:str}"): [
            f"/usage/finance/customers/{b}/feeds/snapshots/days/{day}"],
        ("GET", "/usage/finance/batches/{digest:str}"): ["/usage/finance/batches/" + "0" * 64],
        ("POST", "/usage/finance/corrections"): ["/usage/finance/corrections"],
        ("POST", "/usage/finance/verify"): ["/usage/finance/verify"],
        ("GET", "/usage/finance/download/{filename:str}"): [
            f"/usage/finance/download/{t}.{ext}?{q}" for t in FINANCE_TABLES
            for ext in ("csv", "json")],
        ("GET", "/usage/account"): [f"/usage/account?month={MONTH}&customer={b}"],
        ("GET", "/usage/account/keys"): [f"/usage/account/keys?customer={b}"],
        ("POST", "/usage/account/keys"): ["/usage/account/keys"],
        ("POST", "/usage/account/keys/{prefix:str}/rotate"): [
            f"/usage/account/keys/{world.keys['Globex'][3:11]}/rotate"],
        ("POST", "/usage/account/keys/{prefix:str}/revoke"): [
            f"/usage/account/keys/{world.keys['Globex'][3:11]}/revoke"],
        ("GET", "/usage/account/password"): ["/usage/account/password"],
        ("POST", "/usage/account/password"): [],  # only ever the viewer's own: test_account
        ("GET", "/usage/account/download/{filename:str}"): [
            f"/usage/account/download/{t}.{ext}?{q}" for t in FINANCE_TABLES if t != "customers"
            for ext in ("csv", "json")],
    }


def portal_routes(client: TestClient[Any]) -> set[tuple[str, str]]:
    found = set()
    for route in client.app.routes:
        if route.path == "/usage" or route.path.startswith("/usage/"):
            found |= {(m, route.path) for m in route.methods if m not in ("HEAD", "OPTIONS")}
    return found


def test_every_portal_route_is_in_the_matrix(client: TestClient[Any], world: World) -> None:
    assert portal_routes(client) == set(b_urls(world))


def secrets_of_b(world: World) -> list[str]:
    b = world.ids["Globex"]
    return [b, "Globex", world.keys["Globex"][3:11],
            *(r.usage_id for r in world.records["Globex"])]


def request(client: TestClient[Any], method: str, url: str, csrf: str, b_row: str = "") -> Any:
    if method == "GET":
        return client.get(url, follow_redirects=False)
    # a well-formed form aimed at B's first row: only the route's own checks may stop it
    return client.post(url, data={"csrf": csrf, "kind": "void", "reason": "not mine",
                                  "usage_id": b_row, "month": MONTH, "name": "mine now"},
                       follow_redirects=False)


PUBLIC = {("GET", "/usage"), ("GET", "/usage/login"), ("GET", "/usage/static/{file_path:path}")}


def test_customer_a_never_sees_customer_b(client: TestClient[Any], world: World) -> None:
    csrf = sign_in(client, "alice")
    b_row = world.records["Globex"][0].usage_id
    b_key = world.keys["Globex"]
    leaks: list[str] = []
    for (method, template), urls in b_urls(world).items():
        for url in urls:
            r = request(client, method, url, csrf, b_row)
            if template.startswith("/usage/finance"):
                assert r.status_code == 403, (url, r.status_code)
            elif "/keys/{prefix" in template:
                assert r.status_code == 404, (url, r.status_code)
            else:
                assert r.status_code in (200, 303), (url, r.status_code)
            body = r.text if r.status_code == 200 else ""
            leaks += [f"{url}: {s}" for s in secrets_of_b(world) if s in body]
    assert leaks == []
    # B's key survived A's attempts to rotate and revoke it
    assert client.post("/v1/get-user", headers={"Authorization": f"Bearer {b_key}"},
                       ).status_code == 200


def test_account_downloads_are_always_the_viewers_own(client: TestClient[Any],
                                                      world: World) -> None:
    sign_in(client, "alice")
    a, b = world.ids["Acme"], world.ids["Globex"]
    rows = client.get(f"/usage/account/download/rows.json?month={MONTH}&customer={b}").json()
    assert rows and {r["customer_id"] for r in rows} == {a}
    report = client.get(f"/usage/account/download/report.json?month={MONTH}&customer={b}")
    assert [c["customer_id"] for c in report.json()["customers"]] == [a]


@pytest.mark.parametrize("who", [None, "alice"])
def test_visitors_and_customers_cannot_post_finance_forms(client: TestClient[Any], world: World,
                                                          who: str | None) -> None:
    csrf = sign_in(client, who) if who else "none"
    target = world.records["Globex"][0].usage_id
    r = client.post("/usage/finance/corrections", follow_redirects=False, data={
        "csrf": csrf, "kind": "void", "usage_id": target, "reason": "sabotage"})
    assert r.status_code == (403 if who else 303)
    rows = world.db.fetchone("SELECT COUNT(*) FROM usage_ledger WHERE kind <> 'usage'")
    assert rows == (0,)


def test_visitors_are_sent_to_login_everywhere(client: TestClient[Any], world: World) -> None:
    for (method, template), urls in b_urls(world).items():
        if (method, template) in PUBLIC:
            continue
        for url in urls:
            r = request(client, method, url, "none")
            assert r.status_code == 303, (url, r.status_code)
            assert r.headers["location"].startswith("/usage/login"), url
