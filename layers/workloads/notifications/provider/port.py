"""The port every e-mail provider adapter implements, and the errors it may raise.

A provider's refusal of one message (an address it will not take, a body it finds invalid) is
`EmailRejectedError`: the notification's outcome, not a failure of the system. Its credentials
or its sender refused are `PermanentJobError` with code EMAIL_NOT_CONFIGURED. Anything worth
another attempt (429, 5xx, a timeout) is `RetryableJobError`, with the provider's Retry-After.
No message built here ever holds an address, a subject or a body.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from tarefa import PermanentJobError


@dataclass(frozen=True, repr=False)
class EmailMessage:
    sender: str
    to: tuple[str, ...]
    subject: str
    text: str
    html: str | None = None

    def __repr__(self) -> str:  # never the addresses or the body
        return f"EmailMessage(recipients={len(self.to)})"


@dataclass(frozen=True)
class SentEmail:
    provider: str
    message_id: str


class EmailRejectedError(PermanentJobError):
    """The provider refused this message: `reason` is its error's name (e.g. validation_error)."""

    def __init__(self, provider: str, reason: str, status: int | None = None) -> None:
        where = f" ({status})" if status else ""
        super().__init__(f"{provider} refused the message{where}: {reason}", code="EMAIL_REJECTED")
        self.provider = provider
        self.reason = reason


class EmailNotConfiguredError(PermanentJobError):
    def __init__(self, message: str) -> None:
        super().__init__(message, code="EMAIL_NOT_CONFIGURED")


class EmailProvider(Protocol):
    name: str

    def send(self, message: EmailMessage, idempotency_key: str) -> SentEmail:
        """Send one message; the same key again must not send it twice where the provider can
        tell (Resend's Idempotency-Key; SES has none: the caller records what was sent)."""
        ...
