"""In-memory stand-ins for the messaging workload's ports, for unit tests with no network.

- `FakeMessagingStore`: `MessagingStore`'s methods the service uses, with its semantics
  (optimistic versions, one open session per business number, one message per idempotency key
  and per provider id), records kept as the real store keeps them (its JSON doc).
- `FakeHttp`: the adapters' transport, answering scripted responses and recording requests.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from typing import Any, cast

from messaging.models import OPEN_SESSION, Message, Session
from messaging.service import MessagingService
from messaging.store import KeyExistsError, MessagingStore, NumberInUseError, StaleRecordError, _doc

from tarefa.outbound import HttpResponse


class FakeMessagingStore:
    def __init__(self) -> None:
        self.sessions: dict[str, str] = {}
        self.messages: dict[str, str] = {}
        self.numbers: dict[str, tuple[str, bool]] = {}
        self.keys: dict[str, tuple[str, str]] = {}
        self.providers: dict[str, tuple[str, int]] = {}

    def get_session(self, session_id: str) -> Session | None:
        doc = self.sessions.get(session_id)
        return Session.model_validate_json(doc) if doc else None

    def create_session(self, session: Session) -> None:
        held = self.numbers.get(session.phone_number_id)
        if held is not None and held[1]:
            raise NumberInUseError(held[0])
        self.numbers[session.phone_number_id] = (session.session_id, True)
        self.sessions[session.session_id] = _doc(session)

    def number_holder(self, phone_number_id: str) -> str | None:
        held = self.numbers.get(phone_number_id)
        return held[0] if held and held[1] else None

    def put_session(self, session: Session, expected_version: int) -> Session:
        current = self.get_session(session.session_id)
        if current is None or current.version != expected_version:
            raise StaleRecordError(session.session_id)
        written = session.model_copy(update={"version": expected_version + 1})
        self.sessions[session.session_id] = _doc(written)
        if (
            session.status not in OPEN_SESSION
            and self.numbers.get(session.phone_number_id, ("",))[0] == session.session_id
        ):
            self.numbers[session.phone_number_id] = (session.session_id, False)
        return written

    def get_message(self, message_id: str) -> Message | None:
        doc = self.messages.get(message_id)
        return Message.model_validate_json(doc) if doc else None

    def create_message(self, message: Message, fingerprint: str | None) -> None:
        if message.idempotency_key and fingerprint is not None:
            key = f"{message.owner}#{message.session_id}#{message.idempotency_key}"
            if key in self.keys:
                raise KeyExistsError(*self.keys[key])
            self.keys[key] = (message.message_id, fingerprint)
        self.messages[message.message_id] = _doc(message)

    def keyed(self, owner: str, session_id: str, key: str) -> tuple[str, str] | None:
        return self.keys.get(f"{owner}#{session_id}#{key}")

    def create_inbound(self, message: Message, provider: str) -> bool:
        key = f"{provider}#{message.provider_message_id}"
        if key in self.providers:
            return False
        self.providers[key] = (message.message_id, 0)
        self.messages[message.message_id] = _doc(message)
        return True

    def put_message(self, message: Message, expected_version: int) -> Message:
        current = self.get_message(message.message_id)
        if current is None or current.version != expected_version:
            raise StaleRecordError(message.message_id)
        written = message.model_copy(update={"version": expected_version + 1})
        self.messages[message.message_id] = _doc(written)
        return written

    def put_sent(self, message: Message, expected_version: int, provider: str) -> Message:
        written = self.put_message(message, expected_version)
        self.providers[f"{provider}#{message.provider_message_id}"] = (message.message_id, message.generation)
        return written

    def by_provider_id(self, provider: str, provider_message_id: str) -> tuple[str, int] | None:
        return self.providers.get(f"{provider}#{provider_message_id}")


def fake_service(
    store: FakeMessagingStore, clock: Callable[[], datetime], ids: Callable[[], str]
) -> MessagingService:
    return MessagingService(cast("MessagingStore", store), now=clock, new_id=ids)


class FakeHttp:
    """Answers each request with the next scripted response (or raises it, if an exception)."""

    def __init__(self, *answers: HttpResponse | Exception) -> None:
        self.answers = list(answers)
        self.requests: list[dict[str, Any]] = []

    def request(self, method: str, url: str, **kwargs: Any) -> HttpResponse:
        self.requests.append({"method": method, "url": url, **kwargs})
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer


def response(status: int, body: Any, headers: dict[str, str] | None = None) -> HttpResponse:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return HttpResponse(
        status=status, headers=headers or {}, body=raw, url="https://graph.facebook.com/v21.0/x"
    )


def graph_error(status: int, code: int) -> HttpResponse:
    return response(
        status,
        {
            "error": {
                "message": f"(#{code}) something",
                "type": "OAuthException",
                "code": code,
                "fbtrace_id": "A",
            }
        },
    )
