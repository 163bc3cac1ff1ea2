"""The notifications workload's records, request bodies and job payload (pydantic v2).

E-mail addresses are checked strictly but simply (no display names, no quoted local parts, no
IP literals): what a transactional sender needs, without email-validator's DNS look-ups.
"""

from __future__ import annotations

import re
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, field_validator

MAX_RECIPIENTS = 50  # Resend's limit per e-mail; SES allows 50 too
SUBJECT_MAX = 998  # RFC 5322's line length
TEXT_MAX = 100_000
HTML_MAX = 200_000
IDEMPOTENCY_KEY_MAX = 128

_LOCAL = re.compile(r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*$")
_LABEL = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$")
_TLD = re.compile(r"^[A-Za-z]{2,63}$|^xn--[A-Za-z0-9-]{1,59}$")


def check_address(value: str) -> str:
    """`local@domain.tld`, ASCII, at most 254 characters (RFC 5321); lower-cased domain.
    The message never repeats the address (it may end up in a log line of a client)."""
    if len(value) > 254 or value.count("@") != 1:
        raise ValueError("must be one e-mail address, like name@domain.tld")
    local, domain = value.split("@")
    labels = domain.split(".")
    if not (
        0 < len(local) <= 64
        and _LOCAL.match(local)
        and len(labels) >= 2
        and all(_LABEL.match(label) for label in labels)
        and _TLD.match(labels[-1])
    ):
        raise ValueError("must be one e-mail address, like name@domain.tld")
    return f"{local}@{domain.lower()}"


Address = Annotated[str, AfterValidator(check_address)]


def _as_list(value: Any) -> Any:
    return [value] if isinstance(value, str) else value


class NotificationStatus(StrEnum):
    QUEUED = "QUEUED"  # accepted; its job sends it
    SENT = "SENT"  # the provider accepted it (providerMessageId)
    FAILED = "FAILED"  # the provider refused it, or the system gave up (reason)


class EmailRequest(BaseModel):
    """POST /notifications/email."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    to: Annotated[list[Address], BeforeValidator(_as_list)] = Field(
        description="One address (a string), or a list of up to 50"
    )
    subject: str = Field(min_length=1, max_length=SUBJECT_MAX)
    text: str = Field(min_length=1, max_length=TEXT_MAX)
    html: str | None = Field(None, min_length=1, max_length=HTML_MAX)
    idempotency_key: str | None = Field(
        None,
        alias="idempotencyKey",
        min_length=1,
        max_length=IDEMPOTENCY_KEY_MAX,
        pattern=r"^[\x21-\x7e]+$",
        description="The same key again returns the same notification (another body: 409)",
    )

    @field_validator("to")
    @classmethod
    def _recipients(cls, value: list[str]) -> list[str]:
        if not 1 <= len(value) <= MAX_RECIPIENTS:
            raise ValueError(f"must name 1 to {MAX_RECIPIENTS} recipients")
        return value

    @field_validator("subject")
    @classmethod
    def _one_line(cls, value: str) -> str:
        if "\r" in value or "\n" in value or not value.strip():
            raise ValueError("must be one line of text")  # no header injection, no blank subject
        return value

    def recipients(self) -> list[str]:
        return list(dict.fromkeys(self.to))


class Notification(BaseModel):
    """A notification as stored: the message (its owner's personal data, never logged) and
    where it is."""

    model_config = ConfigDict(populate_by_name=True)

    notification_id: str = Field(alias="notificationId")
    owner: str
    status: NotificationStatus = NotificationStatus.QUEUED
    to: list[str]
    subject: str
    text: str
    html: str | None = None
    fingerprint: str
    created_at: datetime = Field(alias="createdAt")
    updated_at: datetime = Field(alias="updatedAt")
    expires_at: int = Field(alias="expiresAt")  # epoch seconds: the table's TTL
    job_id: str | None = Field(None, alias="jobId")
    provider: str | None = None
    provider_message_id: str | None = Field(None, alias="providerMessageId")
    reason: str | None = None  # FAILED: a code and a safe sentence, never an address or a body

    def public(self) -> dict[str, Any]:
        """What its owner reads back: where it is, never the addresses or the body."""
        return {
            "notificationId": self.notification_id,
            "status": str(self.status),
            "channel": "email",
            "recipients": len(self.to),
            "jobId": self.job_id,
            "provider": self.provider,
            "providerMessageId": self.provider_message_id,
            "reason": self.reason,
            "createdAt": self.created_at.isoformat(),
            "updatedAt": self.updated_at.isoformat(),
        }


class NotificationBody(BaseModel):
    notification: dict[str, Any]
    jobId: str | None = None  # the wire name
