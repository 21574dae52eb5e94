"""SQL for the accounts tables: rows in, records out. No policy here (that is ``service``)."""

from __future__ import annotations

from typing import Any

from feedserver.accounts.models import ApiKey, Customer, User
from feedserver.errors import Conflict, NotFound
from feedserver.plans import Plan, encode_plan, load_stored_plan
from feedserver.storage.db import Database, Row

_CUSTOMER = ("SELECT id, name, plan, disabled, created_at, stripe_customer_id"
             " FROM customers")
_USER = "SELECT id, username, customer_id, is_admin, disabled, created_at FROM users"
_KEY = ("SELECT id, prefix, customer_id, name, created_at, expires_at, revoked_at, last_used_at"
        " FROM api_keys")


def _customer(row: Row) -> Customer:
    return Customer(id=row[0], name=row[1], plan=row[2], disabled=bool(row[3]),
                    created_at=int(row[4]), stripe_customer_id=str(row[5]))


def _user(row: Row) -> User:
    return User(id=row[0], username=row[1], customer_id=row[2], is_admin=bool(row[3]),
                disabled=bool(row[4]), created_at=int(row[5]))


def _key(row: Row) -> ApiKey:
    return ApiKey(id=row[0], prefix=row[1], customer_id=row[2], name=row[3],
                  created_at=int(row[4]), expires_at=row[5], revoked_at=row[6],
                  last_used_at=row[7])


# --- secrets -------------------------------------------------------------------------------
def get_or_create_secret(db: Database, name: str, candidate: str) -> str:
    """The stored secret ``name``; ``candidate`` becomes it if none exists (race-safe)."""
    db.execute(
        "INSERT INTO accounts_secrets (name, value) VALUES (?, ?) ON CONFLICT (name) DO NOTHING",
        (name, candidate),
    )
    row = db.fetchone("SELECT value FROM accounts_secrets WHERE name = ?", (name,))
    assert row is not None
    return str(row[0])


# --- plans ---------------------------------------------------------------------------------
def insert_plan(db: Database, plan: Plan, now: int, *, builtin: bool = False,
                if_absent: bool = False) -> bool:
    conflict = " ON CONFLICT (name) DO NOTHING" if if_absent else ""
    try:
        return db.execute(
            "INSERT INTO plans (name, spec, builtin, created_at) VALUES (?, ?, ?, ?)" + conflict,
            (plan.name, encode_plan(plan).decode(), int(builtin), now),
        ) > 0
    except Conflict:
        raise Conflict(f"plan {plan.name!r} already exists", name=plan.name) from None


def get_plan(db: Database, name: str) -> Plan:
    row = db.fetchone("SELECT spec FROM plans WHERE name = ?", (name,))
    if row is None:
        raise NotFound(f"plan {name!r} not found", name=name)
    return load_stored_plan(row[0])


def list_plans(db: Database) -> list[Plan]:
    return [load_stored_plan(r[0]) for r in db.fetchall("SELECT spec FROM plans ORDER BY name")]


# --- customers -----------------------------------------------------------------------------
def insert_customer(db: Database, customer: Customer) -> None:
    try:
        db.execute(
            "INSERT INTO customers (id, name, plan, disabled, created_at) VALUES (?, ?, ?, ?, ?)",
            (customer.id, customer.name, customer.plan, int(customer.disabled),
             customer.created_at),
        )
    except Conflict:
        raise Conflict(f"customer {customer.name!r} already exists", name=customer.name) from None


def get_customer(db: Database, name: str) -> Customer:
    row = db.fetchone(_CUSTOMER + " WHERE name = ?", (name,))
    if row is None:
        raise NotFound(f"customer {name!r} not found", name=name)
    return _customer(row)


def get_customer_by_id(db: Database, customer_id: str) -> Customer:
    row = db.fetchone(_CUSTOMER + " WHERE id = ?", (customer_id,))
    if row is None:
        raise NotFound(f"customer {customer_id!r} not found", id=customer_id)
    return _customer(row)


def list_customers(db: Database) -> list[Customer]:
    return [_customer(r) for r in db.fetchall(_CUSTOMER + " ORDER BY name")]


def update_customer(db: Database, customer_id: str, **values: Any) -> None:
    sets = ", ".join(f"{column} = ?" for column in values)  # column names are ours, not input
    db.execute(f"UPDATE customers SET {sets} WHERE id = ?", (*values.values(), customer_id))


# --- users ---------------------------------------------------------------------------------
def insert_user(db: Database, user: User, password_hash: str) -> None:
    try:
        db.execute(
            "INSERT INTO users (id, username, customer_id, password_hash, is_admin, disabled,"
            " created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (user.id, user.username, user.customer_id, password_hash, int(user.is_admin),
             int(user.disabled), user.created_at),
        )
    except Conflict:
        raise Conflict(f"user {user.username!r} already exists", username=user.username) from None


def get_user_with_hash(db: Database, username: str) -> tuple[User, str] | None:
    row = db.fetchone(
        "SELECT id, username, customer_id, is_admin, disabled, created_at, password_hash"
        " FROM users WHERE username = ?", (username,),
    )
    return None if row is None else (_user(row), str(row[6]))


