"""The providers' webhook authentication, checked in constant time.

- Cloud API: `X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the raw body, keyed with the
  app secret>` (Meta's Graph API webhooks), and the subscription handshake's `hub.verify_token`.
- Evolution API signs nothing: each instance's webhook is configured with a header carrying a
  secret of its own, `X-Tarefa-Instance-Secret`, derived from one stage secret and the instance
  name (so nothing per instance is stored), compared in constant time.
"""

from __future__ import annotations

import hashlib
import hmac

SIGNATURE_HEADER = "x-hub-signature-256"
INSTANCE_SECRET_HEADER = "X-Tarefa-Instance-Secret"  # noqa: S105 - a header's name


class InvalidSignatureError(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def hub_signature(body: bytes, app_secret: str) -> str:
    """The header value Meta sends with `body`."""
    return "sha256=" + hmac.new(app_secret.encode(), body, hashlib.sha256).hexdigest()


def verify_hub_signature(header: str | None, body: bytes, app_secret: str) -> None:
    """InvalidSignatureError unless `header` is `body`'s signature with `app_secret`."""
    if not app_secret:
        raise InvalidSignatureError("no app secret is configured")
    if not header:
        raise InvalidSignatureError("missing X-Hub-Signature-256")
    scheme, _, given = header.strip().partition("=")
    if scheme.lower() != "sha256" or not given:
        raise InvalidSignatureError("X-Hub-Signature-256 is not sha256=<hex>")
    expected = hmac.new(app_secret.encode(), body, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected.encode(), given.strip().lower().encode()):
        raise InvalidSignatureError("signature mismatch")


def verify_token_matches(given: str | None, expected: str) -> bool:
    """The subscription handshake's hub.verify_token, in constant time."""
    if not expected or given is None:
        return False
    return hmac.compare_digest(given.encode(), expected.encode())


def instance_secret(master: str, instance: str) -> str:
    """The secret an Evolution instance's webhook carries: HMAC(master, instance), hex."""
    return hmac.new(master.encode(), f"evolution-instance:{instance}".encode(), hashlib.sha256).hexdigest()


def verify_instance_secret(given: str | None, master: str, instance: str) -> None:
    if not master:
        raise InvalidSignatureError("no webhook secret is configured")
    if not given:
        raise InvalidSignatureError(f"missing {INSTANCE_SECRET_HEADER}")
    if not hmac.compare_digest(given.strip().encode(), instance_secret(master, instance).encode()):
        raise InvalidSignatureError("instance secret mismatch")
