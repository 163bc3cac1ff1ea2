"""The guests workload's HTTP routes, served by a function of their own (functions/guests)
behind the same API, with the engine's error shape, limits and outage answers (`tarefa.api`).

Organisers (JWT) create and manage their events: another's is a 404, as if it did not exist;
admins see all. Guests have no JWT: their routes are public (`/public/...`), limited per client
address as API Gateway reports it (never a header the caller sets) and per phone, and a guest
proves who they are with the status token of their own job, then with the session it gives.
"""

from __future__ import annotations

import os
import re
from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.router import APIGatewayHttpRouter

from guests.jobs import service
from guests.keys import SECRET_NAME, GuestKeys, new_status_token, same_token
from guests.models import (
    Accepted,
    CheckInRequest,
    Event,
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
from guests.payloads import LoginJob, RegisterJob
from guests.phones import normalise
from guests.service import STATUS_LIFETIME, EventNotFoundError, GuestError
from tarefa import api, cache_family
from tarefa.ratelimit import Decision, Rate

logger = Logger(child=True)
router = APIGatewayHttpRouter()  # type: ignore[no-untyped-call]  # Powertools leaves __init__ untyped

PUBLIC_EVENT = "GET /public/events/{promoterSlug}/{eventSlug}"
REGISTER = "POST /public/guests/register"
LOGIN = "POST /public/guests/login"
# Per source address, generous: a venue's Wi-Fi puts a crowd behind one address. The phone check
# has its own pair of limits (below); TAREFA_RATE_LIMITS overrides any of these.
api.declare_limit(PUBLIC_EVENT, "1200/60")
api.declare_limit(REGISTER, "600/60")
api.declare_limit(LOGIN, "600/60")
VERIFY_PER_IP_VARIABLE = "GUESTS_VERIFY_RATE_PER_IP"  # the template's GuestsPhoneCheckRatePerIp
VERIFY_PER_PHONE_VARIABLE = "GUESTS_VERIFY_RATE_PER_PHONE"  # GuestsPhoneCheckRatePerPhone
VERIFY_PER_IP = "100/60"  # the seed's
VERIFY_PER_PHONE = "10/60"
PLACES = cache_family("guests-places", 5)  # places left: changes with every registration
STATUS_HEADER = "x-status-token"
SESSION_HEADER = "x-guest-session"
JOB_ID = re.compile(r"^[A-Za-z0-9-]{1,64}$")
NO_STORE = {"Cache-Control": "no-store"}


class NotConfiguredError(GuestError):
    code = "GUESTS_NOT_CONFIGURED"
    status = 503


class GuestValidationError(GuestError):
    code = "VALIDATION_ERROR"
    status = 422

    def __init__(self, field: str, message: str) -> None:
        super().__init__("The request is not valid", [{"field": field, "message": message}])


def _rate(variable: str, default: str) -> Rate | None:
    text = (os.environ.get(variable) or default).strip()
    return None if text.lower() == "off" else Rate.parse(text)


def _header(name: str) -> str | None:
    for key, value in (router.current_event.headers or {}).items():
        if key.lower() == name:
            return str(value)
    return None


def _keys() -> GuestKeys:
    try:
        return GuestKeys(str(api.secret(SECRET_NAME)))
    except Exception:  # the secret missing, unreadable or too short: nothing can be keyed
        logger.exception("the guests' key secret cannot be read")
        raise NotConfiguredError("The guests workload's keys are not configured") from None


def _cached_event(event_id: str) -> Event | None:
    """The event for the public routes, from the cache (a change deletes the entry)."""
    cache = api.cache()
    if cache is None:
        return service().store.event(event_id)
    return cache.lookup(
        "event",
        f"guests/{event_id}",
        lambda: service().store.event(event_id),
        encode=lambda e: e.model_dump(mode="json", by_alias=True) if e else None,
        decode=Event.model_validate,
    ).value


def _places(event_id: str) -> int:
    cache = api.cache()
    if cache is None:
        return service().places(event_id)
    return cache.lookup(PLACES, event_id, lambda: service().places(event_id), cacheable=lambda _: True).value


def _forget(event_id: str) -> None:
    cache = api.cache()
    if cache is not None:
        cache.delete("event", f"guests/{event_id}")
        cache.delete(PLACES, event_id)


def _managed(event_id: str) -> Event:
    """An event the caller organises (or any, for an admin), read from the table."""
    who = api.caller(router.current_event)
    event = service().store.event(event_id)
    if event is None or not (who.is_admin or event.organiser == who.user_id):
        raise EventNotFoundError(f"Event {event_id} not found")
    return event


def _hit(scope: str, identity: str, rate: Rate | None) -> Decision | None:
    return None if rate is None else api.limit(scope, identity, rate)


def _with_limit_headers(response: Response[str], *decisions: Decision | None) -> Response[str]:
    counted = [d for d in decisions if d is not None and not d.degraded]
    if counted:
        response.headers.update(min(counted, key=lambda d: d.remaining).headers())
    return response


# -- organisers ---------------------------------------------------------------------------------------


@router.post("/events")
def create_event() -> Response[str]:
    who = api.caller(router.current_event)
    request = api.parse_body(router.current_event, EventRequest)
    event = service().create_event(who.user_id, request)
    return api.json_response(201, {"event": event.public()})


@router.get("/events")
def list_events() -> Response[str]:
    """The caller's events as organiser, the latest start first; an admin may name another
    organiser (`?organiser=`)."""
    who = api.caller(router.current_event)
    query = api.parse_query(router.current_event, EventQuery)
    organiser = query.organiser or who.user_id
    if organiser != who.user_id:
        api.admin(router.current_event)  # 403 unless an admin
    items, cursor = service().store.events_of(organiser, query.cursor, query.limit)
    return api.json_response(200, {"items": [e.public() for e in items], "cursor": cursor})


@router.patch("/events/<event_id>")
def change_event(event_id: str) -> Response[str]:
    _managed(event_id)
    change = api.parse_body(router.current_event, EventChange)
    event = service().change_event(event_id, change)
    _forget(event_id)
    return api.json_response(200, {"event": event.public()})


@router.post("/events/<event_id>/check-in")
def check_in(event_id: str) -> Response[str]:
    event = _managed(event_id)
    request = api.parse_body(router.current_event, CheckInRequest)
    guest = service().check_in(event, request.token, _keys())
    return api.json_response(200, {"admitted": True, "guest": guest.public()})


@router.get("/events/<event_id>/metrics")
def event_metrics(event_id: str) -> Response[str]:
    event = _managed(event_id)
    query = api.parse_query(router.current_event, MetricsQuery)
    return api.json_response(200, service().metrics(event, query.minutes))


@router.get("/events/<event_id>/guests")
def event_guests(event_id: str) -> Response[str]:
    _managed(event_id)
    query = api.parse_query(router.current_event, GuestQuery)
    items, cursor = service().store.guests_page(event_id, query.cursor, query.limit)
    return api.json_response(200, {"items": [g.public() for g in items], "cursor": cursor})


# -- guests (public) ---------------------------------------------------------------------------------


@router.get("/public/events/<promoter_slug>/<event_slug>")
def public_event(promoter_slug: str, event_slug: str) -> Response[str]:
    """What a promoter's registration page needs, from the cache."""
    cache = api.cache()
    link = f"guests/link/{promoter_slug}/{event_slug}"

    def find() -> str | None:
        return service().store.event_id_for(promoter_slug, event_slug)

    event_id = cache.lookup("event", link, find).value if cache is not None else find()
    event = _cached_event(event_id) if event_id else None
    promoter = event.promoter(promoter_slug) if event else None
    if event is None or promoter is None:
        raise EventNotFoundError("No event at this link")
    body = {
        "eventId": event.event_id,
        "name": event.name,
        "startsAt": event.starts_at.isoformat(),
        "registrationOpen": event.registration_open,
        "placesLeft": _places(event.event_id) if event.registration_open else 0,
        "promoter": {"slug": promoter.slug, "name": promoter.name},
    }
    return api.json_response(200, body)


@router.post("/public/guests/verify-phone")
def verify_phone() -> Response[str]:
    """Whether a phone has an account: limited per client address and per phone."""
    event = router.current_event
    by_ip = _hit("guests:verify-phone:ip", api.source_ip(event), _rate(VERIFY_PER_IP_VARIABLE, VERIFY_PER_IP))
    if by_ip is not None and not by_ip.allowed:
        return api.limited(by_ip)
    request = api.parse_body(event, VerifyPhoneRequest)
    phone = normalise(request.phone)
    if _cached_event(request.event_id) is None:
        raise EventNotFoundError(f"Event {request.event_id} not found")
    phone_key = _keys().phone_key(phone)
    by_phone = _hit(
        "guests:verify-phone:phone", phone_key, _rate(VERIFY_PER_PHONE_VARIABLE, VERIFY_PER_PHONE)
    )
    if by_phone is not None and not by_phone.allowed:
        return api.limited(by_phone)
    cache = api.cache()

    def known() -> bool:
        return service().store.client_of(phone_key) is not None

    found = (
        cache.lookup(
            "phone",
            phone_key,
            known,
            encode=lambda k: {"known": k},
            decode=lambda d: bool(d["known"]),
            cacheable=lambda _: True,
        ).value
        if cache is not None
        else known()
    )
    answer = api.json_response(200, PhoneCheck(phone=phone, known=found).model_dump(by_alias=True))
    return _with_limit_headers(answer, by_ip, by_phone)


def _prepare(
    event_id: str, promoter_slug: str | None, raw_phone: str
) -> tuple[Event, str, Response[str] | None]:
    """The event, the phone in E.164, and the refusal when the phone's failed logins are over."""
    from guests.attempts import FailedLogins

    phone = normalise(raw_phone)
    event = _cached_event(event_id)
    if event is None:
        raise EventNotFoundError(f"Event {event_id} not found")
    if promoter_slug is not None and event.promoter(promoter_slug) is None:
        raise GuestValidationError("promoterSlug", "not a promoter of this event")
    wait = FailedLogins.configured(api.limiter()).retry_after(_keys().phone_key(phone))
    if not wait:
        return event, phone, None
    refusal = api.error_response(
        429,
        "RATE_LIMITED",
        f"Too many failed logins for this phone; retry in {wait} s",
        {"reason": "FAILED_LOGINS", "retryAfter": wait},
    )
    refusal.headers["Retry-After"] = str(wait)
    return event, phone, refusal


def _accepted(event: Event, job_type: str, payload: dict[str, Any]) -> Response[str]:
    """The job, owned by the event's organiser (they see their event's jobs), and its status
    token, whose hash is kept for an hour."""
    enqueued = api.enqueue(api.as_user(event.organiser), job_type, payload)
    token, hashed = new_status_token()
    expires = service().now() + STATUS_LIFETIME
    service().store.put_status(enqueued.job.job_id, hashed, int(expires.timestamp()))
    body = Accepted(job_id=enqueued.job.job_id, status_token=token).model_dump(by_alias=True)
    return api.json_response(202, body, dict(NO_STORE))


@router.post("/public/guests/register")
def register() -> Response[str]:
    request = api.parse_body(router.current_event, RegisterRequest)
    event, phone, refusal = _prepare(request.event_id, request.promoter_slug, request.phone)
    if refusal is not None:
        return refusal
    payload = RegisterJob(
        event_id=event.event_id,
        promoter_slug=request.promoter_slug,
        phone=phone,
        first_name=request.first_name,
        last_name=request.last_name,
        email=request.email,
        password=request.password,
        submitted_at=service().now(),
    )
    return _accepted(event, "guests.register", payload.model_dump(mode="json", by_alias=True))


@router.post("/public/guests/login")
def login() -> Response[str]:
    request = api.parse_body(router.current_event, LoginRequest)
    event, phone, refusal = _prepare(request.event_id, request.promoter_slug, request.phone)
    if refusal is not None:
        return refusal
    payload = LoginJob(
        event_id=event.event_id,
        promoter_slug=request.promoter_slug,
        phone=phone,
        password=request.password,
        submitted_at=service().now(),
    )
    return _accepted(event, "guests.login", payload.model_dump(mode="json", by_alias=True))


@router.get("/public/guests/jobs/<job_id>")
def job_status(job_id: str) -> Response[str]:
    """The job of the submitter who holds its status token; on success, a session and the pass."""
    token = _header(STATUS_HEADER)
    now = service().now()
    stored = service().store.status_hash(job_id, now.timestamp()) if token and JOB_ID.match(job_id) else None
    job = api.read_job(job_id) if same_token(token, stored) else None
    if job is None:
        return api.error_response(404, "NOT_FOUND", f"Job {job_id} not found")
    status = str(job.status)
    result: dict[str, Any] | None = None
    if status == "COMPLETED" and isinstance(job.result, dict):
        result = dict(job.result)
        guest_id = (result.get("guest") or {}).get("guestId") if result.get("success") else None
        guest = service().store.guest(str(guest_id)) if guest_id else None
        if guest is not None:
            session_token, session = api.sessions().create(
                f"guest:{guest.client_id}", {"clientId": guest.client_id, "guestId": guest.guest_id}
            )
            result["session"] = {"token": session_token, "expiresAt": session.expires_at.isoformat()}
            result["pass"] = {"token": _keys().pass_token(guest.event_id, guest.guest_id)}
    elif status in ("FAILED", "CANCELLED"):
        result = {"success": False, "code": "FAILED"}
    return api.json_response(200, {"status": status, "result": result}, dict(NO_STORE))


@router.get("/public/guests/<guest_id>/qr")
def guest_qr(guest_id: str) -> Response[str]:
    """The guest's pass as a QR code (SVG, or PNG with ?format=png), for their own session only."""
    query = api.parse_query(router.current_event, QrQuery)
    token = _header(SESSION_HEADER)
    session = api.sessions().refresh(token) if token and len(token) <= 200 else None
    guest = service().store.guest(guest_id) if session is not None else None
    if session is None or guest is None or session.data.get("clientId") != guest.client_id:
        return api.error_response(401, "UNAUTHORIZED", "This guest's session is required (X-Guest-Session)")
    from guests.qr import render

    content_type, body = render(_keys().pass_token(guest.event_id, guest.guest_id), query.format)
    headers = {**NO_STORE, "X-Session-Expires-At": session.expires_at.isoformat()}
    return Response(200, content_type, body, headers)  # type: ignore[arg-type]  # bytes: base64 by Powertools
