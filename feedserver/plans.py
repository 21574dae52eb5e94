"""One plan model: what a customer buys and the terms metering applies (pure: no I/O).

A ``Plan`` names the feeds, projects and namespaces it covers (``Entitlements``), monthly
``Quotas``, the request ``RateLimit`` and ``Prices``. Accounts store plans (as JSON, through
``encode_plan`` / ``load_stored_plan``), the API checks entitlements, metering admits requests
against the quotas and rate limit and prices the usage: all of them read this one model.

Entitlements parse snapshot identifiers (``{wiki}_namespace_{ns}``) with the one rule every
edge uses (``feedserver.identifiers``). New plan fields are only appended, with defaults, so
stored plans keep decoding.
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Literal

import msgspec

from feedserver.errors import Forbidden, InvalidIdentifier, InvalidParameter
from feedserver.identifiers import parse_snapshot_identifier

# --- feeds and quotas ------------------------------------------------------------------------

# What a plan sells (its ``feeds``, checked by ``Entitlements``). ``structured_contents``
# covers both Structured Contents endpoints: on-demand lookups and their snapshots.
ProductFeed = Literal["snapshots", "diffs", "ondemand", "realtime", "batches",
                      "structured_contents"]
# What usage is recorded and admitted under: the products, plus chunk downloads (billed
# under snapshots), the auth endpoints and the metadata lists.
Feed = Literal[ProductFeed, "chunks", "auth", "metadata"]
PRODUCT_FEEDS: tuple[ProductFeed, ...] = (
    "snapshots", "diffs", "ondemand", "realtime", "batches", "structured_contents")
FEEDS: tuple[Feed, ...] = (*PRODUCT_FEEDS, "chunks", "auth", "metadata")

# Download formats a plan may sell beside a feed's canonical zstd NDJSON (which comes with the
# feed itself): a plan's ``formats`` (None: every format this server publishes).
Format = Literal["parquet"]
FORMATS: tuple[Format, ...] = ("parquet",)
FORMAT_NAMES: dict[Format, str] = {"parquet": "Parquet"}

QuotaName = Literal["snapshot_downloads", "chunk_downloads", "bytes", "ondemand_lookups"]
QUOTAS: tuple[QuotaName, ...] = (
    "snapshot_downloads", "chunk_downloads", "bytes", "ondemand_lookups"
)

# --- the model -------------------------------------------------------------------------------


class Quotas(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Monthly caps; ``None`` is unlimited."""

    snapshot_downloads: int | None = None
    chunk_downloads: int | None = None
    bytes: int | None = None
    ondemand_lookups: int | None = None

    def limit(self, name: QuotaName) -> int | None:
        if name == "snapshot_downloads":
            return self.snapshot_downloads
        if name == "chunk_downloads":
            return self.chunk_downloads
        if name == "bytes":
            return self.bytes
        return self.ondemand_lookups


