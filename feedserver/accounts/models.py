"""Account records: customers, users, plans and their entitlements, API keys, principals, tokens.

``Plan`` is stored as JSON; its ``quotas``, ``rate_limit`` and ``prices`` field names are the
ones ``feedserver.metering.plans.plan_terms`` reads. New fields are only appended, with
defaults, so stored plans keep decoding.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Literal

import msgspec

from feedserver.errors import Forbidden
from feedserver.identifiers import parse_snapshot_identifier as parse_snapshot_identifier

Feed = Literal["snapshots", "diffs", "ondemand", "realtime", "batches"]
FEEDS: tuple[Feed, ...] = ("snapshots", "diffs", "ondemand", "realtime", "batches")


class Quotas(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Monthly caps; ``None`` is unlimited."""

    snapshot_downloads: int | None = None
    chunk_downloads: int | None = None
    bytes: int | None = None
    ondemand_lookups: int | None = None


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

    feeds: tuple[Feed, ...]
    projects: tuple[str, ...] = ("*",)
    namespaces: tuple[int, ...] | None = None

    def check(self, feed: Feed, project: str | None = None, namespace: int | None = None) -> None:
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

    def allows(self, feed: Feed, project: str | None = None, namespace: int | None = None) -> bool:
        try:
            self.check(feed, project, namespace)
        except Forbidden:
            return False
        return True

    def snapshot_allowed(self, identifier: str, feed: Feed = "snapshots") -> bool:
        """Whether ``{wiki}_namespace_{n}`` may be listed/downloaded (pure; for filtering lists)."""
        wiki, namespace = parse_snapshot_identifier(identifier)
        return self.allows(feed, wiki, namespace)

    def check_snapshot(self, identifier: str, feed: Feed = "snapshots") -> None:
        wiki, namespace = parse_snapshot_identifier(identifier)
        self.check(feed, wiki, namespace)


class Plan(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    name: str
    description: str = ""
    feeds: list[Feed] = msgspec.field(default_factory=list)
    projects: list[str] = msgspec.field(default_factory=lambda: ["*"])
    namespaces: list[int] | None = None
    quotas: Quotas = Quotas()
    rate_limit: RateLimit = RateLimit()
    prices: Prices = Prices()
    max_streams: int | None = None  # open realtime streams at once per customer; None: no cap

    @property
    def entitlements(self) -> Entitlements:
        return Entitlements(
            feeds=tuple(self.feeds),
            projects=tuple(self.projects),
            namespaces=None if self.namespaces is None else tuple(self.namespaces),
        )


class Customer(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    name: str
    plan: str
    disabled: bool = False
    created_at: int = 0  # unix seconds
    stripe_customer_id: str = ""  # for usage exports to Stripe; empty: not mapped


class User(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    username: str
    customer_id: str
    is_admin: bool = False
    disabled: bool = False
    created_at: int = 0


class ApiKey(msgspec.Struct, frozen=True, kw_only=True):
    """The public record of a key; the secret is shown once at creation and never stored."""

    id: str
    prefix: str
    customer_id: str
    name: str = ""
    created_at: int = 0
    expires_at: int | None = None  # set when rotated with a grace period
    revoked_at: int | None = None
    last_used_at: int | None = None

    def active(self, now: float) -> bool:
        return self.revoked_at is None and (self.expires_at is None or self.expires_at > now)


class Principal(msgspec.Struct, frozen=True, kw_only=True):
    """Who is calling: what every request handler sees after authentication."""

    customer_id: str
    customer_name: str
    user: str | None  # username; None when authenticated with an API key
    api_key_id: str | None
    is_admin: bool
    plan: Plan

    @property
    def entitlements(self) -> Entitlements:
        return self.plan.entitlements


class TokenPair(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """The WME ``/v1/login`` reply; ``/v1/token-refresh`` has no ``refresh_token``."""

    id_token: str
    access_token: str
    expires_in: int
    refresh_token: str | None = None
