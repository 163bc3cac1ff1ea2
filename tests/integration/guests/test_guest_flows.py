"""The guests workload end to end in process: the real routes and job handlers on moto, driven
over the HTTP routes with the addresses API Gateway would report. Each flow of the issue and each
of its failures, as a guest or an organiser meets it."""

from __future__ import annotations

import io
import zlib
from typing import Any

import pytest
import segno

from ..conftest import ADMIN, ALICE, BOB, job_of
from .conftest import GUEST_IP, PASSWORD, PHONES, Guests, png_bytes

MARIA, JOAO, ANA, RUI, EVA = PHONES


def svg_of(token: str) -> str:
    """What the pass route must draw for a token (segno is deterministic)."""
    from guests.qr import render

    return str(render(token, "svg")[1])


# -- the tour -------------------------------------------------------------------------------------


def test_the_tour_event_phone_register_poll_qr_check_in_and_a_second_event(guests: Guests) -> None:
    event = guests.create_event(capacity=50)
    assert event["organiser"] == "alice" and event["registrationOpen"] is True
    page = guests.page("miguel", "festa-verao")
    assert page.status == 200, page.body
    assert page.body == {
        "eventId": event["eventId"],
        "name": "Festa de Verão",
        "startsAt": "2026-07-01T22:00:00+01:00",
        "registrationOpen": True,
        "placesLeft": 50,
        "promoter": {"slug": "miguel", "name": "Miguel"},
    }
    # The phone, as typed on a Portuguese page: E.164, not known yet
    checked = guests.verify(event["eventId"], "935 886 310")
    assert checked.status == 200 and checked.body == {"phone": JOAO, "known": False}
    # Register: 202 at once, then the job; the poll gives the guest, a session and the pass
    accepted = guests.register(
        event["eventId"], "935886310", promoterSlug="miguel", email="maria@example.com"
    )
    assert accepted.status == 202 and set(accepted.body) == {"jobId", "statusToken"}
    before = guests.status(accepted.body["jobId"], accepted.body["statusToken"])
    assert before.status == 200 and before.body == {"status": "PENDING", "result": None}
    result = guests.joined(accepted)
    guest = result["guest"]
    assert guest["name"] == "Maria Silva" and result["alreadyRegistered"] is False
    assert set(result["session"]) == {"token", "expiresAt"} and len(result["session"]["token"]) >= 43
    pass_token = result["pass"]["token"]
    assert pass_token.startswith(guest["guestId"] + ".")
    # The job itself ended COMPLETED, owned by the organiser, with no secret in its result
    job = job_of(guests.app, accepted.body["jobId"], ALICE)
    assert (job["type"], job["status"], job["attempts"], job["userId"]) == (
        "guests.register",
        "COMPLETED",
        1,
        "alice",
    )
    assert "session" not in job["result"] and "pass" not in job["result"]
    assert job["payload"]["password"] == job["payload"]["phone"] == job["payload"]["email"] == "[redacted]"
    # The QR code, for this guest's session: it encodes the pass's token
    qr = guests.qr(guest["guestId"], result["session"]["token"])
    assert qr.status == 200 and qr.headers["content-type"] == "image/svg+xml"
    assert qr.text == svg_of(pass_token)
    assert qr.headers["cache-control"] == "no-store"
    # Known now, and one place fewer
    assert guests.verify(event["eventId"], JOAO).body == {"phone": JOAO, "known": True}
    # The door: admitted once
    admitted = guests.check_in(event["eventId"], pass_token)
    assert admitted.status == 200, admitted.body
    assert admitted.body["admitted"] is True and admitted.body["guest"]["guestId"] == guest["guestId"]
    assert admitted.body["guest"]["checkedIn"] is True and admitted.body["guest"]["promoterSlug"] == "miguel"
    # Log in again for a second event: the same client, another guest, another pass
    second = guests.create_event(slug="festa-outono", promoters=[{"slug": "miguel", "name": "Miguel"}])
    again = guests.joined(guests.login(second["eventId"], JOAO, promoterSlug="miguel"))
    assert again["guest"]["guestId"] != guest["guestId"] and again["guest"]["name"] == "Maria Silva"
    assert again["pass"]["token"] != pass_token
    assert guests.qr(again["guest"]["guestId"], again["session"]["token"]).text == svg_of(
        again["pass"]["token"]
    )
    # The first pass is not the second event's
    assert guests.check_in(second["eventId"], pass_token).status == 403