class RateLimit(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    requests_per_second: float = 0.0  # 0: not limited
    burst: int = 1


class Prices(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    per_gb_egress: Decimal = Decimal(0)
    per_1000_lookups: Decimal = Decimal(0)
    per_stream_hour: Decimal = Decimal(0)
    monthly_base_fee: Decimal = Decimal(0)
    currency: str = "USD"


class Entitlements(msgspec.Struct, frozen=True, kw_only=True):
    """What a plan may read: feeds, projects (wiki dbnames or ``*``), namespaces (None = all)."""

    feeds: tuple[ProductFeed, ...]
    projects: tuple[str, ...] = ("*",)
    namespaces: tuple[int, ...] | None = None
    formats: tuple[Format, ...] | None = None  # None: every format

    def check(self, feed: ProductFeed, project: str | None = None,
              namespace: int | None = None) -> None:
        """Raise ``Forbidden`` naming what the plan does not include."""
        if feed not in self.feeds:
            raise Forbidden(f"your plan does not include the {feed} feed", feed=feed)
        if project is not None and "*" not in self.projects and project not in self.projects:
            raise Forbidden(f"your plan does not include project {project!r}", project=project)
        if namespace is not None and self.namespaces is not None \
                and namespace not in self.namespaces:
            raise Forbidden(
                f"your plan does not include namespace {namespace}", namespace=namespace
            )

    def check_format(self, fmt: Format) -> None:
        """Raise ``Forbidden`` unless the plan sells downloads in ``fmt``."""
        if self.formats is not None and fmt not in self.formats:
            raise Forbidden(f"your plan does not include {FORMAT_NAMES[fmt]} downloads "
                            "(the zstd NDJSON of the same data is included)", format=fmt)

    def allows(self, feed: ProductFeed, project: str | None = None,
               namespace: int | None = None) -> bool:
        try:
            self.check(feed, project, namespace)
        except Forbidden:
            return False
        return True

    def snapshot_allowed(self, identifier: str, feed: ProductFeed = "snapshots") -> bool:
        """Whether ``{wiki}_namespace_{n}`` may be listed/downloaded (pure; for filtering lists)."""
        wiki, namespace = parse_snapshot_identifier(identifier)
        return self.allows(feed, wiki, namespace)

    def check_snapshot(self, identifier: str, feed: ProductFeed = "snapshots") -> None:
        wiki, namespace = parse_snapshot_identifier(identifier)
        self.check(feed, wiki, namespace)


class Plan(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    name: str
    description: str = ""
    feeds: list[ProductFeed] = msgspec.field(default_factory=list)
    projects: list[str] = msgspec.field(default_factory=lambda: ["*"])
    namespaces: list[int] | None = None
    quotas: Quotas = Quotas()
    rate_limit: RateLimit = RateLimit()
    prices: Prices = Prices()
    max_streams: int | None = None  # open realtime streams at once per customer; None: no cap
    # Formats beside zstd NDJSON (``FORMATS``) the plan's downloads may use; None: every one.
    formats: list[Format] | None = None

    @property
    def entitlements(self) -> Entitlements:
        return Entitlements(
            feeds=tuple(self.feeds),
            projects=tuple(self.projects),
            namespaces=None if self.namespaces is None else tuple(self.namespaces),
            formats=None if self.formats is None else tuple(self.formats),
        )


# The terms of usage no plan covers (metering without accounts, unknown customers in
# reports): no quotas, no rate limit, no prices.
UNLIMITED = Plan(name="unlimited")

# --- validation and storage ------------------------------------------------------------------

_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")
_PROJECT = re.compile(r"^(\*|[a-z0-9_]{1,64})$")


def check_plan_name(name: str) -> str:
    if not _NAME.match(name):
        raise InvalidIdentifier(
            f"plan name must be 1-64 of a-z 0-9 _ . - (starting alphanumeric), got {name!r}",
            name=name,
        )
    return name


def validate_plan(plan: Plan) -> Plan:
    """Reject plans that would decode but make no sense (negative quotas, unknown projects)."""
    check_plan_name(plan.name)
    if len(set(plan.feeds)) != len(plan.feeds):
        raise InvalidParameter("plan feeds must not repeat", parameter="feeds")
    if not plan.projects:
        raise InvalidParameter("plan projects must not be empty (use [\"*\"] for all)",
                               parameter="projects")
    for project in plan.projects:
        if not _PROJECT.match(project):
            raise InvalidParameter(f"invalid project {project!r} in plan", parameter="projects")
    if plan.formats is not None and len(set(plan.formats)) != len(plan.formats):
        raise InvalidParameter("plan formats must not repeat", parameter="formats")
    if plan.namespaces is not None and any(n < 0 for n in plan.namespaces):
        raise InvalidParameter("plan namespaces must be >= 0", parameter="namespaces")
    for quota in QUOTAS:
        limit = plan.quotas.limit(quota)
        if limit is not None and limit < 0:
            raise InvalidParameter(f"quota {quota} must be >= 0 or null", parameter=quota)
    if plan.rate_limit.requests_per_second < 0 or plan.rate_limit.burst < 1:
        raise InvalidParameter("rate_limit needs requests_per_second >= 0 and burst >= 1",
                               parameter="rate_limit")
    if plan.max_streams is not None and plan.max_streams < 1:
        raise InvalidParameter("max_streams must be >= 1 or null (no cap); leave realtime out "
                               "of the plan's feeds to allow none", parameter="max_streams")
    prices = plan.prices
    for name, price in (("per_gb_egress", prices.per_gb_egress),
                        ("per_1000_lookups", prices.per_1000_lookups),
                        ("per_stream_hour", prices.per_stream_hour),
                        ("monthly_base_fee", prices.monthly_base_fee)):
        if not price.is_finite() or price < 0:
            raise InvalidParameter(f"price {name} must be >= 0", parameter=name)
    return plan


def decode_plan(raw: bytes | str, *, name: str | None = None) -> Plan:
    """A plan from JSON (as ``plans create --from-json`` reads it); ``name`` fills a missing one."""
    try:
        data = msgspec.json.decode(raw)
    except msgspec.DecodeError as exc:
        raise InvalidParameter(f"plan is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise InvalidParameter("plan JSON must be an object")
    if name is not None and data.setdefault("name", name) != name:
        raise InvalidParameter(
            f"plan JSON names {data['name']!r} but the command names {name!r}",
            parameter="name",
        )
    try:
        plan = msgspec.convert(data, Plan)
    except msgspec.ValidationError as exc:
        raise InvalidParameter(f"invalid plan: {exc}") from exc
    return validate_plan(plan)


def encode_plan(plan: Plan) -> bytes:
    return msgspec.json.encode(plan)


def load_stored_plan(raw: bytes | str) -> Plan:
    """A plan as stored by us (trusted, already validated)."""
    return msgspec.json.decode(raw, type=Plan)
