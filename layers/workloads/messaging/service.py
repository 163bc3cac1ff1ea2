"""The messaging rules: a session's and a message's state machines, idempotency keys, the send
claim, status reports applied forward only, retries. No boto3 and no HTTP here: the store and
the provider come in as ports, so the rules are tested with fakes.

Three rules carry the weight:
- **One send per message generation.** A send job claims the message before it calls the
  provider; a second attempt that finds the claim (its predecessor crashed, or timed out, after
  the call may have gone) waits for the provider's callback instead of sending again, and sends
  again only when no callback came within `SEND_GRACE` (jobs.py, README "exactly once").
- **Never backwards.** A status report moves a message forward only (QUEUED < SENT < DELIVERED
  < READ); FAILED is terminal, and a report about an older generation changes nothing.
- **Your own only.** Every read by id checks the owner (another's is a 404, as if absent).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

from messaging.models import (
    FROM_PROVIDER,
    OPEN_SESSION,
    RANK,
    Direction,
    Message,
    MessageError,
    MessageRequest,
    MessageStatus,
    ReceiveJob,
    Session,
    SessionRequest,
    SessionStatus,
)
from messaging.provider.port import ProviderName, ProviderStatus
from messaging.store import KeyExistsError, MessagingStore, NumberInUseError, Record, StaleRecordError
from tarefa import Refusal

WRITE_TRIES = 5
SEND_GRACE = timedelta(seconds=60)  # how long a claimed send waits for the provider's word


class MessagingError(Refusal):
    code = "MESSAGING_ERROR"
    status = 409


class NotFoundError(MessagingError):
    code = "NOT_FOUND"
    status = 404


class InvalidStateError(MessagingError):
    code = "INVALID_STATE"


class SessionNotConnectedError(MessagingError):
    code = "SESSION_NOT_CONNECTED"


class NumberTakenError(MessagingError):
    code = "PHONE_NUMBER_IN_USE"


class KeyReusedError(MessagingError):
    code = "IDEMPOTENCY_KEY_REUSED"


@dataclass(frozen=True)
class Claim:
    """What a send attempt may do: `send` (the claim is ours), `done` (sent, failed or another
    generation: nothing to do), or `wait` `seconds` for the callback of a send that may have gone."""

    action: Literal["send", "done", "wait"]
    message: Message
    seconds: float = 0


def changed(
    read: Callable[[], Record],
    decide: Callable[[Record], Record | None],
    write: Callable[[Record, int], Record],
    key: str,
) -> Record:
    """Read, decide, write if changed (conditional on the version read); decided again, on a
    fresh read, when a concurrent write came first."""
    for _ in range(WRITE_TRIES):
        current = read()
        decided = decide(current)
        if decided is None:
            return current
        try:
            return write(decided, current.version)
        except StaleRecordError:
            continue
    raise StaleRecordError(key)


def apply_report(
    message: Message,
    generation: int,
    status: ProviderStatus,
    provider_id: str,
    at: datetime,
    error: MessageError | None,
) -> Message | None:
    """The message after a provider's status report, or None when it changes nothing (another
    generation, another send's id, not forward, or the message has failed)."""
    if message.generation != generation or message.status == MessageStatus.FAILED:
        return None
    if message.direction != Direction.OUTBOUND:
        return None
    if message.provider_message_id not in (None, provider_id):
        return None
    changes: dict[str, object] = {}
    if message.provider_message_id is None:  # the send's record was lost: the callback brings it
        changes |= {"provider_message_id": provider_id, "send_claimed": None, "send_claimed_at": None}
    wanted = FROM_PROVIDER[status]
    if wanted == MessageStatus.FAILED:
        if message.status == MessageStatus.READ:
            return None  # read is the recipient's own word: a late failure report cannot undo it
        changes |= {"status": MessageStatus.FAILED, "error": error, "failed_at": at}
    elif RANK[wanted] > RANK[message.status]:
        changes["status"] = wanted
        stamp = {
            MessageStatus.SENT: "sent_at",
            MessageStatus.DELIVERED: "delivered_at",
            MessageStatus.READ: "read_at",
        }
        changes[stamp[wanted]] = at
        if message.sent_at is None:
            changes["sent_at"] = at
    elif "provider_message_id" in changes and message.status == MessageStatus.QUEUED:
        changes |= {"status": MessageStatus.SENT, "sent_at": at}
    if not changes:
        return None
    return message.model_copy(update={**changes, "updated_at": at})