def test_the_pass_as_png_encodes_the_same_code(guests: Guests) -> None:
    event = guests.create_event()
    result = guests.joined(guests.register(event["eventId"], MARIA))
    answer = guests.qr(result["guest"]["guestId"], result["session"]["token"], fmt="png")
    assert answer.status == 200 and answer.headers["content-type"] == "image/png"
    image = png_bytes(answer)
    assert image[:8] == b"\x89PNG\r\n\x1a\n"
    expected = io.BytesIO()
    segno.make_qr(result["pass"]["token"], error="m").save(expected, kind="png", scale=8, border=4)
    assert image == expected.getvalue()
    assert zlib.crc32(image) != zlib.crc32(
        png_bytes(guests.qr(result["guest"]["guestId"], result["session"]["token"]))
    )


# -- registration and login outcomes ----------------------------------------------------------------


def test_a_wrong_password_is_a_completed_job_saying_invalid_credentials(guests: Guests) -> None:
    event = guests.create_event()
    guests.joined(guests.register(event["eventId"], MARIA))
    wrong = guests.login(event["eventId"], MARIA, password="not-the-password")
    done = guests.done(wrong)
    assert done == {"status": "COMPLETED", "result": {"success": False, "code": "INVALID_CREDENTIALS"}}
    job = job_of(guests.app, wrong.body["jobId"], ALICE)
    assert (job["status"], job["attempts"], job["error"]) == ("COMPLETED", 1, None)  # no retries, no failure
    unknown = guests.done(guests.login(event["eventId"], ANA))
    assert unknown["result"] == {
        "success": False,
        "code": "INVALID_CREDENTIALS",
    }  # the same for an unknown phone
    # Registering a phone that has an account, with another password: PHONE_TAKEN
    taken = guests.done(
        guests.register(event["eventId"], MARIA, password="another-password", firstName="Eve")
    )
    assert taken["result"] == {"success": False, "code": "PHONE_TAKEN"}


def test_a_duplicate_submit_or_a_second_login_makes_one_guest_and_takes_one_place(guests: Guests) -> None:
    event = guests.create_event(capacity=10)
    first = guests.register(event["eventId"], MARIA)
    second = guests.register(event["eventId"], MARIA)  # the button pressed twice
    assert first.body["jobId"] != second.body["jobId"]
    one, two = guests.joined(first), guests.joined(second)
    assert one["guest"] == two["guest"]
    assert sorted([one["alreadyRegistered"], two["alreadyRegistered"]]) == [False, True]
    third = guests.joined(guests.login(event["eventId"], MARIA))
    assert third["guest"] == one["guest"] and third["alreadyRegistered"] is True
    listed = guests.app.api("GET", f"/events/{event['eventId']}/guests", claims=ALICE)
    assert [g["guestId"] for g in listed.body["items"]] == [one["guest"]["guestId"]]
    figures = guests.app.api("GET", f"/events/{event['eventId']}/metrics", claims=ALICE).body
    assert figures["guests"]["total"] == 1 and figures["guests"]["placesLeft"] == 9
    assert guests.page("miguel", "festa-verao").body["placesLeft"] in (9, 10)  # cached for 5 s
    guests.clock.advance(6)
    assert guests.page("miguel", "festa-verao").body["placesLeft"] == 9


def test_a_job_that_runs_twice_makes_one_client_and_one_guest(guests: Guests) -> None:
    """A duplicated delivery of the same message (SQS is at least once): the second run finds
    what the first made."""
    event = guests.create_event()
    accepted = guests.register(event["eventId"], MARIA)
    job_id = accepted.body["jobId"]
    queue = guests.app.stack.queue_urls["HighQueue"]
    message = guests.app.sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=1)["Messages"][0]
    guests.app.sqs.send_message(QueueUrl=queue, MessageBody=message["Body"])  # a duplicate
    guests.app.sqs.change_message_visibility(
        QueueUrl=queue, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=0
    )
    guests.run()
    result = guests.joined(accepted)
    from guests.jobs import service

    store = service().store
    assert store.guest(result["guest"]["guestId"]) is not None
    assert sum(s.registered for s in store.seats(event["eventId"])) == 1
    assert job_of(guests.app, job_id, ALICE)["status"] == "COMPLETED"


