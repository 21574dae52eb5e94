"""Every portal URL is built here (pure), so pages, redirects and tests agree on them."""

from __future__ import annotations

from urllib.parse import quote, urlencode

BASE = "/usage"
LOGIN = f"{BASE}/login"
LOGOUT = f"{BASE}/logout"
FINANCE = f"{BASE}/finance"
ACCOUNT = f"{BASE}/account"
KEYS = f"{ACCOUNT}/keys"
PASSWORD = f"{ACCOUNT}/password"
CORRECTIONS = f"{FINANCE}/corrections"
VERIFY = f"{FINANCE}/verify"
STATIC = f"{BASE}/static"


def _q(path: str, **query: str | None) -> str:
    params = {k: v for k, v in query.items() if v}
    return f"{path}?{urlencode(params)}" if params else path


def seg(value: str) -> str:
    return quote(value, safe="")


def finance(month: str) -> str:
    return _q(FINANCE, month=month)


def customer(customer_id: str, month: str) -> str:
    return _q(f"{FINANCE}/customers/{seg(customer_id)}", month=month)


def feed(customer_id: str, feed_name: str, month: str) -> str:
    return _q(f"{FINANCE}/customers/{seg(customer_id)}/feeds/{seg(feed_name)}", month=month)


def day(customer_id: str, feed_name: str, day_name: str) -> str:
    return f"{FINANCE}/customers/{seg(customer_id)}/feeds/{seg(feed_name)}/days/{seg(day_name)}"


def batch(digest: str) -> str:
    """The responses behind a batch's ledger rows (its evidence)."""
    return f"{FINANCE}/batches/{seg(digest)}"


def account(month: str) -> str:
    return _q(ACCOUNT, month=month)


def download(scope: str, name: str, **query: str | None) -> str:
    """A table's download URL without its extension; ``scope`` is ``finance`` or ``account``."""
    return _q(f"{BASE}/{scope}/download/{seg(name)}", **query)


def with_ext(url: str, ext: str) -> str:
    path, _, query = url.partition("?")
    return f"{path}.{ext}" + (f"?{query}" if query else "")


def key_action(prefix: str, action: str) -> str:
    return f"{KEYS}/{seg(prefix)}/{action}"
