"""Server-side sessions with a sliding expiry (seed 001: 30 minutes), on the cache backend.

The token handed to the client is 256 random bits; only its SHA-256 is stored, so a leaked
cache dump holds no usable token. A session has no other source of truth, so an outage of the
backend is an error here (SessionsUnavailableError, 503), not a silent logout.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from pydantic import Field, ValidationError

from tarefa.breaker import BackendUnavailableError
from tarefa.errors import SessionsUnavailableError
from tarefa.job import CamelModel
from tarefa.ports import CacheBackend

SESSION_SCHEMA = 1


class Session(CamelModel):
    user_id: str = Field(min_length=1, max_length=256)
    data: dict[str, Any] = Field(default_factory=dict)
    created_at: datetime
    expires_at: datetime


class SessionStore:
    def __init__(
        self,
        backend: CacheBackend,
        ttl_seconds: int = 30 * 60,
        prefix: str = "tarefa:",
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.backend = backend
        self.ttl_seconds = ttl_seconds
        self.prefix = prefix
        self.clock = clock

    def create(self, user_id: str, data: dict[str, Any] | None = None) -> tuple[str, Session]:
        """A new session; the token is returned once and never stored."""
        token = secrets.token_urlsafe(32)
        now = self.clock()
        session = Session(
            user_id=user_id, data=data or {}, created_at=_at(now), expires_at=_at(now + self.ttl_seconds)
        )
        self._write(token, session)
        return token, session

    def get(self, token: str) -> Session | None:
        raw = self._call(lambda: self.backend.get(self._key(token)))
        if raw is None:
            return None
        try:
            session = Session.model_validate_json(raw)
        except ValidationError:
            return None
        return session if session.expires_at.timestamp() > self.clock() else None

    def refresh(self, token: str) -> Session | None:
        """Slide the expiry to `ttl_seconds` from now; None when the session is gone."""
        session = self.get(token)
        if session is None:
            return None
        session = session.model_copy(update={"expires_at": _at(self.clock() + self.ttl_seconds)})
        self._write(token, session)
        return session

    def destroy(self, token: str) -> None:
        self._call(lambda: self.backend.delete([self._key(token)]))

    def _write(self, token: str, session: Session) -> None:
        body = session.model_dump_json(by_alias=True)
        self._call(lambda: self.backend.set(self._key(token), body, self.ttl_seconds))

    def _key(self, token: str) -> str:
        return f"{self.prefix}session:{hashlib.sha256(token.encode()).hexdigest()}"

    @staticmethod
    def _call(operation: Callable[[], Any]) -> Any:
        try:
            return operation()
        except BackendUnavailableError as exc:
            raise SessionsUnavailableError("Sessions are unavailable; try again shortly") from exc


def _at(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)