def test_a_full_event_admits_exactly_its_capacity_and_makes_no_account_for_the_rest(guests: Guests) -> None:
    event = guests.create_event(capacity=3)
    accepted = [guests.register(event["eventId"], phone) for phone in PHONES]  # five for three places
    guests.run()
    outcomes = [guests.status(a.body["jobId"], a.body["statusToken"]).body["result"] for a in accepted]
    assert sum(1 for o in outcomes if o["success"]) == 3
    assert [o for o in outcomes if not o["success"]] == [{"success": False, "code": "EVENT_FULL"}] * 2
    turned_away = [p for p, o in zip(PHONES, outcomes, strict=True) if not o["success"]]
    assert all(guests.verify(event["eventId"], p).body["known"] is False for p in turned_away)
    page = guests.page("miguel", "festa-verao")
    guests.clock.advance(6)
    assert guests.page("miguel", "festa-verao").body["placesLeft"] == 0
    # More places: the next one gets in
    assert guests.change(event["eventId"], capacity=4).status == 200
    assert guests.joined(guests.register(event["eventId"], turned_away[0]))["alreadyRegistered"] is False
    assert guests.done(guests.register(event["eventId"], turned_away[1]))["result"]["code"] == "EVENT_FULL"
    assert page.status == 200


def test_a_capacity_below_the_guests_so_far_admits_nobody_more(guests: Guests) -> None:
    event = guests.create_event(capacity=4)
    for phone in PHONES[:3]:
        guests.joined(guests.register(event["eventId"], phone))
    changed = guests.change(event["eventId"], capacity=2)
    assert changed.status == 200 and changed.body["event"]["capacity"] == 2
    assert guests.done(guests.register(event["eventId"], PHONES[3]))["result"]["code"] == "EVENT_FULL"
    figures = guests.app.api("GET", f"/events/{event['eventId']}/metrics", claims=ALICE).body
    assert figures["guests"]["total"] == 3 and figures["guests"]["placesLeft"] == 0


def test_closed_registration_refuses_new_guests_and_keeps_the_ones_it_has(guests: Guests) -> None:
    event = guests.create_event()
    kept = guests.joined(guests.register(event["eventId"], MARIA))
    guests.page("miguel", "festa-verao")  # cached while open
    closed = guests.change(event["eventId"], registrationOpen=False)
    assert closed.status == 200 and closed.body["event"]["registrationOpen"] is False
    page = guests.page("miguel", "festa-verao").body  # the change dropped the cached page
    assert page["registrationOpen"] is False and page["placesLeft"] == 0
    refused = guests.done(guests.register(event["eventId"], JOAO))
    assert refused["result"] == {"success": False, "code": "REGISTRATION_CLOSED"}
    assert (
        guests.done(guests.login(event["eventId"], MARIA))["result"]["guest"] == kept["guest"]
    )  # still on the list
    assert guests.verify(event["eventId"], JOAO).body["known"] is False  # no account was made
    assert guests.change(event["eventId"], registrationOpen=True).status == 200
    assert guests.joined(guests.register(event["eventId"], JOAO))["alreadyRegistered"] is False


def test_bad_submits_are_refused_at_once(guests: Guests) -> None:
    event = guests.create_event()
    bad_phone = guests.register(event["eventId"], "12")
    assert bad_phone.status == 422 and bad_phone.body["error"]["details"][0]["field"] == "phone"
    no_event = guests.register("no-such-event", MARIA)
    assert no_event.status == 404 and no_event.body["error"]["code"] == "EVENT_NOT_FOUND"
    stranger = guests.register(event["eventId"], MARIA, promoterSlug="nobody")
    assert stranger.status == 422 and stranger.body["error"]["details"][0]["field"] == "promoterSlug"
    short = guests.register(event["eventId"], MARIA, password="short")
    assert short.status == 422 and short.body["error"]["details"][0]["field"] == "password"
    too_long = guests.register(event["eventId"], MARIA, password="é" * 40)  # 80 bytes: past bcrypt's 72
    assert too_long.status == 422 and "é" not in too_long.text
    assert guests.page("miguel", "no-such-event").status == 404
    assert guests.page("nobody", "festa-verao").status == 404
    assert guests.verify("no-such-event", MARIA).status == 404


# -- events and organisers -------------------------------------------------------------------------


