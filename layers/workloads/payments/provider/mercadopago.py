"""The real Mercado Pago adapter: the gateway port spoken as Mercado Pago's Payments API (v1).

Why not the official SDK: it brings its own HTTP stack (60 s timeouts, its own retries, a random
idempotency key per call), while every call here must go through the engine's OutboundHttp (SSRF
guard, job-error mapping) with the caller's idempotency key, and the engine's retry policy is
the only retry. The API used: `POST /v1/payments`, `GET|PUT /v1/payments/{id}`,
`POST /v1/payments/{id}/refunds` and `GET /v1/card_tokens/{id}` (facts in
design/providers.md section 1).

Headers: `Authorization: Bearer <token>` always; `X-Idempotency-Key` on every call that creates
or moves money (create, cancel, refund) so Mercado Pago recognises a retried step; and, on a
verification's poll only, `X-Tarefa-Read: poll`: our sandbox counts polls by it ("PIX paid after
N polls") and Mercado Pago ignores headers it does not know.

Money: the port's integer cents become `transaction_amount` as an exact Decimal (never a float),
and response amounts are read back as Decimals. Failures are classified here (the client runs
with raise_for_status=False) so a message carries the method, the path template
(`POST /v1/payments/{id}/refunds`), the status and Mercado Pago's error codes, and never a card
token, an e-mail, the access token or a body.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any, Protocol, TypeVar
from urllib.parse import quote, urlencode

from aws_lambda_powertools import Logger

from payments.provider.port import (
    CardCharge,
    CardCheck,
    GatewayPayment,
    GatewayRefund,
    GatewayStatus,
    PixCharge,
    PixCode,
    ReadPurpose,
)
from tarefa.errors import PermanentJobError, RetryableJobError
from tarefa.outbound import HttpResponse, Timeout, parse_retry_after

logger = Logger(child=True)

DEFAULT_BASE_URL = "https://api.mercadopago.com"

# Mercado Pago's `cause[].code`s that decide a 400's meaning (design/providers.md section 1).
CARD_TOKEN_CAUSES = frozenset({"2006", "2062", "3"})  # token not found / invalid / not a test token
INVALID_STATE_CAUSES = frozenset({"2063", "2018"})  # refund / cancel not valid in this state
RETRYABLE_STATUSES = frozenset({409, 423})  # same idempotency key still in flight / locked

T = TypeVar("T")

_SAFE_CODE = re.compile(r"[A-Za-z0-9_.-]{1,40}")
_MAX_CAUSES = 5


class HttpTransport(Protocol):
    """What the adapter needs of OutboundHttp (so a test can pass a stub)."""

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


class GatewayRetryableError(RetryableJobError):
    """Mercado Pago may answer differently later (429, 5xx, 409/423, a garbled response)."""

    def __init__(
        self,
        message: str,
        *,
        code: str,
        status: int | None = None,
        causes: tuple[str, ...] = (),
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, retry_after=retry_after)
        self.code = code
        self.status = status
        self.causes = causes


class GatewayPermanentError(PermanentJobError):
    """Mercado Pago refused the request and will refuse it again (code GATEWAY_*, CARD_TOKEN_*)."""

    def __init__(self, message: str, *, code: str, status: int, causes: tuple[str, ...] = ()) -> None:
        super().__init__(message, code=code)
        self.status = status
        self.causes = causes


class _BadResponse(ValueError):
    """A 2xx whose body is not the payment / refund / token object we asked for."""


def _utcnow() -> datetime:
    return datetime.now(UTC)


# -- money and JSON -----------------------------------------------------------------------------


def to_decimal(cents: int) -> Decimal:
    """Integer cents as Mercado Pago's decimal amount: 1234 -> Decimal("12.34"), exactly."""
    if isinstance(cents, bool) or not isinstance(cents, int):
        raise TypeError("amounts are integer cents")
    return Decimal(cents).scaleb(-2)


def to_cents(amount: Any) -> int:
    """A Mercado Pago amount (JSON number read as Decimal, or a string) as integer cents."""
    if isinstance(amount, bool) or not isinstance(amount, int | Decimal | str):
        raise _BadResponse("amount is not a number")
    try:
        value = Decimal(amount) * 100
    except InvalidOperation:
        raise _BadResponse("amount is not a number") from None
    if not value.is_finite() or value < 0 or value != value.to_integral_value():
        raise _BadResponse("amount is not a whole number of cents")
    return int(value)


