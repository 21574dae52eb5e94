"""API key format: ``fs_<prefix>_<secret>`` (pure; no I/O).

The prefix (8 characters of a-z0-9) is the public identifier shown in listings and used to
revoke; the secret is 32 random bytes, urlsafe-base64. Only ``tokens.digest(secret)`` is stored.
"""

from __future__ import annotations

import secrets
import string

from feedserver.errors import InvalidIdentifier, Unauthorized

KEY_PREFIX = "fs_"
PREFIX_LENGTH = 8
_ALPHABET = string.ascii_lowercase + string.digits
_ALPHABET_SET = frozenset(_ALPHABET)


def new_key() -> tuple[str, str, str]:
    """``(prefix, secret, full key)`` of a fresh API key."""
    prefix = "".join(secrets.choice(_ALPHABET) for _ in range(PREFIX_LENGTH))
    secret = secrets.token_urlsafe(32)
    return prefix, secret, f"{KEY_PREFIX}{prefix}_{secret}"


def looks_like_key(value: str) -> bool:
    return value.startswith(KEY_PREFIX)


def split_key(key: str) -> tuple[str, str]:
    """``(prefix, secret)``; any malformed key is ``Unauthorized`` (never a hint which part)."""
    if not key.startswith(KEY_PREFIX):
        raise Unauthorized("invalid API key")
    prefix, sep, secret = key[len(KEY_PREFIX):].partition("_")
    if (not sep or len(prefix) != PREFIX_LENGTH or not _ALPHABET_SET.issuperset(prefix)
            or not 32 <= len(secret) <= 128):
        raise Unauthorized("invalid API key")
    return prefix, secret


def check_prefix(prefix: str) -> str:
    """A prefix as typed by an operator (``fs_abcd1234`` or ``abcd1234``)."""
    bare = prefix.removeprefix(KEY_PREFIX).split("_", 1)[0]
    if len(bare) != PREFIX_LENGTH or not _ALPHABET_SET.issuperset(bare):
        raise InvalidIdentifier(f"not an API key prefix: {prefix!r}", prefix=prefix)
    return bare