def test_a_promoter_link_names_one_event(guests: Guests) -> None:
    guests.create_event()
    taken = guests.app.api(
        "POST",
        "/events",
        {"slug": "festa-verao", "name": "Other", "startsAt": "2026-08-01T22:00:00Z", "capacity": 5,
         "promoters": [{"slug": "rita", "name": "Rita"}, {"slug": "miguel", "name": "Miguel"}]},
        BOB,
    )  # fmt: skip
    assert taken.status == 409 and taken.body["error"]["code"] == "SLUG_TAKEN"
    assert taken.body["error"]["details"] == {"links": ["miguel/festa-verao"]}
    assert guests.page("rita", "festa-verao").status == 404  # nothing of it was written
    naive = guests.app.api(
        "POST", "/events", {"slug": "x", "name": "X", "startsAt": "2026-08-01T22:00:00", "capacity": 5,
                            "promoters": [{"slug": "a", "name": "A"}]}, ALICE
    )  # fmt: skip
    assert naive.status == 422  # a start without its time zone


def test_organisers_see_and_manage_only_their_own_events(guests: Guests) -> None:
    event = guests.create_event()
    result = guests.joined(guests.register(event["eventId"], MARIA))
    job_id = guests.app.api("GET", "/jobs?type=guests.register", claims=ALICE).body["items"][0]["jobId"]
    event_id = event["eventId"]
    for method, path, body in (
        ("PATCH", f"/events/{event_id}", {"registrationOpen": False}),
        ("POST", f"/events/{event_id}/check-in", {"token": result["pass"]["token"]}),
        ("GET", f"/events/{event_id}/metrics", None),
        ("GET", f"/events/{event_id}/guests", None),
    ):
        answer = guests.app.api(method, path, body or b"", BOB)
        assert answer.status == 404 and answer.body["error"]["code"] == "EVENT_NOT_FOUND", (method, path)
        assert guests.app.api(method, path, body or b"").status == 401  # no token: the authorizer's
    assert guests.app.api("GET", f"/jobs/{job_id}", claims=BOB).status == 404  # the organiser's jobs
    assert guests.page("miguel", "festa-verao").body["registrationOpen"] is True  # Bob changed nothing
    # Admins manage every event
    assert guests.app.api("GET", f"/events/{event_id}/guests", claims=ADMIN).status == 200
    assert guests.check_in(event_id, result["pass"]["token"], ADMIN).status == 200


def test_an_organiser_lists_their_own_events_latest_first_in_pages(guests: Guests) -> None:
    made = [guests.create_event(f"festa-{n}", startsAt=f"2026-0{n}-01T22:00:00+01:00") for n in range(1, 6)]
    guests.create_event("festa-do-bob", claims=BOB)
    seen, cursor = [], None
    while True:
        query = "?limit=2" + (f"&cursor={cursor}" if cursor else "")
        answer = guests.app.api("GET", f"/events{query}", claims=ALICE)
        assert answer.status == 200 and len(answer.body["items"]) <= 2, answer.body
        seen += [e["eventId"] for e in answer.body["items"]]
        cursor = answer.body["cursor"]
        if not cursor:
            break
    assert seen == [e["eventId"] for e in reversed(made)]  # the latest start first, none of Bob's
    listed = guests.app.api("GET", "/events", claims=BOB).body["items"]
    assert [e["slug"] for e in listed] == ["festa-do-bob"]
    # Alice's cursor is no page of Bob's; another organiser's list is for admins only
    first = guests.app.api("GET", "/events?limit=1", claims=ALICE).body["cursor"]
    assert guests.app.api("GET", f"/events?cursor={first}", claims=BOB).status == 422
    assert guests.app.api("GET", "/events?organiser=alice", claims=BOB).status == 403
    assert len(guests.app.api("GET", "/events?organiser=alice", claims=ADMIN).body["items"]) == 5
    assert guests.app.api("GET", "/events").status == 401


