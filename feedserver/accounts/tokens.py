"""Tokens: HS256 JWTs for access/id tokens, opaque random refresh tokens (pure; no I/O).

Access and id tokens carry ``sub`` (user id), ``username``, ``cid`` (customer), ``rid`` (the
refresh token they were minted from, so revoking it kills them), ``jti``, ``iat``, ``exp`` and
``token_use``. Expiry is checked here against the caller's clock rather than pyjwt's, so tests
inject time instead of sleeping. Only HS256 is accepted, never the token's own ``alg`` choice.
"""

from __future__ import annotations

import hashlib
import secrets
from typing import Literal

import jwt
import msgspec

from feedserver.errors import Unauthorized

TokenUse = Literal["access", "id"]
ALGORITHM = "HS256"
ISSUER = "feedserver"
REFRESH_PREFIX = "fsr_"


class Claims(msgspec.Struct, frozen=True, kw_only=True):
    sub: str
    username: str
    cid: str
    rid: str
    jti: str
    iat: int
    exp: int
    token_use: TokenUse
    iss: str = ISSUER


def mint(secret: str, *, user_id: str, username: str, customer_id: str, refresh_id: str,
         token_use: TokenUse, now: float, ttl: int) -> str:
    claims = Claims(
        sub=user_id, username=username, cid=customer_id, rid=refresh_id,
        jti=secrets.token_urlsafe(12), iat=int(now), exp=int(now) + ttl, token_use=token_use,
    )
    return jwt.encode(msgspec.structs.asdict(claims), secret, algorithm=ALGORITHM)


def verify(secret: str, token: str, *, now: float, kind: TokenUse) -> Claims:
    """The claims of a valid, unexpired token of the wanted kind, else ``Unauthorized``."""
    try:
        raw = jwt.decode(
            token, secret, algorithms=[ALGORITHM], issuer=ISSUER,
            options={"verify_exp": False, "verify_iat": False, "verify_nbf": False,
                     "require": ["exp", "iat", "sub", "jti"]},
        )
        claims = msgspec.convert(raw, Claims)
    except (jwt.PyJWTError, msgspec.ValidationError) as exc:
        raise Unauthorized("invalid token") from exc
    if claims.token_use != kind:
        raise Unauthorized(f"not an {kind} token")
    if claims.exp <= now:
        raise Unauthorized("token expired")
    return claims


def new_refresh_token() -> str:
    return REFRESH_PREFIX + secrets.token_urlsafe(32)


def digest(secret: str) -> str:
    """SHA-256 of a high-entropy secret (refresh token, API key secret).

    A fast hash is enough here: these secrets carry 256 random bits, so there is nothing to
    brute-force, unlike passwords (argon2id). It keeps lookup by hash cheap on every request.
    """
    return hashlib.sha256(secret.encode()).hexdigest()
