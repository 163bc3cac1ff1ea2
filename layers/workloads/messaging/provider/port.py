"""What the messaging workload needs from a WhatsApp provider, in its own terms.

Two adapters speak it: the WhatsApp Cloud API (Meta's Graph API, `cloudapi.py`) and Evolution
API v2 (Baileys behind HTTP, `evolution.py`). Both go through the engine's outbound client.

Failures are the engine's job errors: `ProviderRetryableError` (rate limits, 5xx, timeouts: a
later attempt may succeed) and `ProviderPermanentError` (not on WhatsApp, invalid parameter,
bad token: no attempt will). Their messages name the method, the path template, the HTTP status
and the provider's error code, never a phone number, a message body or a credential.

Inbound webhooks become the same two shapes whatever the provider: `Inbound` (a message someone
sent to the session's number) and `StatusReport` (sent, delivered, read or failed).
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict

from tarefa.errors import PermanentJobError, RetryableJobError

if TYPE_CHECKING:  # the outbound client (urllib3) loads in the worker, not on a route's cold start
    from tarefa.outbound import HttpResponse, Timeout

ProviderName = Literal["cloudapi", "evolution"]
PROVIDERS: tuple[ProviderName, ...] = ("cloudapi", "evolution")


class ProviderStatus(StrEnum):
    SENT = "sent"
    DELIVERED = "delivered"
    READ = "read"
    FAILED = "failed"


class ProviderRetryableError(RetryableJobError):
    """The provider may answer differently later (429, 5xx, a timeout, a throughput limit)."""

    def __init__(
        self,
        message: str,
        *,
        code: str,
        provider_code: int | None = None,
        status: int | None = None,
        retry_after: float | None = None,
        ambiguous: bool = False,
    ) -> None:
        super().__init__(message, retry_after=retry_after)
        self.code = code
        self.provider_code = provider_code
        self.status = status
        # The request may have reached the provider (a timeout, a dropped connection): a send
        # may have happened. A 429 or a 5xx with an error body did not send.
        self.ambiguous = ambiguous


class ProviderPermanentError(PermanentJobError):
    """The provider refused and will refuse again (code WHATSAPP_<provider code> or HTTP_<status>)."""

    def __init__(
        self, message: str, *, code: str, provider_code: int | None = None, status: int | None = None
    ) -> None:
        super().__init__(message, code=code)
        self.provider_code = provider_code
        self.status = status


class HttpTransport(Protocol):
    """What the adapters need of OutboundHttp (so a unit test can pass a fake)."""

    def request(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        json: Any = None,
        body: bytes | str | None = None,
        timeout: Timeout | None = None,
        raise_for_status: bool = True,
    ) -> HttpResponse: ...


class SessionRef(BaseModel):
    """What an adapter needs to know of a session."""

    model_config = ConfigDict(frozen=True)

    session_id: str
    phone_number_id: str  # the Cloud API's phone number id; Evolution: the number to pair, if any
    instance: str  # Evolution's instance name (the session id)
    webhook_url: str | None = None  # Evolution: where the instance posts its events
    webhook_headers: dict[str, str] = {}  # Evolution: the per-instance secret header


class SessionState(BaseModel):
    """Where a session is with the provider."""

    model_config = ConfigDict(frozen=True)

    state: Literal["connected", "waiting", "closed"]
    qr: str | None = None  # a data-URL PNG of the QR code to scan (Evolution)
    pairing_code: str | None = None
    display_number: str | None = None  # the business number, as the provider shows it


class Outgoing(BaseModel):
    model_config = ConfigDict(frozen=True)

    to: str  # E.164
    text: str | None = None
    media_url: str | None = None
    media_caption: str | None = None
    # Echoed back by the Cloud API in every status callback of this message
    # (biz_opaque_callback_data): how a callback finds a message whose send was not recorded.
    callback_data: str = ""


class Sent(BaseModel):
    model_config = ConfigDict(frozen=True)

    provider_message_id: str


class Inbound(BaseModel):
    """A message someone sent to a session's number."""

    model_config = ConfigDict(frozen=True)

    provider_message_id: str
    sender: str  # E.164
    kind: str = "text"  # text, image, audio, ... as the provider names it
    text: str = ""
    media_id: str | None = None
    media_caption: str | None = None
    timestamp: int = 0  # unix seconds
    profile_name: str | None = None
    address: str = ""  # the Cloud API's phone_number_id, or Evolution's instance


class StatusReport(BaseModel):
    """A status callback about a message a session sent."""

    model_config = ConfigDict(frozen=True)

    provider_message_id: str
    status: ProviderStatus
    timestamp: int = 0
    error_code: int | None = None
    error_title: str | None = None
    callback_data: str | None = None
    address: str = ""


class WhatsAppProvider(Protocol):
    name: ProviderName

    def open_session(self, session: SessionRef) -> SessionState:
        """Bring the sender online: the Cloud API checks the phone number id; Evolution creates
        the instance (once) and returns its QR code until it is scanned."""
        ...

    def session_state(self, session: SessionRef) -> SessionState: ...

    def close_session(self, session: SessionRef) -> None: ...

    def send(self, session: SessionRef, message: Outgoing) -> Sent: ...
