"""The notifications workload's integration fixtures: the real handlers on moto (in process),
SES in the same moto (its sent messages read back from the backend), and the Resend sandbox on
loopback speaking real HTTP to the real Resend adapter."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import boto3
import pytest
from moto import mock_aws
from notifications import jobs as notification_jobs
from notifications.local import LocalNotifications, start_sandbox
from notifications.provider.sandbox import ResendSandbox

from tarefa import wiring
from tarefa.local.app import HttpResult, LocalApp

from ..conftest import ALICE, Clock, let_sqs_timers_pass

SECRETS_PREFIX = "tarefa/dev/"
ACCOUNT, REGION = "123456789012", "us-east-1"
SENDER = "no-reply@example.com"  # the template's EmailFrom default; its domain verified locally


@dataclass
class Mail:
    app: LocalApp
    sandbox: ResendSandbox
    local: LocalNotifications

    def send(self, claims: dict[str, Any] = ALICE, **fields: Any) -> HttpResult:
        body = {"to": "ana@example.com", "subject": "Seu pedido", "text": "Chegou."}
        body.update(fields)
        return self.app.api("POST", "/notifications/email", body, claims)

    def notification(self, notification_id: str, claims: dict[str, Any] = ALICE) -> dict[str, Any]:
        answer = self.app.api("GET", f"/notifications/{notification_id}", claims=claims)
        assert answer.status == 200, answer.body
        found: dict[str, Any] = answer.body["notification"]
        return found

    def run(self, clock: Clock | None = None, seconds: float = 0) -> None:
        if clock is not None and seconds:
            clock.advance(seconds)
        let_sqs_timers_pass()
        self.app.drain()


def ses_sent() -> list[Any]:
    """What moto's SES accepted (v2 SendEmail lands in the v1 backend)."""
    from moto.ses.models import ses_backends

    return list(ses_backends[ACCOUNT][REGION].sent_messages)


def start(provider: str) -> Iterator[Mail]:
    from aws_lambda_powertools.utilities import parameters

    local = start_sandbox("http://127.0.0.1:9", port=0, rate=None, hang_seconds=1.2)
    parameters.clear_caches()  # type: ignore[no-untyped-call]
    notification_jobs.service.cache_clear()
    notification_jobs._ses.cache_clear()
    try:
        with mock_aws():
            for name, value in local.secrets.items():
                boto3.client("secretsmanager").create_secret(Name=SECRETS_PREFIX + name, SecretString=value)
            app = LocalApp(
                boto3.client("sqs"),
                boto3.client("dynamodb"),
                parameters={**local.parameters, "EmailProvider": provider},
                environment={notification_jobs.TIMEOUT_VARIABLE: "0.4"},
            )
            yield Mail(app, local.sandbox, local)
    finally:
        local.stop()
        parameters.clear_caches()  # type: ignore[no-untyped-call]
        notification_jobs.service.cache_clear()
        notification_jobs._ses.cache_clear()
        wiring.reset()


@pytest.fixture
def ses_mail() -> Iterator[Mail]:
    yield from start("ses")


@pytest.fixture
def resend_mail() -> Iterator[Mail]:
    yield from start("resend")


def clock_for(mail: Mail) -> Clock:
    clock = Clock()
    wiring.container().clock = clock
    notification_jobs.service().now = clock
    return clock
