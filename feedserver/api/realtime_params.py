"""Parameters of the realtime stream (``/v2/articles``) and where they make it start.

Parsing and WME's validation rules are pure (``parse_params``); ``start_positions`` asks the
event log only for what times map to. Positions are ``{partition: next offset}`` (inclusive on
resume, as WME); an SSE ``Last-Event-ID`` is the same map written ``p:o,p:o`` and wins over the
body for the partitions it names (a browser reconnects with the original URL plus that header).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Annotated, Any

import msgspec
from litestar import Request

from feedserver.api.fields import ARTICLE_PATHS, check_paths
from feedserver.api.query import Filter, Query, from_body, from_params
from feedserver.errors import BadRequest, InvalidParameter
from feedserver.feeds.realtime.hub import PARTS, Positions, partitions_of_parts
from feedserver.identifiers import ascii_index
from feedserver.storage.eventlog import EventLog

MAX_ID = 4096


# Offsets are positions in a topic partition: an int64 at most (they go to the database).
Offset = Annotated[int, msgspec.Meta(ge=0, le=2**63 - 1)]


class StreamBody(msgspec.Struct, frozen=True, kw_only=True):
    """The stream's parameters; other keys (the SDK's ``limit``) are ignored, as by WME."""

    parts: list[int] | None = None
    offsets: dict[str, Offset] | None = None
    since: datetime | None = None
    since_per_partition: dict[str, datetime] | None = None
    fields: list[str] = msgspec.field(default_factory=list)
    filters: list[Filter] = msgspec.field(default_factory=list)


class StreamParams(msgspec.Struct, frozen=True, kw_only=True):
    parts: list[int] | None
    offsets: dict[int, int]
    since: datetime | None
    since_per_partition: dict[int, datetime]
    query: Query
    last_event_id: dict[int, int]


_BODY = msgspec.json.Decoder(StreamBody)


def _partition_key(key: str, what: str) -> int:
    value = ascii_index(key)  # str.isdigit() accepts "²", which int() then refuses
    if value is None or value > 999_999:
        raise InvalidParameter(f"{what}: partition keys must be non-negative integers, "
                               f"not {key[:20]!r}")
    return value


def _aware(dt: datetime, what: str, now: datetime) -> datetime:
    dt = dt if dt.tzinfo is not None else dt.replace(tzinfo=UTC)
    if dt > now:
        raise InvalidParameter(f"{what} may not be in the future", parameter=what)
    return dt


def parse_last_event_id(raw: str | None) -> dict[int, int]:
    """``"0:12,3:7"`` → ``{0: 12, 3: 7}``; anything else is a 422."""
    if not raw:
        return {}
    if len(raw) > MAX_ID:
        raise InvalidParameter("Last-Event-ID is too long")
    out: dict[int, int] = {}
    for piece in raw.split(","):
        p, sep, o = piece.strip().partition(":")
        part, offset = ascii_index(p), ascii_index(o)
        if not sep or part is None or offset is None or part > 999_999:
            raise InvalidParameter("Last-Event-ID must look like 'partition:offset,...'")
        out[part] = offset
    return out


def check(body: StreamBody, last_event_id: str | None = None,
          now: datetime | None = None) -> StreamParams:
    """WME's rules: parts in 0..9; no ``since`` with ``parts``; a partition has an offset or a
    time, not both; offsets >= 0; times not in the future."""
    now = now or datetime.now(UTC)
    if body.parts is not None:
        if not body.parts or any(not 0 <= p < PARTS for p in body.parts):
            raise InvalidParameter(f"parts must be integers in 0..{PARTS - 1}", parameter="parts")
        if body.since is not None:
            raise InvalidParameter("with parts, use offsets or since_per_partition, not since",
                                   parameter="since")
    offsets = {_partition_key(k, "offsets"): v for k, v in (body.offsets or {}).items()}
    if any(v < 0 for v in offsets.values()):
        raise InvalidParameter("offsets must be >= 0", parameter="offsets")
    per = {_partition_key(k, "since_per_partition"): _aware(v, "since_per_partition", now)
           for k, v in (body.since_per_partition or {}).items()}
    both = sorted(set(offsets) & set(per))
    if both:
        raise InvalidParameter(f"partition {both[0]} has both an offset and a time",
                               parameter="offsets")
    since = _aware(body.since, "since", now) if body.since is not None else None
    query = check_paths(
        from_body(msgspec.json.encode({"fields": body.fields, "filters": body.filters})),
        ARTICLE_PATHS, wildcard_objects=True)
    return StreamParams(parts=None if body.parts is None else sorted(set(body.parts)),
                        offsets=offsets, since=since, since_per_partition=per, query=query,
                        last_event_id=parse_last_event_id(last_event_id))


def _json_param(params: Mapping[str, Sequence[str]], name: str) -> Any:
    raw = params.get(name)
    if not raw:
        return None
    try:
        return msgspec.json.decode(raw[-1])
    except msgspec.DecodeError:
        raise BadRequest(f"{name} must be JSON") from None


def body_from_params(params: Mapping[str, Sequence[str]]) -> StreamBody:
    """GET: ``parts`` repeated or comma-separated; ``offsets`` / ``since_per_partition`` as
    JSON objects; ``since`` RFC 3339; ``fields`` / ``filters`` as for every endpoint."""
    query = from_params({k: v for k, v in params.items() if k in ("fields", "filters")})
    raw: dict[str, Any] = {"fields": query.fields,
                           "filters": msgspec.to_builtins(query.filters)}
    if params.get("parts"):
        # Strings: msgspec.convert below turns each into an int by its own rules.
        raw["parts"] = [piece for item in params["parts"] for piece in item.split(",")]
    for name in ("offsets", "since_per_partition"):
        value = _json_param(params, name)
        if value is not None:
            raw[name] = value
    if params.get("since"):
        raw["since"] = params["since"][-1]
    try:
        return msgspec.convert(raw, StreamBody, strict=False)
    except msgspec.ValidationError as exc:
        raise InvalidParameter(f"invalid parameters: {exc}") from None


async def read_params(request: Request[Any, Any, Any]) -> StreamParams:
    """From the JSON body (POST, or a GET carrying one, as WME's Go SDK sends), else from
    the query string."""
    data = await request.body()
    if request.method == "POST" or data.strip():
        try:
            body = _BODY.decode(data) if data.strip() else StreamBody()
        except msgspec.ValidationError as exc:
            raise InvalidParameter(f"invalid request body: {exc}") from None
        except msgspec.DecodeError as exc:
            raise BadRequest(f"request body is not valid JSON: {exc}") from None
    else:
        body = body_from_params({k: list(v) for k, v in request.query_params.dict().items()})
    return check(body, request.headers.get("last-event-id"))


async def start_positions(params: StreamParams, tail: Positions, event_log: EventLog,
                          topic: str) -> Positions:
    """Per chosen partition: Last-Event-ID, else offset, else time, else the tail. Keys of
    partitions outside the chosen parts are dropped silently (as WME)."""
    count = len(tail)
    chosen = (partitions_of_parts(params.parts, count) if params.parts is not None
              else sorted(tail))
    positions = {p: tail[p] for p in chosen if p in tail}
    by_time: dict[datetime, dict[int, int]] = {}
    for when in {*params.since_per_partition.values(),
                 *([params.since] if params.since else [])}:
        by_time[when] = await event_log.offsets_for_times(topic, int(when.timestamp() * 1000))
    for p in positions:
        if p in params.last_event_id:
            positions[p] = params.last_event_id[p]
        elif p in params.offsets:
            positions[p] = params.offsets[p]
        elif p in params.since_per_partition:
            positions[p] = by_time[params.since_per_partition[p]].get(p, tail[p])
        elif params.since is not None:
            positions[p] = by_time[params.since].get(p, tail[p])
    return positions
