"""Amazon SES (API v2 `SendEmail`, https://docs.aws.amazon.com/ses/latest/APIReference-V2/API_SendEmail.html):
the notifications package's only boto3 importer for e-mail (the table's is store.py).

SES has no idempotency key: the caller records the message id it answers (ctx.once) so a later
attempt does not send again. The From address's identity must be verified (in the SES sandbox
the recipients' too); the worker may send only from it (template: ses:SendEmail on that
identity, with ses:FromAddress pinned).
"""

from __future__ import annotations

from typing import Any

from notifications.provider.port import EmailMessage, EmailNotConfiguredError, EmailRejectedError, SentEmail
from tarefa import RetryableJobError

# The sender, the account or the configuration: an operator's fix, not the message's fault.
NOT_CONFIGURED = frozenset(
    {
        "MessageRejected",
        "MailFromDomainNotVerifiedException",
        "AccountSuspendedException",
        "SendingPausedException",
        "NotFoundException",
        "AccessDeniedException",
        "AccessDenied",
    }
)
REJECTED = frozenset({"BadRequestException", "InvalidParameterValue", "ValidationException"})


class SesEmail:
    name = "ses"

    def __init__(self, client: Any = None) -> None:
        if client is None:
            import boto3
            from botocore.config import Config

            client = boto3.client(
                "sesv2",
                config=Config(
                    connect_timeout=3, read_timeout=10, retries={"mode": "standard", "max_attempts": 2}
                ),
            )
        self.client = client

    def send(self, message: EmailMessage, idempotency_key: str) -> SentEmail:
        from botocore.exceptions import BotoCoreError, ClientError

        body: dict[str, Any] = {"Text": {"Data": message.text, "Charset": "UTF-8"}}
        if message.html is not None:
            body["Html"] = {"Data": message.html, "Charset": "UTF-8"}
        try:
            answer = self.client.send_email(
                FromEmailAddress=message.sender,
                Destination={"ToAddresses": list(message.to)},
                Content={
                    "Simple": {
                        "Subject": {"Data": message.subject, "Charset": "UTF-8"},
                        "Body": body,
                        # a trace on the message itself, for a support request (no personal data)
                        "Headers": [{"Name": "X-Tarefa-Notification", "Value": idempotency_key[:128]}],
                    }
                },
            )
        except ClientError as exc:
            # The error's message may quote an address: only its code goes anywhere.
            code = str(exc.response.get("Error", {}).get("Code", "Unknown"))[:64]
            status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
            if code in NOT_CONFIGURED:
                raise EmailNotConfiguredError(
                    f"SES refused to send ({code}): check EmailFrom's identity"
                ) from None
            if code in REJECTED or (400 <= status < 500 and "Throttl" not in code and code not in RETRYABLE):
                raise EmailRejectedError(self.name, code, status or None) from None
            raise RetryableJobError(f"SES answered {status or 'an error'} ({code})") from None
        except BotoCoreError as exc:  # timeouts, dropped connections: the send may not have happened
            raise RetryableJobError(f"SES unreachable ({type(exc).__name__})") from None
        return SentEmail(self.name, str(answer["MessageId"]))


RETRYABLE = frozenset(
    {"TooManyRequestsException", "LimitExceededException", "InternalFailure", "ServiceUnavailable"}
)
