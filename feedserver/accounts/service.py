"""The accounts facade the HTTP layer uses: login, refresh, revoke, and who-is-calling.

WME-compatible token flow (reference §1): ``login`` → id, access and refresh tokens;
``refresh`` → new id and access tokens (no new refresh token), at most
``refresh_token_max_uses`` times per refresh token; ``revoke`` ends the refresh token and, via
the ``rid`` claim, every access token minted from it. Verifying an access token costs one
signature check plus one primary-key query, and that answer is cached for ``cache_seconds``.
"""

from __future__ import annotations

import hmac
import math
import secrets
import threading
import time
from typing import Literal

from feedserver.accounts import keys, repository, tokens
from feedserver.accounts.admin import AccountAdmin, Clock, normalise_username
from feedserver.accounts.models import Principal, TokenPair, User
from feedserver.accounts.passwords import Passwords
from feedserver.accounts.throttle import Backoff, LoginThrottle
from feedserver.config import Settings
from feedserver.errors import Forbidden, RateLimited, Unauthorized
from feedserver.plans import load_stored_plan
from feedserver.storage.db import Database, Row

LOGIN_FAILED = "Incorrect username or password."
REFRESH_LIMIT = "Refresh tokens limit has been exceeded."
INVALID_REFRESH = "invalid or expired refresh token"
# last_used_at is for humans ("is this key still in use?"); minute precision spares a write
# per request.
TOUCH_EVERY = 60
CHECKED_KEPT = 10_000


