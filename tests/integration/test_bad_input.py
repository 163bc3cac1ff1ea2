"""Input the fuzzer (bench/fuzz.py) found the API mishandling, one regression test each: bodies
that are not UTF-8, empty query filters, booleans or strings for integers, NaN and Infinity."""

from __future__ import annotations

from typing import Any

import pytest

from tarefa.local.app import LocalApp
from tarefa.openapi import document

from .conftest import ADMIN, ALICE, enqueue

DOCUMENT = document("/")
# Every operation with a JSON body, its path parameters filled in.
BODY_ROUTES = [
    (
        method.upper(),
        path.replace("{priority}", "HIGH").replace("{jobId}", "00000000-0000-0000-0000-000000000000"),
    )
    for path, methods in DOCUMENT["paths"].items()
    for method, spec in methods.items()
    if "requestBody" in spec
]
NOT_UTF8 = [b"\xff", b"\xc3\x28", b'{"type": "system.echo", "payload": "\xe9t\xe9"}', b"\xed\xa0\x80"]


def jobs_of(app: LocalApp) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = app.api("GET", "/jobs?limit=100", claims=ALICE).body["items"]
    return items


def test_every_route_with_a_body_is_covered() -> None:
    assert {path for _, path in BODY_ROUTES} >= {
        "/jobs",
        "/jobs/00000000-0000-0000-0000-000000000000/cancel",
        "/maintenance/cleanup",
        "/maintenance/recover",
        "/queues/HIGH/dead-letters/redrive",
        "/queues/HIGH/dead-letters/purge",
    }


@pytest.mark.parametrize(("method", "path"), BODY_ROUTES)
def test_a_body_that_is_not_utf8_is_400_malformed(app: LocalApp, method: str, path: str) -> None:
    for raw in NOT_UTF8:  # API Gateway hands such a body over base64-encoded
        answer = app.api(method, path, raw, ADMIN)
        assert answer.status == 400, (raw, answer.text)
        assert answer.body["error"]["code"] == "MALFORMED_REQUEST"
        assert "UTF-8" in answer.body["error"]["message"]


@pytest.mark.parametrize("name", ["orderId", "type", "cursor"])
def test_an_empty_list_filter_is_422_naming_it(app: LocalApp, name: str) -> None:
    enqueue(app, {"type": "system.echo", "orderId": "order-1"})
    answer = app.api("GET", f"/jobs?{name}=", claims=ALICE)
    assert answer.status == 422, answer.text
    assert [d["field"] for d in answer.body["error"]["details"]] == [name]


def test_query_integers_still_parse_from_the_query_string(app: LocalApp) -> None:
    for n in range(3):
        enqueue(app, {"type": "system.echo", "orderId": f"order-{n}"})
    assert len(app.api("GET", "/jobs?limit=2", claims=ALICE).body["items"]) == 2
    assert app.api("GET", "/jobs?orderId=order-1", claims=ALICE).status == 200
    assert app.api("GET", "/queues/HIGH/dead-letters?limit=5", claims=ADMIN).status == 200
    for bad in ("true", "2.5", "", "0x10"):
        answer = app.api("GET", f"/jobs?limit={bad}", claims=ALICE)
        assert answer.status == 422 and answer.body["error"]["details"][0]["field"] == "limit", bad


WRONG_JSON_TYPES: list[tuple[str, dict[str, Any], str]] = [
    ("/jobs", {"type": "system.echo", "maxAttempts": True}, "maxAttempts"),
    ("/jobs", {"type": "system.echo", "maxAttempts": "3"}, "maxAttempts"),
    ("/jobs", {"type": "system.echo", "delaySeconds": False}, "delaySeconds"),
    ("/jobs", {"type": "system.echo", "retryDelaySeconds": True}, "retryDelaySeconds"),
    ("/jobs", {"type": "system.echo", "delaySeconds": 1.5}, "delaySeconds"),
    ("/jobs", {"type": "system.echo", "priority": 1}, "priority"),
    ("/maintenance/cleanup", {"olderThanSeconds": True}, "olderThanSeconds"),
    ("/maintenance/recover", {"stuckAfterSeconds": "60"}, "stuckAfterSeconds"),
    ("/queues/HIGH/dead-letters/redrive", {"all": 1}, "all"),
]


def test_a_boolean_or_string_for_a_json_integer_is_422(app: LocalApp) -> None:
    for path, body, field in WRONG_JSON_TYPES:
        answer = app.api("POST", path, body, ADMIN)
        assert answer.status == 422, (body, answer.text)
        assert field in {d["field"] for d in answer.body["error"]["details"]}, (body, answer.body)
    assert app.api("GET", "/jobs", claims=ADMIN).body["items"] == []


def test_json_integers_and_enums_are_still_accepted(app: LocalApp) -> None:
    job = enqueue(app, {"type": "system.echo", "maxAttempts": 2, "delaySeconds": 0, "priority": "HIGH"})
    assert job["maxAttempts"] == 2 and job["priority"] == "HIGH"
    assert app.api("POST", "/maintenance/cleanup", {"olderThanSeconds": 60}, ADMIN).status == 200


NOT_JSON_NUMBERS = [
    '{"type": "system.echo", "payload": NaN}',
    '{"type": "system.echo", "payload": {"x": Infinity}}',
    '{"type": "system.echo", "payload": [1, -Infinity]}',
    '{"type": "system.echo", "maxAttempts": NaN}',
    '{"type": "system.echo", "payload": {"deep": [[[[{"x": NaN}]]]]}}',
]


def test_nan_and_infinity_are_400_malformed_and_nothing_is_stored(app: LocalApp) -> None:
    for raw in NOT_JSON_NUMBERS:
        answer = app.api("POST", "/jobs", raw, ALICE)
        assert answer.status == 400, (raw, answer.text)
        assert answer.body["error"]["code"] == "MALFORMED_REQUEST"
    cancel = app.api(
        "POST", f"/jobs/{enqueue(app, {'type': 'system.echo'})['jobId']}/cancel", '{"reason": NaN}', ALICE
    )
    assert cancel.status == 400 and cancel.body["error"]["code"] == "MALFORMED_REQUEST"
    assert [job["status"] for job in jobs_of(app)] == ["PENDING"]


def test_the_words_nan_and_infinity_in_strings_are_fine(app: LocalApp) -> None:
    job = enqueue(app, {"type": "system.echo", "payload": {"NaN": "Infinity and beyond"}})
    assert job["payload"] == {"NaN": "Infinity and beyond"}
    broken = app.api("POST", "/jobs", '{"type": "system.echo", "payload": "NaN"', ALICE)
    assert broken.status == 400 and broken.body["error"]["message"] == "The body is not valid JSON"


def test_deeply_nested_bodies_are_400_not_500(app: LocalApp) -> None:
    for raw in ("[" * 100_000 + "NaN" + "]" * 100_000, '{"type": ' + "[" * 100_000 + "]" * 100_000 + "}"):
        answer = app.api("POST", "/jobs", raw, ALICE)
        assert answer.status == 400, answer.text[:200]
        assert answer.body["error"]["code"] == "MALFORMED_REQUEST"
