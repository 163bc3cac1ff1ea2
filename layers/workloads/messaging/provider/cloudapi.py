"""The WhatsApp Cloud API adapter (Meta's Graph API), over the engine's outbound client.

Calls: `GET /{version}/{phone-number-id}` (a session's check: the number id exists and the
token may use it; there is no QR code) and `POST /{version}/{phone-number-id}/messages` (text,
or an image by link with its caption), both with `Authorization: Bearer <token>`. The Cloud API
has no idempotency header: the send carries `biz_opaque_callback_data` (our message id and
generation), which Meta echoes in every status callback of the message, so a callback finds a
message whose send was never recorded (jobs.py explains the exactly-once design).

Error codes (`error.code` of the JSON error body; Meta's error-codes page, design/providers.md
section 2) decide retryable or permanent, whatever the HTTP status says; then 429 and 5xx are
retryable, other 4xx permanent. A timeout or a dropped connection is retryable and ambiguous (the
message may have gone). Messages carry method, path template, status and code: never a number,
a body or the token.
"""

from __future__ import annotations

import json
from typing import Any

from messaging.provider.port import (
    HttpTransport,
    Inbound,
    Outgoing,
    ProviderName,
    ProviderPermanentError,
    ProviderRetryableError,
    ProviderStatus,
    Sent,
    SessionRef,
    SessionState,
    StatusReport,
)
from tarefa.errors import RetryableJobError
from tarefa.outbound import HttpResponse, Timeout, parse_retry_after

DEFAULT_BASE_URL = "https://graph.facebook.com"
DEFAULT_VERSION = "v21.0"

# Meta's codes a later attempt may get past (throughput, pair rate, WABA rate, too many API
# calls, spam rate limit, temporary errors) ...
RETRYABLE_CODES = frozenset({130429, 131056, 80007, 4, 131048, 1, 2, 131000, 133004})
# ... and those it will not (not on WhatsApp, unsupported message type, invalid parameter,
# access token, re-engagement window, permissions, number not registered, recipient is sender).
PERMANENT_CODES = frozenset({131026, 131051, 100, 190, 131047, 10, 200, 131009, 133010, 131021, 131008})
RATE_LIMIT_DEFAULT_SECONDS = 30.0
REASONS = {
    130429: "rate_limited",
    131056: "pair_rate_limited",
    80007: "account_rate_limited",
    4: "too_many_api_calls",
    131048: "spam_rate_limited",
    131026: "not_on_whatsapp",
    131051: "unsupported_message_type",
    100: "invalid_parameter",
    190: "invalid_access_token",
    131047: "reengagement_window_closed",
    133010: "phone_number_not_registered",
}


def _obj(value: Any) -> dict[str, Any]:
    """A JSON object, or an empty one for anything else."""
    return value if isinstance(value, dict) else {}


def reason_of(code: int | None) -> str:
    """A safe, stable reason for a provider's error code (shown on a FAILED message)."""
    if code is None:
        return "provider_error"
    return REASONS.get(code, f"whatsapp_error_{code}")


def _error_code(response: HttpResponse) -> int | None:
    try:
        body = json.loads(response.body)
    except (ValueError, UnicodeDecodeError):
        return None
    error = body.get("error") if isinstance(body, dict) else None
    code = error.get("code") if isinstance(error, dict) else None
    return code if isinstance(code, int) and not isinstance(code, bool) else None


