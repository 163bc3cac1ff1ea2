"""The guests workload's records and bodies: an event and its promoters, a client (one per phone
number), a guest (one per event and client), what the routes accept and answer, and the job
payloads (`guests.payloads`).

Personal data: a client's phone number, names and e-mail are stored (the guest list needs the
names; the phone is the account) and never logged; the phone reaches no key (tables, cache,
limits use its keyed hash) and travels in a job's payload as a sensitive field, as do the
e-mail and the password. The password is stored only as a bcrypt hash, and never shown.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Literal

from pydantic import AwareDatetime, ConfigDict, Field, field_validator, model_validator
from pydantic.alias_generators import to_camel

from guests.payloads import (  # the job payloads live there: the API's cold start builds only them
    EMAIL_PATTERN,
    ID_PATTERN,
    PASSWORD_MIN,
    SLUG_PATTERN,
    Camel,
    check_password,
)

MAX_CAPACITY = 100_000
MAX_PROMOTERS = 50


class OutcomeCode(StrEnum):
    """A registration's or login's business outcome: the job COMPLETED with it."""

    ADMITTED = "ADMITTED"  # a guest of the event (new, or already one)
    INVALID_CREDENTIALS = "INVALID_CREDENTIALS"  # login: unknown phone or wrong password
    PHONE_TAKEN = "PHONE_TAKEN"  # register: the phone has an account with another password
    EVENT_FULL = "EVENT_FULL"
    REGISTRATION_CLOSED = "REGISTRATION_CLOSED"
    EVENT_NOT_FOUND = "EVENT_NOT_FOUND"  # deleted between the submit and the job
    TOO_MANY_ATTEMPTS = "TOO_MANY_ATTEMPTS"  # the phone's failed logins are over the limit
    FAILED = "FAILED"  # (samples only) the system gave up: the job FAILED


# -- records --------------------------------------------------------------------------------------


class Promoter(Camel):
    slug: str = Field(pattern=SLUG_PATTERN)
    name: str = Field(min_length=1, max_length=100)
    team: str | None = Field(None, min_length=1, max_length=100, description="the promoter's team, if any")


class Event(Camel):
    event_id: str
    organiser: str  # the user who created it: they (and admins) manage it
    slug: str
    name: str
    starts_at: datetime
    capacity: int
    registration_open: bool = True
    promoters: list[Promoter]
    created_at: datetime
    updated_at: datetime
    version: int = 0

    def promoter(self, slug: str | None) -> Promoter | None:
        return next((p for p in self.promoters if p.slug == slug), None) if slug else None

    def public(self) -> dict[str, object]:
        return self.model_dump(mode="json", by_alias=True, exclude={"version"})


class Seats(Camel):
    """One shard of an event's places: registrations take a place from a shard with room, so
    500 at once spread their writes over the shards instead of queueing on one item."""

    shard: int
    cap: int  # this shard's share of the capacity
    registered: int = 0
    checked_in: int = 0
    open: bool = True  # registration open (the event's flag, on every shard)
    by_promoter: dict[str, int] = Field(default_factory=dict)  # "-" counts guests without one

    @property
    def room(self) -> int:
        return max(0, self.cap - self.registered)


class Client(Camel):
    """A person, once per phone number (the account a guest logs in with)."""

    client_id: str
    phone: str  # E.164
    first_name: str
    last_name: str
    email: str | None = None
    password_hash: str = Field(exclude=True)  # bcrypt; never shown
    created_at: datetime
    created_by_job: str  # a retried attempt of this job is the same registration
    version: int = 0

    @property
    def name(self) -> str:
        return f"{self.first_name} {self.last_name}"


class Guest(Camel):
    """A client on an event's list: at most one per event and client (its id says which)."""

    guest_id: str
    event_id: str
    client_id: str
    name: str
    promoter_slug: str | None = None
    team: str | None = None
    shard: int  # the seats shard its place came from
    job_id: str
    created_at: datetime
    checked_in_at: datetime | None = None

    def public(self) -> dict[str, object]:
        body = self.model_dump(
            mode="json", by_alias=True, exclude={"client_id", "shard", "job_id", "event_id"}
        )
        body["checkedIn"] = self.checked_in_at is not None
        return body


