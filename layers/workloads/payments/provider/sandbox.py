"""A Mercado Pago Payments API (v1) sandbox: a small HTTP server that speaks the real API's shape.

The real adapter (`mercadopago.py`) talks to it over HTTP exactly as it talks to
api.mercadopago.com, so tests and `tarefa local` exercise the real HTTP code path, with
deterministic outcomes chosen by the request, like Stripe's test cards. The behaviours below are a
contract users rely on; keep them exact.

Card outcome = the card `token`, which is one of Mercado Pago's test cardholder names:
    APRO approved/accredited          OTHE rejected/cc_rejected_other_reason
    FUND rejected/cc_rejected_insufficient_amount
    SECU rejected/cc_rejected_bad_filled_security_code
    EXPI rejected/cc_rejected_bad_filled_date (its card token has expired)
    FORM rejected/cc_rejected_bad_filled_other
    CALL rejected/cc_rejected_call_for_authorize
    CONT in_process/pending_contingency, approved/accredited `contingency_seconds` later
The sandbox's own faults, counted per X-Idempotency-Key (a new key sees the fault afresh, a retry
with the same key recovers), each ending in an approved payment:
    TIMEOUT     the first call creates the payment, then answers only after `hang_seconds`
    RATE_LIMIT  the first call answers 429 with `Retry-After: 1` and creates nothing
    ERROR       the first two calls answer 500 and create nothing
Any other token is 400, cause 2006 (card token not found).

PIX (`payment_method_id: "pix"`) starts pending/pending_waiting_transfer and is approved when the
simulated customer pays (`POST /sandbox/pix/{id}/pay`, or `pay_pix()`), or, for a payer e-mail
`paid-after-N@...`, on the N-th poll: a `GET /v1/payments/{id}` with `X-Tarefa-Read: poll` (a
plain GET is not a poll). A `never@...` payer never pays (the pay route refuses it). The sandbox
never expires a charge by itself: the workload cancels it.

Routes (all but the ticket page need `Authorization: Bearer <access_token>`, else 401 cause 5):
    POST /v1/payments                         create (X-Idempotency-Key required) → 201
    GET  /v1/payments/{id}                    read; with `X-Tarefa-Read: poll` it is a poll
    GET  /v1/payments/search                  ?external_reference=&status=&limit=&offset=&criteria=
    PUT  /v1/payments/{id}                    {"status": "cancelled"} from pending/in_process/authorized
    POST /v1/payments/{id}/refunds            {} or no body = all that is left, {"amount": n} partial
    GET  /v1/payments/{id}/refunds[/{refund_id}]
    GET  /v1/card_tokens/{token}              the test names; EXPI's card has expired
    POST /sandbox/pix/{id}/pay                the simulated customer pays (sandbox only)
    GET  /sandbox/pix/{id}/ticket?hash=       the PIX ticket_url page (no bearer, like MP's link)

Webhooks go out as Mercado Pago sends them (signed `x-signature`/`x-request-id`, query
`data.id`/`type`), from a background thread, in order per payment, retried on a non-2xx answer.

Cause codes are Mercado Pago's, from design/providers.md and its create-payment reference (1, 5,
23, 2000, 2006, 2016, 2018, 2063, 2072, 2131, 3008, 3011, 4017, 4040, 4041, 4292); 4020
(notification_url) and 4050 (payer.email) are codes Mercado Pago is known to answer, not re-read
in its reference.

Standard library only; importing this module starts nothing. Card tokens and e-mails never reach
a log: requests are logged (DEBUG) as method, route template and status.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import hashlib
import heapq
import hmac
import html
import http.client
import itertools
import json
import logging
import re
import signal
import socket
import struct
import sys
import threading
import time
import uuid
import zlib
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

logger = logging.getLogger(__name__)

JSON = dict[str, Any]

# Mercado Pago answers in the account's time zone with milliseconds (2024-01-10T14:52:27.000-04:00).
_MP_TIME_ZONE = timezone(timedelta(hours=-4))
_CENT = Decimal("0.01")
_MAX_AMOUNT = Decimal("999999999.99")
_MAX_BODY = 1 << 20
_USER_ID = 123456789  # the collector (the account the sandbox's access token belongs to)
_TEST_CPF = "12345678909"  # Mercado Pago's test CPF for APRO/OTHE in Brazil
_PIX_KEY = str(uuid.uuid5(uuid.NAMESPACE_URL, "https://tarefa.local/sandbox/pix"))
_DEFAULT_PIX_TTL = timedelta(minutes=30)

APPROVED, PENDING, IN_PROCESS, AUTHORIZED = "approved", "pending", "in_process", "authorized"
REJECTED, CANCELLED, REFUNDED = "rejected", "cancelled", "refunded"

TEST_CARDS: dict[str, tuple[str, str]] = {
    "APRO": (APPROVED, "accredited"),
    "OTHE": (REJECTED, "cc_rejected_other_reason"),
    "FUND": (REJECTED, "cc_rejected_insufficient_amount"),
    "SECU": (REJECTED, "cc_rejected_bad_filled_security_code"),
    "EXPI": (REJECTED, "cc_rejected_bad_filled_date"),
    "FORM": (REJECTED, "cc_rejected_bad_filled_other"),
    "CALL": (REJECTED, "cc_rejected_call_for_authorize"),
    "CONT": (IN_PROCESS, "pending_contingency"),
    "TIMEOUT": (APPROVED, "accredited"),
    "RATE_LIMIT": (APPROVED, "accredited"),
    "ERROR": (APPROVED, "accredited"),
}
"""Card token (= test cardholder name) → the status and status_detail its payment gets."""

_ERROR_ATTEMPTS = 2  # ERROR answers 500 this many times per idempotency key

# payment_method_id → (payment_type_id, first six digits, last four) of Mercado Pago's BR test cards.
_CARD_METHODS: dict[str, tuple[str, str, str]] = {
    "visa": ("credit_card", "423564", "5682"),
    "master": ("credit_card", "503143", "6351"),
    "amex": ("credit_card", "375365", "6885"),
    "elo": ("credit_card", "506776", "8311"),
    "hipercard": ("credit_card", "606282", "3700"),
    "debvisa": ("debit_card", "423564", "5682"),
    "debmaster": ("debit_card", "503143", "6351"),
    "debelo": ("debit_card", "506776", "8311"),
}

_PAID_AFTER = re.compile(r"paid-after-(\d+)@", re.IGNORECASE)
_NEVER = re.compile(r"never@", re.IGNORECASE)
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+")


def _now() -> datetime:
    return datetime.now(UTC)


def _iso(moment: datetime | None) -> str | None:
    """A time the way Mercado Pago writes it: account time zone, milliseconds, explicit offset."""
    if moment is None:
        return None
    return moment.astimezone(_MP_TIME_ZONE).isoformat(timespec="milliseconds")


def _json_default(value: object) -> object:
    """Amounts are Decimal inside; on the wire they are JSON numbers like Mercado Pago's (12.5).

    A two-decimal Decimal below 10**13 converts to the float whose shortest repr is that decimal,
    so the number written is exactly the amount (no 12.499999 surprises)."""
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def _dumps(value: object) -> bytes:
    return json.dumps(value, default=_json_default, separators=(",", ":")).encode()


def _plain(value: object) -> Any:
    """The value as a client would read it off the wire (JSON types only)."""
    return json.loads(_dumps(value))


def _no_constants(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


def _fingerprint(value: object) -> str:
    """What "the same body" means for idempotency: equal JSON values, whatever their spelling
    (key order, 12.5 vs 12.50 vs 1.25e1)."""

    def canon(item: object) -> object:
        if isinstance(item, bool) or item is None or isinstance(item, str):
            return item
        if isinstance(item, int | Decimal):
            return {"#": format(Decimal(item).normalize(), "f")}
        if isinstance(item, dict):
            return {key: canon(val) for key, val in item.items()}
        if isinstance(item, list):
            return [canon(val) for val in item]
        return repr(item)

    return hashlib.sha256(json.dumps(canon(value), sort_keys=True).encode()).hexdigest()


class ApiError(Exception):
    """An answer in Mercado Pago's error shape: {"message", "error", "status", "cause": [...]}."""

    def __init__(
        self,
        status: int,
        error: str,
        message: str,
        causes: Iterable[tuple[int, str]] = (),
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(f"{status} {error}: {message}")
        self.status = status
        self.error = error
        self.message = message
        self.causes = list(causes)
        self.headers = headers or {}

    def body(self) -> JSON:
        return {
            "message": self.message,
            "error": self.error,
            "status": self.status,
            "cause": [{"code": code, "description": text} for code, text in self.causes],
        }


def _bad_request(code: int, description: str) -> ApiError:
    return ApiError(400, "bad_request", description, [(code, description)])


def _payment_not_found() -> ApiError:
    return ApiError(404, "not_found", "Payment not found", [(2000, "Payment not found")])


def _invalid_state() -> ApiError:
    text = "The action requested is not valid for the current payment state"
    return _bad_request(2018, text)


# ---------------------------------------------------------------------------------------------
# The state


@dataclass
class _Refund:
    id: int
    payment_id: int
    amount: Decimal
    created: datetime

    def render(self) -> JSON:
        return {
            "id": self.id,
            "payment_id": self.payment_id,
            "amount": self.amount,
            "amount_refunded_to_payer": self.amount,
            "metadata": {},
            "source": {"id": str(_USER_ID), "name": "Tarefa Sandbox", "type": "collector"},
            "date_created": _iso(self.created),
            "unique_sequence_number": None,
            "refund_mode": "standard",
            "reason": None,
            "status": APPROVED,
        }


@dataclass
class _Order:
    """A validated create-payment body."""

    amount: Decimal
    method_id: str
    type_id: str
    token: str | None
    description: str | None
    installments: int
    email: str
    identification: JSON | None
    notification_url: str | None
    external_reference: str | None
    expires: datetime | None


@dataclass
class _Payment:
    id: int
    order: _Order
    status: str
    status_detail: str
    created: datetime
    updated: datetime
    approved: datetime | None = None
    expires: datetime | None = None
    refunded: Decimal = Decimal("0.00")
    refunds: list[_Refund] = field(default_factory=list)
    polls: int = 0
    settle_at: float | None = None  # monotonic time a CONT payment is approved
    pix: JSON | None = None

    @property
    def is_pix(self) -> bool:
        return self.order.method_id == "pix"

    def move(self, status: str, detail: str, at: datetime) -> None:
        self.status, self.status_detail, self.updated = status, detail, at
        if status == APPROVED and self.approved is None:
            self.approved = at
        if status != IN_PROCESS:
            self.settle_at = None

    def render(self) -> JSON:
        order = self.order
        payer: JSON = {"email": order.email}
        if order.identification is not None:
            payer["identification"] = order.identification
        body: JSON = {
            "id": self.id,
            "date_created": _iso(self.created),
            "date_approved": _iso(self.approved),
            "date_last_updated": _iso(self.updated),
            "date_of_expiration": _iso(self.expires),
            "operation_type": "regular_payment",
            "payment_method_id": order.method_id,
            "payment_type_id": order.type_id,
            "status": self.status,
            "status_detail": self.status_detail,
            "currency_id": "BRL",
            "description": order.description,
            "live_mode": False,
            "collector_id": _USER_ID,
            "payer": payer,
            "metadata": {},
            "external_reference": order.external_reference,
            "transaction_amount": order.amount,
            "transaction_amount_refunded": self.refunded,
            "installments": order.installments,
            "transaction_details": {
                "total_paid_amount": order.amount,
                "installment_amount": (order.amount / order.installments).quantize(_CENT, ROUND_HALF_UP),
            },
            "captured": True,
            "binary_mode": False,
            "notification_url": order.notification_url,
            "refunds": [refund.render() for refund in self.refunds],
            "card": {} if self.is_pix else _card(order.token or "", order.method_id, self.created),
        }
        if self.pix is not None:
            body["point_of_interaction"] = {"type": "PIX", "transaction_data": dict(self.pix)}
        return body


def _card_expiry(token: str, at: datetime) -> tuple[int, int]:
    """(month, year): in the past for EXPI, comfortably in the future for every other name."""
    return (11, at.year - 1) if token == "EXPI" else (11, at.year + 4)  # noqa: S105 (a test name)


def _card(token: str, method_id: str, at: datetime) -> JSON:
    _, first_six, last_four = _CARD_METHODS.get(method_id, _CARD_METHODS["visa"])
    month, year = _card_expiry(token, at)
    return {
        "id": None,
        "first_six_digits": first_six,
        "last_four_digits": last_four,
        "expiration_month": month,
        "expiration_year": year,
        "date_created": _iso(at),
        "date_last_updated": _iso(at),
        "cardholder": {"name": token, "identification": {"number": _TEST_CPF, "type": "CPF"}},
    }


def _card_token(token: str, at: datetime) -> JSON:
    _, first_six, last_four = _CARD_METHODS["visa"]
    month, year = _card_expiry(token, at)
    return {
        "id": token,
        "status": "active",
        "first_six_digits": first_six,
        "last_four_digits": last_four,
        "expiration_month": month,
        "expiration_year": year,
        "card_number_length": 16,
        "security_code_length": 3,
        "luhn_validation": True,
        "live_mode": False,
        "require_esc": False,
        "cardholder": {"name": token, "identification": {"number": _TEST_CPF, "type": "CPF"}},
        "date_created": _iso(at),
        "date_last_updated": _iso(at),
        "date_due": _iso(at + timedelta(days=7)),
    }


# ---------------------------------------------------------------------------------------------
# PIX: an EMV "copia e cola" code and a PNG


def _tlv(fields: Iterable[tuple[str, str]]) -> str:
    return "".join(f"{tag}{len(value):02d}{value}" for tag, value in fields)


def _crc16(text: str) -> str:
    """CRC-16/CCITT-FALSE, the checksum closing every BR Code (field 63)."""
    crc = 0xFFFF
    for byte in text.encode():
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else crc << 1
            crc &= 0xFFFF
    return f"{crc:04X}"


def pix_code(payment_id: int, amount: Decimal) -> str:
    """A BR Code (EMV) copy-and-paste string carrying the amount (field 54) and the payment id as
    its transaction id (field 62/05), with a valid CRC; the key is a fixed sandbox key."""
    account = _tlv([("00", "br.gov.bcb.pix"), ("01", _PIX_KEY)])
    payload = _tlv(
        [
            ("00", "01"),
            ("01", "12"),
            ("26", account),
            ("52", "0000"),
            ("53", "986"),
            ("54", f"{amount:.2f}"),
            ("58", "BR"),
            ("59", "TAREFA SANDBOX"),
            ("60", "SAO PAULO"),
            ("62", _tlv([("05", f"MP{payment_id}")])),
        ]
    )
    payload += "6304"
    return payload + _crc16(payload)


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def qr_png(text: str, modules: int = 25, scale: int = 4, quiet: int = 2) -> bytes:
    """A small valid greyscale PNG that looks like a QR code (three finder squares, the rest drawn
    from a hash of `text`). Not scannable: the copy-and-paste code is what a test pays with."""
    bits: list[bool] = []
    counter = 0
    while len(bits) < modules * modules:
        digest = hashlib.sha256(f"{counter}:{text}".encode()).digest()
        bits.extend(bool(byte >> shift & 1) for byte in digest for shift in range(8))
        counter += 1

    def dark(x: int, y: int) -> bool:
        for ox, oy in ((0, 0), (modules - 7, 0), (0, modules - 7)):
            if ox <= x < ox + 7 and oy <= y < oy + 7:
                dx, dy = x - ox, y - oy
                ring = min(dx, dy, 6 - dx, 6 - dy)
                return ring != 1
        return bits[y * modules + x]

    side = (modules + 2 * quiet) * scale
    rows = bytearray()
    for py in range(side):
        rows.append(0)  # filter: none
        y = py // scale - quiet
        for px in range(side):
            x = px // scale - quiet
            inside = 0 <= x < modules and 0 <= y < modules
            rows.append(0 if inside and dark(x, y) else 255)
    header = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", zlib.compress(bytes(rows), 9))
        + _png_chunk(b"IEND", b"")
    )


