"""Password hashing: argon2id (argon2-cffi), with a dummy verify for unknown users.

Login must not reveal whether a username exists, so an unknown user still costs one argon2
verification against a fixed hash, and both failures produce the same message.
"""

from __future__ import annotations

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from feedserver.errors import InvalidParameter

MIN_LENGTH = 8
MAX_LENGTH = 1024  # argon2 would take more, but a megabyte "password" is an attack, not a secret


class Passwords:
    def __init__(self, *, time_cost: int = 3, memory_cost: int = 64 * 1024,
                 parallelism: int = 1) -> None:
        self._hasher = PasswordHasher(
            time_cost=time_cost, memory_cost=memory_cost, parallelism=parallelism, type=Type.ID
        )
        self._dummy: str | None = None  # made on first need: admin commands never need it

    def hash(self, password: str) -> str:
        if not MIN_LENGTH <= len(password) <= MAX_LENGTH:
            raise InvalidParameter(
                f"password must be {MIN_LENGTH}-{MAX_LENGTH} characters", parameter="password"
            )
        return self._hasher.hash(password)

    def verify(self, stored: str | None, password: str) -> bool:
        """True when ``password`` matches ``stored``; ``stored=None`` burns the same time."""
        if len(password) > MAX_LENGTH:
            return False
        if self._dummy is None:
            self._dummy = self._hasher.hash("feedserver-dummy-password")
        try:
            return bool(self._hasher.verify(stored or self._dummy, password)) and stored is not None
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False

    def needs_rehash(self, stored: str) -> bool:
        return bool(self._hasher.check_needs_rehash(stored))