def test_the_guest_list_pages_over_the_shards_and_refuses_foreign_cursors(guests: Guests) -> None:
    event = guests.create_event()
    names = ["Ana", "Bia", "Caio", "Duda", "Enzo"]
    for phone, name in zip(PHONES, names, strict=True):
        guests.joined(guests.register(event["eventId"], phone, firstName=name))
    seen: list[str] = []
    cursor: str | None = None
    pages = 0
    while True:
        query = f"?limit=2&cursor={cursor}" if cursor else "?limit=2"
        page = guests.app.api("GET", f"/events/{event['eventId']}/guests{query}", claims=ALICE)
        assert page.status == 200, page.body
        assert len(page.body["items"]) <= 2
        seen += [g["name"].split()[0] for g in page.body["items"]]
        pages += 1
        cursor = page.body["cursor"]
        if not cursor:
            break
    assert sorted(seen) == names and pages >= 3
    assert all(set(g) >= {"guestId", "name", "checkedIn", "promoterSlug"} for g in page.body["items"])
    other = guests.create_event(slug="other", promoters=[{"slug": "rita", "name": "Rita"}])
    first = guests.app.api("GET", f"/events/{event['eventId']}/guests?limit=1", claims=ALICE).body
    foreign = guests.app.api(
        "GET", f"/events/{other['eventId']}/guests?cursor={first['cursor']}", claims=ALICE
    )
    assert foreign.status == 422 and foreign.body["error"]["details"][0]["field"] == "cursor"
    assert (
        guests.app.api("GET", f"/events/{event['eventId']}/guests?cursor=bm9wZQ", claims=ALICE).status == 422
    )


def test_the_metrics_count_guests_per_promoter_and_time_the_jobs(guests: Guests) -> None:
    promoters = [{"slug": "miguel", "name": "Miguel"}, {"slug": "rita", "name": "Rita", "team": "B"}]
    event = guests.create_event(promoters=promoters)
    guests.joined(guests.register(event["eventId"], MARIA, promoterSlug="miguel"))
    guests.joined(guests.register(event["eventId"], JOAO, promoterSlug="rita"))
    guests.joined(guests.register(event["eventId"], ANA, promoterSlug="rita"))
    guests.joined(guests.register(event["eventId"], RUI))
    guests.done(guests.login(event["eventId"], MARIA, password="wrong-password"))
    figures = guests.app.api("GET", f"/events/{event['eventId']}/metrics?minutes=30", claims=ALICE)
    assert figures.status == 200, figures.body
    body = figures.body
    assert body["windowMinutes"] == 30
    assert body["guests"] == {
        "total": 4,
        "capacity": 100,
        "placesLeft": 96,
        "checkedIn": 0,
        "perPromoter": {"-": 1, "miguel": 1, "rita": 2},
    }
    assert sum(m["count"] for m in body["registrationsPerMinute"]) == 4
    jobs = body["jobs"]
    assert jobs["finished"] == 5 and jobs["outcomes"] == {"ADMITTED": 4, "INVALID_CREDENTIALS": 1}
    assert jobs["successRate"] == 1.0  # a wrong password is not a failure of the system
    assert all(isinstance(jobs[k], float) and jobs[k] >= 0 for k in ("queueWaitP95Ms", "processingP95Ms"))
    assert jobs["submitToDoneP95Ms"] >= jobs["processingP95Ms"]
    listed = guests.app.api("GET", f"/events/{event['eventId']}/guests", claims=ALICE).body["items"]
    assert {g["name"].split()[0]: g["team"] for g in listed if g["promoterSlug"] == "rita"} == {"Maria": "B"}


# -- the door ----------------------------------------------------------------------------------------


def test_a_forged_pass_and_another_event_s_pass_are_refused(guests: Guests) -> None:
    event = guests.create_event()
    result = guests.joined(guests.register(event["eventId"], MARIA))
    token = result["pass"]["token"]
    guest_id, signature = token.split(".")
    other = guests.create_event(slug="other", promoters=[{"slug": "rita", "name": "Rita"}])
    other_result = guests.joined(guests.register(other["eventId"], JOAO))
    for forged in (
        f"{guest_id}.{signature[:-1]}{'A' if signature[-1] != 'A' else 'B'}",  # altered signature
        f"{other_result['guest']['guestId']}.{signature}",  # another guest with this signature
        guest_id,  # no signature
        other_result["pass"]["token"],  # a real pass, of another event
        "x" * 150,
    ):
        refused = guests.check_in(event["eventId"], forged)
        assert refused.status == 403 and refused.body["error"]["code"] == "INVALID_PASS", forged
    assert guests.check_in(event["eventId"], token).status == 200  # the real one still works