# ---------------------------------------------------------------------------------------------
# Background work: timers and the webhook courier


class _Timers:
    """Runs callables at their due time on one daemon thread, so no request thread ever waits."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._heap: list[tuple[float, int, Callable[[], None]]] = []
        self._sequence = itertools.count()
        self._condition = threading.Condition()
        self._stopped = False
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
        self._thread.start()

    def stop(self, wait: float = 1.0) -> None:
        with self._condition:
            self._stopped = True
            self._heap.clear()
            self._condition.notify_all()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=wait)

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
                    wait = self._heap[0][0] - time.monotonic() if self._heap else None
                    self._condition.wait(wait)
            try:
                action()
            except Exception:
                logger.exception("sandbox background task failed")


def _sign(data_id: str, request_id: str, secret: str, ts: int) -> str:
    """The `x-signature` header Mercado Pago sends: `ts=<ts>,v1=<hex>`, v1 = HMAC-SHA256 (key: the
    webhook secret) of `id:<data.id>;request-id:<x-request-id>;ts:<ts>;` in lowercase hex, data.id
    lowercased when alphanumeric. Kept here (not signature.py) so the sandbox stands alone."""
    if data_id.isascii() and data_id.isalnum():
        data_id = data_id.lower()
    manifest = f"id:{data_id};request-id:{request_id};ts:{ts};"
    digest = hmac.new(secret.encode(), manifest.encode(), hashlib.sha256).hexdigest()
    return f"ts={ts},v1={digest}"


@dataclass
class _Delivery:
    url: str  # with ?data.id=<id>&type=payment
    body: JSON
    data_id: str
    attempts: int = 0


def _post(url: str, body: bytes, headers: dict[str, str], timeout: float) -> int:
    """POST with http.client: no proxies from the environment, no redirects followed."""
    parts = urlsplit(url)
    connection_class = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    connection = connection_class(parts.hostname or "", parts.port, timeout=timeout)
    try:
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        connection.request("POST", target, body=body, headers=headers)
        response = connection.getresponse()
        response.read(1 << 16)
        return response.status
    finally:
        connection.close()


class _Courier:
    """Delivers webhooks from a background thread: in order per payment (the next one waits for
    the current one to succeed or give up), each retried after `delays` on a non-2xx answer."""

    def __init__(self, secret: str, record: Callable[[JSON], None], delays: tuple[float, ...]) -> None:
        self._secret = secret
        self._record = record
        self._delays = delays
        self._queues: dict[int, deque[_Delivery]] = {}
        self._lock = threading.Lock()
        self._timers = _Timers("mp-sandbox-webhooks")
        self.timeout = 5.0

    def start(self) -> None:
        self._timers.start()

    def stop(self) -> None:
        self._timers.stop(wait=0.5)

    def enqueue(self, payment_id: int, delivery: _Delivery) -> None:
        with self._lock:
            queue = self._queues.setdefault(payment_id, deque())
            queue.append(delivery)
            if len(queue) == 1:
                self._timers.call_later(0, lambda: self._attempt(payment_id))

    def _attempt(self, payment_id: int) -> None:
        with self._lock:
            queue = self._queues.get(payment_id)
            if not queue:
                return
            delivery = queue[0]
        delivery.attempts += 1
        request_id = str(uuid.uuid4())
        body = _dumps(delivery.body)
        headers = {
            "Content-Type": "application/json",
            "x-signature": _sign(delivery.data_id, request_id, self._secret, int(time.time())),
            "x-request-id": request_id,
            "User-Agent": "Tarefa MercadoPagoSandbox",
        }
        status: int | None = None
        error: str | None = None
        try:
            status = _post(delivery.url, body, headers, self.timeout)
        except (OSError, http.client.HTTPException, ValueError) as exc:
            error = type(exc).__name__
        self._record(
            {
                "url": delivery.url,
                "headers": dict(headers),
                "body": json.loads(body),
                "status": status,
                "error": error,
                "attempt": delivery.attempts,
                "at": _iso(_now()),
            }
        )
        logger.debug(
            "webhook %s for payment %s attempt %d -> %s",
            delivery.body["action"],
            payment_id,
            delivery.attempts,
            status if status is not None else error,
        )
        delivered = status is not None and 200 <= status < 300
        with self._lock:
            if delivered or delivery.attempts > len(self._delays):
                queue.popleft()
                if queue:
                    self._timers.call_later(0, lambda: self._attempt(payment_id))
                else:
                    del self._queues[payment_id]
            else:
                self._timers.call_later(
                    self._delays[delivery.attempts - 1], lambda: self._attempt(payment_id)
                )


# ---------------------------------------------------------------------------------------------
# HTTP


@dataclass
class _Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]  # lowercased names
    body: bytes
    params: tuple[str, ...] = ()


@dataclass
class _Reply:
    status: int
    body: object
    headers: dict[str, str] = field(default_factory=dict)
    hang: float = 0.0  # seconds to wait before answering (the TIMEOUT fault)
    content_type: str = "application/json; charset=utf-8"


Route = tuple[str, re.Pattern[str], str, Callable[[_Request], _Reply]]
_PUBLIC_ROUTES = frozenset({"/sandbox/pix/{id}/ticket"})  # a browser opens it: the link's hash is the key


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], sandbox: MercadoPagoSandbox) -> None:
        self.sandbox = sandbox
        self.connections: set[socket.socket] = set()
        self.connections_lock = threading.Lock()
        super().__init__(address, _Handler)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 30  # an idle keep-alive connection is closed after this
    disable_nagle_algorithm = True  # headers and body go out in two writes: no 40 ms delayed-ACK stall
    server: _Server

    def setup(self) -> None:
        super().setup()
        with self.server.connections_lock:
            self.server.connections.add(self.connection)

    def finish(self) -> None:
        with contextlib.suppress(OSError):
            super().finish()
        with self.server.connections_lock:
            self.server.connections.discard(self.connection)

    def do_GET(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def do_PUT(self) -> None:
        self._serve()

    def do_DELETE(self) -> None:
        self._serve()

    def do_PATCH(self) -> None:
        self._serve()

    def log_message(self, format: str, *args: Any) -> None:
        """Silenced: the standard line carries the query string (and paths carry card tokens)."""

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = bytearray()
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return bytes(chunks)
                chunks += self.rfile.read(size)
                self.rfile.readline()
                if len(chunks) > _MAX_BODY:
                    raise ApiError(413, "request_entity_too_large", "request body too large")
        length = int(self.headers.get("Content-Length") or 0)
        if length > _MAX_BODY:
            raise ApiError(413, "request_entity_too_large", "request body too large")
        return self.rfile.read(length) if length > 0 else b""

    def _serve(self) -> None:
        sandbox = self.server.sandbox
        parts = urlsplit(self.path)
        request = _Request(
            method=self.command,
            path=parts.path.rstrip("/") or "/",
            query=parse_qs(parts.query),
            headers={name.lower(): value for name, value in self.headers.items()},
            body=b"",
        )
        try:
            request.body = self._read_body()
        except ValueError:
            self.close_connection = True
            reply, template = _error_reply(ApiError(400, "bad_request", "malformed body")), "?"
        except ApiError as exc:
            self.close_connection = True
            reply, template = _error_reply(exc), "?"
        else:
            reply, template = sandbox._dispatch(request)
        if reply.hang > 0:
            sandbox._stopping.wait(reply.hang)
        logger.debug("%s %s -> %d", self.command, template, reply.status)
        payload = reply.body if isinstance(reply.body, bytes) else _dumps(reply.body)
        try:
            self.send_response(reply.status)
            self.send_header("Content-Type", reply.content_type)
            self.send_header("Content-Length", str(len(payload)))
            self.send_header("X-Request-Id", str(uuid.uuid4()))
            for name, value in reply.headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(payload)
            self.wfile.flush()
        except OSError:  # the client gave up (it timed out on a TIMEOUT payment): nothing to do
            self.close_connection = True


def _error_reply(error: ApiError) -> _Reply:
    return _Reply(error.status, error.body(), headers=dict(error.headers))


# ---------------------------------------------------------------------------------------------
# The sandbox


class MercadoPagoSandbox:
    """Mercado Pago's Payments API on loopback, with test cards, faults and a PIX payer to drive.

    `start()` serves from a daemon thread and returns the base URL (use it in place of
    https://api.mercadopago.com). The introspection methods (`payment`, `payments_for`, `polls`,
    `notifications`) return plain JSON values as a client would read them."""

    webhook_retry_delays: tuple[float, ...] = (0.2, 1.0, 3.0)
    """Waits before the 2nd, 3rd and 4th delivery attempt; tests may shorten them before start()."""

    def __init__(
        self,
        *,
        access_token: str = "TEST-sandbox-access-token",  # noqa: S107 (the sandbox's public default)
        webhook_secret: str = "sandbox-webhook-secret",  # noqa: S107
        webhook_url: str | None = None,
        hang_seconds: float = 12.0,
        contingency_seconds: float = 1.0,
        notify_on_create: bool = True,
    ) -> None:
        self.access_token = access_token
        self.webhook_secret = webhook_secret
        self.webhook_url = webhook_url
        self.hang_seconds = hang_seconds
        self.contingency_seconds = contingency_seconds
        self.notify_on_create = notify_on_create
        self._lock = threading.RLock()
        self._stopping = threading.Event()
        self._payments: dict[int, _Payment] = {}
        self._keys: dict[tuple[str, str], tuple[str, int]] = {}  # (scope, key) → (fingerprint, id)
        self._fault_attempts: dict[str, int] = {}
        self._contingent: set[int] = set()  # CONT payments still in process
        self._notifications: list[JSON] = []
        self._ticket_key = uuid.uuid4().bytes
        # Ids look like Mercado Pago's (positive, 11 or 12 digits) and grow across restarts, so a
        # local stack that keeps its tables never sees an id reused by a restarted sandbox.
        base = int(time.time() * 100)
        self._payment_ids = itertools.count(base)
        self._refund_ids = itertools.count(base * 10)
        self._notification_ids = itertools.count(base * 100)
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._clock = _Timers("mp-sandbox-clock")
        self._courier: _Courier | None = None
        self._routes: list[Route] = [
            ("POST", re.compile(r"/v1/payments"), "/v1/payments", self._create_payment),
            ("GET", re.compile(r"/v1/payments/search"), "/v1/payments/search", self._search),
            ("GET", re.compile(r"/v1/payments/([^/]+)"), "/v1/payments/{id}", self._get_payment),
            ("PUT", re.compile(r"/v1/payments/([^/]+)"), "/v1/payments/{id}", self._update_payment),
            ("POST", re.compile(r"/v1/payments/([^/]+)/refunds"), "/v1/payments/{id}/refunds", self._refund),
            ("GET", re.compile(r"/v1/payments/([^/]+)/refunds"), "/v1/payments/{id}/refunds", self._refunds),
            (
                "GET",
                re.compile(r"/v1/payments/([^/]+)/refunds/([^/]+)"),
                "/v1/payments/{id}/refunds/{refund_id}",
                self._get_refund,
            ),
            ("GET", re.compile(r"/v1/card_tokens/([^/]+)"), "/v1/card_tokens/{token}", self._get_card_token),
            ("POST", re.compile(r"/sandbox/pix/([^/]+)/pay"), "/sandbox/pix/{id}/pay", self._pay_route),
            ("GET", re.compile(r"/sandbox/pix/([^/]+)/ticket"), "/sandbox/pix/{id}/ticket", self._ticket),
        ]

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Serve from a daemon thread; the base URL (http://host:port), ready for requests."""
        if self._server is not None or self._stopping.is_set():
            raise RuntimeError("a sandbox starts once")
        self._server = _Server((host, port), self)
        self._courier = _Courier(self.webhook_secret, self._record_notification, self.webhook_retry_delays)
        self._clock.start()
        self._courier.start()
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="mp-sandbox", daemon=True
        )
        self._thread.start()
        return self.base_url

    def stop(self) -> None:
        """Stop serving at once: a hanging TIMEOUT answer is cut short, pending webhooks dropped."""
        self._stopping.set()
        server = self._server
        if server is not None:
            server.shutdown()
            server.server_close()
            with server.connections_lock:
                open_connections = list(server.connections)
            for connection in open_connections:
                with contextlib.suppress(OSError):
                    connection.shutdown(socket.SHUT_RDWR)
        if self._thread is not None:
            self._thread.join(timeout=2)
        self._clock.stop()
        if self._courier is not None:
            self._courier.stop()

    def __enter__(self) -> MercadoPagoSandbox:
        if self._server is None:
            self.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        if self._server is None:
            raise RuntimeError("the sandbox is not started")
        host, port = self._server.server_address[:2]
        host = host.decode() if isinstance(host, bytes) else str(host)
        return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"

    # -- introspection (tests) ------------------------------------------------------------------

    def payment(self, gateway_id: str | int) -> JSON:
        """The stored payment, exactly as GET /v1/payments/{id} would answer (KeyError if none)."""
        with self._lock:
            self._settle_due()
            found: JSON = _plain(self._find(gateway_id).render())
            return found

    def payments_for(self, external_reference: str) -> list[JSON]:
        """Every payment created with this external_reference, oldest first (double charges show)."""
        with self._lock:
            self._settle_due()
            found: list[JSON] = _plain(
                [
                    p.render()
                    for p in self._payments.values()
                    if p.order.external_reference == external_reference
                ]
            )
            return found

    def polls(self, gateway_id: str | int) -> int:
        """How many polls (GETs with `X-Tarefa-Read: poll`) this payment has had."""
        with self._lock:
            return self._find(gateway_id).polls

    @property
    def notifications(self) -> list[JSON]:
        """Every webhook delivery attempt: url, headers, body, status (None if unanswered), error,
        attempt (1 for the first try of a notification), at."""
        with self._lock:
            sent: list[JSON] = _plain(self._notifications)
            return sent

    def pay_pix(self, gateway_id: str | int) -> JSON:
        """The simulated customer pays the PIX charge; the approved payment. KeyError for an
        unknown id, ValueError when it cannot be paid (not PIX, not pending, a never@ payer)."""
        with self._lock:
            payment = self._find(gateway_id)
            try:
                self._pay(payment)
            except ApiError as exc:
                raise ValueError(exc.message) from None
            paid: JSON = _plain(payment.render())
            return paid

    # -- dispatch -------------------------------------------------------------------------------

    def _dispatch(self, request: _Request) -> tuple[_Reply, str]:
        """The reply and the route template to log (never the path: it may carry a card token)."""
        allowed = False
        for method, pattern, template, handler in self._routes:
            match = pattern.fullmatch(request.path)
            if match is None:
                continue
            if method != request.method:
                allowed = True
                continue
            request.params = match.groups()
            try:
                if template not in _PUBLIC_ROUTES:
                    self._authenticate(request)
                return handler(request), template
            except ApiError as exc:
                return _error_reply(exc), template
            except Exception:
                logger.exception("sandbox failed on %s %s", request.method, template)
                return _error_reply(ApiError(500, "internal_server_error", "internal server error")), template
        if allowed:
            return _error_reply(ApiError(405, "method_not_allowed", "method not allowed")), "?"
        return _error_reply(ApiError(404, "not_found", "resource not found")), "?"

    def _authenticate(self, request: _Request) -> None:
        given = request.headers.get("authorization", "")
        expected = f"Bearer {self.access_token}"
        if not hmac.compare_digest(given.encode(), expected.encode()):
            raise ApiError(
                401, "unauthorized", "unauthorized", [(5, "Must provide your access_token to proceed")]
            )

    def _idempotency_key(self, request: _Request) -> str:
        key = request.headers.get("x-idempotency-key", "").strip()
        if not key:
            raise _bad_request(4292, "X-Idempotency-Key can't be null")
        return key

    def _find(self, gateway_id: str | int) -> _Payment:
        try:
            return self._payments[int(gateway_id)]
        except (ValueError, KeyError):
            raise KeyError(gateway_id) from None

    def _payment_param(self, request: _Request) -> _Payment:
        try:
            return self._find(request.params[0])
        except KeyError:
            raise _payment_not_found() from None

    # -- payments -------------------------------------------------------------------------------

    def _create_payment(self, request: _Request) -> _Reply:
        key = self._idempotency_key(request)
        data = _json_object(request.body)
        fingerprint = _fingerprint(data)
        with self._lock:
            self._settle_due()
            known = self._keys.get(("payments", key))
            if known is not None:
                if known[0] != fingerprint:
                    raise _idempotency_conflict()
                return _Reply(201, self._payments[known[1]].render())
            order = self._order(data)
            fault = order.token if order.token in ("TIMEOUT", "RATE_LIMIT", "ERROR") else None
            if fault is not None:
                attempt = self._fault_attempts[key] = self._fault_attempts.get(key, 0) + 1
                if fault == "RATE_LIMIT" and attempt == 1:
                    raise ApiError(
                        429, "too_many_requests", "too many requests", headers={"Retry-After": "1"}
                    )
                if fault == "ERROR" and attempt <= _ERROR_ATTEMPTS:
                    raise ApiError(500, "internal_server_error", "internal server error")
            payment = self._new_payment(order)
            self._keys["payments", key] = (fingerprint, payment.id)
            reply = _Reply(201, payment.render())
        if fault == "TIMEOUT":
            reply.hang = self.hang_seconds
        return reply

    def _order(self, data: JSON) -> _Order:
        amount = _amount(data.get("transaction_amount"), 2072, "transaction_amount")
        method_id = data.get("payment_method_id")
        if not isinstance(method_id, str) or not method_id:
            raise _bad_request(2131, "Cannot infer Payment Method")
        if method_id == "pix":
            type_id, token = "bank_transfer", None
        elif method_id in _CARD_METHODS:
            type_id = _CARD_METHODS[method_id][0]
            raw_token = data.get("token")
            token = raw_token.upper() if isinstance(raw_token, str) else None
            if token not in TEST_CARDS:
                raise _bad_request(2006, "Card Token not found")
        else:
            raise _bad_request(3011, "Not found payment_method")
        payer = data.get("payer")
        if payer is None:
            payer = {}
        if not isinstance(payer, dict):
            raise _bad_request(1, "Params Error: payer must be an object")
        email = payer.get("email")
        if not isinstance(email, str) or not _EMAIL.fullmatch(email):
            raise _bad_request(4050, "payer.email must be a valid email")
        identification = payer.get("identification")
        if identification is not None and not isinstance(identification, dict):
            raise _bad_request(1, "Params Error: payer.identification must be an object")
        installments = data.get("installments", 1)
        if installments is None:
            installments = 1
        if isinstance(installments, Decimal) and installments == installments.to_integral_value():
            installments = int(installments)
        if isinstance(installments, bool) or not isinstance(installments, int) or not 1 <= installments <= 36:
            raise _bad_request(1, "Params Error: installments must be an integer from 1 to 36")
        notification_url = data.get("notification_url")
        if notification_url is not None and not _is_url(notification_url):
            raise _bad_request(4020, "notificaction_url attribute must be url valid")
        description = _optional_text(data, "description", 600)
        external_reference = _optional_text(data, "external_reference", 256)
        expires: datetime | None = None
        raw_expiry = data.get("date_of_expiration")
        if raw_expiry is not None:
            expires = _parse_time(raw_expiry)
        return _Order(
            amount=amount,
            method_id=method_id,
            type_id=type_id,
            token=token,
            description=description,
            installments=1 if method_id == "pix" else installments,
            email=email,
            identification=_plain(identification) if identification is not None else None,
            notification_url=notification_url,
            external_reference=external_reference,
            expires=expires,
        )

    def _new_payment(self, order: _Order) -> _Payment:
        at = _now()
        payment_id = next(self._payment_ids)
        if order.method_id == "pix":
            status, detail = PENDING, "pending_waiting_transfer"
        else:
            status, detail = TEST_CARDS[order.token or ""]
        payment = _Payment(
            id=payment_id, order=order, status=status, status_detail=detail, created=at, updated=at
        )
        if status == APPROVED:
            payment.approved = at
        if order.method_id == "pix":
            payment.expires = order.expires or at + _DEFAULT_PIX_TTL
            code = pix_code(payment_id, order.amount)
            payment.pix = {
                "qr_code": code,
                "qr_code_base64": base64.b64encode(qr_png(code)).decode(),
                "ticket_url": self._ticket_url(payment_id),
            }
        if status == IN_PROCESS:
            payment.settle_at = time.monotonic() + self.contingency_seconds
            self._contingent.add(payment_id)
            self._clock.call_later(self.contingency_seconds, self._settle_due)
        self._payments[payment_id] = payment
        if self.notify_on_create:
            self._notify(payment, "payment.created")
        return payment

    def _settle_due(self) -> None:
        """Approve the CONT payments whose contingency is over (on the clock thread, and before
        every read so an answer never lags the clock)."""
        with self._lock:
            now = time.monotonic()
            for payment_id in sorted(self._contingent):
                payment = self._payments[payment_id]
                if payment.status != IN_PROCESS or payment.settle_at is None:
                    self._contingent.discard(payment_id)
                elif payment.settle_at <= now:
                    self._contingent.discard(payment_id)
                    payment.move(APPROVED, "accredited", _now())
                    self._notify(payment, "payment.updated")

    def _get_payment(self, request: _Request) -> _Reply:
        with self._lock:
            self._settle_due()
            payment = self._payment_param(request)
            if request.headers.get("x-tarefa-read", "").strip().lower() == "poll":
                payment.polls += 1
                paid_after = _PAID_AFTER.match(payment.order.email)
                if (
                    payment.is_pix
                    and payment.status == PENDING
                    and paid_after is not None
                    and payment.polls >= max(int(paid_after.group(1)), 1)
                ):
                    payment.move(APPROVED, "accredited", _now())
                    self._notify(payment, "payment.updated")
            return _Reply(200, payment.render())

    def _search(self, request: _Request) -> _Reply:
        def one(name: str) -> str | None:
            values = request.query.get(name)
            return values[-1] if values else None

        try:
            limit = int(one("limit") or 30)
            offset = int(one("offset") or 0)
        except ValueError:
            raise _bad_request(1, "Params Error: limit and offset must be integers") from None
        if not 0 < limit <= 1000 or offset < 0:
            raise _bad_request(1, "Params Error: limit must be 1 to 1000 and offset not negative")
        reference, status = one("external_reference"), one("status")
        with self._lock:
            self._settle_due()
            found = [
                payment
                for payment in self._payments.values()
                if (reference is None or payment.order.external_reference == reference)
                and (status is None or payment.status == status)
            ]
            if (one("criteria") or "asc").lower() == "desc":
                found.reverse()
            page = [payment.render() for payment in found[offset : offset + limit]]
        return _Reply(
            200, {"paging": {"total": len(found), "limit": limit, "offset": offset}, "results": page}
        )

    def _update_payment(self, request: _Request) -> _Reply:
        data = _json_object(request.body)
        with self._lock:
            self._settle_due()
            payment = self._payment_param(request)
            if data.get("status") is None:
                raise _bad_request(4017, "status attribute can't be null")
            if data["status"] != CANCELLED:
                raise _bad_request(2016, "Invalid status for update")
            if payment.status not in (PENDING, IN_PROCESS, AUTHORIZED):
                raise _invalid_state()
            payment.move(CANCELLED, "by_collector", _now())
            self._notify(payment, "payment.updated")
            return _Reply(200, payment.render())

    # -- refunds --------------------------------------------------------------------------------

    def _refund(self, request: _Request) -> _Reply:
        key = self._idempotency_key(request)
        data = _json_object(request.body, empty_ok=True)
        fingerprint = _fingerprint(data)
        with self._lock:
            self._settle_due()
            payment = self._payment_param(request)
            known = self._keys.get((f"refunds:{payment.id}", key))
            if known is not None:
                if known[0] != fingerprint:
                    raise _idempotency_conflict()
                return _Reply(201, next(r for r in payment.refunds if r.id == known[1]).render())
            if payment.status != APPROVED:
                raise _bad_request(2063, "The action requested is not valid for the current payment state")
            left = payment.order.amount - payment.refunded
            raw = data.get("amount")
            amount = left if raw is None else _amount(raw, 4041, "amount")
            if amount > left:
                raise _bad_request(2063, f"The amount to refund exceeds what is left to refund ({left:.2f})")
            refund = _Refund(id=next(self._refund_ids), payment_id=payment.id, amount=amount, created=_now())
            payment.refunds.append(refund)
            payment.refunded += amount
            if payment.refunded == payment.order.amount:
                payment.move(REFUNDED, "refunded", refund.created)
            else:
                payment.move(APPROVED, "partially_refunded", refund.created)
            self._keys[f"refunds:{payment.id}", key] = (fingerprint, refund.id)
            self._notify(payment, "payment.updated")
            return _Reply(201, refund.render())

    def _refunds(self, request: _Request) -> _Reply:
        with self._lock:
            payment = self._payment_param(request)
            return _Reply(200, [refund.render() for refund in payment.refunds])

    def _get_refund(self, request: _Request) -> _Reply:
        with self._lock:
            payment = self._payment_param(request)
            for refund in payment.refunds:
                if str(refund.id) == request.params[1]:
                    return _Reply(200, refund.render())
        raise ApiError(404, "not_found", "Refund not found")

    # -- card tokens ----------------------------------------------------------------------------

    def _get_card_token(self, request: _Request) -> _Reply:
        token = request.params[0].upper()
        if token not in TEST_CARDS:
            raise ApiError(404, "not_found", "Not found Cardtoken", [(3008, "Not found Cardtoken")])
        return _Reply(200, _card_token(token, _now()))

    # -- the simulated PIX payer ----------------------------------------------------------------

    def _pay(self, payment: _Payment) -> None:
        if not payment.is_pix:
            raise _bad_request(2018, "only a PIX charge can be paid through the sandbox")
        if payment.status != PENDING:
            raise _invalid_state()
        if _NEVER.match(payment.order.email):
            raise _bad_request(2018, "this sandbox payer (never@) never pays")
        payment.move(APPROVED, "accredited", _now())
        self._notify(payment, "payment.updated")

    def _pay_route(self, request: _Request) -> _Reply:
        with self._lock:
            payment = self._payment_param(request)
            self._pay(payment)
            return _Reply(200, payment.render())

    def _ticket_hash(self, payment_id: int) -> str:
        return hmac.new(self._ticket_key, str(payment_id).encode(), hashlib.sha256).hexdigest()[:24]

    def _ticket_url(self, payment_id: int) -> str:
        base = self.base_url if self._server is not None else "http://127.0.0.1"
        return f"{base}/sandbox/pix/{payment_id}/ticket?hash={self._ticket_hash(payment_id)}"

    def _ticket(self, request: _Request) -> _Reply:
        """The page a payer opens (no bearer, like Mercado Pago's ticket: the link's hash is the key)."""
        given = (request.query.get("hash") or [""])[-1]
        with self._lock:
            try:
                payment = self._find(request.params[0])
            except KeyError:
                raise _payment_not_found() from None
            if not payment.is_pix or not hmac.compare_digest(given, self._ticket_hash(payment.id)):
                raise _payment_not_found()
            assert payment.pix is not None
            code, image = payment.pix["qr_code"], payment.pix["qr_code_base64"]
            status, amount = payment.status, payment.order.amount
        page = (
            "<!doctype html><html><head><meta charset='utf-8'><title>PIX (sandbox)</title></head><body>"
            f"<h1>PIX R$ {amount:.2f}</h1><p>Status: {html.escape(status)}</p>"
            f"<img alt='QR code' src='data:image/png;base64,{image}'>"
            f"<p><code>{html.escape(code)}</code></p>"
            f"<p>Sandbox: pay it with POST /sandbox/pix/{payment.id}/pay</p></body></html>"
        )
        return _Reply(200, page.encode(), content_type="text/html; charset=utf-8")

    # -- webhooks -------------------------------------------------------------------------------

    def _notify(self, payment: _Payment, action: str) -> None:
        """Queue the notification Mercado Pago would send (the caller holds the lock)."""
        url = payment.order.notification_url or self.webhook_url
        if url is None or self._courier is None:
            return
        data_id = str(payment.id)
        query = urlencode({"data.id": data_id, "type": "payment"})
        body: JSON = {
            "id": next(self._notification_ids),
            "live_mode": False,
            "type": "payment",
            "date_created": _iso(_now()),
            "user_id": _USER_ID,
            "api_version": "v1",
            "action": action,
            "data": {"id": data_id},
        }
        self._courier.enqueue(
            payment.id, _Delivery(f"{url}{'&' if '?' in url else '?'}{query}", body, data_id)
        )

    def _record_notification(self, attempt: JSON) -> None:
        with self._lock:
            self._notifications.append(attempt)


