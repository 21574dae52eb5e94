"""Account records: customers, users, API keys, principals, tokens.

A customer pays for a ``feedserver.plans.Plan`` (stored by name); a ``Principal`` carries the
caller's plan. New fields are only appended, with defaults, so stored records keep decoding.
"""

from __future__ import annotations

import msgspec

from feedserver.plans import Entitlements, Plan


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
