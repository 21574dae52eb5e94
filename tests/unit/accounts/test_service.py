"""Accounts service on SQLite and PostgreSQL: login, refresh, revoke, API keys, principals."""

from __future__ import annotations

import pytest

from feedserver.accounts.passwords import Passwords
from feedserver.accounts.service import LOGIN_FAILED, REFRESH_LIMIT, Accounts
from feedserver.config import load_settings
from feedserver.errors import (
    Conflict,
    Forbidden,
    InvalidIdentifier,
    InvalidParameter,
    NotFound,
    RateLimited,
    Unauthorized,
)
from feedserver.plans import Plan
from feedserver.storage.db import Database
from tests.unit.accounts.conftest import Clock

PASSWORD = "correct horse battery"


def _alice(accounts: Accounts, plan: str = "free") -> None:
    accounts.create_customer("Acme", plan=plan)
    accounts.create_user("Alice", PASSWORD, "Acme", is_admin=True)


def test_login_refresh_and_bearer(accounts: Accounts, clock: Clock) -> None:
    _alice(accounts)
    pair = accounts.login("alice", PASSWORD)
    assert pair.refresh_token and pair.expires_in == 24 * 3600
    principal = accounts.authenticate_bearer(pair.access_token)
    assert principal.user == "alice"  # stored lowercase
    assert principal.customer_name == "Acme"
    assert principal.api_key_id is None and principal.is_admin
    assert principal.plan.name == "free"
    with pytest.raises(Unauthorized):  # an id token is not an access token
        accounts.authenticate_bearer(pair.id_token)

    clock.advance(3600)
    again = accounts.refresh("ALICE", pair.refresh_token)
    assert again.refresh_token is None  # WME issues no new refresh token
    assert accounts.authenticate_bearer(again.access_token).customer_name == "Acme"
    with pytest.raises(Unauthorized):
        accounts.refresh("bob", pair.refresh_token)
    with pytest.raises(Unauthorized):
        accounts.refresh("alice", "fsr_garbage")


def test_login_failures_read_the_same(accounts: Accounts) -> None:
    _alice(accounts)
    for username, password in [("alice", "wrong password"), ("nobody", PASSWORD),
                               ("alice", ""), ("alice", "x" * 5000)]:
        with pytest.raises(Unauthorized) as err:
            accounts.login(username, password)
        assert err.value.detail == LOGIN_FAILED


def test_expiry_with_injected_clock(accounts: Accounts, clock: Clock) -> None:
    _alice(accounts)
    pair = accounts.login("alice", PASSWORD)
    assert pair.refresh_token is not None
    clock.advance(24 * 3600)
    with pytest.raises(Unauthorized, match="expired"):
        accounts.authenticate_bearer(pair.access_token)
    fresh = accounts.refresh("alice", pair.refresh_token)
    accounts.authenticate_bearer(fresh.access_token)
    clock.advance(90 * 24 * 3600)
    with pytest.raises(Unauthorized):
        accounts.refresh("alice", pair.refresh_token)


def test_revoke_kills_access_tokens_minted_from_it(accounts: Accounts) -> None:
    _alice(accounts)
    first = accounts.login("alice", PASSWORD)
    second = accounts.login("alice", PASSWORD)
    assert first.refresh_token is not None
    refreshed = accounts.refresh("alice", first.refresh_token)
    accounts.authenticate_bearer(first.access_token)  # cached now: revoke must still win
    accounts.revoke(first.refresh_token)
    accounts.revoke(first.refresh_token)  # idempotent
    for token in (first.access_token, refreshed.access_token):
        with pytest.raises(Unauthorized, match="revoked"):
            accounts.authenticate_bearer(token)
    with pytest.raises(Unauthorized):
        accounts.refresh("alice", first.refresh_token)
    # Another session of the same user is untouched.
    assert accounts.authenticate_bearer(second.access_token).user == "alice"
    with pytest.raises(Unauthorized):
        accounts.revoke("fsr_unknown")