# ---------------------------------------------------------------------------------------------
# Body parsing


def _json_object(raw: bytes, *, empty_ok: bool = False) -> JSON:
    """The request body as a JSON object (numbers with a fraction as Decimal)."""
    if not raw.strip():
        if empty_ok:
            return {}
        raise _bad_request(1, "Params Error: a JSON body is required")
    try:
        value = json.loads(raw, parse_float=Decimal, parse_constant=_no_constants)
    except (ValueError, UnicodeDecodeError):
        raise _bad_request(1, "Params Error: the body is not valid JSON") from None
    if value is None and empty_ok:
        return {}
    if not isinstance(value, dict):
        raise _bad_request(1, "Params Error: the body must be a JSON object")
    return value


def _amount(value: object, invalid_code: int, name: str) -> Decimal:
    """A money amount: a JSON number, positive (cause 4040), at most two decimals."""
    if isinstance(value, bool) or not isinstance(value, int | Decimal):
        raise _bad_request(invalid_code, f"Invalid value for {name}")
    amount = Decimal(value)
    if not amount.is_finite():
        raise _bad_request(invalid_code, f"Invalid value for {name}")
    if amount <= 0:
        raise _bad_request(4040, f"{name} attribute must be positive")
    try:
        exact = amount.quantize(_CENT)
    except InvalidOperation:
        raise _bad_request(invalid_code, f"Invalid value for {name}") from None
    if exact != amount or exact > _MAX_AMOUNT:
        raise _bad_request(
            invalid_code, f"Invalid value for {name}: at most two decimals, up to {_MAX_AMOUNT}"
        )
    return exact


