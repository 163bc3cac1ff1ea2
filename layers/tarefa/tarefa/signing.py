"""Standard Webhooks signatures (https://www.standardwebhooks.com, "Symmetric signatures").

The signed content is `{webhook-id}.{webhook-timestamp}.{body}`; the key is the base64-decoded
part of a `whsec_…` secret; the signature is base64(HMAC-SHA256(key, content)), sent as
`v1,<signature>`. Several signatures (a secret being rotated) are space-separated in one
`webhook-signature` header, and a receiver accepts the message if any of them matches.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
from collections.abc import Iterable

SECRET_PREFIX = "whsec_"  # noqa: S105 (a prefix, not a secret)
SECRET_BYTES = 32  # the spec asks for 24 to 64 random bytes
VERSION = "v1"


class InvalidSecretError(ValueError):
    """Not a `whsec_` secret whose key is base64 of at least one byte."""


def new_secret() -> str:
    """A fresh signing secret: `whsec_` + base64 of SECRET_BYTES random bytes."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode("ascii")


def secret_key(secret: str) -> bytes:
    """The HMAC key of a secret (the prefix is optional, as the reference libraries allow)."""
    encoded = secret.removeprefix(SECRET_PREFIX)
    try:
        key = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise InvalidSecretError("the secret is not base64 after its whsec_ prefix") from None
    if not key:
        raise InvalidSecretError("the secret is empty")
    return key


def _content(msg_id: str, timestamp: int, body: bytes | str) -> bytes:
    data = body.encode() if isinstance(body, str) else body
    return f"{msg_id}.{timestamp}.".encode() + data


def sign(secret: str, msg_id: str, timestamp: int, body: bytes | str) -> str:
    """One `v1,<base64>` signature of the message."""
    digest = hmac.new(secret_key(secret), _content(msg_id, timestamp, body), hashlib.sha256).digest()
    return f"{VERSION},{base64.b64encode(digest).decode('ascii')}"


def signature_header(signing_secrets: Iterable[str], msg_id: str, timestamp: int, body: bytes | str) -> str:
    """The `webhook-signature` value: one signature per secret, space-separated."""
    signatures = [sign(s, msg_id, timestamp, body) for s in signing_secrets]
    if not signatures:
        raise InvalidSecretError("a message needs at least one signing secret")
    return " ".join(signatures)


def verify(secret: str, msg_id: str, timestamp: int, body: bytes | str, header: str) -> bool:
    """Whether any v1 signature in `header` is this secret's (constant-time comparison).
    Receivers should also refuse a timestamp far from their clock (the libraries: 5 minutes)."""
    expected = sign(secret, msg_id, timestamp, body).encode()
    return any(
        hmac.compare_digest(expected, candidate.encode())
        for candidate in header.split(" ")
        if candidate.startswith(f"{VERSION},")
    )