def test_refresh_cap(accounts: Accounts) -> None:
    _alice(accounts)
    pair = accounts.login("alice", PASSWORD)
    assert pair.refresh_token is not None
    for _ in range(3):  # refresh_token_max_uses=3 in the fixture
        accounts.refresh("alice", pair.refresh_token)
    with pytest.raises(RateLimited) as err:
        accounts.refresh("alice", pair.refresh_token)
    assert err.value.detail == REFRESH_LIMIT


def test_tampered_and_foreign_tokens(accounts: Accounts, database: Database,
                                     clock: Clock, cheap_passwords: Passwords) -> None:
    _alice(accounts)
    token = accounts.login("alice", PASSWORD).access_token
    head, body, sig = token.split(".")
    with pytest.raises(Unauthorized):
        accounts.authenticate_bearer(f"{head}.{body}.{sig[::-1]}")
    with pytest.raises(Unauthorized):
        accounts.authenticate_bearer("garbage")
    other = Accounts(database, load_settings(env={}, token_secret="another-secret-" * 3),
                     clock=clock, passwords=cheap_passwords)
    with pytest.raises(Unauthorized):
        other.authenticate_bearer(token)


def test_generated_secret_is_shared_through_the_database(
    database: Database, clock: Clock, cheap_passwords: Passwords
) -> None:
    settings = load_settings(env={})
    one = Accounts(database, settings, clock=clock, passwords=cheap_passwords)
    two = Accounts(database, settings, clock=clock, passwords=cheap_passwords)  # re-migrates
    _alice(one)
    assert two.authenticate_bearer(one.login("alice", PASSWORD).access_token).user == "alice"


def test_api_keys(accounts: Accounts, clock: Clock) -> None:
    accounts.create_customer("Acme", plan="enterprise")
    key, full = accounts.create_api_key("Acme", name="ci")
    assert full.startswith(f"fs_{key.prefix}_")
    principal = accounts.authenticate_api_key(full)
    assert (principal.customer_name, principal.user, principal.api_key_id) == ("Acme", None,
                                                                               key.id)
    assert accounts.authenticate_bearer(full) == principal  # Bearer fs_... works too
    assert accounts.get_api_key(key.prefix).last_used_at == int(clock())
    with pytest.raises(Unauthorized):
        accounts.authenticate_api_key(full[:-2] + ("AA" if not full.endswith("AA") else "BB"))
    with pytest.raises(Unauthorized):
        accounts.authenticate_api_key("fs_zzzzzzzz_" + "a" * 43)
    [listed] = accounts.list_api_keys("Acme")
    assert listed.prefix == key.prefix and listed.name == "ci"

    accounts.revoke_api_key(key.prefix)
    with pytest.raises(Unauthorized, match="revoked"):
        accounts.authenticate_api_key(full)
    with pytest.raises(NotFound):
        accounts.revoke_api_key("abcdefgh")


def test_rotate_api_key(accounts: Accounts, clock: Clock) -> None:
    accounts.create_customer("Acme")
    key, old_full = accounts.create_api_key("Acme", name="prod")
    old, new, new_full = accounts.rotate_api_key(key.prefix, grace_seconds=600)
    assert new.name == "prod" and new.prefix != old.prefix
    assert old.expires_at == int(clock()) + 600
    accounts.authenticate_api_key(old_full)  # still valid during the grace period
    accounts.authenticate_api_key(new_full)
    clock.advance(600)
    with pytest.raises(Unauthorized):
        accounts.authenticate_api_key(old_full)
    with pytest.raises(Conflict):
        accounts.rotate_api_key(old.prefix)
    _, newer, newer_full = accounts.rotate_api_key(new.prefix)  # no grace: old one ends now
    with pytest.raises(Unauthorized):
        accounts.authenticate_api_key(new_full)
    assert accounts.authenticate_api_key(newer_full).api_key_id == newer.id
    with pytest.raises(InvalidParameter):
        accounts.rotate_api_key(newer.prefix, grace_seconds=-1)