def list_users(db: Database, customer_id: str | None = None) -> list[User]:
    if customer_id is None:
        return [_user(r) for r in db.fetchall(_USER + " ORDER BY username")]
    return [_user(r) for r in
            db.fetchall(_USER + " WHERE customer_id = ? ORDER BY username", (customer_id,))]


def set_password_hash(db: Database, user_id: str, password_hash: str) -> None:
    db.execute("UPDATE users SET password_hash = ? WHERE id = ?", (password_hash, user_id))


# --- API keys ------------------------------------------------------------------------------
def insert_key(db: Database, key: ApiKey, secret_hash: str) -> None:
    db.execute(
        "INSERT INTO api_keys (id, prefix, secret_hash, customer_id, name, created_at)"
        " VALUES (?, ?, ?, ?, ?, ?)",
        (key.id, key.prefix, secret_hash, key.customer_id, key.name, key.created_at),
    )


def get_key(db: Database, prefix: str) -> ApiKey:
    row = db.fetchone(_KEY + " WHERE prefix = ?", (prefix,))
    if row is None:
        raise NotFound(f"API key {prefix!r} not found", prefix=prefix)
    return _key(row)


def list_keys(db: Database, customer_id: str | None = None) -> list[ApiKey]:
    if customer_id is None:
        return [_key(r) for r in db.fetchall(_KEY + " ORDER BY created_at, prefix")]
    return [_key(r) for r in db.fetchall(_KEY + " WHERE customer_id = ? ORDER BY created_at,"
                                          " prefix", (customer_id,))]


def end_key(db: Database, key_id: str, *, revoked_at: int | None = None,
            expires_at: int | None = None) -> None:
    """Revoke now, or let the key run until ``expires_at`` (rotation grace), never extend it."""
    if revoked_at is not None:
        db.execute("UPDATE api_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL",
                   (revoked_at, key_id))
    if expires_at is not None:
        db.execute("UPDATE api_keys SET expires_at = ? WHERE id = ?"
                   " AND (expires_at IS NULL OR expires_at > ?)", (expires_at, key_id, expires_at))


def touch_key(db: Database, key_id: str, now: int) -> None:
    db.execute("UPDATE api_keys SET last_used_at = ? WHERE id = ?", (now, key_id))


# --- who is calling (one query on the hot path) --------------------------------------------
_PRINCIPAL = (
    " c.id, c.name, c.disabled, p.spec FROM customers c JOIN plans p ON p.name = c.plan"
)


def principal_by_key(db: Database, prefix: str) -> Row | None:
    """``(key id, secret_hash, expires_at, revoked_at, customer id, name, disabled, plan)``."""
    return db.fetchone(
        "SELECT k.id, k.secret_hash, k.expires_at, k.revoked_at," + _PRINCIPAL
        + " JOIN api_keys k ON k.customer_id = c.id WHERE k.prefix = ?", (prefix,),
    )


def principal_by_refresh_id(db: Database, refresh_id: str) -> Row | None:
    """``(revoked_at, username, is_admin, user disabled, customer id, name, disabled, plan)``."""
    return db.fetchone(
        "SELECT r.revoked_at, u.username, u.is_admin, u.disabled," + _PRINCIPAL
        + " JOIN users u ON u.customer_id = c.id JOIN refresh_tokens r ON r.user_id = u.id"
        " WHERE r.id = ?", (refresh_id,),
    )


# --- refresh tokens ------------------------------------------------------------------------
def insert_refresh(db: Database, refresh_id: str, token_hash: str, user_id: str, now: int,
                   expires_at: int) -> None:
    db.execute(
        "INSERT INTO refresh_tokens (id, token_hash, user_id, created_at, expires_at)"
        " VALUES (?, ?, ?, ?, ?)", (refresh_id, token_hash, user_id, now, expires_at),
    )


def get_refresh(db: Database, token_hash: str) -> Row | None:
    """``(id, user id, username, expires_at, uses, revoked_at)``."""
    return db.fetchone(
        "SELECT r.id, r.user_id, u.username, r.expires_at, r.uses, r.revoked_at"
        " FROM refresh_tokens r JOIN users u ON u.id = r.user_id WHERE r.token_hash = ?",
        (token_hash,),
    )


def use_refresh(db: Database, refresh_id: str, max_uses: int) -> bool:
    """Count one use if under the cap (atomic: concurrent refreshes cannot overshoot)."""
    return db.execute(
        "UPDATE refresh_tokens SET uses = uses + 1 WHERE id = ? AND uses < ?"
        " AND revoked_at IS NULL", (refresh_id, max_uses),
    ) > 0


def revoke_refresh(db: Database, refresh_id: str, now: int) -> None:
    db.execute("UPDATE refresh_tokens SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL",
               (now, refresh_id))


def revoke_user_refresh(db: Database, user_id: str, now: int) -> None:
    db.execute("UPDATE refresh_tokens SET revoked_at = ? WHERE user_id = ?"
               " AND revoked_at IS NULL", (now, user_id))