class Sample(Camel):
    """One finished registration or login, for an event's figures (GET /events/{id}/metrics)."""

    job_id: str
    event_id: str
    kind: Literal["register", "login"]
    outcome: OutcomeCode
    already: bool = False  # ADMITTED as the guest they already were
    promoter_slug: str | None = None
    submitted_at: datetime
    started_at: datetime  # the attempt that finished
    finished_at: datetime


# -- HTTP bodies ------------------------------------------------------------------------------------


class EventRequest(Camel):
    slug: str = Field(pattern=SLUG_PATTERN, description="the event's part of /promotor/<promoter>/<event>")
    name: str = Field(min_length=1, max_length=200)
    starts_at: AwareDatetime
    capacity: int = Field(ge=1, le=MAX_CAPACITY)
    registration_open: bool = True
    promoters: list[Promoter] = Field(min_length=1, max_length=MAX_PROMOTERS)

    @field_validator("promoters")
    @classmethod
    def _unique(cls, promoters: list[Promoter]) -> list[Promoter]:
        slugs = [p.slug for p in promoters]
        if len(set(slugs)) != len(slugs):
            raise ValueError("promoter slugs must be unique")
        return promoters


class EventChange(Camel):
    registration_open: bool | None = None
    capacity: int | None = Field(None, ge=1, le=MAX_CAPACITY)

    @model_validator(mode="after")
    def _something(self) -> EventChange:
        if self.registration_open is None and self.capacity is None:
            raise ValueError("give registrationOpen, capacity or both")
        return self


class VerifyPhoneRequest(Camel):
    event_id: str = Field(pattern=ID_PATTERN)
    phone: str = Field(
        min_length=3, max_length=32, description="any usual notation; the default region applies without +"
    )


class PhoneCheck(Camel):
    phone: str = Field(description="E.164")
    known: bool


class RegisterRequest(Camel):
    event_id: str = Field(pattern=ID_PATTERN)
    promoter_slug: str | None = Field(None, pattern=SLUG_PATTERN, description="whose link brought the guest")
    phone: str = Field(min_length=3, max_length=32)
    first_name: str = Field(min_length=1, max_length=60)
    last_name: str = Field(min_length=1, max_length=60)
    email: str | None = Field(None, max_length=254, pattern=EMAIL_PATTERN)
    password: str = Field(min_length=PASSWORD_MIN, json_schema_extra={"writeOnly": True})

    _check_password = field_validator("password")(check_password)


class LoginRequest(Camel):
    event_id: str = Field(pattern=ID_PATTERN)
    promoter_slug: str | None = Field(None, pattern=SLUG_PATTERN)
    phone: str = Field(min_length=3, max_length=32)
    password: str = Field(min_length=1, json_schema_extra={"writeOnly": True})

    _check_password = field_validator("password")(check_password)


class Accepted(Camel):
    job_id: str
    status_token: str = Field(description="send it back as X-Status-Token to read the job")


class CheckInRequest(Camel):
    token: str = Field(
        min_length=1, max_length=200, description="the pass's token (what its QR code encodes)"
    )


class GuestQuery(Camel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")

    cursor: str | None = Field(None, max_length=2048)
    limit: int = Field(50, ge=1, le=200)


class EventQuery(Camel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")

    cursor: str | None = Field(None, max_length=2048)
    limit: int = Field(25, ge=1, le=100)
    organiser: str | None = Field(
        None, min_length=1, max_length=256, description="an admin's choice of organiser; others see their own"
    )


class MetricsQuery(Camel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")

    minutes: int = Field(60, ge=1, le=1440, description="the window the figures cover")


class QrQuery(Camel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")

    format: Literal["svg", "png"] = "svg"