class MessagingService:
    def __init__(
        self,
        store: MessagingStore,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        new_id: Callable[[], str] = lambda: str(uuid.uuid4()),
    ) -> None:
        self.store = store
        self.now = now
        self.new_id = new_id

    # -- sessions --------------------------------------------------------------------------------
    def session(self, session_id: str, owner: str | None = None) -> Session:
        """The session; `owner` (None: any, for admins and jobs) must be its owner, else 404."""
        found = self.store.get_session(session_id)
        if found is None or (owner is not None and found.owner != owner):
            raise NotFoundError(f"Session {session_id} not found")
        return found

    def change_session(self, session_id: str, decide: Callable[[Session], Session | None]) -> Session:
        return changed(lambda: self.session(session_id), decide, self.store.put_session, session_id)

    def create_session(self, owner: str, request: SessionRequest, provider: ProviderName) -> Session:
        now = self.now()
        session = Session(
            session_id=self.new_id(),
            owner=owner,
            name=request.name,
            phone_number_id=request.phone_number_id,
            provider=provider,
            webhook_url=request.webhook_url,
            created_at=now,
            updated_at=now,
        )
        try:
            self.store.create_session(session)
        except NumberInUseError:
            raise NumberTakenError(
                f"Phone number id {request.phone_number_id} is held by another open session; close it first"
            ) from None
        return session

    def note_session_job(self, session_id: str, job_id: str, kind: Literal["init", "close"]) -> Session:
        field = "init_job_id" if kind == "init" else "close_job_id"
        return self.change_session(
            session_id,
            lambda s: None if getattr(s, field) == job_id else s.model_copy(update={field: job_id}),
        )

    def session_waiting(
        self, session_id: str, generation: int, qr: str | None, pairing: str | None
    ) -> Session:
        def decide(current: Session) -> Session | None:
            if current.generation != generation or current.status not in (
                SessionStatus.PENDING,
                SessionStatus.QR_READY,
            ):
                return None
            if (
                current.status == SessionStatus.QR_READY
                and current.qr == qr
                and current.pairing_code == pairing
            ):
                return None
            return current.model_copy(
                update={
                    "status": SessionStatus.QR_READY,
                    "qr": qr,
                    "pairing_code": pairing,
                    "updated_at": self.now(),
                }
            )

        return self.change_session(session_id, decide)

    def session_connected(
        self, session_id: str, generation: int, display_number: str | None = None
    ) -> Session:
        def decide(current: Session) -> Session | None:
            if current.generation != generation or current.status not in (
                SessionStatus.PENDING,
                SessionStatus.QR_READY,
            ):
                return None
            now = self.now()
            return current.model_copy(
                update={
                    "status": SessionStatus.CONNECTED,
                    "reason": None,
                    "qr": None,
                    "pairing_code": None,
                    "display_number": display_number or current.display_number,
                    "connected_at": now,
                    "updated_at": now,
                }
            )

        return self.change_session(session_id, decide)

    def session_failed(self, session_id: str, generation: int, reason: str) -> Session:
        def decide(current: Session) -> Session | None:
            if current.generation != generation or current.status not in (
                SessionStatus.PENDING,
                SessionStatus.QR_READY,
            ):
                return None
            return current.model_copy(
                update={
                    "status": SessionStatus.FAILED,
                    "reason": reason,
                    "qr": None,
                    "pairing_code": None,
                    "updated_at": self.now(),
                }
            )

        return self.change_session(session_id, decide)

    def request_close(self, session: Session) -> Session:
        if session.status not in OPEN_SESSION:
            raise InvalidStateError(f"A {session.status} session cannot be closed")
        return session

    def session_closed(self, session_id: str, reason: str | None = None) -> Session:
        def decide(current: Session) -> Session | None:
            if current.status == SessionStatus.CLOSED:
                return None
            now = self.now()
            return current.model_copy(
                update={
                    "status": SessionStatus.CLOSED,
                    "reason": reason,
                    "qr": None,
                    "pairing_code": None,
                    "closed_at": now,
                    "updated_at": now,
                }
            )

        return self.change_session(session_id, decide)

    # -- messages --------------------------------------------------------------------------------
    def message(self, message_id: str, owner: str | None = None) -> Message:
        found = self.store.get_message(message_id)
        if found is None or (owner is not None and found.owner != owner):
            raise NotFoundError(f"Message {message_id} not found")
        return found

    def change_message(self, message_id: str, decide: Callable[[Message], Message | None]) -> Message:
        return changed(lambda: self.message(message_id), decide, self.store.put_message, message_id)

    def create_message(self, session: Session, request: MessageRequest, to: str) -> tuple[Message, bool]:
        """A new outgoing message, or the one its idempotency key made (False); the same key
        with another body is refused."""
        fingerprint = request.fingerprint(to)
        if request.idempotency_key:
            found = self.store.keyed(session.owner, session.session_id, request.idempotency_key)
            if found is not None:
                return self._keyed(found, fingerprint, request.idempotency_key), False
        if session.status != SessionStatus.CONNECTED:
            raise SessionNotConnectedError(
                f"Session {session.session_id} is {session.status}: messages go out through a CONNECTED session"
            )
        now = self.now()
        message = Message(
            message_id=self.new_id(),
            session_id=session.session_id,
            owner=session.owner,
            to=to,
            text=request.text,
            media=request.media,
            kind="image" if request.media else "text",
            idempotency_key=request.idempotency_key,
            created_at=now,
            updated_at=now,
        )
        try:
            self.store.create_message(message, fingerprint if request.idempotency_key else None)
        except KeyExistsError as exists:
            return self._keyed(
                (exists.message_id, exists.fingerprint), fingerprint, request.idempotency_key
            ), False
        return message, True

    def _keyed(self, found: tuple[str, str], fingerprint: str, key: str | None) -> Message:
        message_id, recorded = found
        if recorded != fingerprint:
            raise KeyReusedError(
                f"idempotencyKey {key} already made a message with another recipient or body",
                {"messageId": message_id},
            )
        return self.message(message_id)

    def note_message_job(self, message_id: str, job_id: str) -> Message:
        return self.change_message(
            message_id,
            lambda m: None if job_id in m.job_ids else m.model_copy(update={"job_ids": [*m.job_ids, job_id]}),
        )

    def request_retry(self, message: Message) -> Message:
        def restart(current: Message) -> Message:
            if current.direction != Direction.OUTBOUND or current.status != MessageStatus.FAILED:
                raise InvalidStateError(f"A {current.status} message cannot be retried; only FAILED ones")
            return current.model_copy(
                update={
                    "status": MessageStatus.QUEUED,
                    "error": None,
                    "generation": current.generation + 1,
                    "provider_message_id": None,
                    "send_claimed": None,
                    "send_claimed_at": None,
                    "failed_at": None,
                    "sent_at": None,
                    "delivered_at": None,
                    "read_at": None,
                    "updated_at": self.now(),
                }
            )

        return self.change_message(message.message_id, restart)

    def claim_send(self, message_id: str, generation: int, grace: timedelta = SEND_GRACE) -> Claim:
        """Claim a message's send for this attempt (see Claim)."""
        verdict: list[Claim] = []

        def decide(current: Message) -> Message | None:
            verdict.clear()
            if (
                current.generation != generation
                or current.status != MessageStatus.QUEUED
                or current.provider_message_id is not None
            ):
                verdict.append(Claim("done", current))
                return None
            now = self.now()
            if current.send_claimed == generation and current.send_claimed_at is not None:
                waited = now - current.send_claimed_at
                if waited < grace:
                    verdict.append(Claim("wait", current, (grace - waited).total_seconds()))
                    return None
            claimed = current.model_copy(
                update={"send_claimed": generation, "send_claimed_at": now, "updated_at": now}
            )
            verdict.append(Claim("send", claimed))
            return claimed

        after = self.change_message(message_id, decide)
        claim = verdict[0]
        return Claim(claim.action, after, claim.seconds)

    def release_claim(self, message_id: str, generation: int) -> Message:
        """The provider answered with an error: nothing went, the next attempt sends at once."""

        def decide(current: Message) -> Message | None:
            if (
                current.generation != generation
                or current.send_claimed != generation
                or current.provider_message_id
            ):
                return None
            return current.model_copy(update={"send_claimed": None, "send_claimed_at": None})

        return self.change_message(message_id, decide)

    def record_sent(
        self, message_id: str, generation: int, provider_id: str, provider: ProviderName
    ) -> Message:
        for _ in range(WRITE_TRIES):
            current = self.message(message_id)
            if current.generation != generation or current.provider_message_id is not None:
                return current  # a callback recorded it first, or a retry moved on
            now = self.now()
            status = current.status if current.status != MessageStatus.QUEUED else MessageStatus.SENT
            sent = current.model_copy(
                update={
                    "provider_message_id": provider_id,
                    "status": status,
                    "sent_at": current.sent_at or now,
                    "send_claimed": None,
                    "send_claimed_at": None,
                    "updated_at": now,
                }
            )
            try:
                return self.store.put_sent(sent, current.version, provider)
            except StaleRecordError:
                continue
        raise StaleRecordError(message_id)

    def fail(self, message_id: str, generation: int, code: str, reason: str) -> Message:
        """FAILED with a safe reason, while this generation has not been sent or failed."""

        def decide(current: Message) -> Message | None:
            if current.generation != generation or current.status != MessageStatus.QUEUED:
                return None
            now = self.now()
            return current.model_copy(
                update={
                    "status": MessageStatus.FAILED,
                    "error": MessageError(code=code, reason=reason),
                    "failed_at": now,
                    "send_claimed": None,
                    "send_claimed_at": None,
                    "updated_at": now,
                }
            )

        return self.change_message(message_id, decide)

    def apply_status(
        self,
        provider: ProviderName,
        provider_id: str,
        status: ProviderStatus,
        callback_data: str | None,
        error: MessageError | None,
        at: datetime | None = None,
    ) -> tuple[Message | None, bool]:
        """(the message, whether the report changed it); (None, False) when the report is about
        no message of ours."""
        found = self.store.by_provider_id(provider, provider_id)
        if found is None and callback_data:
            found = parse_callback(callback_data)
        if found is None:
            return None, False
        message_id, generation = found
        current = self.store.get_message(message_id)
        if current is None:
            return None, False
        when = at or self.now()
        for _ in range(WRITE_TRIES):
            decided = apply_report(current, generation, status, provider_id, when, error)
            if decided is None:
                return current, False
            try:
                if current.provider_message_id is None:
                    return self.store.put_sent(decided, current.version, provider), True
                return self.store.put_message(decided, current.version), True
            except StaleRecordError:
                current = self.message(message_id)
        raise StaleRecordError(message_id)

    def record_inbound(self, session: Session, payload: ReceiveJob) -> tuple[Message, bool]:
        """The inbound message (False: a redelivery of one stored already)."""
        now = self.now()
        message = Message(
            message_id=self.new_id(),
            session_id=session.session_id,
            owner=session.owner,
            direction=Direction.INBOUND,
            sender=payload.sender,
            text=payload.text or payload.media_caption or None,
            media_id=payload.media_id,
            kind=payload.kind,
            status=MessageStatus.RECEIVED,
            provider_message_id=payload.provider_message_id,
            created_at=now,
            updated_at=now,
        )
        if self.store.create_inbound(message, session.provider):
            return message, True
        found = self.store.by_provider_id(session.provider, payload.provider_message_id)
        assert found is not None
        return self.message(found[0]), False


def callback_data(message: Message) -> str:
    """What a send asks the provider to echo in its callbacks: the message and its generation."""
    return f"tarefa:{message.message_id}:{message.generation}"


def parse_callback(data: str) -> tuple[str, int] | None:
    prefix, _, rest = data.partition(":")
    message_id, _, generation = rest.rpartition(":")
    if prefix != "tarefa" or not message_id or not generation.isdigit():
        return None
    return message_id, int(generation)
