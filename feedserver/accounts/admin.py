"""Account administration: customers, users, plans and API keys (what the admin CLI drives).

``Accounts`` (``service.py``) extends this with authentication; both share one database, one
clock and one principal cache, which every change that affects authentication clears.
"""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Callable

from feedserver.accounts import keys, repository, schema
from feedserver.accounts.cache import TTLCache
from feedserver.accounts.models import ApiKey, Customer, Principal, User
from feedserver.accounts.passwords import Passwords
from feedserver.accounts.plans import BUILTIN_PLANS, DEFAULT_PLAN
from feedserver.accounts.tokens import digest
from feedserver.errors import Conflict, InvalidIdentifier, InvalidParameter, NotFound
from feedserver.plans import Plan, validate_plan
from feedserver.storage.db import Database

_CUSTOMER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 _.@&-]{0,99}$")
_STRIPE_CUSTOMER = re.compile(r"^cus_[A-Za-z0-9]{1,250}$")
_USERNAME = re.compile(r"^[a-z0-9][a-z0-9_.@+-]{0,254}$")

Clock = Callable[[], float]


def _id(kind: str) -> str:
    return f"{kind}_{secrets.token_hex(8)}"


def normalise_username(username: str) -> str:
    """WME usernames are lowercase; accept any case at the door and store lowercase."""
    return username.strip().lower()


