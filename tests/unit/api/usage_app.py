"""A minimal litestar app around the usage report, for tests independent of ``build_app``: the
API's own auth dependency, the usage router and the problem+json handler, with an
``Accounts`` fake that knows a few tokens."""

from __future__ import annotations

from collections.abc import Mapping

from litestar import Litestar
from litestar.di import Provide

from feedserver.accounts.models import Principal, TokenPair
from feedserver.api import usage
from feedserver.api.problems import handle_exception
from feedserver.api.protocols import Accounts
from feedserver.errors import Unauthorized
from feedserver.metering.service import Metering
from feedserver.plans import UNLIMITED
from feedserver.storage.db import Database


def principal(customer_id: str, *, admin: bool = False) -> Principal:
    return Principal(customer_id=customer_id, customer_name=customer_id, user=None,
                     api_key_id=None, is_admin=admin, plan=UNLIMITED)


class TokenAccounts:
    """``Accounts`` for a fixed set of bearer tokens (no logins)."""

    def __init__(self, tokens: Mapping[str, Principal]) -> None:
        self.tokens = tokens

    def login(self, username: str, password: str) -> TokenPair:
        raise Unauthorized("no logins here")

    def refresh(self, username: str, refresh_token: str) -> TokenPair:
        raise Unauthorized("no logins here")

    def revoke(self, refresh_token: str) -> None:
        raise Unauthorized("no logins here")

    def authenticate_bearer(self, token: str) -> Principal:
        found = self.tokens.get(token)
        if found is None:
            raise Unauthorized("invalid credentials")
        return found

    authenticate_api_key = authenticate_bearer

    def cached_principal(self, kind: str, secret: str) -> Principal | None:
        del kind, secret  # nothing cached: every request takes the worker-thread path
        return None


def usage_app(metering: Metering, tokens: Mapping[str, Principal]) -> Litestar:
    accounts: Accounts = TokenAccounts(tokens)

    def provide_accounts() -> Accounts:
        return accounts

    def provide_db() -> Database:
        return metering.db

    def provide_metering() -> Metering | None:
        return metering

    return Litestar(
        route_handlers=[usage.router()],
        dependencies={"accounts": Provide(provide_accounts, sync_to_thread=False),
                      "db": Provide(provide_db, sync_to_thread=False),
                      "metering": Provide(provide_metering, sync_to_thread=False)},
        exception_handlers={Exception: handle_exception})