def _optional_text(data: JSON, name: str, limit: int) -> str | None:
    value = data.get(name)
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > limit:
        raise _bad_request(1, f"Params Error: {name} must be a string of at most {limit} characters")
    return value


def _is_url(value: object) -> bool:
    if not isinstance(value, str) or len(value) > 500:
        return False
    parts = urlsplit(value)
    return parts.scheme in ("http", "https") and bool(parts.hostname)


def _parse_time(value: object) -> datetime:
    text = value if isinstance(value, str) else ""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        moment = None
    if moment is None or moment.tzinfo is None:
        raise _bad_request(
            23,
            "The following parameters must be valid date and format (yyyy-MM-dd'T'HH:mm:ssz) date_of_expiration",
        )
    return moment


def _idempotency_conflict() -> ApiError:
    return ApiError(
        409, "idempotency conflict", "this X-Idempotency-Key was already used with another request body"
    )


# ---------------------------------------------------------------------------------------------
# Running it alone


def main(argv: list[str] | None = None) -> int:
    """`python -m payments.provider.sandbox --port 8081 --webhook-url URL`: prints the base URL
    and serves until interrupted (SIGINT or SIGTERM)."""
    parser = argparse.ArgumentParser(
        prog="python -m payments.provider.sandbox", description="A Mercado Pago Payments API sandbox."
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8081)
    parser.add_argument("--webhook-url", default=None, help="where webhooks go when a payment names none")
    parser.add_argument("--access-token", default="TEST-sandbox-access-token")
    parser.add_argument("--webhook-secret", default="sandbox-webhook-secret")
    parser.add_argument("--hang-seconds", type=float, default=12.0)
    parser.add_argument("--contingency-seconds", type=float, default=1.0)
    parser.add_argument("--no-notify-on-create", action="store_true", help="send no payment.created webhook")
    parser.add_argument(
        "--verbose", "-v", action="store_true", help="log each request (method, route, status)"
    )
    options = parser.parse_args(argv)
    if options.verbose:
        logging.basicConfig(level=logging.DEBUG, format="%(asctime)s %(message)s")
    sandbox = MercadoPagoSandbox(
        access_token=options.access_token,
        webhook_secret=options.webhook_secret,
        webhook_url=options.webhook_url,
        hang_seconds=options.hang_seconds,
        contingency_seconds=options.contingency_seconds,
        notify_on_create=not options.no_notify_on_create,
    )
    done = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: done.set())
    print(sandbox.start(options.host, options.port), flush=True)
    try:
        done.wait()
    finally:
        sandbox.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
