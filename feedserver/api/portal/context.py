"""What portal handlers are given (litestar dependency injection): the services and the viewer.

``Portal`` bundles the typed components the pages use: the accounts service (login, keys,
passwords), the database, a ledger whose months close ``usage_grace_hours`` after they end (for
corrections), and the customer directory (names and plans). ``Portals``, created with the app
in its lifespan (``api/app.py``), builds it from the app's components on the first portal
request and keeps it. ``Viewer`` is the signed-in user of this request,
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
from feedserver.api.protocols import Accounts as AccountsProtocol
from feedserver.api.protocols import Injected
from feedserver.config import Settings
from feedserver.errors import FeedError, Forbidden, Unauthorized, Unavailable
from feedserver.metering.customers import CustomerDirectory, customer_directory
from feedserver.metering.ledger import Ledger
from feedserver.metering.periods import Periods
from feedserver.metering.service import Metering
from feedserver.storage.db import Database


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


class Portals:
    """The app's ``Portal``, built on the first portal request (the ledger it opens migrates
    the ledger's tables: apps that never show the portal never do)."""

    def __init__(self, settings: Settings, db: Database, accounts: AccountsProtocol,
                 metering: Metering | None) -> None:
        self.settings = settings
        self.db = db
        self.accounts = accounts
        self.metering = metering
        self._portal: Portal | None = None

    def _build(self) -> Portal:
        # The pages manage keys and passwords too: the full accounts service, not the
        # API's login protocol (an app handed a stand-in has no portal).
        if not isinstance(self.accounts, Accounts):
            raise Unavailable("the portal needs the accounts service")
        db, settings = self.db, self.settings
        fixed = self.metering.directory if self.metering is not None else None
        return Portal(
            settings=settings, db=db, accounts=self.accounts,
            ledger=Ledger(db, periods=Periods.hours(settings.usage_grace_hours)),
            directory_of=(lambda: fixed) if fixed is not None else (lambda: customer_directory(db)),
        )

    async def get(self) -> Portal:
        if self._portal is None:
            self._portal = await anyio.to_thread.run_sync(self._build)
        return self._portal


async def provide_portal(portals: Injected[Portals]) -> Portal:
    return await portals.get()


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
