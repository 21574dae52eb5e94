"""Signing in and out, and ``/usage`` itself (the portal's entry: it sends each user on).

Login goes through ``Accounts.login``, the same code path as ``POST /v1/login``, so the login
throttling of the accounts service applies to the form as well; the form adds nothing of its own.
"""

from __future__ import annotations

from functools import partial
from typing import Annotated, Any

import anyio.to_thread
from litestar import Response, get, post
from litestar.enums import RequestEncodingType
from litestar.params import Body
from litestar.response import Redirect, Template

from feedserver.api.portal import urls
from feedserver.api.portal.context import (
    PORTAL,
    VIEWER,
    AnyRequest,
    LoginRequired,
    Portal,
    PortalDep,
    Viewer,
    ViewerDep,
    client_address,
    provide_viewer,
)
from feedserver.api.portal.params import CsrfForm, LoginForm, Query, local_path
from feedserver.api.portal.render import page
from feedserver.api.portal.session import (
    LOGIN_CSRF_COOKIE,
    SessionTokens,
    check_csrf,
    clear_session,
    login_csrf,
    session_cookie,
)
from feedserver.errors import Forbidden, RateLimited, Unauthorized

FORM = Body(media_type=RequestEncodingType.URL_ENCODED)
NOTICES = {"signed-out": "You are signed out.",
           "expired": "Your session has ended; please sign in again."}


async def _viewer_or_none(request: AnyRequest, portal: Portal) -> Viewer | None:
    try:
        return await provide_viewer(request, portal)
    except LoginRequired:
        return None


def _home(viewer: Viewer) -> str:
    return urls.FINANCE if viewer.is_admin else urls.ACCOUNT


@get("/", dependencies=PORTAL)
async def entry(request: AnyRequest, portal: PortalDep) -> Redirect:
    viewer = await _viewer_or_none(request, portal)
    return Redirect(_home(viewer) if viewer else urls.LOGIN, status_code=303)


def _login_page(request: AnyRequest, *, status: int = 200, error: str | None = None,
                notice: str | None = None, username: str = "", next_path: str = "") -> Template:
    token, cookie = login_csrf(request)
    response = page("login.html", status=status, title="Sign in", csrf=token, error=error,
                    notice=notice, username=username, next=next_path)
    if cookie is not None:
        response.set_cookie(cookie)
    return response


@get("/login", dependencies=PORTAL)
async def login_form(request: AnyRequest, portal: PortalDep,
                     next: Query = None,
                     notice: Query = None) -> Response[Any]:
    viewer = await _viewer_or_none(request, portal)
    if viewer is not None:
        return Redirect(_home(viewer), status_code=303)
    return _login_page(request, notice=NOTICES.get(notice or ""),
                       next_path=local_path(next or "", default=""))


@post("/login", dependencies=PORTAL, status_code=303)
async def login(request: AnyRequest, portal: PortalDep,
                data: Annotated[LoginForm, FORM]) -> Response[Any]:
    check_csrf(request, request.cookies.get(LOGIN_CSRF_COOKIE, ""), data.csrf)
    username = data.username.strip()[:255]
    form = {"username": username, "next_path": local_path(data.next, default="")}
    if not username or not data.password or len(data.password) > 4096:
        return _login_page(request, status=400, error="Enter your username and password.",
                           **form)
    try:
        pair = await anyio.to_thread.run_sync(partial(
            portal.accounts.login, username.lower(), data.password, client=client_address(request)))
    except RateLimited as exc:
        wait = exc.extra.get("retry_after")
        when = f" Try again in {int(wait) + 1} s." if isinstance(wait, int | float) else ""
        return _login_page(request, status=429, error=f"Too many attempts.{when}", **form)
    except Unauthorized:
        return _login_page(request, status=401, error="Incorrect username or password.", **form)
    except Forbidden as exc:
        return _login_page(request, status=403, error=exc.detail, **form)
    assert pair.refresh_token is not None
    tokens = SessionTokens(access_token=pair.access_token, refresh_token=pair.refresh_token)
    response: Response[Any] = Redirect(form["next_path"] or urls.BASE, status_code=303)
    response.set_cookie(session_cookie(request, tokens, pair.expires_in))
    response.delete_cookie(LOGIN_CSRF_COOKIE, path=urls.BASE)
    return response


@post("/logout", dependencies=VIEWER, status_code=303)
async def logout(request: AnyRequest, portal: PortalDep,
                 viewer: ViewerDep, data: Annotated[CsrfForm, FORM]) -> Response[Any]:
    check_csrf(request, viewer.csrf, data.csrf)
    # Revoking the refresh token ends every access token minted from it: this session, now.
    await anyio.to_thread.run_sync(portal.accounts.revoke, viewer.tokens.refresh_token)
    response: Response[Any] = Redirect(f"{urls.LOGIN}?notice=signed-out", status_code=303)
    clear_session(request, response)
    return response


ROUTES = (entry, login_form, login, logout)
