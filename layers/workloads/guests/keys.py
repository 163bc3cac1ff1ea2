"""The workload's keyed hashes and tokens, from one secret (`tarefa/<stage>/guests/keys`, a random
string the template generates):

- **Phone keys.** A phone number is never a key (tables, cache, rate limits): its HMAC-SHA256
  under a key derived from the secret is. A plain hash of a phone number would not hide it: there
  are only some billions of numbers, a laptop hashes them all in minutes; without the secret,
  nobody can.
- **Pass tokens.** What a guest's QR code encodes: `<guestId>.<signature>`, the signature an
  HMAC of the event and the guest under a second derived key: unguessable, bound to its event
  (another event's check-in refuses it), and checked without a read. The same guest always has
  the same token, so a pass is shown again without storing it.
- **Status tokens.** 256 random bits handed to the submitter of a registration or login, who
  reads the job with it; only its SHA-256 is stored (as the platform's sessions do).

The secret must not change once guests exist: every client's key and every pass derive from it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

SECRET_NAME = "guests/keys"  # noqa: S105 - a name, under the stage's prefix
PASS_SIGNATURE_BYTES = 16  # 128 bits: unguessable; keeps the QR code small


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


class GuestKeys:
    def __init__(self, secret: str) -> None:
        if len(secret) < 32:
            raise ValueError("the guests' key secret must be at least 32 characters")
        master = secret.encode()
        self._phone = hmac.new(master, b"tarefa-guests/phone/v1", hashlib.sha256).digest()
        self._pass = hmac.new(master, b"tarefa-guests/pass/v1", hashlib.sha256).digest()

    def phone_key(self, phone: str) -> str:
        """The phone number (E.164) as a key: 64 hex characters that reveal nothing of it."""
        return hmac.new(self._phone, phone.encode(), hashlib.sha256).hexdigest()

    def pass_token(self, event_id: str, guest_id: str) -> str:
        return f"{guest_id}.{self._signature(event_id, guest_id)}"

    def pass_guest(self, event_id: str, token: str) -> str | None:
        """The guest a pass of this event names; None when forged, altered or another event's."""
        guest_id, dot, signature = token.strip().rpartition(".")
        if not dot or not guest_id or len(token) > 200:
            return None
        if not hmac.compare_digest(signature.encode(), self._signature(event_id, guest_id).encode()):
            return None
        return guest_id

    def _signature(self, event_id: str, guest_id: str) -> str:
        message = f"pass/{event_id}/{guest_id}".encode()
        return _b64(hmac.new(self._pass, message, hashlib.sha256).digest()[:PASS_SIGNATURE_BYTES])


def new_status_token() -> tuple[str, str]:
    """A status token and the hash that is stored."""
    token = secrets.token_urlsafe(32)
    return token, token_hash(token)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def same_token(token: str | None, stored_hash: str | None) -> bool:
    if not token or not stored_hash or len(token) > 200:
        return False
    return hmac.compare_digest(token_hash(token), stored_hash)
