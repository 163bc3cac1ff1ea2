"""The guests workload's routes in the API's OpenAPI document (read when the document is built)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from guests.models import (
    Accepted,
    CheckInRequest,
    EventChange,
    EventQuery,
    EventRequest,
    GuestQuery,
    LoginRequest,
    MetricsQuery,
    PhoneCheck,
    QrQuery,
    RegisterRequest,
    VerifyPhoneRequest,
)
from tarefa.openapi import RouteDoc


class EventBody(BaseModel):
    event: dict[str, object]


class EventPage(BaseModel):
    items: list[dict[str, object]]
    cursor: str | None


class PublicPromoter(BaseModel):
    slug: str
    name: str


class PublicEvent(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    eventId: str
    name: str
    startsAt: str
    registrationOpen: bool
    placesLeft: int
    promoter: PublicPromoter


class JobStatusBody(BaseModel):
    status: str
    result: dict[str, object] | None


class CheckedIn(BaseModel):
    admitted: bool
    guest: dict[str, object]


class GuestPage(BaseModel):
    items: list[dict[str, object]]
    cursor: str | None


class EventMetrics(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    eventId: str
    windowMinutes: int
    since: str
    guests: dict[str, object]
    registrationsPerMinute: list[dict[str, object]]
    jobs: dict[str, object]


ROUTES = [
    RouteDoc("POST", "/events", "Create an event (you become its organiser) with its promoters' links /promotor/<promoter>/<event>; a link another event has: 409 SLUG_TAKEN", 201, EventBody, EventRequest, errors=(401, 409, 422), tag="guests"),
    RouteDoc("GET", "/events", "Your events as organiser, the latest start first, paged (cursor); an admin may pass organiser=<user id>, anyone else: 403", 200, EventPage, query=EventQuery, errors=(401, 403, 422), tag="guests"),
    RouteDoc("PATCH", "/events/{eventId}", "Open or close registration, change the capacity (organiser or admin)", 200, EventBody, EventChange, errors=(401, 404, 422, 503), tag="guests"),
    RouteDoc("POST", "/events/{eventId}/check-in", "Admit a pass at the door: once (409 ALREADY_CHECKED_IN with checkedInAt); another event's or a forged pass: 403 INVALID_PASS", 200, CheckedIn, CheckInRequest, errors=(401, 403, 404, 409, 422, 503), tag="guests"),
    RouteDoc("GET", "/events/{eventId}/metrics", "Registrations per minute, queue wait and processing p95, success rate, guests so far and per promoter", 200, EventMetrics, query=MetricsQuery, errors=(401, 404, 422), tag="guests"),
    RouteDoc("GET", "/events/{eventId}/guests", "The guest list with check-in state, paged (cursor)", 200, GuestPage, query=GuestQuery, errors=(401, 404, 422), tag="guests"),
    RouteDoc("GET", "/public/events/{promoterSlug}/{eventSlug}", "What a promoter's registration page needs (public; cached)", 200, PublicEvent, errors=(404, 429), public=True, tag="guests"),
    RouteDoc("POST", "/public/guests/verify-phone", "Whether a phone has an account, as E.164 (public; limited per client address and per phone: 429 with Retry-After)", 200, PhoneCheck, VerifyPhoneRequest, errors=(404, 422, 429, 503), public=True, tag="guests"),
    RouteDoc("POST", "/public/guests/register", "Register and join the event, asynchronously: a guests.register job and its status token (public)", 202, Accepted, RegisterRequest, errors=(404, 422, 429, 503), public=True, tag="guests"),
    RouteDoc("POST", "/public/guests/login", "Log in and join the event, asynchronously: a guests.login job and its status token; 429 after 5 failed logins of the phone in a minute (public)", 202, Accepted, LoginRequest, errors=(404, 422, 429, 503), public=True, tag="guests"),
    RouteDoc("GET", "/public/guests/jobs/{jobId}", "A registration's or login's job, with header X-Status-Token; on success its result holds the guest, a 30-minute session and the pass (public; without the right token: 404)", 200, JobStatusBody, errors=(404, 503), public=True, tag="guests"),
    RouteDoc("GET", "/public/guests/{guestId}/qr", "The guest's pass as a QR code, image/svg+xml (or image/png with format=png), with header X-Guest-Session of that guest (public; else 401)", 200, None, query=QrQuery, errors=(401, 422, 503), public=True, tag="guests"),
]  # fmt: skip
