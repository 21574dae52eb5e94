"""JWT minting/verification and the API key format (pure)."""

from __future__ import annotations

import base64
import json

import jwt
import pytest

from feedserver.accounts import keys, tokens
from feedserver.errors import InvalidIdentifier, Unauthorized

SECRET = "s" * 40
NOW = 1_800_000_000.0


def _mint(kind: tokens.TokenUse = "access", ttl: int = 60) -> str:
    return tokens.mint(SECRET, user_id="usr_1", username="alice", customer_id="cus_1",
                       refresh_id="rt_1", token_use=kind, now=NOW, ttl=ttl)


def test_round_trip_claims() -> None:
    claims = tokens.verify(SECRET, _mint(), now=NOW + 59, kind="access")
    assert (claims.sub, claims.username, claims.cid, claims.rid) == ("usr_1", "alice", "cus_1",
                                                                     "rt_1")
    assert claims.exp == int(NOW) + 60
    assert claims.token_use == "access"
    assert tokens.verify(SECRET, _mint("id"), now=NOW, kind="id").token_use == "id"


def test_rejections() -> None:
    good = _mint()
    with pytest.raises(Unauthorized, match="expired"):
        tokens.verify(SECRET, good, now=NOW + 60, kind="access")
    with pytest.raises(Unauthorized):
        tokens.verify("other-secret-" * 4, good, now=NOW, kind="access")
    with pytest.raises(Unauthorized, match="not an access"):
        tokens.verify(SECRET, _mint("id"), now=NOW, kind="access")
    for garbage in ["", "x", "a.b.c", good + "x"]:
        with pytest.raises(Unauthorized):
            tokens.verify(SECRET, garbage, now=NOW, kind="access")


def test_tampered_payload_and_alg_none() -> None:
    header, payload, signature = _mint().split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    claims["cid"] = "cus_victim"
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    with pytest.raises(Unauthorized):
        tokens.verify(SECRET, f"{header}.{forged}.{signature}", now=NOW, kind="access")
    unsigned = jwt.encode(claims, "", algorithm="none")
    with pytest.raises(Unauthorized):
        tokens.verify(SECRET, unsigned, now=NOW, kind="access")


def test_api_key_format() -> None:
    prefix, secret, full = keys.new_key()
    assert full == f"fs_{prefix}_{secret}"
    assert keys.split_key(full) == (prefix, secret)
    assert keys.check_prefix(prefix) == prefix
    assert keys.check_prefix(f"fs_{prefix}") == prefix
    assert len(secret) >= 43  # 32 bytes, base64url
    assert tokens.digest(secret) != tokens.digest(secret + "x")
    for bad in ["", "fs_", "fs_short_" + "a" * 43, "xx_abcdefgh_" + "a" * 43,
                "fs_abcdefgh_short", "fs_ABCDEFGH_" + "a" * 43, "fs_abcdefgh" + "a" * 43]:
        with pytest.raises(Unauthorized):
            keys.split_key(bad)
    with pytest.raises(InvalidIdentifier):
        keys.check_prefix("nope")
