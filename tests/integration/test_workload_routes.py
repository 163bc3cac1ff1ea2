"""A workload's own routes (the demo's function) behind the same API: a public route limited by
source address, and one that enqueues a job for the caller with the engine's error shape."""

from __future__ import annotations

from tarefa.local.app import LocalApp

from .conftest import ALICE, BOB, job_of


def test_a_public_route_needs_no_token_and_is_limited_per_address(app: LocalApp) -> None:
    answers = [app.api("GET", "/demo/hello/Ana", source_ip="10.1.1.1") for _ in range(31)]
    assert [a.status for a in answers[:30]] == [200] * 30
    assert answers[0].body == {"greeting": "Hello, Ana!"}
    assert answers[0].headers["x-ratelimit-limit"] == "30"
    limited = answers[30]
    assert limited.status == 429 and limited.body["error"]["code"] == "RATE_LIMITED"
    assert int(limited.headers["retry-after"]) > 0
    # another address has its own window; a forwarded-for header changes nothing
    assert app.api("GET", "/demo/hello/Ana", source_ip="10.2.2.2").status == 200
    spoofed = app.api("GET", "/demo/hello/Ana", headers={"X-Forwarded-For": "10.9.9.9"}, source_ip="10.1.1.1")
    assert spoofed.status == 429


def test_a_workload_route_enqueues_for_its_caller_and_needs_a_token(app: LocalApp) -> None:
    assert app.api("POST", "/demo/greetings", {"name": "Bia"}).status == 401
    accepted = app.api("POST", "/demo/greetings", {"name": "Bia", "language": "es"}, ALICE)
    assert accepted.status == 202 and accepted.body["status"] == "PENDING"
    app.drain()
    done = job_of(app, accepted.body["jobId"])
    assert (done["type"], done["userId"], done["result"]["greeting"]) == ("demo.greet", "alice", "Hola, Bia!")
    assert app.api("GET", f"/jobs/{accepted.body['jobId']}", claims=BOB).status == 404


def test_a_workload_route_answers_bad_input_in_the_usual_shape(app: LocalApp) -> None:
    refused = app.api("POST", "/demo/greetings", {"name": "", "language": "fr"}, ALICE)
    assert refused.status == 422 and refused.body["error"]["code"] == "VALIDATION_ERROR"
    assert {d["field"] for d in refused.body["error"]["details"]} == {"name", "language"}
    assert app.api("POST", "/demo/greetings", b"\xff", ALICE).status == 400
