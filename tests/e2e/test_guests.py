"""The README's guests tour on `tarefa local`, over HTTP as a guest's browser and an organiser
would: create an event, open the promoter's page, verify a phone, register, poll, fetch the QR
code, check in, and log in again for a second event. bcrypt runs at its real cost here (10).
Guests come from loopback addresses of their own (all of 127.0.0.0/8 is loopback on Linux), so
the per-address limit is the one API Gateway would apply."""

from __future__ import annotations

import http.client
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest

from .conftest import RunningStack, start_stack


@pytest.fixture(scope="module")
def venue(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    running = start_stack(Path(tmp_path_factory.mktemp("guests")))
    yield running
    running.stop()


def call(
    stack: RunningStack,
    method: str,
    path: str,
    body: Any = None,
    *,
    token: str | None = None,
    headers: dict[str, str] | None = None,
    source: str = "127.0.0.1",
) -> tuple[int, dict[str, str], bytes]:
    """One request from a loopback address of the caller's choosing."""
    url = urlparse(stack.api_url)
    connection = http.client.HTTPConnection(
        url.hostname or "127.0.0.1", url.port, timeout=30, source_address=(source, 0)
    )
    sent = {"Content-Type": "application/json", **(headers or {})}
    if token:
        sent["Authorization"] = f"Bearer {token}"
    try:
        connection.request(method, path, json.dumps(body) if body is not None else None, sent)
        answer = connection.getresponse()
        return answer.status, {k.lower(): v for k, v in answer.getheaders()}, answer.read()
    finally:
        connection.close()


def json_call(
    stack: RunningStack, method: str, path: str, body: Any = None, **kwargs: Any
) -> tuple[int, Any]:
    status, _, raw = call(stack, method, path, body, **kwargs)
    return status, json.loads(raw or b"null")


def poll(stack: RunningStack, accepted: dict[str, Any], timeout: float = 30) -> dict[str, Any]:
    """Poll as the registration page does, until the job is done."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status, body = json_call(
            stack,
            "GET",
            f"/public/guests/jobs/{accepted['jobId']}",
            headers={"X-Status-Token": accepted["statusToken"]},
        )
        assert status == 200, body
        if body["status"] in ("COMPLETED", "FAILED"):
            found: dict[str, Any] = body
            return found
        time.sleep(0.05)
    raise AssertionError(f"job {accepted['jobId']} never finished")


def create_event(stack: RunningStack, token: str, slug: str, capacity: int = 100) -> dict[str, Any]:
    body = {
        "slug": slug,
        "name": f"Festa {slug}",
        "startsAt": "2026-07-01T22:00:00+01:00",
        "capacity": capacity,
        "promoters": [{"slug": "miguel", "name": "Miguel", "team": "Equipa A"}],
    }
    status, created = json_call(stack, "POST", "/events", body, token=token)
    assert status == 201, created
    event: dict[str, Any] = created["event"]
    return event


def test_the_tour(venue: RunningStack) -> None:
    alice = venue.token("alice")
    assert venue.state["sandboxes"]["guests"]  # the keys' secret, created in the emulator
    event = create_event(venue, alice, "festa-verao")
    status, page = json_call(venue, "GET", "/public/events/miguel/festa-verao")
    assert status == 200 and page["eventId"] == event["eventId"] and page["placesLeft"] == 100
    status, checked = json_call(
        venue, "POST", "/public/guests/verify-phone", {"eventId": event["eventId"], "phone": "935 886 310"}
    )
    assert (status, checked) == (200, {"phone": "+351935886310", "known": False})
    registration = {
        "eventId": event["eventId"],
        "promoterSlug": "miguel",
        "phone": "+351935886310",
        "firstName": "Maria",
        "lastName": "Silva",
        "email": "maria@example.com",
        "password": "Test123!segura",
    }
    status, accepted = json_call(venue, "POST", "/public/guests/register", registration)
    assert status == 202 and set(accepted) == {"jobId", "statusToken"}
    done = poll(venue, accepted)
    assert done["status"] == "COMPLETED" and done["result"]["success"] is True, done
    result = done["result"]
    guest_id, session, pass_token = (
        result["guest"]["guestId"],
        result["session"]["token"],
        result["pass"]["token"],
    )
    # The QR code: SVG by default, PNG on request, only with this guest's session
    status, headers, svg = call(
        venue, "GET", f"/public/guests/{guest_id}/qr", headers={"X-Guest-Session": session}
    )
    assert status == 200 and headers["content-type"] == "image/svg+xml" and svg.startswith(b"<svg")
    status, _, png = call(
        venue, "GET", f"/public/guests/{guest_id}/qr?format=png", headers={"X-Guest-Session": session}
    )
    # a real PNG: the local stack decodes a binary body as API Gateway does (isBase64Encoded)
    assert status == 200 and png.startswith(b"\x89PNG\r\n\x1a\n")
    assert call(venue, "GET", f"/public/guests/{guest_id}/qr")[0] == 401
    # The door
    status, admitted = json_call(
        venue, "POST", f"/events/{event['eventId']}/check-in", {"token": pass_token}, token=alice
    )
    assert status == 200 and admitted["admitted"] is True and admitted["guest"]["name"] == "Maria Silva"
    status, again = json_call(
        venue, "POST", f"/events/{event['eventId']}/check-in", {"token": pass_token}, token=alice
    )
    assert (
        status == 409
        and again["error"]["code"] == "ALREADY_CHECKED_IN"
        and again["error"]["details"]["checkedInAt"]
    )
    forged = pass_token[:-1] + ("A" if pass_token[-1] != "A" else "B")
    status, refused = json_call(
        venue, "POST", f"/events/{event['eventId']}/check-in", {"token": forged}, token=alice
    )
    assert status == 403 and refused["error"]["code"] == "INVALID_PASS"
    # Log in again, for a second event
    second = create_event(venue, alice, "festa-outono")
    login = {"eventId": second["eventId"], "phone": "935886310", "password": "Test123!segura"}
    status, accepted = json_call(venue, "POST", "/public/guests/login", login)
    assert status == 202, accepted
    again_done = poll(venue, accepted)
    assert again_done["result"]["success"] is True and again_done["result"]["guest"]["guestId"] != guest_id
    status, _, svg2 = call(
        venue,
        "GET",
        f"/public/guests/{again_done['result']['guest']['guestId']}/qr",
        headers={"X-Guest-Session": again_done["result"]["session"]["token"]},
    )
    assert status == 200 and svg2 != svg
    # The organiser's figures and list; the job types, with the seed's names as aliases
    status, figures = json_call(venue, "GET", f"/events/{event['eventId']}/metrics", token=alice)
    assert status == 200 and figures["guests"]["total"] == 1 and figures["guests"]["checkedIn"] == 1
    assert figures["guests"]["perPromoter"] == {"miguel": 1} and figures["jobs"]["outcomes"] == {
        "ADMITTED": 1
    }
    status, listed = json_call(venue, "GET", f"/events/{event['eventId']}/guests", token=alice)
    assert status == 200 and [g["checkedIn"] for g in listed["items"]] == [True]
    status, types = json_call(venue, "GET", "/job-types", token=alice)
    by_name = {t["name"]: t for t in types["items"]}
    assert by_name["guests.register"]["aliases"] == ["register-guest"]
    assert by_name["guests.login"]["aliases"] == ["login-guest"]
    assert by_name["guests.register"]["sensitive"] == ["password", "phone", "email"]
    # The job is the organiser's, its secrets redacted
    status, job = json_call(venue, "GET", f"/jobs/{accepted['jobId']}", token=alice)
    assert status == 200 and job["payload"]["password"] == "[redacted]" and job["status"] == "COMPLETED"
    assert json_call(venue, "GET", f"/jobs/{accepted['jobId']}", token=venue.token("bob"))[0] == 404


def test_a_wrong_password_and_the_failed_login_limit(venue: RunningStack) -> None:
    alice = venue.token("alice")
    event = create_event(venue, alice, "festa-limites")
    phone = "+351912345678"
    registration = {
        "eventId": event["eventId"],
        "phone": phone,
        "firstName": "Rui",
        "lastName": "Sá",
        "password": "Right-password-1",
    }
    assert poll(venue, json_call(venue, "POST", "/public/guests/register", registration)[1])["result"][
        "success"
    ]
    wrong = {"eventId": event["eventId"], "phone": phone, "password": "Wrong-password-1"}
    for _ in range(5):
        status, accepted = json_call(venue, "POST", "/public/guests/login", wrong)
        assert status == 202
        assert poll(venue, accepted)["result"] == {"success": False, "code": "INVALID_CREDENTIALS"}
    status, headers, raw = call(
        venue, "POST", "/public/guests/login", {**wrong, "password": "Right-password-1"}
    )
    assert status == 429 and 1 <= int(headers["retry-after"]) <= 60
    assert json.loads(raw)["error"]["code"] == "RATE_LIMITED"


def test_the_phone_check_is_limited_per_address_whatever_the_headers_say(venue: RunningStack) -> None:
    alice = venue.token("alice")
    event = create_event(venue, alice, "festa-porta")
    check = {"eventId": event["eventId"]}
    for n in range(100):  # the default: 100 a minute from one address (each a phone of its own)
        status, _, raw = call(
            venue,
            "POST",
            "/public/guests/verify-phone",
            {**check, "phone": f"+3519123450{n:02d}"},
            source="127.0.0.5",
        )
        assert status == 200, raw
    status, headers, _ = call(
        venue,
        "POST",
        "/public/guests/verify-phone",
        {**check, "phone": "+351961234567"},
        headers={"X-Forwarded-For": "203.0.113.9"},
        source="127.0.0.5",
    )
    assert status == 429 and headers["x-ratelimit-remaining"] == "0" and int(headers["retry-after"]) >= 1
    status, _, _ = call(
        venue, "POST", "/public/guests/verify-phone", {**check, "phone": "+351961234567"}, source="127.0.0.6"
    )
    assert status == 200  # another guest, another address
