"""What portal handlers are given (litestar dependency injection): the services and the viewer.

``Portal`` bundles the typed components the pages use: the accounts service (login, keys,
passwords), the database, a ledger whose months close ``usage_grace_hours`` after they end (for
corrections), and the customer directory (names and plans). It is built once per app from the
app's ``Services`` and kept in ``app.state``. ``Viewer`` is the signed-in user of this request,
from the session cookie; no session (or an expired or revoked one) is ``LoginRequired``, which
the portal answers with a redirect to the login page.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import anyio.to_thread
import msgspec
from litestar import Request
from litestar.di import NamedDependency, Provide

from feedserver.accounts.service import Accounts
from feedserver.api.portal.session import SessionTokens, read_session
from feedserver.api.services import services_of
from feedserver.config import Settings
from feedserver.errors import FeedError, Forbidden, Unauthorized, Unavailable
from feedserver.metering.customers import CustomerDirectory, customer_directory
from feedserver.metering.ledger import Ledger
from feedserver.metering.periods import Periods
from feedserver.metering.service import Metering
from feedserver.storage.db import Database

STATE_KEY = "portal"


class LoginRequired(Unauthorized):
    """No valid session: pages redirect to the login form."""

    slug = "login-required"


@dataclass(frozen=True)
class Portal:
    settings: Settings
    db: Database
    accounts: Accounts
    ledger: Ledger
    directory_of: Callable[[], CustomerDirectory]


class Viewer(msgspec.Struct, frozen=True, kw_only=True):
    username: str
    customer_id: str
    customer_name: str
    is_admin: bool
    csrf: str
    tokens: SessionTokens


AnyRequest = Request[Any, Any, Any]


def client_address(request: AnyRequest) -> str | None:
    """The caller's address, for the login throttle (``Accounts.login(client=...)``)."""
    return request.client.host if request.client else None
PortalDep = NamedDependency[Portal]  # handler parameters filled by the dependencies below
ViewerDep = NamedDependency[Viewer]


def build_portal(request: Request[Any, Any, Any]) -> Portal:
    svc = services_of(request)
    if svc.db is None or not isinstance(svc.accounts, Accounts):
        raise Unavailable("the portal needs the database and the accounts service")
    metering = svc.metering
    fixed = metering.directory if isinstance(metering, Metering) else None
    db = svc.db
    return Portal(
        settings=svc.settings, db=db, accounts=svc.accounts,
        ledger=Ledger(db, periods=Periods.hours(svc.settings.usage_grace_hours)),
        directory_of=(lambda: fixed) if fixed is not None else (lambda: customer_directory(db)),
    )


async def provide_portal(request: Request[Any, Any, Any]) -> Portal:
    portal: Portal | None = request.app.state.get(STATE_KEY)
    if portal is None:
        portal = await anyio.to_thread.run_sync(build_portal, request)
        request.app.state[STATE_KEY] = portal
    return portal


async def provide_viewer(request: Request[Any, Any, Any],
                         portal: PortalDep) -> Viewer:
    tokens = read_session(request)
    if tokens is None:
        raise LoginRequired("please sign in")
    try:
        principal = await anyio.to_thread.run_sync(portal.accounts.authenticate_bearer,
                                                   tokens.access_token)
    except FeedError as exc:
        raise LoginRequired("your session has ended; please sign in again") from exc
    if principal.user is None:  # an API key is not a session
        raise LoginRequired("please sign in")
    return Viewer(username=principal.user, customer_id=principal.customer_id,
                  customer_name=principal.customer_name, is_admin=principal.is_admin,
                  csrf=tokens.csrf, tokens=tokens)


async def provide_admin(viewer: ViewerDep) -> Viewer:
    if not viewer.is_admin:
        raise Forbidden("the finance pages are for administrators")
    return viewer


PORTAL = {"portal": Provide(provide_portal)}
VIEWER = {**PORTAL, "viewer": Provide(provide_viewer)}
ADMIN = {**PORTAL, "viewer": Provide(provide_viewer), "admin": Provide(provide_admin)}