class Accounts(AccountAdmin):
    def __init__(self, db: Database, settings: Settings, *, clock: Clock = time.time,
                 passwords: Passwords | None = None, cache_seconds: float = 2.0) -> None:
        passwords = passwords or Passwords(max_concurrent=settings.login_concurrent_hashes)
        super().__init__(db, clock=clock, passwords=passwords, cache_seconds=cache_seconds)
        self.settings = settings
        self.throttle = LoginThrottle(
            db, clock=clock,
            username=Backoff(free=settings.login_free_failures,
                             max_delay=settings.login_max_delay),
            address=Backoff(free=settings.login_address_free_failures,
                            max_delay=settings.login_max_delay))
        # Without a configured secret, the first process generates one and stores it, so every
        # process sharing the database signs and verifies with the same key.
        self._secret = settings.token_secret or repository.get_or_create_secret(
            db, "jwt_hs256", secrets.token_urlsafe(48)
        )
        self._touched: dict[str, float] = {}
        # API keys (as sent) -> (prefix, the key-cache entry they matched): ``cached_principal``
        self._checked: dict[str, tuple[str, tuple[str, Principal]]] = {}
        # Keys as sent are plaintext: the memory is emptied every cache period, so none
        # outlives its cache entry by more than one period (nor the process's 10,000 last).
        self._checked_until = -math.inf
        self._touch_lock = threading.Lock()

    # --- passwords and tokens ------------------------------------------------------------------
    def authenticate_password(self, username: str, password: str) -> User:
        found = repository.get_user_with_hash(self.db, normalise_username(username))
        # Unknown user and wrong password cost the same argon2 work and read the same.
        if not self.passwords.verify(found[1] if found else None, password) or found is None:
            raise Unauthorized(LOGIN_FAILED)
        user, stored = found
        if user.disabled:
            raise Forbidden("this user is disabled")
        customer = repository.get_customer_by_id(self.db, user.customer_id)
        if customer.disabled:
            raise Forbidden(f"customer {customer.name!r} is disabled")
        if self.passwords.needs_rehash(stored):
            repository.set_password_hash(self.db, user.id, self.passwords.hash(password))
        return user

    def login(self, username: str, password: str, *, client: str | None = None) -> TokenPair:
        """Tokens for a right password. Throttled per username and per ``client`` address
        (``accounts.throttle``): while blocked, ``RateLimited`` before any password work."""
        name = normalise_username(username)
        self.throttle.check(name, client)
        try:
            user = self.authenticate_password(name, password)
        except Unauthorized:
            self.throttle.failed(name, client)
            raise
        self.throttle.succeeded(name)
        now = self._now()
        refresh_token = tokens.new_refresh_token()
        refresh_id = f"rt_{secrets.token_hex(8)}"
        repository.insert_refresh(self.db, refresh_id, tokens.digest(refresh_token), user.id,
                                  now, now + self.settings.refresh_token_ttl)
        pair = self._mint(user.id, user.username, user.customer_id, refresh_id, now)
        return TokenPair(id_token=pair.id_token, access_token=pair.access_token,
                         expires_in=pair.expires_in, refresh_token=refresh_token)

    def refresh(self, username: str, refresh_token: str) -> TokenPair:
        """New id and access tokens; the refresh token itself is not renewed (as WME)."""
        row = repository.get_refresh(self.db, tokens.digest(refresh_token))
        now = self._now()
        if row is None or not hmac.compare_digest(str(row[2]), normalise_username(username)):
            raise Unauthorized(INVALID_REFRESH)
        refresh_id, user_id, name, expires_at, _uses, revoked_at = row
        if revoked_at is not None or int(expires_at) <= now:
            raise Unauthorized(INVALID_REFRESH)
        principal = self._principal_for_refresh(refresh_id, now)
        if not repository.use_refresh(self.db, refresh_id, self.settings.refresh_token_max_uses):
            raise RateLimited(REFRESH_LIMIT)
        return self._mint(user_id, name, principal.customer_id, refresh_id, now)

    def revoke(self, refresh_token: str) -> None:
        """End a refresh token and every access token minted from it (idempotent)."""
        row = repository.get_refresh(self.db, tokens.digest(refresh_token))
        if row is None:
            raise Unauthorized(INVALID_REFRESH)
        repository.revoke_refresh(self.db, row[0], self._now())
        self.token_cache.drop(row[0])

    def _mint(self, user_id: str, username: str, customer_id: str, refresh_id: str,
              now: int) -> TokenPair:
        ttl = self.settings.access_token_ttl

        def mint(token_use: tokens.TokenUse) -> str:
            return tokens.mint(self._secret, user_id=user_id, username=username,
                               customer_id=customer_id, refresh_id=refresh_id,
                               token_use=token_use, now=now, ttl=ttl)

        return TokenPair(id_token=mint("id"), access_token=mint("access"), expires_in=ttl)

    # --- who is calling ------------------------------------------------------------------------
    def cached_principal(self, kind: Literal["bearer", "api_key"], secret: str
                         ) -> Principal | None:
        """The caller when memory alone decides, without I/O (the event loop's fast path): a
        key or token whose principal is cached and nothing is due to be written. None: ask
        ``authenticate_api_key`` / ``authenticate_bearer`` (in a worker thread). Raises
        ``Unauthorized`` for a malformed key or an invalid or expired token (pure checks)."""
        now = self.clock()
        if kind == "api_key" or keys.looks_like_key(secret):
            # A key checked against the cache entry that is still there is not checked again:
            # no parse, no SHA-256 (the entry goes on revocation or expiry, and with it this).
            if now >= self._checked_until:
                self._checked.clear()
                self._checked_until = now + self.key_cache.ttl
            seen = self._checked.get(secret)
            cached: tuple[str, Principal] | None
            if seen is not None and self.key_cache.get(seen[0], now) is seen[1]:
                cached = seen[1]
            else:
                prefix, key_secret = keys.split_key(secret)
                cached = self.key_cache.get(prefix, now)
                if cached is None or not hmac.compare_digest(cached[0],
                                                             tokens.digest(key_secret)):
                    return None
                if len(self._checked) >= CHECKED_KEPT:
                    self._checked.clear()
                self._checked[secret] = (prefix, cached)
            key_id = cached[1].api_key_id  # (a read of ``_touched`` needs no lock)
            if key_id is not None and now - self._touched.get(key_id, -math.inf) \
                    >= TOUCH_EVERY:
                return None  # last_used_at is due: the worker-thread path writes it
            return cached[1]
        claims = tokens.verify(self._secret, secret, now=now, kind="access")
        return self.token_cache.get(claims.rid, now)

    def authenticate_bearer(self, token: str) -> Principal:
        """An access token, or an API key sent as a bearer token (``fs_...``)."""
        if keys.looks_like_key(token):
            return self.authenticate_api_key(token)
        now = self.clock()
        claims = tokens.verify(self._secret, token, now=now, kind="access")
        return self._principal_for_refresh(claims.rid, now)

    def _principal_for_refresh(self, refresh_id: str, now: float) -> Principal:
        cached = self.token_cache.get(refresh_id, now)
        if cached is not None:
            return cached
        row = repository.principal_by_refresh_id(self.db, refresh_id)
        if row is None or row[0] is not None:
            raise Unauthorized("token revoked")
        _revoked, username, is_admin, user_disabled, *rest = row
        if user_disabled:
            raise Forbidden("this user is disabled")
        principal = self._principal(rest, user=username, api_key_id=None, is_admin=is_admin)
        self.token_cache.put(refresh_id, principal, now)
        return principal

    def authenticate_api_key(self, key: str) -> Principal:
        prefix, secret = keys.split_key(key)
        secret_hash = tokens.digest(secret)
        now = self.clock()
        cached = self.key_cache.get(prefix, now)
        if cached is not None and hmac.compare_digest(cached[0], secret_hash):
            principal = cached[1]
        else:
            row = repository.principal_by_key(self.db, prefix)
            if row is None or not hmac.compare_digest(str(row[1]), secret_hash):
                raise Unauthorized("invalid API key")
            key_id, _hash, expires_at, revoked_at, *rest = row
            if revoked_at is not None or (expires_at is not None and int(expires_at) <= now):
                raise Unauthorized("API key revoked or expired")
            principal = self._principal(rest, user=None, api_key_id=key_id, is_admin=False)
            self.key_cache.put(prefix, (secret_hash, principal), now,
                                until=None if expires_at is None else float(expires_at))
        self._touch(principal.api_key_id, now)
        return principal

    def _principal(self, row: list[object] | Row, *, user: str | None, api_key_id: str | None,
                   is_admin: object) -> Principal:
        customer_id, customer_name, customer_disabled, plan_spec = row
        if customer_disabled:
            raise Forbidden(f"customer {customer_name!r} is disabled")
        return Principal(
            customer_id=str(customer_id), customer_name=str(customer_name), user=user,
            api_key_id=api_key_id, is_admin=bool(is_admin),
            plan=load_stored_plan(str(plan_spec)),
        )

    def _touch(self, key_id: str | None, now: float) -> None:
        if key_id is None:
            return
        with self._touch_lock:
            if now - self._touched.get(key_id, float("-inf")) < TOUCH_EVERY:
                return
            self._touched[key_id] = now
        repository.touch_key(self.db, key_id, int(now))
