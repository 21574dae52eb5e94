"""A minimal litestar app around the usage routes, for tests independent of ``create_app``: the
API's own auth dependency and problem+json handler, with a token -> principal accounts fake."""

from __future__ import annotations

from collections.abc import Mapping
from types import SimpleNamespace
from typing import Any

from litestar import Litestar

from feedserver.api import portal
from feedserver.api.problems import handle_exception
from feedserver.api.usage import ROUTES
from feedserver.metering.service import Metering


class TokenAccounts:
    def __init__(self, tokens: Mapping[str, Any]) -> None:
        self.tokens = tokens

    def authenticate_bearer(self, token: str) -> Any:
        return self.tokens.get(token)

    authenticate_api_key = authenticate_bearer


def usage_app(metering: Metering, tokens: Mapping[str, Any]) -> Litestar:
    app = Litestar(route_handlers=[*ROUTES, portal.router()],
                   exception_handlers={Exception: handle_exception})
    app.state.services = SimpleNamespace(accounts=TokenAccounts(tokens), db=metering.db)
    app.state.metering = metering
    return app
