"""WME auth endpoints (``/v1/login``, ``/v1/token-refresh``, ``/v1/token-revoke``,
``/v1/get-user``) and the authentication dependency every data endpoint uses.

Credentials: ``Authorization: Bearer <access token | fs_ API key>`` (the bare token without
``Bearer `` too, as WME) or ``X-API-Key: <key>``.
Missing or bad credentials → 401 with ``WWW-Authenticate``; a plan that does not cover the
feed, project or namespace involved → 403 (``entitle``).
"""

from __future__ import annotations

from datetime import UTC, datetime
from functools import partial
from typing import Annotated, Any, Literal

import anyio.to_thread
import msgspec
from litestar import Request, Response, Router, post
from litestar.di import NamedDependency, Provide
from litestar.openapi import ResponseSpec
from litestar.params import JSONBody

from feedserver.accounts.models import Principal, TokenPair
from feedserver.api.problems import problem_specs
from feedserver.api.protocols import Accounts, Injected
from feedserver.api.query import ENCODER, header
from feedserver.errors import Unauthorized
from feedserver.metering.months import month_of
from feedserver.metering.service import Metering
from feedserver.plans import ProductFeed, QuotaName

API_KEY_PREFIX = "fs_"
MAX_CREDENTIAL = 4096

# The bodies are litestar request bodies (``data``): decoded and checked by msgspec against
# these types (a 422 problem otherwise) and declared, with their bounds, in the OpenAPI document.
# Unknown fields are ignored (the document allows them, as JSON Schema does by default).
Name = Annotated[str, msgspec.Meta(min_length=1, max_length=255)]
Credential = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_CREDENTIAL)]


class LoginBody(msgspec.Struct):
    username: Name
    password: Name


class RefreshBody(msgspec.Struct):
    username: Name
    refresh_token: Credential


class RevokeBody(msgspec.Struct):
    refresh_token: Credential


class ApiRef(msgspec.Struct, kw_only=True):
    path: str
    method: str


class UserInfo(msgspec.Struct, kw_only=True):
    """WME's ``/v1/get-user`` answer: who is calling, and their on-demand/snapshot/chunk use."""

    username: str
    customer: str
    groups: list[str]
    apis: list[ApiRef]
    ondemand_requests_count: int
    ondemand_limit: int | None
    snapshot_requests_count: int
    snapshot_limit: int | None
    chunk_requests_count: int
    chunk_limit: int | None


def credential(request: Request[Any, Any, Any]) -> tuple[Literal["bearer", "api_key"], str]:
    """``("bearer" | "api_key", secret)`` from the headers; raises Unauthorized."""
    auth = header(request, b"authorization")
    if auth:
        scheme, _, token = auth.strip().partition(" ")
        token = token.strip()
        if not token and scheme.lower() != "bearer":
            token = scheme  # a raw token without "Bearer ", which WME accepts too
        elif scheme.lower() != "bearer" or not token:
            raise Unauthorized("use 'Authorization: Bearer <token or API key>'")
        if len(token) > MAX_CREDENTIAL:
            raise Unauthorized("invalid credentials")
        return ("api_key" if token.startswith(API_KEY_PREFIX) else "bearer", token)
    key = (header(request, b"x-api-key") or "").strip()
    if key:
        if len(key) > MAX_CREDENTIAL:
            raise Unauthorized("invalid credentials")
        return "api_key", key
    raise Unauthorized("authentication required: send 'Authorization: Bearer <token>'")


async def authenticate(request: Request[Any, Any, Any], accounts: Injected[Accounts]) -> Principal:
    """The ``principal`` dependency."""
    kind, secret = credential(request)
    # A cached principal is decided in memory: no worker-thread hop (the hop alone costs more
    # than the rest of the request on a loaded machine). Revocation bound: accounts' cache.
    principal = accounts.cached_principal(kind, secret)
    if principal is None:
        method = (accounts.authenticate_api_key if kind == "api_key"
                  else accounts.authenticate_bearer)
        principal = await anyio.to_thread.run_sync(method, secret)
    request.scope.setdefault("state", {})["principal"] = principal  # ``request.state`` wraps it
    return principal


