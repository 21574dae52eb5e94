"""The customer's own pages (any signed-in user): usage and quotas left this month, API keys
(create, shown once, rotate, revoke) and the password.

Nothing here takes a customer id: the customer is always the viewer's own, from the session.
A key named in a URL that belongs to another customer is "not found", exactly like a key that
does not exist, so prefixes cannot be probed.
"""

from __future__ import annotations

from functools import partial
from typing import Annotated, Any

import anyio.to_thread
import msgspec
from litestar import Response, get, post
from litestar.enums import RequestEncodingType
from litestar.params import Body
from litestar.response import Redirect, Template

from feedserver.accounts.models import ApiKey
from feedserver.accounts.passwords import MAX_LENGTH, MIN_LENGTH
from feedserver.api.portal import urls, views
from feedserver.api.portal.context import (
    VIEWER,
    AnyRequest,
    Portal,
    PortalDep,
    Viewer,
    ViewerDep,
    client_address,
)
from feedserver.api.portal.data import load_month
from feedserver.api.portal.params import (
    CsrfForm,
    KeyForm,
    PasswordForm,
    Query,
    Segment,
    month_param,
)
from feedserver.api.portal.render import page
from feedserver.api.portal.session import SessionTokens, check_csrf, session_cookie
from feedserver.errors import InvalidParameter, NotFound, Unauthorized

FORM = Body(media_type=RequestEncodingType.URL_ENCODED)
MIN_PASSWORD, MAX_PASSWORD = MIN_LENGTH, MAX_LENGTH  # the accounts rule, not a second one
NOTICES = {
    "password": "Password changed. Other sessions and tokens issued with the old password "
                "have ended.",
    "revoked": "Key revoked: requests with it are refused from now on.",
}


