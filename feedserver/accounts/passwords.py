"""Password hashing: argon2id (argon2-cffi), with a dummy verify for unknown users.

Login must not reveal whether a username exists, so an unknown user still costs one argon2
verification against a fixed hash, and both failures produce the same message.

argon2 is meant to be expensive (~0.3 s of a core per verification), so a login flood is a CPU
denial of service: ``verify`` runs at most ``max_concurrent`` verifications at once in this
process and refuses the next one at once (``RateLimited``, 429 + ``Retry-After``) instead of
queueing it in a worker thread that every other request needs too.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from feedserver.errors import InvalidParameter, RateLimited

MIN_LENGTH = 8
MAX_LENGTH = 1024  # argon2 would take more, but a megabyte "password" is an attack, not a secret


class Passwords:
    def __init__(self, *, time_cost: int = 3, memory_cost: int = 64 * 1024,
                 parallelism: int = 1, max_concurrent: int = 2) -> None:
        if max_concurrent < 1:
            raise ValueError("max_concurrent must be at least 1")
        self._gate = threading.BoundedSemaphore(max_concurrent)
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

    @contextmanager
    def slot(self) -> Iterator[None]:
        """One of the ``max_concurrent`` verification slots, or ``RateLimited`` at once."""
        if not self._gate.acquire(blocking=False):
            raise RateLimited("too many logins in progress, retry shortly", retry_after=1)
        try:
            yield
        finally:
            self._gate.release()

    def verify(self, stored: str | None, password: str) -> bool:
        """True when ``password`` matches ``stored``; ``stored=None`` burns the same time.
        Raises ``RateLimited`` when ``max_concurrent`` verifications are already running."""
        if len(password) > MAX_LENGTH:
            return False
        with self.slot():
            if self._dummy is None:
                self._dummy = self._hasher.hash("feedserver-dummy-password")
            try:
                return bool(self._hasher.verify(stored or self._dummy, password)) \
                    and stored is not None
            except (VerifyMismatchError, VerificationError, InvalidHashError):
                return False

    def needs_rehash(self, stored: str) -> bool:
        return bool(self._hasher.check_needs_rehash(stored))