def classify(response: HttpResponse, what: str) -> ProviderRetryableError | ProviderPermanentError | None:
    """The error a response stands for (None for 2xx)."""
    if 200 <= response.status < 300:
        return None
    code = _error_code(response)
    label = f"{what} answered {response.status}" + (f" (WhatsApp error {code})" if code is not None else "")
    retry_after = parse_retry_after(response.headers.get("retry-after"))
    if code in RETRYABLE_CODES or (
        code not in PERMANENT_CODES and (response.status == 429 or response.status >= 500)
    ):
        if retry_after is None and code in (130429, 131056, 80007, 4, 131048):
            retry_after = RATE_LIMIT_DEFAULT_SECONDS
        return ProviderRetryableError(
            label,
            code=f"WHATSAPP_{code}" if code is not None else f"HTTP_{response.status}",
            provider_code=code,
            status=response.status,
            retry_after=retry_after,
        )
    return ProviderPermanentError(
        label,
        code=f"WHATSAPP_{code}" if code is not None else f"HTTP_{response.status}",
        provider_code=code,
        status=response.status,
    )


class CloudApiProvider:
    name: ProviderName = "cloudapi"

    def __init__(
        self,
        http: HttpTransport,
        access_token: str,
        base_url: str = DEFAULT_BASE_URL,
        version: str = DEFAULT_VERSION,
        timeout: Timeout = (3.0, 10.0),
    ) -> None:
        if not access_token:
            raise ValueError("the Cloud API access token is empty")
        self._http = http
        self._token = access_token
        self.base_url = base_url.rstrip("/")
        self.version = version.strip("/")
        self._timeout = timeout

    def __repr__(self) -> str:  # never the token
        return f"CloudApiProvider(base_url={self.base_url!r}, version={self.version!r})"

    def _call(self, method: str, path: str, template: str, body: Any = None) -> dict[str, Any]:
        what = f"{method} {template}"
        try:
            response = self._http.request(
                method,
                f"{self.base_url}/{self.version}/{path}",
                headers={"Authorization": f"Bearer {self._token}", "Accept": "application/json"},
                json=body,
                timeout=self._timeout,
                raise_for_status=False,
            )
        except RetryableJobError as exc:  # a timeout, a reset: the request may have arrived
            raise ProviderRetryableError(
                f"{what}: no answer ({type(exc).__name__})", code="PROVIDER_UNREACHABLE", ambiguous=True
            ) from None
        error = classify(response, what)
        if error is not None:
            raise error
        try:
            data = json.loads(response.body)
        except (ValueError, UnicodeDecodeError):
            data = None
        if not isinstance(data, dict):
            raise ProviderRetryableError(
                f"{what}: the answer is not a JSON object", code="BAD_RESPONSE", ambiguous=True
            )
        return data

    @staticmethod
    def _segment(value: str) -> str:
        if not value or not value.isdigit():
            raise ProviderPermanentError("the phone number id must be digits", code="INVALID_PHONE_NUMBER_ID")
        return value

    def open_session(self, session: SessionRef) -> SessionState:
        data = self._call("GET", self._segment(session.phone_number_id), "GET /{version}/{phone-number-id}")
        if str(data.get("id", "")) != session.phone_number_id:
            raise ProviderPermanentError(
                "GET /{version}/{phone-number-id}: the answer is about another number",
                code="PHONE_NUMBER_MISMATCH",
            )
        display = data.get("display_phone_number")
        return SessionState(state="connected", display_number=str(display) if display else None)

    def session_state(self, session: SessionRef) -> SessionState:
        return self.open_session(session)

    def close_session(self, session: SessionRef) -> None:
        """The Cloud API keeps no connection: closing is ours alone."""

    def send(self, session: SessionRef, message: Outgoing) -> Sent:
        body: dict[str, Any] = {
            "messaging_product": "whatsapp",
            "recipient_type": "individual",
            "to": message.to.lstrip("+"),
        }
        if message.media_url:
            image: dict[str, Any] = {"link": message.media_url}
            caption = message.media_caption or message.text
            if caption:
                image["caption"] = caption
            body |= {"type": "image", "image": image}
        else:
            body |= {"type": "text", "text": {"preview_url": False, "body": message.text or ""}}
        if message.callback_data:
            body["biz_opaque_callback_data"] = message.callback_data
        template = "POST /{version}/{phone-number-id}/messages"
        data = self._call("POST", f"{self._segment(session.phone_number_id)}/messages", template, body)
        messages = data.get("messages")
        first = (
            messages[0] if isinstance(messages, list) and messages and isinstance(messages[0], dict) else {}
        )
        provider_id = first.get("id")
        if not isinstance(provider_id, str) or not provider_id:
            raise ProviderRetryableError(
                f"{template}: the answer has no message id", code="BAD_RESPONSE", ambiguous=True
            )
        return Sent(provider_message_id=provider_id)


