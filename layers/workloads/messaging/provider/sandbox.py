"""A WhatsApp sandbox on loopback that speaks BOTH providers' APIs, for `tarefa local` and the
tests: the Cloud API (Graph) and Evolution API v2, with their webhooks sent back the way the
real ones send them (X-Hub-Signature-256 with the sandbox's app secret; Evolution's instance
webhook with its configured headers). Never deployed: it only runs on loopback.

Its behaviours are a contract (README "The WhatsApp sandbox"):
- every valid number is accepted: a `sent` status at once, `delivered` `delivered_after` s
  later (1 s by default) and `read` `read_after` s after that (1 s);
- a recipient ending `0000` is not on WhatsApp: the send is accepted and a `failed` status with
  Meta's error 131026 follows (Evolution: messages.update ERROR);
- `0429`: the first two sends of a message answer HTTP 429 with error 130429, the third is accepted;
- `0500`: the first two answer HTTP 500 (error 2, "service temporarily unavailable"), then accepted;
- `0408`: never answers within `hang_seconds` (12 s by default): a client timeout, nothing sent;
- a Cloud API phone number id ending `404` does not exist (error 100); a wrong token is error 190.
Endpoints of its own (no auth): `POST /sandbox/inbound` `{"to": "<phoneNumberId or instance>",
"from": "+55...", "text": "..."}` delivers an inbound message to that session's webhook;
`POST /sandbox/evolution/{instance}/scan` "scans the QR code" (the instance opens and a
CONNECTION_UPDATE follows); `GET /sandbox/sent` lists the accepted sends.

A "message" for the 0429/0500 counters is the send's biz_opaque_callback_data (else recipient
and body), so a retried send of the same message meets the same counter.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import heapq
import hmac
import http.client
import itertools
import json
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

from aws_lambda_powertools import Logger

logger = Logger(child=True)
JSON = dict[str, Any]
# A 1x1 PNG: the QR code's picture (what it encodes is the `code` beside it).
_PNG = base64.b64encode(
    bytes.fromhex(
        "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
        "1f15c4890000000d49444154789c6360000002000100e221bc330000000049454e44ae426082"
    )
).decode()


def _obj(value: Any) -> dict[str, Any]:
    """A JSON object, or an empty one for anything else."""
    return value if isinstance(value, dict) else {}


class _Timers:
    """Runs callables at their due time on one daemon thread, so no request thread waits."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Callable[[], None]]] = []
        self._sequence = itertools.count()
        self._condition = threading.Condition()
        self._stopped = False
        self._thread = threading.Thread(target=self._run, name="wa-sandbox-timers", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        with self._condition:
            self._stopped = True
            self._heap.clear()
            self._condition.notify_all()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout=1.0)

    def call_later(self, delay: float, action: Callable[[], None]) -> None:
        with self._condition:
            if self._stopped:
                return
            heapq.heappush(self._heap, (time.monotonic() + max(delay, 0.0), next(self._sequence), action))
            self._condition.notify()

    def _run(self) -> None:
        while True:
            with self._condition:
                while True:
                    if self._stopped:
                        return
                    if self._heap and self._heap[0][0] <= time.monotonic():
                        _, _, action = heapq.heappop(self._heap)
                        break
                    self._condition.wait(self._heap[0][0] - time.monotonic() if self._heap else None)
            try:
                action()
            except Exception:
                logger.exception("sandbox background task failed")


def _post(url: str, body: bytes, headers: dict[str, str], timeout: float = 5.0) -> int:
    parts = urlsplit(url)
    connection_class = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    connection = connection_class(parts.hostname or "", parts.port, timeout=timeout)
    try:
        connection.request(
            "POST", (parts.path or "/") + (f"?{parts.query}" if parts.query else ""), body, headers
        )
        response = connection.getresponse()
        response.read(1 << 16)
        return response.status
    finally:
        connection.close()


@dataclass
class Instance:
    """An Evolution instance."""

    name: str
    token: str
    webhook_url: str | None = None
    webhook_headers: dict[str, str] = field(default_factory=dict)
    state: str = "connecting"  # connecting | open | close
    code: str = ""


