"""WME auth endpoints (``/v1/login``, ``/v1/token-refresh``, ``/v1/token-revoke``,
``/v1/get-user``) and the authentication dependency every data endpoint uses.

Credentials: ``Authorization: Bearer <access token | fs_ API key>`` (the bare token without
``Bearer `` too, as WME) or ``X-API-Key: <key>``.
Missing or bad credentials → 401 with ``WWW-Authenticate``; a plan that does not cover the
feed, project or namespace involved → 403 (``entitle``).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, TypeVar

import anyio.to_thread
import msgspec
from litestar import Request, Response, Router, post
from litestar.di import NamedDependency, Provide
from litestar.openapi import ResponseSpec

from feedserver.accounts.models import Principal, TokenPair
from feedserver.api.problems import problem_specs
from feedserver.api.query import ENCODER
from feedserver.api.services import Accounts, Injected
from feedserver.errors import BadRequest, InvalidParameter, Unauthorized
from feedserver.metering.months import month_of
from feedserver.metering.service import Metering
from feedserver.plans import ProductFeed, QuotaName

API_KEY_PREFIX = "fs_"
MAX_CREDENTIAL = 4096
_Body = TypeVar("_Body", bound=msgspec.Struct)


class LoginBody(msgspec.Struct, forbid_unknown_fields=True):
    username: str
    password: str


class RefreshBody(msgspec.Struct, forbid_unknown_fields=True):
    username: str
    refresh_token: str


class RevokeBody(msgspec.Struct, forbid_unknown_fields=True):
    refresh_token: str


def _decode(body: bytes, kind: type[_Body]) -> _Body:
    try:
        value = msgspec.json.decode(body, type=kind)
    except msgspec.ValidationError as exc:
        raise InvalidParameter(f"invalid request body: {exc}") from None
    except msgspec.DecodeError:
        raise BadRequest("request body is not valid JSON") from None
    for name, text in msgspec.structs.asdict(value).items():
        if not 1 <= len(text) <= 255 and name != "refresh_token":
            raise InvalidParameter(f"{name} must be 1 to 255 characters")
        if not 1 <= len(text) <= MAX_CREDENTIAL:
            raise InvalidParameter(f"{name} is too long")
    return value


def credential(request: Request[Any, Any, Any]) -> tuple[str, str]:
    """``("bearer" | "api_key", secret)`` from the headers; raises Unauthorized."""
    auth = request.headers.get("authorization")
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
    key = request.headers.get("x-api-key", "").strip()
    if key:
        if len(key) > MAX_CREDENTIAL:
            raise Unauthorized("invalid credentials")
        return "api_key", key
    raise Unauthorized("authentication required: send 'Authorization: Bearer <token>'")


async def authenticate(request: Request[Any, Any, Any], accounts: Injected[Accounts]) -> Principal:
    """The ``principal`` dependency."""
    kind, secret = credential(request)
    method = (accounts.authenticate_api_key if kind == "api_key"
              else accounts.authenticate_bearer)
    principal = await anyio.to_thread.run_sync(method, secret)
    request.state["principal"] = principal
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


_TOKENS = {**problem_specs(400, 401, 413, 422, 429),
           200: ResponseSpec(TokenPair, description="Tokens", generate_examples=False)}


@post("/login", status_code=200, responses=_TOKENS)
async def login(request: Request[Any, Any, Any], accounts: Injected[Accounts]) -> Response[bytes]:
    """Body ``{username, password}`` → ``{id_token, access_token, refresh_token,
    expires_in}``."""
    body = _decode(await request.body(), LoginBody)
    tokens = await anyio.to_thread.run_sync(accounts.login, body.username.lower(),
                                            body.password)
    return _json(tokens)


@post("/token-refresh", status_code=200, responses=_TOKENS)
async def token_refresh(request: Request[Any, Any, Any], accounts: Injected[Accounts]
                        ) -> Response[bytes]:
    """Body ``{username, refresh_token}`` → new id and access tokens."""
    body = _decode(await request.body(), RefreshBody)
    tokens = await anyio.to_thread.run_sync(accounts.refresh, body.username.lower(),
                                            body.refresh_token)
    return _json(tokens)


@post("/token-revoke", status_code=204, responses=problem_specs(400, 401, 413, 422))
async def token_revoke(request: Request[Any, Any, Any], accounts: Injected[Accounts]) -> None:
    """Body ``{refresh_token}``: revokes it and every access token minted from it."""
    body = _decode(await request.body(), RevokeBody)
    await anyio.to_thread.run_sync(accounts.revoke, body.refresh_token)


_APIS = [
    {"path": "/v2/*", "method": "GET"}, {"path": "/v2/*", "method": "POST"},
    {"path": "/v2/*", "method": "HEAD"},
]
_SHOWN: tuple[QuotaName, ...] = ("ondemand_lookups", "snapshot_downloads", "chunk_downloads")


@post("/get-user", status_code=200, dependencies=PRINCIPAL, responses=problem_specs(401, 429))
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
