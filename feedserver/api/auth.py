"""WME auth endpoints (``/v1/login``, ``/v1/token-refresh``, ``/v1/token-revoke``,
``/v1/get-user``) and the authentication dependency every data endpoint uses.

Credentials: ``Authorization: Bearer <access token | fs_ API key>`` (the bare token without
``Bearer `` too, as WME) or ``X-API-Key: <key>``.
Missing or bad credentials → 401 with ``WWW-Authenticate``; a plan that does not cover the
feed, project or namespace involved → 403 (``entitle``).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

import msgspec
from litestar import Request, Response, Router, post
from litestar.di import NamedDependency, Provide
from litestar.openapi import ResponseSpec
from litestar.params import JSONBody

from feedserver.accounts.models import TokenPair
from feedserver.api.cors import cors_middleware
from feedserver.api.problems import problem_specs
from feedserver.api.query import ENCODER
from feedserver.api.services import Principal, Services, call, services_of
from feedserver.errors import Forbidden, Unauthorized
from feedserver.metering.plans import month_of, plan_terms

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


async def authenticate(request: Request[Any, Any, Any]) -> Principal:
    """The ``principal`` dependency."""
    svc = services_of(request)
    if svc.accounts is None:
        raise Unauthorized("no accounts service configured")
    kind, secret = credential(request)
    method = (svc.accounts.authenticate_api_key if kind == "api_key"
              else svc.accounts.authenticate_bearer)
    principal: PrincipalDep | None = await call(method, secret)
    if principal is None:
        raise Unauthorized("invalid credentials")
    request.state["principal"] = principal
    return principal


PRINCIPAL = {"principal": Provide(authenticate)}
PrincipalDep = NamedDependency[Principal]


def entitle(principal: PrincipalDep, feed: str, project: str | None = None,
            namespace: int | None = None) -> None:
    """Raise Forbidden unless the principal's plan covers (feed, project, namespace)."""
    plan = principal.plan
    if plan is None:
        if getattr(principal, "is_admin", False):
            return
        raise Forbidden("no plan: access to this feed is not included")
    checker = getattr(plan, "check", None) or getattr(
        getattr(plan, "entitlements", None), "check", None)
    if checker is None:
        raise Forbidden("plan has no entitlements")
    checker(feed, project, namespace)


def allowed(principal: PrincipalDep, feed: str, project: str | None = None,
            namespace: int | None = None) -> bool:
    try:
        entitle(principal, feed, project, namespace)
    except Forbidden:
        return False
    return True


def _json(value: Any, status: int = 200) -> Response[bytes]:
    data = value if isinstance(value, dict) else msgspec.to_builtins(value)
    return Response(ENCODER.encode(data), status_code=status, media_type="application/json",
                    headers={"Cache-Control": "no-store"})


def _accounts(request: Request[Any, Any, Any]) -> Any:
    svc = services_of(request)
    if svc.accounts is None:
        raise Unauthorized("no accounts service configured")
    return svc.accounts


_TOKENS = {**problem_specs(400, 401, 403, 413, 422, 429),
           200: ResponseSpec(TokenPair, description="Tokens", generate_examples=False)}


@post("/login", status_code=200, responses=_TOKENS)
async def login(request: Request[Any, Any, Any], data: JSONBody[LoginBody]) -> Response[bytes]:
    """Body ``{username, password}`` → ``{id_token, access_token, refresh_token,
    expires_in}``. Throttled per username and client address (429 + Retry-After)."""
    body = data
    client = request.client.host if request.client else None
    tokens = await call(_accounts(request).login, body.username.lower(), body.password,
                        client=client)
    return _json(tokens)


@post("/token-refresh", status_code=200, responses=_TOKENS)
async def token_refresh(request: Request[Any, Any, Any], data: JSONBody[RefreshBody]
                        ) -> Response[bytes]:
    """Body ``{username, refresh_token}`` → new id and access tokens."""
    tokens = await call(_accounts(request).refresh, data.username.lower(), data.refresh_token)
    return _json(tokens)


@post("/token-revoke", status_code=204, responses=problem_specs(400, 401, 413, 422))
async def token_revoke(request: Request[Any, Any, Any], data: JSONBody[RevokeBody]) -> None:
    """Body ``{refresh_token}``: revokes it and every access token minted from it."""
    await call(_accounts(request).revoke, data.refresh_token)


_APIS = [
    {"path": "/v2/*", "method": "GET"}, {"path": "/v2/*", "method": "POST"},
    {"path": "/v2/*", "method": "HEAD"},
]


def _used(svc: Services, customer_id: str, quota: str) -> int:
    counters = svc.counters
    if counters is None:
        return 0
    return int(counters.used(customer_id, month_of(datetime.now(UTC)), quota))


@post("/get-user", status_code=200, dependencies=PRINCIPAL, responses={
    **problem_specs(401, 403, 429),
    200: ResponseSpec(UserInfo, description="The caller and its use", generate_examples=False)})
async def get_user(request: Request[Any, Any, Any], principal: PrincipalDep) -> Response[bytes]:
    svc = services_of(request)
    quotas = plan_terms(principal.plan).quotas
    cid = principal.customer_id

    def counts() -> dict[str, int]:
        return {q: _used(svc, cid, q) for q in
                ("ondemand_lookups", "snapshot_downloads", "chunk_downloads")}

    used = await call(counts)
    plan_name = getattr(principal.plan, "name", None)
    # WME's limits are integers, 0 when no cap is configured; ours: None (no cap) -> 0.
    return _json({
        "username": getattr(principal, "user", None) or getattr(principal, "customer_name", ""),
        "customer": getattr(principal, "customer_name", cid),
        "groups": [plan_name] if plan_name else [],
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
                  middleware=[cors_middleware],
                  tags=["auth"])
