"""The Evolution API v2 adapter (Baileys behind HTTP, hosted by the team), over the engine's
outbound client. Every call carries the `apikey` header (the global key).

Calls (design/providers.md section 3): `POST /instance/create` (once per session: the instance
is named after the session, its webhook set to our `/webhooks/evolution/{instance}` with the
per-instance secret header, since Evolution signs nothing), `GET /instance/connect/{instance}`
(the QR code: a data-URL PNG, and a pairing code), `GET /instance/connectionState/{instance}`
(`open` | `connecting` | `close`), `DELETE /instance/logout/{instance}` and
`POST /message/sendText/{instance}`.

Its webhooks (`messages.upsert`, `messages.update`, `connection.update`, `qrcode.updated`) are
parsed by `parse_webhook` into the port's shapes.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

from pydantic import BaseModel, ConfigDict

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

EVENTS = ["MESSAGES_UPSERT", "MESSAGES_UPDATE", "CONNECTION_UPDATE", "QRCODE_UPDATED"]
# messages.update's statuses (Baileys' acks, renderStatus.ts) as the port's.
UPDATE_STATUSES = {
    "SERVER_ACK": ProviderStatus.SENT,
    "DELIVERY_ACK": ProviderStatus.DELIVERED,
    "READ": ProviderStatus.READ,
    "PLAYED": ProviderStatus.READ,
    "ERROR": ProviderStatus.FAILED,
}


def _obj(value: Any) -> dict[str, Any]:
    """A JSON object, or an empty one for anything else."""
    return value if isinstance(value, dict) else {}


def classify(response: HttpResponse, what: str) -> ProviderRetryableError | ProviderPermanentError | None:
    if 200 <= response.status < 300:
        return None
    label = f"{what} answered {response.status}"
    if response.status in (408, 429) or response.status >= 500:
        return ProviderRetryableError(
            label,
            code=f"HTTP_{response.status}",
            status=response.status,
            retry_after=parse_retry_after(response.headers.get("retry-after")),
        )
    return ProviderPermanentError(label, code=f"EVOLUTION_HTTP_{response.status}", status=response.status)


class EvolutionProvider:
    name: ProviderName = "evolution"

    def __init__(
        self, http: HttpTransport, api_key: str, base_url: str, timeout: Timeout = (3.0, 10.0)
    ) -> None:
        if not api_key:
            raise ValueError("the Evolution API key is empty")
        if not base_url:
            raise ValueError("the Evolution API base URL is empty")
        self._http = http
        self._key = api_key
        self.base_url = base_url.rstrip("/")
        self._timeout = timeout

    def __repr__(self) -> str:
        return f"EvolutionProvider(base_url={self.base_url!r})"

    def _call(
        self, method: str, path: str, template: str, body: Any = None, ok: frozenset[int] = frozenset()
    ) -> tuple[int, dict[str, Any]]:
        what = f"{method} {template}"
        try:
            response = self._http.request(
                method,
                f"{self.base_url}{path}",
                headers={"apikey": self._key, "Accept": "application/json"},
                json=body,
                timeout=self._timeout,
                raise_for_status=False,
            )
        except RetryableJobError as exc:
            raise ProviderRetryableError(
                f"{what}: no answer ({type(exc).__name__})", code="PROVIDER_UNREACHABLE", ambiguous=True
            ) from None
        if response.status not in ok:
            error = classify(response, what)
            if error is not None:
                raise error
        try:
            data = json.loads(response.body) if response.body else {}
        except (ValueError, UnicodeDecodeError):
            data = {}
        return response.status, data if isinstance(data, dict) else {}

    def open_session(self, session: SessionRef) -> SessionState:
        body: dict[str, Any] = {
            "instanceName": session.instance,
            "qrcode": True,
            "integration": "WHATSAPP-BAILEYS",
        }
        if session.webhook_url:
            body["webhook"] = {
                "enabled": True,
                "url": session.webhook_url,
                "headers": dict(session.webhook_headers),
                "byEvents": False,
                "base64": False,
                "events": EVENTS,
            }
        # 403 is Evolution's "This name is already in use": a repeated attempt's instance.
        self._call("POST", "/instance/create", "POST /instance/create", body, ok=frozenset({403}))
        state = self.session_state(session)
        if state.state == "connected":
            return state
        _, data = self._call(
            "GET", f"/instance/connect/{quote(session.instance, safe='')}", "GET /instance/connect/{instance}"
        )
        if (data.get("instance") or {}).get("state") == "open":
            return SessionState(state="connected")
        qr = data.get("base64")
        pairing = data.get("pairingCode")
        return SessionState(
            state="waiting", qr=str(qr) if qr else None, pairing_code=str(pairing) if pairing else None
        )

    def session_state(self, session: SessionRef) -> SessionState:
        _, data = self._call(
            "GET",
            f"/instance/connectionState/{quote(session.instance, safe='')}",
            "GET /instance/connectionState/{instance}",
        )
        state = ((data.get("instance") or {}) if isinstance(data.get("instance"), dict) else {}).get("state")
        if state == "open":
            return SessionState(state="connected")
        return SessionState(state="closed" if state == "close" else "waiting")

    def close_session(self, session: SessionRef) -> None:
        # 404: no such instance (never created, or gone): closed either way.
        self._call(
            "DELETE",
            f"/instance/logout/{quote(session.instance, safe='')}",
            "DELETE /instance/logout/{instance}",
            ok=frozenset({400, 404}),
        )

    def send(self, session: SessionRef, message: Outgoing) -> Sent:
        text = message.text or ""
        if message.media_url:  # sendText with the link (and caption): Evolution previews it
            caption = message.media_caption or ""
            text = "\n".join(part for part in (text or caption, message.media_url) if part)
        body = {"number": message.to.lstrip("+"), "text": text, "linkPreview": bool(message.media_url)}
        template = "POST /message/sendText/{instance}"
        _, data = self._call("POST", f"/message/sendText/{quote(session.instance, safe='')}", template, body)
        key = _obj(data.get("key"))
        provider_id = key.get("id")
        if not isinstance(provider_id, str) or not provider_id:
            raise ProviderRetryableError(
                f"{template}: the answer has no message id", code="BAD_RESPONSE", ambiguous=True
            )
        return Sent(provider_message_id=provider_id)


# -- inbound webhooks ------------------------------------------------------------------------------


class ConnectionEvent(BaseModel):
    """connection.update / qrcode.updated: where an instance is."""

    model_config = ConfigDict(frozen=True)

    address: str
    state: str = ""  # open | connecting | close
    qr: str | None = None


def _jid_number(jid: Any) -> str:
    return "+" + str(jid or "").split("@", 1)[0].split(":", 1)[0]


def parse_webhook(body: Any) -> tuple[list[Inbound], list[StatusReport], list[ConnectionEvent]]:
    inbound: list[Inbound] = []
    statuses: list[StatusReport] = []
    connections: list[ConnectionEvent] = []
    if not isinstance(body, dict):
        return inbound, statuses, connections
    event = str(body.get("event") or "").lower().replace("_", ".")
    instance = str(body.get("instance") or "")
    items = body.get("data")
    records = items if isinstance(items, list) else [items]
    for data in records:
        if not isinstance(data, dict):
            continue
        if event == "messages.upsert":
            key = _obj(data.get("key"))
            if key.get("fromMe") or not key.get("id") or not key.get("remoteJid"):
                continue
            if str(key.get("remoteJid")).endswith("@g.us"):
                continue  # group messages are not a session's conversations
            message = _obj(data.get("message"))
            text = message.get("conversation") or (message.get("extendedTextMessage") or {}).get("text") or ""
            inbound.append(
                Inbound(
                    provider_message_id=str(key["id"]),
                    sender=_jid_number(key["remoteJid"]),
                    kind=str(data.get("messageType") or "conversation"),
                    text=str(text)[:4096],
                    timestamp=int(data.get("messageTimestamp") or 0),
                    profile_name=str(data["pushName"])[:256] if data.get("pushName") else None,
                    address=instance,
                )
            )
        elif event == "messages.update":
            status = UPDATE_STATUSES.get(str(data.get("status") or "").upper())
            provider_id = data.get("keyId") or (data.get("key") or {}).get("id")
            if status is None or not provider_id or not data.get("fromMe", True):
                continue
            statuses.append(
                StatusReport(provider_message_id=str(provider_id), status=status, address=instance)
            )
        elif event in ("connection.update", "qrcode.updated"):
            qr = (data.get("qrcode") or {}).get("base64") if isinstance(data.get("qrcode"), dict) else None
            connections.append(
                ConnectionEvent(
                    address=instance, state=str(data.get("state") or ""), qr=str(qr) if qr else None
                )
            )
    return inbound, statuses, connections
