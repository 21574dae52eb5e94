"""WME request parameters (``fields``, ``filters``, ``limit``, ``version``) and JSON / NDJSON
rendering.

Every data endpoint takes the same parameters, in the query string (GET) or in a JSON body
(POST). GET: ``fields`` repeated or comma-separated, ``filters`` as a JSON array of
``{"field", "value"}`` objects, ``limit``. Which paths exist is each endpoint's business
(``fields.check_paths``). Filters are exact equality, ANDed; a number
matches its decimal text too (``namespace.identifier`` = ``0`` or ``"0"``).

Nothing is parsed by hand: both forms become the ONE msgspec struct ``Query`` (the body by
decoding, the query string by ``msgspec.convert(..., strict=False)``), whose constrained types
carry the bounds; a value that does not fit is a 422, never an exception further in. Typed query
parameters of single endpoints (``version``) are litestar parameters (``VersionParam``),
declared in the OpenAPI document with their bounds.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Annotated, Any

import msgspec
from litestar import Request, Response
from litestar.params import Parameter
from litestar.types import Receive, Scope, Send

from feedserver.errors import BadRequest, InvalidParameter

MAX_ITEMS = 255
MAX_LIMIT = 100_000
MAX_VERSION = 999_999_999
# WME binds ``limit`` as a plain integer: a negative one is not an error (lists: no limit;
# on-demand: the default, ``ondemand.effective_limit``), so the bound is symmetric.
Limit = Annotated[int, msgspec.Meta(ge=-MAX_LIMIT, le=MAX_LIMIT)]
# litestar drops a ``minimum`` of 0 or 1 from the schema unless it is given explicitly.
VersionParam = Annotated[int | None, Parameter(
    ge=1, le=MAX_VERSION, schema_extra={"minimum": 1},
    description="An older published version (``version_number``); default: the current one")]
NDJSON = "application/x-ndjson"
_PATH = re.compile(r"^[a-z_][a-z0-9_]{0,63}(\.[a-z_][a-z0-9_]{0,63}){0,7}(\.\*)?$")
Scalar = str | int | float | bool


class Filter(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    field: str
    value: Scalar


class Query(msgspec.Struct, frozen=True, kw_only=True):
    """A body's other keys are ignored, as WME's request binding does (the SDK sends one
    ``Request`` shape, ``since``/``parts``/... included, to every endpoint)."""

    fields: list[str] = msgspec.field(default_factory=list)
    filters: list[Filter] = msgspec.field(default_factory=list)
    limit: Limit | None = None


_QUERY_DECODER = msgspec.json.Decoder(Query)
ENCODER = msgspec.json.Encoder()


def _check(query: Query) -> Query:
    if len(query.fields) > MAX_ITEMS or len(query.filters) > MAX_ITEMS:
        raise InvalidParameter(f"at most {MAX_ITEMS} fields and {MAX_ITEMS} filters")
    for path in [*query.fields, *(f.field for f in query.filters)]:
        if not _PATH.match(path):
            raise InvalidParameter(f"invalid field path {path[:80]!r}")
    for f in query.filters:
        if f.field.endswith(".*"):
            raise InvalidParameter(f"cannot filter on an object: {f.field!r}")
    return query


def from_body(body: bytes) -> Query:
    """A POST body (empty means defaults). Bad JSON → 400; wrong shape → 422."""
    if not body.strip():
        return Query()
    try:
        return _check(_QUERY_DECODER.decode(body))
    except msgspec.ValidationError as exc:
        raise InvalidParameter(f"invalid request body: {exc}") from None
    except msgspec.DecodeError as exc:
        raise BadRequest(f"request body is not valid JSON: {exc}") from None


def from_params(params: Mapping[str, Sequence[str]]) -> Query:
    """GET query parameters (a multi-dict as ``{name: [values]}``)."""
    fields = [f.strip() for raw in params.get("fields", ()) for f in raw.split(",") if f.strip()]
    filters: list[Any] = []
    for raw in params.get("filters", ()):
        try:
            decoded = msgspec.json.decode(raw)
        except msgspec.DecodeError:
            raise BadRequest('filters must be a JSON array of {"field", "value"}') from None
        if not isinstance(decoded, list):
            raise InvalidParameter('filters must be a JSON array of {"field", "value"}')
        filters.extend(decoded)
    raw_query: dict[str, Any] = {"fields": fields, "filters": filters}
    if params.get("limit"):
        raw_query["limit"] = params["limit"][-1]
    try:
        # strict=False: "12" becomes 12 by msgspec's own rules ("²", " 1", "1e3" are refused).
        return _check(msgspec.convert(raw_query, Query, strict=False))
    except msgspec.ValidationError as exc:
        raise InvalidParameter(f"invalid parameters: {exc}") from None


async def read_query(request: Request[Any, Any, Any]) -> Query:
    if request.method == "POST":
        return from_body(await request.body())
    if not request.scope["query_string"]:
        return Query()  # the defaults, without building a multi-dict of nothing
    params = {k: list(v) for k, v in request.query_params.dict().items()}
    return from_params(params)


def lookup(obj: Any, path: str) -> Any:
    for part in path.split("."):
        if not isinstance(obj, dict):
            return None
        obj = obj.get(part)
    return obj


def _norm(value: Any) -> str | None:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | int | float):
        return str(value)
    return None


def matches(obj: Mapping[str, Any], filters: Iterable[Filter]) -> bool:
    for f in filters:
        have = lookup(obj, f.field)
        if have is None or isinstance(have, dict | list) or _norm(have) != _norm(f.value):
            return False
    return True


def project(obj: Mapping[str, Any], fields: Sequence[str]) -> dict[str, Any]:
    """Only the requested dot paths (``a.b``, ``a.*``); missing ones are left out."""
    if not fields:
        return dict(obj)
    out: dict[str, Any] = {}
    for path in fields:
        parts = path.removesuffix(".*").split(".")
        src: Any = obj
        for part in parts:
            if not isinstance(src, dict) or part not in src:
                break
            src = src[part]
        else:  # the whole path exists: copy it, creating only the objects on its way
            dst = out
            for part in parts[:-1]:
                nxt = dst.setdefault(part, {})
                if not isinstance(nxt, dict):
                    break
                dst = nxt
            else:
                dst[parts[-1]] = src
    return out


def header(request: Request[Any, Any, Any], name: bytes) -> str | None:
    """The first ``name`` header (lower case, as ASGI gives them), read from the scope:
    ``request.headers`` builds a multi-dict of every header first."""
    for key, value in request.scope["headers"]:
        if key == name:
            return bytes(value).decode("latin-1")
    return None


def wants_ndjson(request: Request[Any, Any, Any]) -> bool:
    return NDJSON in (header(request, b"accept") or "")


def select(items: Iterable[Any], query: Query) -> list[dict[str, Any]]:
    """Filter then project structs or dicts (as JSON-ready dicts), at most ``query.limit``."""
    limit = query.limit if query.limit is not None and query.limit >= 0 else None  # <0: none
    out: list[dict[str, Any]] = []
    for item in items:
        if limit is not None and len(out) >= limit:
            break
        data = item if isinstance(item, dict) else msgspec.to_builtins(item)
        if matches(data, query.filters):
            out.append(project(data, query.fields))
    return out


def encode_list(request: Request[Any, Any, Any], items: Sequence[Any]) -> tuple[bytes, str]:
    """``items`` as the body the client asked for (NDJSON or a JSON array), and its media
    type."""
    if wants_ndjson(request):
        return b"".join(ENCODER.encode(item) + b"\n" for item in items), NDJSON
    return ENCODER.encode(items), "application/json"


def render_list(request: Request[Any, Any, Any], items: Sequence[Any],
                headers: Mapping[str, str] | None = None) -> Response[bytes]:
    body, media_type = encode_list(request, list(items))  # any iterable the caller has
    return Response(body, media_type=media_type, headers=dict(headers or {}))


class EncodedResponse:
    """A 200 whose body is already encoded, as the ASGI app litestar sends: a handler returning
    it skips litestar's ``Response`` -> ``ASGIResponse`` step and its header multi-dict (the
    route's layers add no headers or cookies). ``headers`` come first, as litestar sends them."""

    __slots__ = ("body", "headers")

    def __init__(self, body: bytes, media_type: str, headers: Mapping[str, str]) -> None:
        self.body = body
        self.headers = [*((k.encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()),
                        (b"content-type", media_type.encode("latin-1")),
                        (b"content-length", b"%d" % len(body))]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": self.headers})
        await send({"type": "http.response.body", "body": self.body, "more_body": False})


def encoded_list(request: Request[Any, Any, Any], items: Sequence[Any],
                 headers: Mapping[str, str]) -> EncodedResponse:
    """``render_list`` as an ``EncodedResponse``."""
    return EncodedResponse(*encode_list(request, items), headers)


def render_one(item: Any, headers: Mapping[str, str] | None = None) -> Response[bytes]:
    return Response(ENCODER.encode(item), media_type="application/json",
                    headers=dict(headers or {}))
