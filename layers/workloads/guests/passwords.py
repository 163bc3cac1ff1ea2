"""Password hashes: bcrypt, the seed's own choice (its clients' hashes are bcrypt, so they can be
imported as they are), at a cost measured on the project's machine (the README gives the
figures). `bcrypt` is imported on the first hash, in the worker only: the API never loads it.

GUESTS_BCRYPT_ROUNDS (default 10, bcrypt's log2 cost, 4..16) sets the cost of new hashes; a
login with a hash of a lower cost rehashes it at the current one.
"""

from __future__ import annotations

import os
from functools import cached_property
from typing import Protocol

ROUNDS_VARIABLE = "GUESTS_BCRYPT_ROUNDS"
DEFAULT_ROUNDS = 10


class PasswordHasher(Protocol):
    def hash(self, password: str) -> str: ...

    def verify(self, password: str, hashed: str | None) -> bool:
        """False for a wrong password; with no hash (an unknown phone) it still spends the
        time of one check, so the answer's timing does not tell whether the phone is known."""

    def needs_rehash(self, hashed: str) -> bool: ...


def configured_rounds() -> int:
    rounds = int(os.environ.get(ROUNDS_VARIABLE) or DEFAULT_ROUNDS)
    if not 4 <= rounds <= 16:
        raise ValueError(f"{ROUNDS_VARIABLE} must be 4..16, got {rounds}")
    return rounds


class Bcrypt:
    def __init__(self, rounds: int | None = None) -> None:
        self.rounds = rounds or configured_rounds()

    def hash(self, password: str) -> str:
        import bcrypt

        return bcrypt.hashpw(password.encode(), bcrypt.gensalt(self.rounds)).decode()

    def verify(self, password: str, hashed: str | None) -> bool:
        import bcrypt

        try:
            matches = bcrypt.checkpw(password.encode(), (hashed or self._decoy).encode())
        except ValueError:  # not a bcrypt hash
            return False
        return matches and hashed is not None

    def needs_rehash(self, hashed: str) -> bool:
        parts = hashed.split("$")  # $2b$10$<salt and hash>
        return len(parts) < 4 or not parts[2].isdigit() or int(parts[2]) < self.rounds

    @cached_property
    def _decoy(self) -> str:
        return self.hash("not a password anybody has")
