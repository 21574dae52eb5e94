"""The accounts tables. Times are unix seconds (BIGINT) so both backends compare them alike."""

from __future__ import annotations

from feedserver.storage.db import Database

MIGRATIONS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("accounts-1", (
        "CREATE TABLE accounts_secrets (name TEXT PRIMARY KEY, value TEXT NOT NULL)",
        "CREATE TABLE plans (name TEXT PRIMARY KEY, spec TEXT NOT NULL,"
        " builtin INTEGER NOT NULL DEFAULT 0, created_at BIGINT NOT NULL)",
        "CREATE TABLE customers (id TEXT PRIMARY KEY, name TEXT NOT NULL UNIQUE,"
        " plan TEXT NOT NULL REFERENCES plans(name), disabled INTEGER NOT NULL DEFAULT 0,"
        " created_at BIGINT NOT NULL)",
        "CREATE TABLE users (id TEXT PRIMARY KEY, username TEXT NOT NULL UNIQUE,"
        " customer_id TEXT NOT NULL REFERENCES customers(id), password_hash TEXT NOT NULL,"
        " is_admin INTEGER NOT NULL DEFAULT 0, disabled INTEGER NOT NULL DEFAULT 0,"
        " created_at BIGINT NOT NULL)",
        "CREATE TABLE api_keys (id TEXT PRIMARY KEY, prefix TEXT NOT NULL UNIQUE,"
        " secret_hash TEXT NOT NULL, customer_id TEXT NOT NULL REFERENCES customers(id),"
        " name TEXT NOT NULL DEFAULT '', created_at BIGINT NOT NULL, expires_at BIGINT,"
        " revoked_at BIGINT, last_used_at BIGINT)",
        "CREATE INDEX api_keys_customer ON api_keys (customer_id)",
        "CREATE TABLE refresh_tokens (id TEXT PRIMARY KEY, token_hash TEXT NOT NULL UNIQUE,"
        " user_id TEXT NOT NULL REFERENCES users(id), created_at BIGINT NOT NULL,"
        " expires_at BIGINT NOT NULL, uses INTEGER NOT NULL DEFAULT 0, revoked_at BIGINT)",
        "CREATE INDEX refresh_tokens_user ON refresh_tokens (user_id)",
    )),
    # The customer's id in Stripe, for usage exports (``feedserver usage export``).
    ("accounts-2", (
        "ALTER TABLE customers ADD COLUMN stripe_customer_id TEXT NOT NULL DEFAULT ''",
    )),
)


def migrate(db: Database) -> None:
    for name, statements in MIGRATIONS:
        db.migrate(name, statements)