def _encode(value: Any) -> str:
    """JSON with Decimals written as exact numbers (the json module has no way to do that)."""
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, Mapping):
        return "{" + ",".join(f"{json.dumps(str(k))}:{_encode(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list | tuple):
        return "[" + ",".join(_encode(v) for v in value) + "]"
    return json.dumps(value)


def _refuse_constant(name: str) -> Any:
    raise _BadResponse(f"JSON constant {name}")


def _object(response: HttpResponse) -> dict[str, Any]:
    try:
        data = json.loads(response.body, parse_float=Decimal, parse_constant=_refuse_constant)
    except (ValueError, UnicodeDecodeError):
        raise _BadResponse("body is not JSON") from None
    if not isinstance(data, dict):
        raise _BadResponse("body is not a JSON object")
    return data


def _id(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, int | str) or value == "":
        raise _BadResponse("id missing")
    return str(value)


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


# -- parsing ------------------------------------------------------------------------------------


def _refund(data: Mapping[str, Any]) -> GatewayRefund:
    return GatewayRefund(
        gateway_id=_id(data.get("id")),
        amount_cents=to_cents(data.get("amount")),
        status=_text(data.get("status")),
    )


def _payment(data: Mapping[str, Any]) -> GatewayPayment:
    pix: PixCode | None = None
    poi = data.get("point_of_interaction")
    transaction = poi.get("transaction_data") if isinstance(poi, Mapping) else None
    if isinstance(transaction, Mapping) and _text(transaction.get("qr_code")):
        expires = data.get("date_of_expiration")
        pix = PixCode(
            qr_code=transaction["qr_code"],
            qr_code_base64=_text(transaction.get("qr_code_base64")),
            ticket_url=_text(transaction.get("ticket_url")),
            expires_at=expires if isinstance(expires, str) and expires else None,
        )
    refunds = data.get("refunds") or []
    if not isinstance(refunds, list) or not all(isinstance(r, Mapping) for r in refunds):
        raise _BadResponse("refunds is not a list of objects")
    reference = data.get("external_reference")
    refunded = data.get("transaction_amount_refunded")
    return GatewayPayment(
        gateway_id=_id(data.get("id")),
        status=GatewayStatus(_text(data.get("status"))),
        status_detail=_text(data.get("status_detail")),
        method="pix" if data.get("payment_method_id") == "pix" else "card",
        amount_cents=to_cents(data.get("transaction_amount")),
        currency=_text(data.get("currency_id")) or "BRL",
        refunded_cents=0 if refunded is None else to_cents(refunded),
        external_reference=reference if isinstance(reference, str) and reference else None,
        pix=pix,
        refunds=tuple(_refund(r) for r in refunds),
    )


def _parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        when = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


def _card_check(data: Mapping[str, Any], now: datetime) -> CardCheck:
    month, year = data.get("expiration_month"), data.get("expiration_year")
    has_expiry = all(isinstance(v, int) and not isinstance(v, bool) for v in (month, year))
    expiration = f"{month:02d}/{year}" if has_expiry else ""
    last_four = _text(data.get("last_four_digits"))
    status = _text(data.get("status"))
    reason = ""
    due = _parse_time(data.get("date_due"))
    if status != "active":
        reason = status if _SAFE_CODE.fullmatch(status) else "inactive"
    elif due is not None and due < now:
        reason = "expired"  # the token's own life (minutes to days), not the card's
    elif has_expiry and (year, month) < (now.year, now.month):
        reason = "card_expired"
    return CardCheck(valid=not reason, reason=reason, last_four=last_four, expiration=expiration)


# -- failures -----------------------------------------------------------------------------------


def _error_codes(response: HttpResponse) -> tuple[str | None, tuple[str, ...]]:
    """Mercado Pago's `error` slug and `cause[].code`s, only if they look like codes."""
    try:
        data = json.loads(response.body)
    except (ValueError, UnicodeDecodeError):
        return None, ()
    if not isinstance(data, dict):
        return None, ()
    slug = data.get("error")
    error = slug if isinstance(slug, str) and _SAFE_CODE.fullmatch(slug) else None
    cause = data.get("cause")
    items = cause if isinstance(cause, list) else [cause] if isinstance(cause, dict) else []
    codes: list[str] = []
    for item in items:
        code = item.get("code") if isinstance(item, dict) else None
        if isinstance(code, int) and not isinstance(code, bool):
            codes.append(str(code))
        elif isinstance(code, str) and _SAFE_CODE.fullmatch(code):
            codes.append(code)
    return error, tuple(dict.fromkeys(codes))[:_MAX_CAUSES]


def classify(
    method: str, template: str, response: HttpResponse
) -> GatewayRetryableError | GatewayPermanentError | None:
    """The job error a non-2xx answer stands for (None for 2xx), per the adapter's table."""
    status = response.status
    if 200 <= status < 300:
        return None
    error, causes = _error_codes(response)
    detail = ", ".join(
        [*([f"error {error}"] if error else []), *([f"cause {'/'.join(causes)}"] if causes else [])]
    )
    message = f"{method} {template} answered {status}" + (f" ({detail})" if detail else "")
    retry_after = parse_retry_after(response.headers.get("retry-after"))
    if status == 429:
        return GatewayRetryableError(
            message, code="GATEWAY_RATE_LIMITED", status=status, causes=causes, retry_after=retry_after
        )
    if status >= 500:
        return GatewayRetryableError(
            message, code="GATEWAY_UNAVAILABLE", status=status, causes=causes, retry_after=retry_after
        )
    if status in RETRYABLE_STATUSES:
        return GatewayRetryableError(
            message, code="GATEWAY_BUSY", status=status, causes=causes, retry_after=retry_after
        )
    if status < 400:  # a 1xx, or a 3xx OutboundHttp did not follow: not Mercado Pago's API
        return GatewayRetryableError(message, code="GATEWAY_BAD_RESPONSE", status=status)
    if status in (401, 403):
        code = "GATEWAY_AUTH"
    elif status == 404:
        code = "GATEWAY_NOT_FOUND"
    elif status == 400 and CARD_TOKEN_CAUSES.intersection(causes):
        code = "CARD_TOKEN_INVALID"
    elif status == 400 and INVALID_STATE_CAUSES.intersection(causes):
        code = "GATEWAY_INVALID_STATE"
    else:
        code = "GATEWAY_REJECTED_REQUEST"
    return GatewayPermanentError(message, code=code, status=status, causes=causes)


def _check_key(idempotency_key: str) -> str:
    if not idempotency_key or len(idempotency_key) > 256 or not idempotency_key.isprintable():
        raise ValueError("an idempotency key is 1 to 256 printable characters")
    return idempotency_key


# -- the adapter --------------------------------------------------------------------------------


class MercadoPagoGateway:
    """PaymentGateway over Mercado Pago's Payments API, through the engine's outbound client.

    `timeout` is (connect, read) seconds per request; keep it well under the job's own deadline.
    `clock` (UTC) dates a PIX charge's expiry and judges a card token's; tests replace it."""

    def __init__(
        self,
        http: HttpTransport,
        access_token: str,
        base_url: str = DEFAULT_BASE_URL,
        timeout: float | tuple[float, float] = (3.0, 10.0),
        *,
        clock: Callable[[], datetime] = _utcnow,
    ) -> None:
        if not access_token or not access_token.strip():
            raise ValueError("the Mercado Pago access token is empty")
        self._http = http
        self._token = access_token.strip()
        self._base = base_url.rstrip("/")
        self._timeout = timeout
        self._clock = clock

    def __repr__(self) -> str:  # never the token
        return f"MercadoPagoGateway(base_url={self._base!r})"

    # -- the port ---------------------------------------------------------------------------

    def charge_card(self, charge: CardCharge, idempotency_key: str) -> GatewayPayment:
        """Create a card payment from a card token; a declined card comes back `rejected`."""
        body: dict[str, Any] = {
            "transaction_amount": to_decimal(charge.amount_cents),
            "token": charge.card_token,
            "installments": charge.installments,
            "payment_method_id": charge.payment_method_id,
            "payer": {"email": charge.payer_email},
            "external_reference": charge.external_reference,
        }
        if charge.description:
            body["description"] = charge.description
        if charge.notification_url:
            body["notification_url"] = charge.notification_url
        return self._create(body, idempotency_key, charge.external_reference, "card")

    def create_pix(self, charge: PixCharge, idempotency_key: str) -> GatewayPayment:
        """Create a PIX charge; it comes back `pending` with its code (point_of_interaction).

        The caller's `expires_at` keeps a retry's body the same as the first attempt's. Without
        it the expiry is dated from the clock at each attempt, a retry's body differs in
        `date_of_expiration`, and a gateway that binds the idempotency key to the body answers
        409; `_create` then finds the charge by its external reference."""
        expires = (
            charge.expires_at or self._clock() + timedelta(seconds=charge.expires_in_seconds)
        ).astimezone(UTC)
        body: dict[str, Any] = {
            "transaction_amount": to_decimal(charge.amount_cents),
            "payment_method_id": "pix",
            "payer": {"email": charge.payer_email},
            "external_reference": charge.external_reference,
            "date_of_expiration": expires.isoformat(timespec="milliseconds"),
        }
        if charge.description:
            body["description"] = charge.description
        if charge.notification_url:
            body["notification_url"] = charge.notification_url
        return self._create(body, idempotency_key, charge.external_reference, "pix")

    def get_payment(self, gateway_id: str, purpose: ReadPurpose = "read") -> GatewayPayment:
        """Read a payment; only a verification's poll is marked `X-Tarefa-Read: poll`."""
        template = "/v1/payments/{id}"
        extra = {"X-Tarefa-Read": "poll"} if purpose == "poll" else {}
        data = self._call("GET", template, f"/v1/payments/{_segment(gateway_id)}", extra=extra)
        return self._parsed("GET", template, data, _payment)

    def cancel(self, gateway_id: str, idempotency_key: str) -> GatewayPayment:
        """Cancel a payment still pending, in process or authorized (an expired PIX charge)."""
        template = "/v1/payments/{id}"
        path = f"/v1/payments/{_segment(gateway_id)}"
        data = self._call("PUT", template, path, body={"status": "cancelled"}, key=idempotency_key)
        return self._parsed("PUT", template, data, _payment)

    def refund(self, gateway_id: str, amount_cents: int | None, idempotency_key: str) -> GatewayRefund:
        """Refund `amount_cents` (`{"amount": n}`), or all that is left (no body) when None."""
        if amount_cents is not None and (isinstance(amount_cents, bool) or amount_cents <= 0):
            raise ValueError("a partial refund's amount is a positive number of cents")
        template = "/v1/payments/{id}/refunds"
        path = f"/v1/payments/{_segment(gateway_id)}/refunds"
        body = None if amount_cents is None else {"amount": to_decimal(amount_cents)}
        data = self._call("POST", template, path, body=body, key=idempotency_key)
        return self._parsed("POST", template, data, _refund)

    def check_card(self, card_token: str) -> CardCheck:
        """Look a card token up without charging it: unknown, expired or used tokens are invalid.

        A 404 (or a 400 naming a bad token) is an answer here, not an error: the token is not
        valid. Other failures raise as everywhere else."""
        template = "/v1/card_tokens/{id}"
        try:
            data = self._call("GET", template, f"/v1/card_tokens/{_segment(card_token)}")
        except GatewayPermanentError as exc:
            if exc.code == "GATEWAY_NOT_FOUND":
                return CardCheck(valid=False, reason="not_found")
            if exc.code == "CARD_TOKEN_INVALID":
                return CardCheck(valid=False, reason="invalid")
            raise
        now = self._clock()
        return self._parsed("GET", template, data, lambda d: _card_check(d, now))

    # -- plumbing ---------------------------------------------------------------------------

    def _create(self, body: Mapping[str, Any], key: str, reference: str, method: str) -> GatewayPayment:
        """POST /v1/payments; on a 409 (the key is taken: in flight, or bound to an earlier
        attempt's body) the payment this external reference already has, if there is one."""
        try:
            data = self._call("POST", "/v1/payments", "/v1/payments", body=body, key=key)
        except GatewayRetryableError as exc:
            if exc.status != 409:
                raise
            found = self._find_created(reference, method)
            if found is None:
                raise
            logger.info(
                "Mercado Pago's 409 resolved by the payment's external reference",
                extra={"method": "POST", "path": "/v1/payments", "status": 409},
            )
            return found
        return self._parsed("POST", "/v1/payments", data, _payment)

    def _find_created(self, reference: str, method: str) -> GatewayPayment | None:
        """The oldest payment created with `reference` (ours: one per charge step) by `method`;
        None when there is none yet or the search fails (the 409 then stands)."""
        template = "/v1/payments/search"
        query = urlencode(
            {"external_reference": reference, "sort": "date_created", "criteria": "asc", "limit": 10}
        )
        try:
            data = self._call("GET", template, f"{template}?{query}")
        except (GatewayPermanentError, RetryableJobError):
            return None
        results = data.get("results")
        if not isinstance(results, list):
            return None
        for item in results:
            if not isinstance(item, Mapping) or item.get("external_reference") != reference:
                continue
            payment = self._parsed("GET", template, dict(item), _payment)
            if payment.method == method:
                return payment
        return None

    def _call(
        self,
        method: str,
        template: str,
        path: str,
        *,
        body: Mapping[str, Any] | None = None,
        key: str | None = None,
        extra: Mapping[str, str] | None = None,
    ) -> dict[str, Any]:
        """One request; the parsed JSON object of a 2xx, or the classified job error."""
        headers = {
            "Authorization": f"Bearer {self._token}",
            "Accept": "application/json",
            **(extra or {}),
        }
        if method != "GET":
            headers["Content-Type"] = "application/json"
        if key is not None:
            headers["X-Idempotency-Key"] = _check_key(key)
        response = self._http.request(
            method,
            self._base + path,
            headers=headers,
            body=None if body is None else _encode(body).encode(),
            timeout=self._timeout,
            raise_for_status=False,
        )
        error = classify(method, template, response)
        if error is not None:
            logger.warning(
                "Mercado Pago refused a request",
                extra={
                    "method": method,
                    "path": template,
                    "status": response.status,
                    "code": error.code,
                    "causes": list(error.causes),
                },
            )
            raise error
        try:
            return _object(response)
        except _BadResponse as exc:
            raise self._bad_response(method, template, response.status, str(exc)) from None

    def _parsed(
        self, method: str, template: str, data: dict[str, Any], parse: Callable[[dict[str, Any]], T]
    ) -> T:
        """`parse(data)`, or a retryable GATEWAY_BAD_RESPONSE if the object is not what we expect."""
        try:
            return parse(data)
        except (_BadResponse, ValueError, TypeError, KeyError) as exc:  # pydantic's errors too
            why = str(exc) if isinstance(exc, _BadResponse) else "unexpected fields"
            raise self._bad_response(method, template, None, why) from None

    @staticmethod
    def _bad_response(method: str, template: str, status: int | None, why: str) -> GatewayRetryableError:
        logger.warning(
            "Mercado Pago answered something unexpected",
            extra={"method": method, "path": template, "status": status, "why": why},
        )
        answered = f"answered {status}" if status is not None else "answered"
        return GatewayRetryableError(
            f"{method} {template} {answered} with an unexpected body ({why})",
            code="GATEWAY_BAD_RESPONSE",
            status=status,
        )


def _segment(value: str) -> str:
    """An id as one path segment: percent-encoded, so it can never add a path or a query."""
    if not isinstance(value, str) or not value:
        raise ValueError("an id is a non-empty string")
    return quote(value, safe="")


def gateway_from_settings(
    http: HttpTransport,
    secret: Mapping[str, Any],
    *,
    timeout: float | tuple[float, float] = (3.0, 10.0),
    clock: Callable[[], datetime] = _utcnow,
) -> MercadoPagoGateway:
    """The adapter from the Secrets Manager JSON `{"accessToken": ..., "baseUrl"?: ...}`
    (other keys, such as the webhook secret, are not the adapter's and are ignored)."""
    token = secret.get("accessToken")
    if not isinstance(token, str) or not token.strip():
        raise ValueError("the gateway secret has no accessToken")
    base_url = secret.get("baseUrl") or DEFAULT_BASE_URL
    if not isinstance(base_url, str):
        raise ValueError("the gateway secret's baseUrl is not a string")
    return MercadoPagoGateway(http, token, base_url, timeout, clock=clock)
