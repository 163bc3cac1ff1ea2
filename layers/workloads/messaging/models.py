"""The messaging workload's records and bodies: sessions, messages, what the routes accept and
answer, and the job payloads.

Phone numbers are E.164. A message's number and body are personal data: stored (a send needs
them) and shown to the message's owner, never logged, never in a job's error; inbound ones travel
in their job's payload as sensitive fields (sealed, `[redacted]` everywhere but the handler).
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator
from pydantic.alias_generators import to_camel

from messaging.provider.port import ProviderName, ProviderStatus

KEY_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:\-]{0,127}$"
URL_PATTERN = r"^https?://[^\s]{1,2040}$"
MAX_TEXT = 4096


class Camel(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")


class SessionStatus(StrEnum):
    PENDING = "PENDING"  # accepted; session:init brings it online
    QR_READY = "QR_READY"  # Evolution: its QR code waits to be scanned
    CONNECTED = "CONNECTED"
    FAILED = "FAILED"  # the provider refused it (reason), or init gave up
    CLOSED = "CLOSED"


OPEN_SESSION = frozenset({SessionStatus.PENDING, SessionStatus.QR_READY, SessionStatus.CONNECTED})


class MessageStatus(StrEnum):
    QUEUED = "QUEUED"
    SENT = "SENT"
    DELIVERED = "DELIVERED"
    READ = "READ"
    FAILED = "FAILED"
    RECEIVED = "RECEIVED"  # an inbound message


# How far along an outgoing message is: reports only move it forward (a late `delivered` after
# `read` keeps READ). FAILED is terminal (only POST /messages/{id}/retry leaves it).
RANK = {MessageStatus.QUEUED: 0, MessageStatus.SENT: 1, MessageStatus.DELIVERED: 2, MessageStatus.READ: 3}
FROM_PROVIDER = {
    ProviderStatus.SENT: MessageStatus.SENT,
    ProviderStatus.DELIVERED: MessageStatus.DELIVERED,
    ProviderStatus.READ: MessageStatus.READ,
    ProviderStatus.FAILED: MessageStatus.FAILED,
}


class Direction(StrEnum):
    OUTBOUND = "outbound"
    INBOUND = "inbound"


class Session(Camel):
    session_id: str
    owner: str
    name: str
    phone_number_id: str
    provider: ProviderName
    webhook_url: str | None = None
    status: SessionStatus = SessionStatus.PENDING
    reason: str | None = None
    qr: str | None = None  # shown while PENDING / QR_READY
    pairing_code: str | None = None
    display_number: str | None = None
    init_job_id: str | None = None
    close_job_id: str | None = None
    generation: int = 0  # each init after a close or a failure
    created_at: datetime
    updated_at: datetime
    connected_at: datetime | None = None
    closed_at: datetime | None = None
    version: int = 0

    def public(self) -> dict[str, object]:
        body = self.model_dump(mode="json", by_alias=True, exclude={"owner", "version", "generation"})
        if self.status not in (SessionStatus.PENDING, SessionStatus.QR_READY):
            body.pop("qr", None)
            body.pop("pairingCode", None)
        return body


class Media(Camel):
    url: str = Field(pattern=URL_PATTERN, description="a public https link to the image")
    caption: str | None = Field(None, max_length=1024)


class MessageError(Camel):
    code: str  # WHATSAPP_131026, PROVIDER_UNAVAILABLE, ...
    reason: str  # not_on_whatsapp, rate_limited, ... (never a number or a body)


class Message(Camel):
    message_id: str
    session_id: str
    owner: str
    direction: Direction = Direction.OUTBOUND
    to: str | None = None  # outbound: the recipient (E.164)
    sender: str | None = Field(None, alias="from")  # inbound: who sent it (E.164)
    text: str | None = None
    media: Media | None = None
    media_id: str | None = None  # inbound: the provider's media id
    kind: str = "text"
    status: MessageStatus = MessageStatus.QUEUED
    error: MessageError | None = None
    provider_message_id: str | None = None
    generation: int = 0  # sends asked for (POST .../retry makes the next)
    idempotency_key: str | None = None
    job_ids: list[str] = Field(default_factory=list)
    # The send in flight: which generation claimed it and when (jobs.send_message).
    send_claimed: int | None = Field(None, exclude=True)
    send_claimed_at: datetime | None = Field(None, exclude=True)
    created_at: datetime
    updated_at: datetime
    sent_at: datetime | None = None
    delivered_at: datetime | None = None
    read_at: datetime | None = None
    failed_at: datetime | None = None
    version: int = 0

    def public(self) -> dict[str, object]:
        body = self.model_dump(mode="json", by_alias=True, exclude={"owner", "version"}, exclude_none=True)
        body.setdefault("error", None)
        return body


# -- HTTP bodies ---------------------------------------------------------------------------------


class SessionRequest(Camel):
    name: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]
    phone_number_id: str = Field(
        pattern=r"^[0-9]{1,32}$",
        description="the Cloud API's phone number id (Evolution: the number to pair)",
    )
    webhook_url: str | None = Field(
        None, pattern=URL_PATTERN, description="one of your webhook subscriptions: inbound messages go there"
    )


class MessageRequest(Camel):
    to: str = Field(
        min_length=3, max_length=32, description="E.164 (+5511...) or a number of the default region"
    )
    text: str | None = Field(None, min_length=1, max_length=MAX_TEXT)
    media: Media | None = None
    idempotency_key: str | None = Field(
        None, pattern=KEY_PATTERN, description="the same key and body again returns the same message (200)"
    )

    @model_validator(mode="after")
    def _something_to_send(self) -> MessageRequest:
        if self.text is None and self.media is None:
            raise ValueError("text or media is required")
        return self

    def fingerprint(self, to: str) -> str:
        """What makes a repeated idempotencyKey the same request."""
        import hashlib

        media = self.media.model_dump_json() if self.media else ""
        return hashlib.sha256(f"{to}\x00{self.text or ''}\x00{media}".encode()).hexdigest()


class SessionQuery(Camel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")

    cursor: str | None = None
    limit: int = Field(25, ge=1, le=100)
    user_id: str | None = Field(None, description="admins: another user's sessions")


class MessageQuery(Camel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")

    status: MessageStatus | None = None
    direction: Direction | None = None
    cursor: str | None = None
    limit: int = Field(25, ge=1, le=100)


class SessionAccepted(Camel):
    session: dict[str, object]
    job_id: str | None = None


class MessageAccepted(Camel):
    message: dict[str, object]
    job_id: str | None = None


# -- job payloads ----------------------------------------------------------------------------------


class SessionJob(Camel):
    session_id: str
    generation: int = Field(0, ge=0)


class SendJob(Camel):
    message_id: str
    session_id: str  # the rate's key: at most 80 sends a minute per session
    generation: int = Field(0, ge=0)


class ReceiveJob(Camel):
    session_id: str
    provider_message_id: str = Field(min_length=1, max_length=256)
    sender: str = Field(alias="from", max_length=32)  # sensitive
    kind: str = Field("text", max_length=32)
    text: str = Field("", max_length=MAX_TEXT)  # sensitive
    media_id: str | None = Field(None, max_length=256)
    media_caption: str | None = Field(None, max_length=1024)  # sensitive
    timestamp: int = 0
    profile_name: str | None = Field(None, max_length=256)  # sensitive


class StatusJob(Camel):
    provider: ProviderName = "cloudapi"
    provider_message_id: str = Field(min_length=1, max_length=256)
    status: ProviderStatus
    timestamp: int = 0
    error_code: int | None = None
    error_title: str | None = Field(None, max_length=200)
    callback_data: str | None = Field(None, max_length=512)


Kind = Literal["session", "message"]