@dataclass
class SentMessage:
    provider: str  # cloudapi | evolution
    address: str  # phone number id, or instance
    provider_message_id: str
    to: str
    kind: str
    text: str
    callback_data: str | None


class WhatsAppSandbox:
    def __init__(
        self,
        *,
        access_token: str,
        app_secret: str,
        api_key: str,
        webhook_url: str | None = None,
        delivered_after: float | None = 1.0,
        read_after: float | None = 1.0,
        failed_after: float = 0.5,
        hang_seconds: float = 12.0,
    ) -> None:
        self.access_token = access_token
        self.app_secret = app_secret
        self.api_key = api_key
        self.webhook_url = webhook_url  # the Cloud API app's webhook (the local API's /webhooks/whatsapp)
        self.delivered_after = delivered_after  # None: no delivered/read callbacks
        self.read_after = read_after  # None: no read callback
        self.failed_after = failed_after
        self.hang_seconds = hang_seconds
        self.callbacks = True  # False: accept sends and report nothing (the crash tests)
        self.sent: list[SentMessage] = []
        self.instances: dict[str, Instance] = {}
        self.deliveries: list[tuple[str, bytes, dict[str, str], int]] = []  # (url, body, headers, status)
        self._faults: dict[str, int] = {}
        self._lock = threading.Lock()
        self._timers = _Timers()
        self._stopping = threading.Event()
        self._server: _Server | None = None

    # -- life --------------------------------------------------------------------------------
    @property
    def base_url(self) -> str:
        assert self._server is not None, "not started"
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        self._server = _Server((host, port), self)
        self._timers.start()
        threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="wa-sandbox", daemon=True
        ).start()
        return self.base_url

    def stop(self) -> None:
        self._stopping.set()
        self._timers.stop()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def sends_of(self, callback_data: str) -> int:
        with self._lock:
            return sum(1 for s in self.sent if s.callback_data == callback_data)

    # -- the outcome of a send ---------------------------------------------------------------
    def _fault(self, to: str, key: str) -> str | None:
        """'hang', 'rate', 'error' or None (accepted) for this send of this message."""
        if to.endswith("0408"):
            return "hang"
        for suffix, kind in (("0429", "rate"), ("0500", "error")):
            if to.endswith(suffix):
                with self._lock:
                    seen = self._faults.get(key, 0)
                    self._faults[key] = seen + 1
                return kind if seen < 2 else None
        return None

    def _accepted(self, message: SentMessage) -> None:
        with self._lock:
            self.sent.append(message)
        if not self.callbacks:
            return
        if message.to.endswith("0000"):
            self._timers.call_later(self.failed_after, lambda: self._report(message, "failed"))
            return
        self._timers.call_later(0, lambda: self._report(message, "sent"))
        if self.delivered_after is not None:
            self._timers.call_later(self.delivered_after, lambda: self._report(message, "delivered"))
            if self.read_after is not None:
                self._timers.call_later(
                    self.delivered_after + self.read_after, lambda: self._report(message, "read")
                )

    def _report(self, message: SentMessage, status: str) -> None:
        if message.provider == "evolution":
            acks = {"sent": "SERVER_ACK", "delivered": "DELIVERY_ACK", "read": "READ", "failed": "ERROR"}
            self.evolution_event(
                message.address,
                "messages.update",
                {
                    "keyId": message.provider_message_id,
                    "remoteJid": f"{message.to.lstrip('+')}@s.whatsapp.net",
                    "fromMe": True,
                    "status": acks[status],
                    "instanceId": message.address,
                },
            )
            return
        entry: JSON = {
            "id": message.provider_message_id,
            "status": status,
            "timestamp": str(int(time.time())),
            "recipient_id": message.to.lstrip("+"),
        }
        if message.callback_data:
            entry["biz_opaque_callback_data"] = message.callback_data
        if status == "failed":
            entry["errors"] = [
                {
                    "code": 131026,
                    "title": "Message undeliverable",
                    "message": "Message undeliverable",
                    "error_data": {"details": "Message Undeliverable."},
                }
            ]
        elif status in ("sent", "delivered"):
            entry["pricing"] = {"billable": True, "pricing_model": "PMP", "category": "service"}
        self.cloud_event(message.address, {"statuses": [entry]})

    # -- webhooks ----------------------------------------------------------------------------
    def cloud_event(self, phone_number_id: str, value: JSON) -> int | None:
        """POST a Cloud API webhook about `phone_number_id`, signed with the app secret."""
        if not self.webhook_url:
            return None
        body = {
            "object": "whatsapp_business_account",
            "entry": [
                {
                    "id": "102290129340398",
                    "changes": [
                        {
                            "field": "messages",
                            "value": {
                                "messaging_product": "whatsapp",
                                "metadata": {
                                    "display_phone_number": f"1555{phone_number_id[-7:]}",
                                    "phone_number_id": phone_number_id,
                                },
                                **value,
                            },
                        }
                    ],
                }
            ],
        }
        raw = json.dumps(body, separators=(",", ":")).encode()
        signature = "sha256=" + hmac.new(self.app_secret.encode(), raw, hashlib.sha256).hexdigest()
        headers = {"Content-Type": "application/json", "X-Hub-Signature-256": signature}
        return self._deliver(self.webhook_url, raw, headers)

    def evolution_event(self, instance: str, event: str, data: JSON) -> int | None:
        found = self.instances.get(instance)
        if found is None or not found.webhook_url:
            return None
        body = {
            "event": event,
            "instance": instance,
            "data": data,
            "destination": found.webhook_url,
            "date_time": time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime()),
            "sender": "5511400000000@s.whatsapp.net",
            "server_url": self.base_url,
            "apikey": None,
        }
        raw = json.dumps(body, separators=(",", ":")).encode()
        return self._deliver(
            found.webhook_url, raw, {"Content-Type": "application/json", **found.webhook_headers}
        )

    def _deliver(self, url: str, raw: bytes, headers: dict[str, str]) -> int:
        status = 0
        for pause in (0.2, 0.5, None):  # as Meta does, a failed delivery is tried again
            try:
                status = _post(url, raw, headers)
            except OSError:
                status = 0
            if 200 <= status < 300 or pause is None or self._stopping.is_set():
                break
            time.sleep(pause)
        with self._lock:
            self.deliveries.append((url, raw, headers, status))
        return status

    def inbound(self, to: str, sender: str, text: str) -> str:
        """Someone on WhatsApp (`sender`) writes `text` to a session's number (a Cloud API phone
        number id) or instance (Evolution): its webhook follows. Returns the message's id."""
        provider_id = "wamid." + base64.b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if to in self.instances:
            self.evolution_event(
                to,
                "messages.upsert",
                {
                    "key": {
                        "remoteJid": f"{sender.lstrip('+')}@s.whatsapp.net",
                        "fromMe": False,
                        "id": provider_id,
                    },
                    "pushName": "Sandbox Contact",
                    "status": "DELIVERY_ACK",
                    "message": {"conversation": text},
                    "messageType": "conversation",
                    "messageTimestamp": int(time.time()),
                    "instanceId": to,
                    "source": "android",
                },
            )
            return provider_id
        self.cloud_event(
            to,
            {
                "contacts": [{"profile": {"name": "Sandbox Contact"}, "wa_id": sender.lstrip("+")}],
                "messages": [
                    {
                        "from": sender.lstrip("+"),
                        "id": provider_id,
                        "timestamp": str(int(time.time())),
                        "type": "text",
                        "text": {"body": text},
                    }
                ],
            },
        )
        return provider_id

    def scan(self, instance: str) -> bool:
        found = self.instances.get(instance)
        if found is None:
            return False
        found.state = "open"
        self._timers.call_later(0, lambda: self._connected(instance))
        return True

    def _connected(self, instance: str) -> None:
        self.evolution_event(instance, "connection.update", {"instance": instance, "state": "open"})

    # -- requests ----------------------------------------------------------------------------
    def handle(self, method: str, path: str, headers: dict[str, str], body: bytes) -> tuple[int, JSON] | None:
        """The answer to one request (None: hang up without answering)."""
        try:
            data = json.loads(body) if body else {}
        except ValueError:
            return 400, {"error": {"message": "(#100) Invalid JSON", "type": "OAuthException", "code": 100}}
        data = data if isinstance(data, dict) else {}
        parts = [p for p in path.split("?", 1)[0].split("/") if p]
        if parts[:1] == ["sandbox"]:
            return self._sandbox(method, parts[1:], data)
        if parts[:1] in (["instance"], ["message"]):
            if headers.get("apikey") != self.api_key:
                return 401, {"status": 401, "error": "Unauthorized", "response": {"message": "Unauthorized"}}
            return self._evolution(method, parts, data)
        if len(parts) >= 2 and parts[0].startswith("v"):
            if headers.get("authorization") != f"Bearer {self.access_token}":
                return 401, _graph_error(190, "Invalid OAuth access token - Cannot parse access token")
            return self._graph(method, parts[1:], data)
        return 404, {"error": {"message": "Unknown path", "code": 100}}

    def _graph(self, method: str, parts: list[str], data: JSON) -> tuple[int, JSON] | None:
        number_id = parts[0]
        if not number_id.isdigit() or number_id.endswith("404"):
            return 400, _graph_error(100, "Unsupported get request. Object does not exist")
        if method == "GET" and len(parts) == 1:
            return 200, {
                "id": number_id,
                "display_phone_number": f"+1 555-{number_id[-7:-4]}-{number_id[-4:]}",
                "verified_name": "Tarefa Sandbox",
                "quality_rating": "GREEN",
            }
        if method != "POST" or parts[1:] != ["messages"]:
            return 400, _graph_error(100, "Unsupported request")
        to = "+" + str(data.get("to") or "").lstrip("+")
        kind = str(data.get("type") or "text")
        if (
            data.get("messaging_product") != "whatsapp"
            or not to[1:].isdigit()
            or kind not in ("text", "image")
        ):
            return 400, _graph_error(100, "Invalid parameter")
        text = str((data.get("text") or {}).get("body") or (data.get("image") or {}).get("caption") or "")
        callback = data.get("biz_opaque_callback_data")
        fault = self._fault(to, str(callback) if callback else f"{to}\x00{text}")
        if fault == "hang":
            self._stopping.wait(self.hang_seconds)
            return None
        if fault == "rate":
            return 429, _graph_error(130429, "Rate limit hit")
        if fault == "error":
            return 500, _graph_error(2, "Service temporarily unavailable")
        provider_id = "wamid." + base64.b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        self._accepted(
            SentMessage(
                "cloudapi", number_id, provider_id, to, kind, text, str(callback) if callback else None
            )
        )
        return 200, {
            "messaging_product": "whatsapp",
            "contacts": [{"input": data.get("to"), "wa_id": to.lstrip("+")}],
            "messages": [{"id": provider_id, "message_status": "accepted"}],
        }

    def _evolution(self, method: str, parts: list[str], data: JSON) -> tuple[int, JSON] | None:
        action = "/".join(parts[:2])
        name = parts[2] if len(parts) > 2 else ""
        if method == "POST" and action == "instance/create":
            name = str(data.get("instanceName") or "")
            if not name:
                return 400, {
                    "status": 400,
                    "error": "Bad Request",
                    "response": {"message": ["instanceName is required"]},
                }
            if name in self.instances:
                return 403, {
                    "status": 403,
                    "error": "Forbidden",
                    "response": {"message": [f'This name "{name}" is already in use.']},
                }
            webhook = _obj(data.get("webhook"))
            instance = Instance(
                name,
                token=uuid.uuid4().hex.upper(),
                webhook_url=webhook.get("url") or data.get("webhookUrl"),
                webhook_headers={str(k): str(v) for k, v in (webhook.get("headers") or {}).items()},
                code=f"2@{uuid.uuid4().hex}",
            )
            self.instances[name] = instance
            return 201, {
                "instance": {"instanceName": name, "instanceId": str(uuid.uuid4()), "integration": "WHATSAPP-BAILEYS", "status": "connecting"},
                "hash": instance.token,
                "webhook": {"webhookUrl": instance.webhook_url, "webhookHeaders": instance.webhook_headers},
                "settings": {},
            }  # fmt: skip
        found = self.instances.get(name)
        if found is None:
            return 404, {
                "status": 404,
                "error": "Not Found",
                "response": {"message": [f'The "{name}" instance does not exist']},
            }
        if method == "GET" and action == "instance/connect":
            if found.state == "open":
                return 200, {"instance": {"instanceName": name, "state": "open"}}
            found.state = "connecting"
            return 200, {
                "pairingCode": "WZYEH1YY",
                "code": found.code,
                "base64": f"data:image/png;base64,{_PNG}",
                "count": 1,
            }
        if method == "GET" and action == "instance/connectionState":
            return 200, {"instance": {"instanceName": name, "state": found.state}}
        if method == "DELETE" and action == "instance/logout":
            found.state = "close"
            return 200, {"status": "SUCCESS", "error": False, "response": {"message": "Instance logged out"}}
        if method == "POST" and action == "message/sendText":
            if found.state != "open":
                return 400, {
                    "status": 400,
                    "error": "Bad Request",
                    "response": {"message": ["Connection Closed"]},
                }
            to = "+" + str(data.get("number") or "").lstrip("+")
            text = str(data.get("text") or "")
            fault = self._fault(to, f"{name}\x00{to}\x00{text}")
            if fault == "hang":
                self._stopping.wait(self.hang_seconds)
                return None
            if fault is not None:
                return (429 if fault == "rate" else 500), {"status": 500, "error": "Internal Server Error"}
            provider_id = "3EB0" + uuid.uuid4().hex[:16].upper()
            self._accepted(SentMessage("evolution", name, provider_id, to, "text", text, None))
            return 201, {
                "key": {"remoteJid": f"{to.lstrip('+')}@s.whatsapp.net", "fromMe": True, "id": provider_id},
                "message": {"extendedTextMessage": {"text": text}},
                "messageTimestamp": str(int(time.time())),
                "status": "PENDING",
            }
        return 404, {"status": 404, "error": "Not Found"}

    def _sandbox(self, method: str, parts: list[str], data: JSON) -> tuple[int, JSON]:
        if method == "POST" and parts == ["inbound"]:
            to, sender, text = (
                str(data.get("to") or ""),
                str(data.get("from") or ""),
                str(data.get("text") or ""),
            )
            if not to or not sender[1:].isdigit() or not sender.startswith("+"):
                return 400, {"error": "to (a phone number id or an instance) and from (+E.164) are required"}
            provider_id = self.inbound(to, sender, text)
            return 202, {"providerMessageId": provider_id}
        if method == "POST" and len(parts) == 3 and parts[0] == "evolution" and parts[2] == "scan":
            return (200, {"scanned": True}) if self.scan(parts[1]) else (404, {"error": "no such instance"})
        if method == "GET" and parts == ["sent"]:
            with self._lock:
                items = [
                    {
                        "provider": s.provider,
                        "address": s.address,
                        "providerMessageId": s.provider_message_id,
                        "to": s.to,
                    }
                    for s in self.sent
                ]
            return 200, {"items": items}
        return 404, {"error": "no such sandbox endpoint"}


def _graph_error(code: int, message: str) -> JSON:
    return {
        "error": {
            "message": f"(#{code}) {message}",
            "type": "OAuthException",
            "code": code,
            "error_data": {"messaging_product": "whatsapp", "details": message},
            "fbtrace_id": uuid.uuid4().hex[:22],
        }
    }


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], sandbox: WhatsAppSandbox) -> None:
        self.sandbox = sandbox
        super().__init__(address, _Handler)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def do_GET(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def do_DELETE(self) -> None:
        self._serve()

    def log_message(self, format: str, *args: Any) -> None:
        """Silenced: paths and bodies carry numbers."""

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        headers = {k.lower(): v for k, v in self.headers.items()}
        answer = self.server.sandbox.handle(self.command, self.path, headers, body)
        if answer is None:
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(2)
            return
        status, data = answer
        raw = json.dumps(data, separators=(",", ":")).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        if status == 429:
            self.send_header("Retry-After", "1")
        self.end_headers()
        self.wfile.write(raw)
