"""The two real adapters, on fakes of their transports: what Resend and SES are sent, and how
each answer is classified (sent, the message refused, not configured, worth a retry). No
message of any error holds an address, a subject or a body."""

from __future__ import annotations

import json
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber
from notifications.provider.port import EmailMessage, EmailNotConfiguredError, EmailRejectedError
from notifications.provider.resend import ResendEmail
from notifications.provider.ses import SesEmail

from tarefa import PermanentJobError, RetryableJobError
from tarefa.outbound import HttpResponse

MESSAGE = EmailMessage(
    "no-reply@tarefa.example", ("ana@example.com",), "Olá Ana", "corpo secreto", "<p>html</p>"
)
PRIVATE = ("ana@example.com", "Olá Ana", "corpo secreto", "<p>html</p>")


class FakeHttp:
    def __init__(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        self.answer = HttpResponse(
            status, headers or {}, json.dumps(body).encode(), "https://api.resend.com/emails"
        )
        self.calls: list[dict[str, Any]] = []

    def post(self, url: str, **kwargs: Any) -> HttpResponse:
        self.calls.append({"url": url, **kwargs})
        return self.answer


def resend(http: FakeHttp) -> ResendEmail:
    return ResendEmail(http, "re_test_key", "https://api.resend.com/")  # type: ignore[arg-type]


def private_free(exc: BaseException) -> None:
    assert not any(value in str(exc) for value in PRIVATE), str(exc)


def test_resend_is_sent_the_message_with_its_key_and_idempotency_key() -> None:
    http = FakeHttp(200, {"id": "49a3999c-0ce1-4ea6-ab68-afcd6dc2e794"})
    sent = resend(http).send(MESSAGE, "job-key-1")
    assert (sent.provider, sent.message_id) == ("resend", "49a3999c-0ce1-4ea6-ab68-afcd6dc2e794")
    call = http.calls[0]
    assert call["url"] == "https://api.resend.com/emails"
    assert call["headers"]["Authorization"] == "Bearer re_test_key"
    assert call["headers"]["Idempotency-Key"] == "job-key-1"
    assert call["raise_for_status"] is False
    assert call["json"] == {
        "from": "no-reply@tarefa.example",
        "to": ["ana@example.com"],
        "subject": "Olá Ana",
        "text": "corpo secreto",
        "html": "<p>html</p>",
    }
    assert "re_test_key" not in repr(resend(http))


@pytest.mark.parametrize(
    ("status", "name", "headers", "retry_after"),
    [
        (429, "rate_limit_exceeded", {"retry-after": "1", "ratelimit-reset": "1"}, 1.0),
        (429, "rate_limit_exceeded", {"ratelimit-reset": "2"}, 2.0),
        (429, "daily_quota_exceeded", {}, 3600.0),
        (500, "application_error", {}, None),
        (503, "internal_server_error", {"retry-after": "5"}, 5.0),
        (409, "concurrent_idempotent_requests", {}, 1.0),
    ],
)
def test_resend_answers_worth_a_retry(
    status: int, name: str, headers: dict[str, str], retry_after: float | None
) -> None:
    http = FakeHttp(
        status, {"statusCode": status, "name": name, "message": "to ana@example.com: no"}, headers
    )
    with pytest.raises(RetryableJobError) as raised:
        resend(http).send(MESSAGE, "k")
    assert raised.value.retry_after == retry_after
    private_free(raised.value)


@pytest.mark.parametrize(
    ("status", "name", "code"),
    [
        (422, "validation_error", "EMAIL_REJECTED"),
        (422, "invalid_parameter", "EMAIL_REJECTED"),
        (403, "validation_error", "EMAIL_REJECTED"),  # test mode: only your own address
        (400, "validation_error", "EMAIL_REJECTED"),
        (401, "missing_api_key", "EMAIL_NOT_CONFIGURED"),
        (403, "invalid_api_key", "EMAIL_NOT_CONFIGURED"),
        (401, "restricted_api_key", "EMAIL_NOT_CONFIGURED"),
        (409, "invalid_idempotent_request", "IDEMPOTENCY_CONFLICT"),
    ],
)
def test_resend_answers_that_are_final(status: int, name: str, code: str) -> None:
    http = FakeHttp(status, {"statusCode": status, "name": name, "message": "Invalid `to`: ana@example.com"})
    with pytest.raises(PermanentJobError) as raised:
        resend(http).send(MESSAGE, "k")
    assert raised.value.code == code
    if code == "EMAIL_REJECTED":
        assert isinstance(raised.value, EmailRejectedError) and raised.value.reason == name
    private_free(raised.value)


def test_resend_without_an_id_or_a_key() -> None:
    with pytest.raises(RetryableJobError):
        resend(FakeHttp(200, {"no": "id"})).send(MESSAGE, "k")
    with pytest.raises(EmailNotConfiguredError):
        ResendEmail(FakeHttp(200, {}), "")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        resend(FakeHttp(200, {"id": "x"})).send(MESSAGE, "k" * 257)


# -- SES -----------------------------------------------------------------------------------------


def ses() -> tuple[SesEmail, Stubber]:
    client = boto3.client("sesv2", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")
    return SesEmail(client), Stubber(client)


def test_ses_is_sent_a_simple_message() -> None:
    adapter, stub = ses()
    stub.add_response(
        "send_email",
        {"MessageId": "0100018c-ses"},
        {
            "FromEmailAddress": "no-reply@tarefa.example",
            "Destination": {"ToAddresses": ["ana@example.com"]},
            "Content": {
                "Simple": {
                    "Subject": {"Data": "Olá Ana", "Charset": "UTF-8"},
                    "Body": {
                        "Text": {"Data": "corpo secreto", "Charset": "UTF-8"},
                        "Html": {"Data": "<p>html</p>", "Charset": "UTF-8"},
                    },
                    "Headers": [{"Name": "X-Tarefa-Notification", "Value": "job-key-1"}],
                }
            },
        },
    )
    with stub:
        sent = adapter.send(MESSAGE, "job-key-1")
    assert (sent.provider, sent.message_id) == ("ses", "0100018c-ses")


@pytest.mark.parametrize(
    ("code", "status", "raised", "job_code"),
    [
        ("MessageRejected", 400, EmailNotConfiguredError, "EMAIL_NOT_CONFIGURED"),
        ("MailFromDomainNotVerifiedException", 400, EmailNotConfiguredError, "EMAIL_NOT_CONFIGURED"),
        ("AccountSuspendedException", 400, EmailNotConfiguredError, "EMAIL_NOT_CONFIGURED"),
        ("AccessDeniedException", 403, EmailNotConfiguredError, "EMAIL_NOT_CONFIGURED"),
        ("BadRequestException", 400, EmailRejectedError, "EMAIL_REJECTED"),
        ("TooManyRequestsException", 429, RetryableJobError, None),
        ("LimitExceededException", 400, RetryableJobError, None),
        ("Throttling", 400, RetryableJobError, None),
        ("InternalFailure", 500, RetryableJobError, None),
    ],
)
def test_ses_errors(code: str, status: int, raised: type[Exception], job_code: str | None) -> None:
    adapter, stub = ses()
    stub.add_client_error("send_email", code, "Email address not verified ana@example.com", status)
    with stub, pytest.raises(raised) as caught:
        adapter.send(MESSAGE, "k")
    if job_code:
        assert getattr(caught.value, "code", None) == job_code
    private_free(caught.value)
    assert caught.value.__cause__ is None and caught.value.__suppress_context__  # no chained AWS message