def test_a_second_scan_is_409_already_checked_in_with_when(guests: Guests) -> None:
    event = guests.create_event()
    token = guests.joined(guests.register(event["eventId"], MARIA))["pass"]["token"]
    first = guests.check_in(event["eventId"], token)
    assert first.status == 200
    guests.clock.advance(90)
    second = guests.check_in(event["eventId"], token)
    assert second.status == 409 and second.body["error"]["code"] == "ALREADY_CHECKED_IN"
    assert second.body["error"]["details"]["checkedInAt"] == first.body["guest"]["checkedInAt"].replace(
        "Z", "+00:00"
    )
    figures = guests.app.api("GET", f"/events/{event['eventId']}/metrics", claims=ALICE).body
    assert figures["guests"]["checkedIn"] == 1


# -- status tokens and sessions ------------------------------------------------------------------------


def test_a_job_reads_only_with_its_own_status_token(guests: Guests) -> None:
    event = guests.create_event()
    mine = guests.register(event["eventId"], MARIA)
    theirs = guests.register(event["eventId"], JOAO)
    guests.run()
    job_id = mine.body["jobId"]
    for token in (None, "", "x" * 43, theirs.body["statusToken"], mine.body["statusToken"] + "x"):
        refused = guests.status(job_id, token)
        assert refused.status == 404 and refused.body["error"]["code"] == "NOT_FOUND", token
        assert "result" not in refused.body
    assert guests.status("no-such-job", mine.body["statusToken"]).status == 404
    assert guests.status(job_id, mine.body["statusToken"]).status == 200
    # The engine's own route needs a JWT, and the guest has none
    assert guests.app.api("GET", f"/jobs/{job_id}").status == 401
    # A status token reads its job for an hour
    guests.clock.advance(3601)
    assert guests.status(job_id, mine.body["statusToken"]).status == 404


def test_the_qr_needs_that_guest_s_session(guests: Guests) -> None:
    event = guests.create_event()
    maria = guests.joined(guests.register(event["eventId"], MARIA))
    joao = guests.joined(guests.register(event["eventId"], JOAO))
    maria_id = maria["guest"]["guestId"]
    for session in (None, "", "not-a-session", joao["session"]["token"]):
        refused = guests.qr(maria_id, session)
        assert refused.status == 401 and refused.body["error"]["code"] == "UNAUTHORIZED", session
    assert guests.qr("no-such-guest", maria["session"]["token"]).status == 401
    assert guests.qr(maria_id, maria["session"]["token"]).status == 200
    # The session slides: used within 30 minutes it lives on; unused for 31, it is gone
    guests.clock.advance(25 * 60)
    assert guests.qr(maria_id, maria["session"]["token"]).status == 200
    guests.clock.advance(25 * 60)
    assert guests.qr(maria_id, maria["session"]["token"]).status == 200
    guests.clock.advance(31 * 60)
    assert guests.qr(maria_id, maria["session"]["token"]).status == 401
    assert guests.qr(maria_id, maria["session"]["token"], fmt="gif").status in (401, 422)


# -- limits -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("guests", [{"GuestsPhoneCheckRatePerIp": "3/60"}], indirect=True)
def test_the_phone_check_is_limited_per_client_address_and_a_header_does_not_change_it(
    guests: Guests,
) -> None:
    event = guests.create_event()
    for phone in PHONES[:3]:
        answer = guests.verify(event["eventId"], phone)
        assert answer.status == 200
        assert answer.headers["x-ratelimit-limit"] in ("3", "10")
    refused = guests.verify(event["eventId"], PHONES[3], **{"X-Forwarded-For": "203.0.113.99"})
    assert refused.status == 429 and refused.body["error"]["code"] == "RATE_LIMITED"
    assert int(refused.headers["retry-after"]) >= 1
    assert refused.headers["x-ratelimit-limit"] == "3" and refused.headers["x-ratelimit-remaining"] == "0"
    # Another address has its own window; a minute later the first has room again
    assert guests.verify(event["eventId"], PHONES[3], ip="198.51.100.21").status == 200
    guests.clock.advance(62)
    assert guests.verify(event["eventId"], PHONES[3]).status == 200