class AccountAdmin:
    def __init__(self, db: Database, *, clock: Clock = time.time,
                 passwords: Passwords | None = None, cache_seconds: float = 2.0) -> None:
        self.db = db
        self.clock = clock
        self.passwords = passwords or Passwords()
        # Principals by refresh token id (access tokens) and by key prefix (with the secret's
        # hash, re-checked on every hit).
        self.token_cache: TTLCache[Principal] = TTLCache(cache_seconds)
        self.key_cache: TTLCache[tuple[str, Principal]] = TTLCache(cache_seconds)
        schema.migrate(db)
        now = self._now()
        for plan in BUILTIN_PLANS:
            # Seeded once: an operator's later edit to a built-in plan is never overwritten.
            repository.insert_plan(db, plan, now, builtin=True, if_absent=True)

    def _now(self) -> int:
        return int(self.clock())

    def _forget_principals(self) -> None:
        self.token_cache.clear()
        self.key_cache.clear()

    # --- plans -------------------------------------------------------------------------------
    def list_plans(self) -> list[Plan]:
        return repository.list_plans(self.db)

    def get_plan(self, name: str) -> Plan:
        return repository.get_plan(self.db, name)

    def create_plan(self, plan: Plan) -> Plan:
        repository.insert_plan(self.db, validate_plan(plan), self._now())
        return plan

    # --- customers ---------------------------------------------------------------------------
    def create_customer(self, name: str, plan: str = DEFAULT_PLAN) -> Customer:
        if not _CUSTOMER_NAME.match(name):
            raise InvalidIdentifier(
                f"customer name must be 1-100 of letters, digits, space _ . @ & - "
                f"(starting alphanumeric), got {name!r}", name=name,
            )
        self.get_plan(plan)  # NotFound with the plan's name rather than a foreign-key error
        customer = Customer(id=_id("cus"), name=name, plan=plan, created_at=self._now())
        repository.insert_customer(self.db, customer)
        return customer

    def get_customer(self, name: str) -> Customer:
        return repository.get_customer(self.db, name)

    def list_customers(self) -> list[Customer]:
        return repository.list_customers(self.db)

    def set_plan(self, customer_name: str, plan: str) -> Customer:
        customer = self.get_customer(customer_name)
        self.get_plan(plan)
        repository.update_customer(self.db, customer.id, plan=plan)
        self._forget_principals()
        return self.get_customer(customer_name)

    def set_stripe_customer(self, customer_name: str, stripe_customer_id: str) -> Customer:
        """Map a customer to its Stripe customer (``cus_...``; empty: unmap) for exports."""
        if stripe_customer_id and not _STRIPE_CUSTOMER.match(stripe_customer_id):
            raise InvalidIdentifier(f"not a Stripe customer id: {stripe_customer_id!r}",
                                    stripe_customer_id=stripe_customer_id)
        customer = self.get_customer(customer_name)
        repository.update_customer(self.db, customer.id, stripe_customer_id=stripe_customer_id)
        return self.get_customer(customer_name)

    def set_disabled(self, customer_name: str, disabled: bool = True) -> Customer:
        customer = self.get_customer(customer_name)
        repository.update_customer(self.db, customer.id, disabled=int(disabled))
        self._forget_principals()
        return self.get_customer(customer_name)

    # --- users -------------------------------------------------------------------------------
    def create_user(self, username: str, password: str, customer_name: str, *,
                    is_admin: bool = False) -> User:
        username = normalise_username(username)
        if not _USERNAME.match(username):
            raise InvalidIdentifier(
                f"username must be 1-255 of a-z 0-9 _ . @ + - (starting alphanumeric), "
                f"got {username!r}", username=username,
            )
        customer = self.get_customer(customer_name)
        password_hash = self.passwords.hash(password)
        user = User(id=_id("usr"), username=username, customer_id=customer.id,
                    is_admin=is_admin, created_at=self._now())
        repository.insert_user(self.db, user, password_hash)
        return user

    def set_password(self, username: str, password: str) -> User:
        """A new password for a user; every refresh token the user holds stops working."""
        found = repository.get_user_with_hash(self.db, normalise_username(username))
        if found is None:
            raise NotFound(f"no user {username!r}", username=username)
        user = found[0]
        repository.set_password_hash(self.db, user.id, self.passwords.hash(password))
        repository.revoke_user_refresh(self.db, user.id, self._now())
        self._forget_principals()
        return user

    def list_users(self, customer_name: str | None = None) -> list[User]:
        customer_id = None if customer_name is None else self.get_customer(customer_name).id
        return repository.list_users(self.db, customer_id)

    # --- API keys ----------------------------------------------------------------------------
    def create_api_key(self, customer_name: str, name: str = "") -> tuple[ApiKey, str]:
        """The key's record and the full key, which is shown this once and never again."""
        customer = self.get_customer(customer_name)
        return self._new_key(customer.id, name)

    def _new_key(self, customer_id: str, name: str) -> tuple[ApiKey, str]:
        if len(name) > 200:
            raise InvalidParameter("API key name must be at most 200 characters", parameter="name")
        for _ in range(5):  # a prefix collision is rare (36^8) but must not fail the caller
            prefix, secret, full = keys.new_key()
            key = ApiKey(id=_id("key"), prefix=prefix, customer_id=customer_id, name=name,
                         created_at=self._now())
            try:
                repository.insert_key(self.db, key, digest(secret))
            except Conflict:
                continue
            return key, full
        raise Conflict("could not allocate a unique API key prefix")  # pragma: no cover

    def get_api_key(self, prefix: str) -> ApiKey:
        return repository.get_key(self.db, keys.check_prefix(prefix))

    def list_api_keys(self, customer_name: str | None = None) -> list[ApiKey]:
        customer_id = None if customer_name is None else self.get_customer(customer_name).id
        return repository.list_keys(self.db, customer_id)

    def revoke_api_key(self, prefix: str) -> ApiKey:
        key = self.get_api_key(prefix)
        repository.end_key(self.db, key.id, revoked_at=self._now())
        self.key_cache.drop(key.prefix)
        return self.get_api_key(key.prefix)

    def rotate_api_key(self, prefix: str, grace_seconds: int = 0) -> tuple[ApiKey, ApiKey, str]:
        """A new key for the same customer and label; the old one stops now or after the grace.

        Returns ``(old key, new key, full new key)``.
        """
        old = self.get_api_key(prefix)
        now = self._now()
        if not old.active(now):
            raise Conflict(f"API key {old.prefix!r} is no longer active", prefix=old.prefix)
        if grace_seconds < 0:
            raise InvalidParameter("grace period must be >= 0 seconds", parameter="grace")
        new, full = self._new_key(old.customer_id, old.name)
        if grace_seconds == 0:
            repository.end_key(self.db, old.id, revoked_at=now)
        else:
            repository.end_key(self.db, old.id, expires_at=now + grace_seconds)
        self.key_cache.drop(old.prefix)
        return self.get_api_key(old.prefix), new, full
