"""The guests workload's integration fixtures: the real handlers on moto (in process), driven
through the HTTP routes as API Gateway would pass them, with the workload's keys secret created
as the local stack creates it. Time is the test's clock (and SQS's timers made to pass), never
slept. bcrypt runs at cost 4 here (GUESTS_BCRYPT_ROUNDS): the same code at a 64th of the work."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import boto3
import pytest
from guests import jobs as guest_jobs
from guests.local import start_sandbox
from moto import mock_aws

from tarefa import wiring
from tarefa.local.app import HttpResult, LocalApp

from ..conftest import ALICE, Clock, let_sqs_timers_pass

SECRETS_PREFIX = "tarefa/dev/"  # the template's TAREFA_SECRETS_PREFIX for the default stage
PASSWORD = "Sup3r-secret-pass"
GUEST_IP = "198.51.100.20"  # a guest's address as API Gateway reports it
PHONES = ("+351912345678", "+351935886310", "+351961234567", "+351926543210", "+351912000001")
STARTS = "2026-07-01T22:00:00+01:00"


@dataclass
class Guests:
    app: LocalApp
    clock: Clock

    # -- organisers --------------------------------------------------------------------------
    def create_event(
        self,
        slug: str = "festa-verao",
        capacity: int = 100,
        claims: dict[str, Any] = ALICE,
        promoters: list[dict[str, Any]] | None = None,
        **fields: Any,
    ) -> dict[str, Any]:
        body = {
            "slug": slug,
            "name": fields.pop("name", "Festa de Verão"),
            "startsAt": STARTS,
            "capacity": capacity,
            "promoters": promoters or [{"slug": "miguel", "name": "Miguel", "team": "Equipa A"}],
            **fields,
        }
        answer = self.app.api("POST", "/events", body, claims)
        assert answer.status == 201, answer.body
        event: dict[str, Any] = answer.body["event"]
        return event

    def change(self, event_id: str, claims: dict[str, Any] = ALICE, **fields: Any) -> HttpResult:
        return self.app.api("PATCH", f"/events/{event_id}", fields, claims)

    def check_in(self, event_id: str, token: str, claims: dict[str, Any] = ALICE) -> HttpResult:
        return self.app.api("POST", f"/events/{event_id}/check-in", {"token": token}, claims)

    # -- guests ------------------------------------------------------------------------------
    def page(self, promoter: str, slug: str, ip: str = GUEST_IP) -> HttpResult:
        return self.app.api("GET", f"/public/events/{promoter}/{slug}", source_ip=ip)

    def verify(self, event_id: str, phone: str, ip: str = GUEST_IP, **headers: str) -> HttpResult:
        body = {"eventId": event_id, "phone": phone}
        return self.app.api("POST", "/public/guests/verify-phone", body, headers=headers, source_ip=ip)

    def register(
        self, event_id: str, phone: str, password: str = PASSWORD, ip: str = GUEST_IP, **fields: Any
    ) -> HttpResult:
        body = {
            "eventId": event_id,
            "phone": phone,
            "firstName": fields.pop("firstName", "Maria"),
            "lastName": fields.pop("lastName", "Silva"),
            "password": password,
            **fields,
        }
        return self.app.api("POST", "/public/guests/register", body, source_ip=ip)

    def login(
        self, event_id: str, phone: str, password: str = PASSWORD, ip: str = GUEST_IP, **fields: Any
    ) -> HttpResult:
        body = {"eventId": event_id, "phone": phone, "password": password, **fields}
        return self.app.api("POST", "/public/guests/login", body, source_ip=ip)

    def status(self, job_id: str, token: str | None) -> HttpResult:
        headers = {"X-Status-Token": token} if token is not None else {}
        return self.app.api("GET", f"/public/guests/jobs/{job_id}", headers=headers, source_ip=GUEST_IP)

    def run(self, seconds: float = 0) -> None:
        """Let `seconds` pass (the clock and SQS's timers), then run what is due."""
        if seconds:
            self.clock.advance(seconds)
        let_sqs_timers_pass()
        self.app.drain()

    def done(self, accepted: HttpResult) -> dict[str, Any]:
        """The job a submit made, run, as its submitter reads it: {status, result}."""
        assert accepted.status == 202, accepted.body
        self.run()
        answer = self.status(accepted.body["jobId"], accepted.body["statusToken"])
        assert answer.status == 200, answer.body
        body: dict[str, Any] = answer.body
        return body

    def joined(self, accepted: HttpResult) -> dict[str, Any]:
        """The successful result of a submit: {success, guest, session, pass}."""
        body = self.done(accepted)
        assert body["status"] == "COMPLETED" and body["result"]["success"] is True, body
        result: dict[str, Any] = body["result"]
        return result

    def qr(self, guest_id: str, session: str | None, fmt: str | None = None) -> HttpResult:
        headers = {"X-Guest-Session": session} if session is not None else {}
        query = f"?format={fmt}" if fmt else ""
        return self.app.api(
            "GET", f"/public/guests/{guest_id}/qr{query}", headers=headers, source_ip=GUEST_IP
        )


def png_bytes(answer: HttpResult) -> bytes:
    """A binary body as the client gets it: API Gateway decodes the function's base64."""
    return base64.b64decode(answer.text)


@pytest.fixture
def guests(request: pytest.FixtureRequest) -> Iterator[Guests]:
    """The stack with the template's defaults; `parametrize("guests", [{...}], indirect=True)`
    overrides template parameters."""
    from aws_lambda_powertools.utilities import parameters

    overrides: dict[str, str] = getattr(request, "param", {})
    local = start_sandbox("http://127.0.0.1:9")
    parameters.clear_caches()  # type: ignore[no-untyped-call]
    guest_jobs.service.cache_clear()
    try:
        with mock_aws():
            secrets = boto3.client("secretsmanager")
            for name, value in local.secrets.items():
                secrets.create_secret(Name=SECRETS_PREFIX + name, SecretString=value)
            app = LocalApp(
                boto3.client("sqs"),
                boto3.client("dynamodb"),
                parameters={**local.parameters, **overrides},
                environment={"GUESTS_BCRYPT_ROUNDS": "4"},
            )
            clock = Clock()
            wiring.container().clock = clock
            guest_jobs.service().now = clock
            yield Guests(app, clock)
    finally:
        parameters.clear_caches()  # type: ignore[no-untyped-call]
        guest_jobs.service.cache_clear()
        wiring.reset()


def loads(text: str | bytes) -> Any:
    return json.loads(text)
