"""Mercado Pago's webhook signature (`x-signature`), so a forged notification is refused.

A notification says only "payment <data.id> changed"; the receiver then reads the payment from the
API, so a forgery cannot fake a status, but it can make us read (and poll) at an attacker's pace.
The check, per Mercado Pago's webhook documentation and its Python SDK (3.5+):

- header `x-signature: ts=<ts>,v1=<hex>`, header `x-request-id: <uuid>`, query `data.id`;
- manifest `id:<data.id>;request-id:<x-request-id>;ts:<ts>;` where data.id is lowercased when
  alphanumeric and a pair whose value is absent is left out (`ts` is always there);
- `v1` is HMAC-SHA256 of the manifest keyed with the application's secret, as lowercase hex.

`ts` is Unix seconds: the documentation calls it milliseconds, but its own example (1704908010)
and the SDK since 3.4.0 treat it as seconds. A 13-digit `ts` is read as milliseconds all the same,
in case a sender follows the documentation's words; the manifest keeps `ts` exactly as received.

Mercado Pago documents no replay window; we refuse a `ts` more than `tolerance_seconds` in the
past ("expired") or in the future ("future"). Standard library only: no SDK in the Lambda layer.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from typing import Literal

Reason = Literal["missing", "malformed", "mismatch", "expired", "future"]

_HEX64 = re.compile(r"[0-9a-f]{64}")
_MILLISECOND_DIGITS = 13


class InvalidSignatureError(Exception):
    """The notification is not provably Mercado Pago's; `reason` says why (safe to log)."""

    def __init__(self, reason: Reason) -> None:
        super().__init__(f"invalid webhook signature: {reason}")
        self.reason: Reason = reason


def _present(value: str | None) -> str | None:
    """The value without surrounding spaces, or None when absent or blank (the pair is omitted)."""
    if value is None:
        return None
    value = value.strip()
    return value or None


def manifest(data_id: str | None, request_id: str | None, ts: str) -> str:
    """The string Mercado Pago signs: `id:<data.id>;request-id:<x-request-id>;ts:<ts>;`."""
    parts: list[str] = []
    data_id = _present(data_id)
    if data_id is not None:
        if data_id.isascii() and data_id.isalnum():
            data_id = data_id.lower()
        parts.append(f"id:{data_id}")
    request_id = _present(request_id)
    if request_id is not None:
        parts.append(f"request-id:{request_id}")
    parts.append(f"ts:{ts.strip()}")
    return ";".join(parts) + ";"


def _digest(secret: str, text: str) -> str:
    return hmac.new(secret.encode(), text.encode(), hashlib.sha256).hexdigest()


def sign_notification(data_id: str, request_id: str, secret: str, ts: int) -> str:
    """The `x-signature` value Mercado Pago would send (for the sandbox and tests): `ts=..,v1=..`."""
    if not secret:
        raise ValueError("the webhook secret is empty")
    return f"ts={ts},v1={_digest(secret, manifest(data_id, request_id, str(ts)))}"


def _parse(x_signature: str) -> tuple[str, str]:
    """`ts` and `v1` from the header; InvalidSignatureError("malformed") unless both are sound."""
    fields: dict[str, str] = {}
    for part in x_signature.split(","):
        key, sep, value = part.partition("=")
        if not sep:
            raise InvalidSignatureError("malformed")
        key, value = key.strip().lower(), value.strip()
        if not key or not value or key in fields:
            raise InvalidSignatureError("malformed")
        fields[key] = value
    ts, v1 = fields.get("ts"), fields.get("v1")
    if ts is None or v1 is None or not (ts.isascii() and ts.isdigit()):
        raise InvalidSignatureError("malformed")
    if not _HEX64.fullmatch(v1.lower()):
        raise InvalidSignatureError("malformed")
    return ts, v1.lower()


def verify_signature(
    x_signature: str | None,
    x_request_id: str | None,
    data_id: str | None,
    secret: str,
    *,
    now: float,
    tolerance_seconds: int = 300,
) -> None:
    """Return if the notification is signed with `secret` and fresh; else InvalidSignatureError.

    `now` is Unix seconds (passed in, so the caller's clock is the one tests control). The
    signature is compared in constant time before the timestamp is judged, so "expired" and
    "future" are only ever said of a genuinely signed (replayed) notification."""
    if not secret:
        raise ValueError("the webhook secret is empty")
    header = _present(x_signature)
    if header is None:
        raise InvalidSignatureError("missing")
    ts, received = _parse(header)
    expected = _digest(secret, manifest(data_id, x_request_id, ts))
    if not hmac.compare_digest(expected.encode(), received.encode()):
        raise InvalidSignatureError("mismatch")
    sent = int(ts) / 1000 if len(ts) == _MILLISECOND_DIGITS else int(ts)
    if now - sent > tolerance_seconds:
        raise InvalidSignatureError("expired")
    if sent - now > tolerance_seconds:
        raise InvalidSignatureError("future")