@pytest.mark.parametrize("guests", [{"GuestsPhoneCheckRatePerPhone": "2/60"}], indirect=True)
def test_the_phone_check_is_limited_per_phone_across_addresses(guests: Guests) -> None:
    event = guests.create_event()
    assert guests.verify(event["eventId"], MARIA, ip="198.51.100.1").status == 200
    assert guests.verify(event["eventId"], "912 345 678", ip="198.51.100.2").status == 200  # the same number
    refused = guests.verify(event["eventId"], MARIA, ip="198.51.100.3")
    assert refused.status == 429 and refused.headers["x-ratelimit-limit"] == "2"
    assert guests.verify(event["eventId"], JOAO, ip="198.51.100.3").status == 200  # another phone


def test_five_failed_logins_refuse_the_phone_s_next_login_at_submit(guests: Guests) -> None:
    event = guests.create_event()
    guests.joined(guests.register(event["eventId"], MARIA))
    for _ in range(5):
        assert guests.done(guests.login(event["eventId"], MARIA, password="guess-guess"))["result"][
            "code"
        ] == ("INVALID_CREDENTIALS")
    refused = guests.login(event["eventId"], MARIA)  # even the right password, for now
    assert refused.status == 429 and refused.body["error"]["code"] == "RATE_LIMITED"
    assert refused.body["error"]["details"]["reason"] == "FAILED_LOGINS"
    assert 1 <= int(refused.headers["retry-after"]) <= 60
    again = guests.register(event["eventId"], MARIA, password="guess-again")  # no way round it
    assert again.status == 429
    assert guests.login(event["eventId"], JOAO).status == 202  # other phones are not touched
    # Logins submitted before the limit was reached, and run after it was, do not check
    # their password (the worker runs a batch in the order it was sent)
    guests.clock.advance(61)
    guesses = [guests.login(event["eventId"], MARIA, password="guess-guess") for _ in range(5)]
    queued = guests.login(event["eventId"], MARIA)
    assert all(a.status == 202 for a in [*guesses, queued])
    assert guests.done(queued)["result"] == {"success": False, "code": "TOO_MANY_ATTEMPTS"}
    assert [guests.done(g)["result"]["code"] for g in guesses] == ["INVALID_CREDENTIALS"] * 5
    guests.clock.advance(61)
    assert guests.joined(guests.login(event["eventId"], MARIA))["alreadyRegistered"] is True


def test_registering_over_an_account_counts_as_a_failed_login(guests: Guests) -> None:
    event = guests.create_event()
    guests.joined(guests.register(event["eventId"], MARIA))
    for n in range(5):
        assert guests.done(guests.register(event["eventId"], MARIA, password=f"guess-{n}-xx"))["result"][
            "code"
        ] == ("PHONE_TAKEN")
    assert guests.login(event["eventId"], MARIA).status == 429


def test_a_phone_cached_as_unknown_is_known_as_soon_as_it_registers(guests: Guests) -> None:
    event = guests.create_event()
    assert guests.verify(event["eventId"], MARIA).body["known"] is False  # cached for 5 minutes
    guests.joined(guests.register(event["eventId"], MARIA))
    assert guests.verify(event["eventId"], MARIA).body["known"] is True  # written through by the job


def test_the_routes_answer_an_unconfigured_keys_secret_with_503(guests: Guests) -> None:
    import boto3
    from aws_lambda_powertools.utilities import parameters

    event = guests.create_event()
    boto3.client("secretsmanager").delete_secret(
        SecretId="tarefa/dev/guests/keys", ForceDeleteWithoutRecovery=True
    )
    parameters.clear_caches()  # type: ignore[no-untyped-call]
    answer = guests.verify(event["eventId"], MARIA)
    assert answer.status == 503 and answer.body["error"]["code"] == "GUESTS_NOT_CONFIGURED"


def _fields(body: dict[str, Any]) -> set[str]:
    return set(body)


def test_the_public_routes_never_answer_more_than_the_page_needs(guests: Guests) -> None:
    event = guests.create_event()
    guests.joined(guests.register(event["eventId"], MARIA, email="maria@example.com"))
    page = guests.page("miguel", "festa-verao").body
    assert _fields(page) == {"eventId", "name", "startsAt", "registrationOpen", "placesLeft", "promoter"}
    assert "organiser" not in guests.page("miguel", "festa-verao").text
    checked = guests.verify(event["eventId"], MARIA)
    assert _fields(checked.body) == {"phone", "known"}  # no name, no e-mail
    assert "Maria" not in checked.text and "example.com" not in checked.text
    assert GUEST_IP not in checked.text and PASSWORD not in checked.text