class KeyView(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    prefix: str
    created_at: int
    last_used_at: int | None
    expires_at: int | None
    status: str  # active, expiring, revoked, expired


def _key_view(key: ApiKey, now: float) -> KeyView:
    if key.revoked_at is not None:
        status = "revoked"
    elif key.expires_at is not None:
        status = "expiring" if key.expires_at > now else "expired"
    else:
        status = "active"
    return KeyView(name=key.name, prefix=key.prefix, created_at=key.created_at,
                   last_used_at=key.last_used_at, expires_at=key.expires_at, status=status)


@get("/account", dependencies=VIEWER)
async def account_page(portal: PortalDep, viewer: ViewerDep, month: Query = None) -> Template:
    month = month_param(month, portal.ledger.periods.now())
    directory = await anyio.to_thread.run_sync(portal.directory_of)
    data = await anyio.to_thread.run_sync(partial(
        load_month, portal.db, directory, month, customer_id=viewer.customer_id))
    c = data.customer()
    currency = c.currency if c else directory.terms(viewer.customer_id).prices.currency
    bytes_chart, requests_chart = views.daily_charts(data)
    prev_month, next_month = views.adjacent_months(month)
    return page(
        "account.html", title=f"Your usage · {month}", viewer=viewer, section="account",
        month=month, month_label=views.month_label(month), prev_month=prev_month,
        next_month=next_month, tiles=views.customer_tiles(c, currency),
        quotas=views.quotas_table(c, data, "account"),
        invoice=views.invoice_table(c, data, "account"),
        feeds=views.feeds_table(c, data, "account"),
        corrections=views.corrections_table(data, "account"),
        bytes_chart=bytes_chart, requests_chart=requests_chart)


async def _keys_page(portal: Portal, viewer: Viewer, *, new_key: str = "",
                     new_key_title: str = "", notice: str | None = None) -> Template:
    keys = await anyio.to_thread.run_sync(portal.accounts.list_api_keys, viewer.customer_name)
    now = portal.accounts.clock()
    views_ = sorted((_key_view(k, now) for k in keys if k.customer_id == viewer.customer_id),
                    key=lambda k: (k.status not in ("active", "expiring"), -k.created_at))
    return page("keys.html", title="API keys", viewer=viewer, section="keys", keys=views_,
                new_key=new_key, new_key_title=new_key_title, notice=NOTICES.get(notice or ""))


@get("/account/keys", dependencies=VIEWER)
async def keys_page(portal: PortalDep, viewer: ViewerDep, notice: Query = None) -> Template:
    return await _keys_page(portal, viewer, notice=notice)


@post("/account/keys", dependencies=VIEWER, status_code=200)
async def create_key(request: AnyRequest, portal: PortalDep, viewer: ViewerDep,
                     data: Annotated[KeyForm, FORM]) -> Template:
    check_csrf(request, viewer.csrf, data.csrf)
    _key, full = await anyio.to_thread.run_sync(
        portal.accounts.create_api_key, viewer.customer_name, data.name.strip())
    return await _keys_page(portal, viewer, new_key=full, new_key_title="New API key")


async def _own_key(portal: Portal, viewer: Viewer, prefix: str) -> ApiKey:
    try:
        key = await anyio.to_thread.run_sync(portal.accounts.get_api_key, prefix)
    except (NotFound, InvalidParameter):
        key = None
    if key is None or key.customer_id != viewer.customer_id:
        raise NotFound(f"no API key {prefix!r}")
    return key


@post("/account/keys/{prefix:str}/rotate", dependencies=VIEWER, status_code=200)
async def rotate_key(request: AnyRequest, portal: PortalDep, viewer: ViewerDep,
                     prefix: Segment, data: Annotated[CsrfForm, FORM]) -> Template:
    check_csrf(request, viewer.csrf, data.csrf)
    key = await _own_key(portal, viewer, prefix)
    _old, _new, full = await anyio.to_thread.run_sync(portal.accounts.rotate_api_key,
                                                      key.prefix)
    return await _keys_page(portal, viewer, new_key=full,
                            new_key_title=f"Rotated {key.name or key.prefix}: the new key")


@post("/account/keys/{prefix:str}/revoke", dependencies=VIEWER, status_code=303)
async def revoke_key(request: AnyRequest, portal: PortalDep, viewer: ViewerDep,
                     prefix: Segment, data: Annotated[CsrfForm, FORM]) -> Redirect:
    check_csrf(request, viewer.csrf, data.csrf)
    key = await _own_key(portal, viewer, prefix)
    await anyio.to_thread.run_sync(portal.accounts.revoke_api_key, key.prefix)
    return Redirect(f"{urls.KEYS}?notice=revoked", status_code=303)


@get("/account/password", dependencies=VIEWER)
async def password_page(viewer: ViewerDep,
                        notice: Query = None) -> Template:
    return page("password.html", title="Change password", viewer=viewer, section="password",
                min_length=MIN_PASSWORD, notice=NOTICES.get(notice or ""))


@post("/account/password", dependencies=VIEWER, status_code=303)
async def change_password(request: AnyRequest, portal: PortalDep, viewer: ViewerDep,
                          data: Annotated[PasswordForm, FORM]) -> Response[Any]:
    check_csrf(request, viewer.csrf, data.csrf)
    if data.new != data.confirm:
        raise InvalidParameter("the two new passwords differ", parameter="confirm")
    if not MIN_PASSWORD <= len(data.new) <= MAX_PASSWORD:
        raise InvalidParameter(f"the new password needs {MIN_PASSWORD} to {MAX_PASSWORD} "
                               "characters", parameter="new")
    accounts = portal.accounts
    # The current password is checked by the login path itself, so its throttling applies.
    try:
        await anyio.to_thread.run_sync(partial(accounts.login, viewer.username, data.current,
                                               client=client_address(request)))
    except Unauthorized:
        raise InvalidParameter("the current password is not right",
                               parameter="current") from None
    await anyio.to_thread.run_sync(accounts.set_password, viewer.username, data.new)
    # set_password ended every session of the user, this one too: start a fresh one.
    pair = await anyio.to_thread.run_sync(partial(accounts.login, viewer.username, data.new,
                                                  client=client_address(request)))
    assert pair.refresh_token is not None
    tokens = SessionTokens(access_token=pair.access_token, refresh_token=pair.refresh_token)
    response: Response[Any] = Redirect(f"{urls.PASSWORD}?notice=password", status_code=303)
    response.set_cookie(session_cookie(request, tokens, pair.expires_in))
    return response


ROUTES = (account_page, keys_page, create_key, rotate_key, revoke_key, password_page,
          change_password)
