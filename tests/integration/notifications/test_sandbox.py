"""The Resend sandbox over HTTP, as Resend documents its API: auth, required fields, the
idempotency key's replay and conflict, the team's rate limit with its headers, the faults chosen
by recipient, and GET /emails/{id}."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from notifications.provider.sandbox import ResendSandbox

KEY = "re_test_key"


@pytest.fixture
def sandbox() -> Iterator[ResendSandbox]:
    running = ResendSandbox(KEY, rate=None, hang_seconds=0.5)
    running.start()
    yield running
    running.stop()


def call(
    sandbox: ResendSandbox,
    body: Any = None,
    *,
    key: str | None = None,
    auth: str | None = f"Bearer {KEY}",
    method: str = "POST",
    path: str = "/emails",
    timeout: float = 5,
) -> tuple[int, dict[str, str], dict[str, Any]]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(sandbox.base_url + path, data=data, method=method)
    request.add_header("Content-Type", "application/json")
    if auth:
        request.add_header("Authorization", auth)
    if key is not None:
        request.add_header("Idempotency-Key", key)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return (
                response.status,
                {k.lower(): v for k, v in response.headers.items()},
                json.loads(response.read()),
            )
    except urllib.error.HTTPError as exc:
        return exc.code, {k.lower(): v for k, v in exc.headers.items()}, json.loads(exc.read())


def email(**fields: Any) -> dict[str, Any]:
    return {
        "from": "Tarefa <no-reply@example.com>",
        "to": "ana@example.com",
        "subject": "Oi",
        "text": "Olá",
        **fields,
    }


def test_auth_and_required_fields(sandbox: ResendSandbox) -> None:
    assert call(sandbox, email(), auth=None)[2] == {
        "statusCode": 401,
        "name": "missing_api_key",
        "message": "Missing API key in the authorization header",
    }
    assert call(sandbox, email(), auth="Bearer re_other")[2]["name"] == "invalid_api_key"
    for missing in ("from", "to", "subject"):
        body = email()
        del body[missing]
        status, _, answer = call(sandbox, body)
        assert (status, answer["name"]) == (422, "missing_required_field")
    assert call(sandbox, email(text=None))[0] == 422  # neither text nor html
    assert call(sandbox, email(to=[f"u{i}@example.com" for i in range(51)]))[0] == 422
    assert sandbox.sent == []


def test_an_idempotency_key_replays_the_first_answer_and_refuses_another_body(sandbox: ResendSandbox) -> None:
    status, _, first = call(sandbox, email(), key="k-1")
    assert status == 200 and set(first) == {"id"}
    assert call(sandbox, email(), key="k-1")[2] == first
    status, _, conflict = call(sandbox, email(subject="Outro"), key="k-1")
    assert (status, conflict["name"]) == (409, "invalid_idempotent_request")
    assert call(sandbox, email(), key="x" * 257)[2]["name"] == "invalid_idempotency_key"
    assert len(sandbox.sent) == 1 and sandbox.sent[0].idempotency_key == "k-1"
    assert call(sandbox, email())[2] != first  # no key: a new e-mail each time
    assert len(sandbox.sent) == 2


@pytest.mark.parametrize(
    ("recipient", "status", "name"),
    [("fail", 500, "application_error"), ("ratelimit", 429, "rate_limit_exceeded")],
)
def test_faults_twice_per_key_then_accepted(
    sandbox: ResendSandbox, recipient: str, status: int, name: str
) -> None:
    to = f"{recipient}@example.com"
    for _ in range(2):
        got, headers, answer = call(sandbox, email(to=to), key="k-f")
        assert (got, answer["name"]) == (status, name)
        if status == 429:
            assert headers["retry-after"] == "1" and headers["ratelimit-remaining"] == "0"
    assert call(sandbox, email(to=to), key="k-f")[0] == 200
    assert call(sandbox, email(to=to), key="k-other")[0] == status  # a new message: afresh
    assert len(sandbox.sent_to(to)) == 1


def test_bounce_and_slow(sandbox: ResendSandbox) -> None:
    status, _, answer = call(sandbox, email(to="bounce@example.com"), key="k-b")
    assert (status, answer["name"]) == (422, "validation_error")
    began = time.monotonic()
    with pytest.raises(TimeoutError):
        call(sandbox, email(to="slow@example.com"), key="k-s", timeout=0.2)
    time.sleep(0.6 - (time.monotonic() - began))  # the hang is over
    status, _, again = call(sandbox, email(to="slow@example.com"), key="k-s")
    (sent,) = sandbox.sent_to("slow@example.com")
    assert (status, again["id"]) == (200, sent.id)  # the first call had sent it: the same id


def test_the_team_rate_limit(sandbox: ResendSandbox) -> None:
    sandbox.rate = 2
    answers = [call(sandbox, email(to=f"u{n}@example.com")) for n in range(3)]
    assert [a[0] for a in answers] == [200, 200, 429]
    assert answers[2][1]["ratelimit-limit"] == "2" and answers[2][2]["name"] == "rate_limit_exceeded"
    time.sleep(1.05)
    assert call(sandbox, email(to="u9@example.com"))[0] == 200


def test_an_accepted_email_can_be_read_back(sandbox: ResendSandbox) -> None:
    _, _, sent = call(sandbox, email(html="<p>Olá</p>"))
    status, _, found = call(sandbox, method="GET", path=f"/emails/{sent['id']}")
    assert status == 200
    assert (found["object"], found["id"], found["to"], found["html"]) == (
        "email",
        sent["id"],
        ["ana@example.com"],
        "<p>Olá</p>",
    )
    assert call(sandbox, method="GET", path="/emails/nope")[0] == 404
    assert call(sandbox, method="GET", path="/emails/nope", auth=None)[0] == 401