def test_customers_plans_and_disabling(accounts: Accounts) -> None:
    _alice(accounts)
    _, full = accounts.create_api_key("Acme")
    assert accounts.authenticate_api_key(full).plan.name == "free"
    accounts.set_plan("Acme", "pro")
    assert accounts.authenticate_api_key(full).plan.name == "pro"
    with pytest.raises(NotFound):
        accounts.set_plan("Acme", "platinum")
    with pytest.raises(Conflict):
        accounts.create_customer("Acme")
    with pytest.raises(NotFound):
        accounts.create_customer("Other", plan="platinum")
    with pytest.raises(InvalidIdentifier):
        accounts.create_customer("../evil")
    with pytest.raises(Conflict):
        accounts.create_user("alice", PASSWORD, "Acme")
    with pytest.raises(InvalidParameter):
        accounts.create_user("bob", "short", "Acme")
    with pytest.raises(NotFound):
        accounts.create_user("bob", PASSWORD, "Nope")

    pair = accounts.login("alice", PASSWORD)
    accounts.set_disabled("Acme")
    for call in (lambda: accounts.authenticate_api_key(full),
                 lambda: accounts.authenticate_bearer(pair.access_token),
                 lambda: accounts.login("alice", PASSWORD)):
        with pytest.raises(Forbidden, match="disabled"):
            call()
    accounts.set_disabled("Acme", False)
    assert accounts.authenticate_api_key(full).customer_name == "Acme"


def test_plans_are_seeded_once_and_custom_plans_stored(accounts: Accounts,
                                                       database: Database) -> None:
    assert [p.name for p in accounts.list_plans()] == ["enterprise", "free", "pro"]
    custom = Plan(name="research", feeds=["snapshots", "diffs"], projects=["simplewiki"])
    accounts.create_plan(custom)
    assert accounts.get_plan("research") == custom
    with pytest.raises(Conflict):
        accounts.create_plan(custom)
    database.execute("UPDATE plans SET spec = ? WHERE name = 'free'",
                     ('{"name": "free", "feeds": ["snapshots"]}',))
    again = Accounts(database, accounts.settings, clock=accounts.clock,
                     passwords=accounts.passwords)
    assert again.get_plan("free").feeds == ["snapshots"]  # operator edits survive restarts


def test_cached_key_check_keeps_revocation_expiry_and_secrets(accounts: Accounts,
                                                              clock: Clock) -> None:
    # The event loop's path remembers a key it checked against the cache entry; that memory
    # must never outlive the entry: revocation and expiry end it, and a different secret
    # under the same prefix is still checked (and refused).
    accounts.create_customer("Acme")
    key, full = accounts.create_api_key("Acme")
    assert accounts.cached_principal("api_key", full) is None  # nothing cached yet
    principal = accounts.authenticate_api_key(full)
    for _ in range(3):  # checked once, then remembered
        assert accounts.cached_principal("api_key", full) == principal
        assert accounts.cached_principal("bearer", full) == principal
    forged = full[:-2] + ("AA" if not full.endswith("AA") else "BB")
    assert accounts.cached_principal("api_key", forged) is None
    clock.advance(accounts.key_cache.ttl)  # the cache entry expired: so did the memory
    assert accounts.cached_principal("api_key", full) is None
    accounts.authenticate_api_key(full)
    assert accounts.cached_principal("api_key", full) == principal
    accounts.revoke_api_key(key.prefix)  # at once in this process
    assert accounts.cached_principal("api_key", full) is None
    with pytest.raises(Unauthorized):
        accounts.authenticate_api_key(full)


def test_remembered_keys_are_dropped_every_cache_period(accounts: Accounts,
                                                        clock: Clock) -> None:
    # Keys as sent are plaintext, so the memory of checked keys is emptied every cache
    # period, whether or not the key is asked again: none lingers in the process for long.
    accounts.create_customer("Acme")
    _, full = accounts.create_api_key("Acme")
    accounts.authenticate_api_key(full)
    assert accounts.cached_principal("api_key", full) is not None
    assert full in accounts._checked
    clock.advance(accounts.key_cache.ttl)
    _, other = accounts.create_api_key("Acme")
    accounts.cached_principal("api_key", other)  # any request after the period empties it
    assert full not in accounts._checked
