"""The portal's session cookie and CSRF tokens (pure apart from reading the request).

A session IS a WME token pair from ``/v1/login``'s own code path (``Accounts.login``): the cookie
holds the access token (checked on every page exactly like an API bearer token) and the refresh
token (so logging out revokes the pair, and with it every access token minted from it; a password
change revokes them all). The cookie is HttpOnly, SameSite=Lax, limited to ``/usage``, and Secure
whenever the request came over TLS (its scheme, or ``X-Forwarded-Proto: https`` from a proxy).
It lives as long as the access token (``access_token_ttl``).

CSRF: every form carries a token. Signed in, it is ``HMAC-SHA256(refresh token, "csrf")``: only a
page that could read the HttpOnly cookie's secret can produce it, and it never appears in the
cookie. Before login there is no session, so the login form uses a double-submit token: a random
value in a separate SameSite=Strict cookie, repeated in the form. A POST whose ``Origin`` header
names another site is refused as well.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from typing import Any

import msgspec
from litestar import Request, Response
from litestar.datastructures import Cookie

from feedserver.api.portal import urls
from feedserver.errors import Forbidden

SESSION_COOKIE = "fs_portal"
LOGIN_CSRF_COOKIE = "fs_portal_login"
_SEP = "!"  # never in a JWT (base64url and dots) nor in a refresh token (base64url)


class SessionTokens(msgspec.Struct, frozen=True, kw_only=True):
    access_token: str
    refresh_token: str

    @property
    def csrf(self) -> str:
        return hmac.new(self.refresh_token.encode(), b"csrf", hashlib.sha256).hexdigest()[:40]


def over_tls(request: Request[Any, Any, Any]) -> bool:
    forwarded = request.headers.get("x-forwarded-proto", "").split(",")[0].strip().lower()
    return request.url.scheme == "https" or forwarded == "https"


def read_session(request: Request[Any, Any, Any]) -> SessionTokens | None:
    raw = request.cookies.get(SESSION_COOKIE, "")
    access, sep, refresh = raw.partition(_SEP)
    if not sep or not access or not refresh or len(raw) > 4000:
        return None
    return SessionTokens(access_token=access, refresh_token=refresh)


def session_cookie(request: Request[Any, Any, Any], tokens: SessionTokens,
                   max_age: int) -> Cookie:
    return Cookie(key=SESSION_COOKIE, value=f"{tokens.access_token}{_SEP}{tokens.refresh_token}",
                  path=urls.BASE, max_age=max_age, httponly=True, secure=over_tls(request),
                  samesite="lax")


def clear_session(request: Request[Any, Any, Any], response: Response[Any]) -> None:
    response.set_cookie(key=SESSION_COOKIE, value="", path=urls.BASE, max_age=0,
                        httponly=True, secure=over_tls(request), samesite="lax")


def login_csrf(request: Request[Any, Any, Any]) -> tuple[str, Cookie | None]:
    """The login form's token, and the cookie to set when the browser has none yet."""
    current = request.cookies.get(LOGIN_CSRF_COOKIE, "")
    if 32 <= len(current) <= 64 and current.isalnum():
        return current, None
    token = secrets.token_hex(20)
    return token, Cookie(key=LOGIN_CSRF_COOKIE, value=token, path=urls.BASE, httponly=True,
                         secure=over_tls(request), samesite="strict", max_age=3600)


def same_origin(request: Request[Any, Any, Any]) -> None:
    """Refuse a POST whose ``Origin`` names another site (browsers send it on form posts)."""
    origin = request.headers.get("origin")
    if origin is None:  # not sent (older browsers): the CSRF token still decides
        return
    host = request.headers.get("host", "")
    if origin.split("://", 1)[-1].rstrip("/") != host:
        raise Forbidden("this form was posted from another site")


def check_csrf(request: Request[Any, Any, Any], expected: str, given: str) -> None:
    same_origin(request)
    if not expected or not hmac.compare_digest(expected.encode(), given.encode()):
        raise Forbidden("the form has expired or did not come from this site; reload the page "
                        "and try again")