# -- inbound webhooks ----------------------------------------------------------------------------


def _e164(wa_id: Any) -> str:
    text = str(wa_id or "")
    return text if text.startswith("+") else f"+{text}"


def _int(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0


def parse_webhook(body: Any) -> tuple[list[Inbound], list[StatusReport]]:
    """The inbound messages and status reports of a Cloud API webhook POST (Meta's envelope
    `entry[].changes[].value.{messages,statuses}`); anything else in it is ignored."""
    inbound: list[Inbound] = []
    statuses: list[StatusReport] = []
    if not isinstance(body, dict) or body.get("object") != "whatsapp_business_account":
        return inbound, statuses
    for entry in body.get("entry") or []:
        for change in (entry or {}).get("changes") or [] if isinstance(entry, dict) else []:
            if not isinstance(change, dict) or change.get("field", "messages") != "messages":
                continue
            value = change.get("value")
            if not isinstance(value, dict):
                continue
            metadata = _obj(value.get("metadata"))
            address = str(metadata.get("phone_number_id") or "")
            names = {
                str(c.get("wa_id")): (c.get("profile") or {}).get("name")
                for c in value.get("contacts") or []
                if isinstance(c, dict)
            }
            for message in value.get("messages") or []:
                if isinstance(message, dict) and message.get("id") and message.get("from"):
                    inbound.append(_inbound(message, address, names))
            for status in value.get("statuses") or []:
                if (
                    isinstance(status, dict)
                    and status.get("id")
                    and status.get("status") in set(ProviderStatus)
                ):
                    statuses.append(_status(status, address))
    return inbound, statuses


def _inbound(message: dict[str, Any], address: str, names: dict[str, Any]) -> Inbound:
    kind = str(message.get("type") or "unknown")
    text = ""
    media_id = caption = None
    part = _obj(message.get(kind))
    if kind == "text":
        text = str(part.get("body") or "")
    elif kind in ("image", "video", "audio", "document", "sticker"):
        media_id = str(part.get("id") or "") or None
        caption = part.get("caption")
    elif kind in ("button",):
        text = str(part.get("text") or "")
    elif kind == "interactive":
        reply = part.get("button_reply") or part.get("list_reply") or {}
        text = str(reply.get("title") or "") if isinstance(reply, dict) else ""
    sender = str(message.get("from"))
    name = names.get(sender)
    return Inbound(
        provider_message_id=str(message["id"]),
        sender=_e164(sender),
        kind=kind,
        text=text[:4096],
        media_id=media_id,
        media_caption=str(caption)[:1024] if caption else None,
        timestamp=_int(message.get("timestamp")),
        profile_name=str(name)[:256] if name else None,
        address=address,
    )


def _status(status: dict[str, Any], address: str) -> StatusReport:
    errors = status.get("errors") if isinstance(status.get("errors"), list) else []
    first = errors[0] if errors and isinstance(errors[0], dict) else {}
    code = first.get("code")
    title = first.get("title")
    return StatusReport(
        provider_message_id=str(status["id"]),
        status=ProviderStatus(status["status"]),
        timestamp=_int(status.get("timestamp")),
        error_code=code if isinstance(code, int) and not isinstance(code, bool) else None,
        error_title=str(title)[:200] if title else None,
        callback_data=str(status["biz_opaque_callback_data"])[:512]
        if status.get("biz_opaque_callback_data")
        else None,
        address=address,
    )