PRINCIPAL = {"principal": Provide(authenticate)}
PrincipalDep = NamedDependency[Principal]


def entitle(principal: Principal, feed: ProductFeed, project: str | None = None,
            namespace: int | None = None) -> None:
    """Raise Forbidden unless the principal's plan covers (feed, project, namespace)."""
    principal.plan.entitlements.check(feed, project, namespace)


def allowed(principal: Principal, feed: ProductFeed, project: str | None = None,
            namespace: int | None = None) -> bool:
    return principal.plan.entitlements.allows(feed, project, namespace)


def _json(value: msgspec.Struct | dict[str, Any], status: int = 200) -> Response[bytes]:
    return Response(ENCODER.encode(value), status_code=status, media_type="application/json",
                    headers={"Cache-Control": "no-store"})


_TOKENS = {**problem_specs(400, 401, 403, 413, 422, 429),
           200: ResponseSpec(TokenPair, description="Tokens", generate_examples=False)}


@post("/login", status_code=200, responses=_TOKENS)
async def login(request: Request[Any, Any, Any], data: JSONBody[LoginBody],
                accounts: Injected[Accounts]) -> Response[bytes]:
    """Body ``{username, password}`` → ``{id_token, access_token, refresh_token,
    expires_in}``. Throttled per username and client address (429 + Retry-After)."""
    client = request.client.host if request.client else None
    tokens = await anyio.to_thread.run_sync(
        partial(accounts.login, data.username.lower(), data.password, client=client))
    return _json(tokens)


@post("/token-refresh", status_code=200, responses=_TOKENS)
async def token_refresh(data: JSONBody[RefreshBody], accounts: Injected[Accounts]
                        ) -> Response[bytes]:
    """Body ``{username, refresh_token}`` → new id and access tokens."""
    tokens = await anyio.to_thread.run_sync(accounts.refresh, data.username.lower(),
                                            data.refresh_token)
    return _json(tokens)


@post("/token-revoke", status_code=204, responses=problem_specs(400, 401, 413, 422))
async def token_revoke(data: JSONBody[RevokeBody], accounts: Injected[Accounts]) -> None:
    """Body ``{refresh_token}``: revokes it and every access token minted from it."""
    await anyio.to_thread.run_sync(accounts.revoke, data.refresh_token)


_APIS = [
    {"path": "/v2/*", "method": "GET"}, {"path": "/v2/*", "method": "POST"},
    {"path": "/v2/*", "method": "HEAD"},
]
_SHOWN: tuple[QuotaName, ...] = ("ondemand_lookups", "snapshot_downloads", "chunk_downloads")


@post("/get-user", status_code=200, dependencies=PRINCIPAL, responses={
    **problem_specs(401, 403, 429),
    200: ResponseSpec(UserInfo, description="The caller and its use", generate_examples=False)})
async def get_user(principal: PrincipalDep, metering: Injected[Metering | None]) -> Response[bytes]:
    quotas = principal.plan.quotas
    counters = None if metering is None else metering.counters
    month = month_of(datetime.now(UTC))

    def counts() -> dict[str, int]:
        if counters is None:
            return dict.fromkeys(_SHOWN, 0)
        return {q: counters.used(principal.customer_id, month, q) for q in _SHOWN}

    used = await anyio.to_thread.run_sync(counts)
    # WME's limits are integers, 0 when no cap is configured; ours: None (no cap) -> 0.
    return _json({
        "username": principal.user or principal.customer_name,
        "customer": principal.customer_name,
        "groups": [principal.plan.name],
        "apis": _APIS,
        "ondemand_requests_count": used["ondemand_lookups"],
        "ondemand_limit": quotas.ondemand_lookups or 0,
        "snapshot_requests_count": used["snapshot_downloads"],
        "snapshot_limit": quotas.snapshot_downloads or 0,
        "chunk_requests_count": used["chunk_downloads"],
        "chunk_limit": quotas.chunk_downloads or 0,
    })


def router() -> Router:
    return Router("/v1", route_handlers=[login, token_refresh, token_revoke, get_user],
                  tags=["auth"])
