"""Resend (https://resend.com/docs/api-reference/emails/send-email): `POST /emails` with a
bearer API key, through the engine's outbound client (ctx.http: timeouts, SSRF guard).

- `Idempotency-Key` (1-256 characters): Resend answers a replay within 24 h with the first
  response and sends nothing; the same key with another body is 409 `invalid_idempotent_request`,
  while the first is still in flight 409 `concurrent_idempotent_requests` (worth a retry).
- Errors are `{statusCode, name, message}`; `message` may quote an address, so only `name` is kept.
- 429 (`rate_limit_exceeded`, 2 requests/s per team by default) and 5xx are retryable with
  `retry-after`; 400/403 validation and 422 are the message's rejection; 401/403 key errors
  mean the workload is not configured.
"""

from __future__ import annotations

import json
from typing import Any

from notifications.provider.port import EmailMessage, EmailNotConfiguredError, EmailRejectedError, SentEmail
from tarefa import PermanentJobError, RetryableJobError
from tarefa.outbound import OutboundHttp, parse_retry_after

DEFAULT_BASE_URL = "https://api.resend.com"
KEY_ERRORS = frozenset({"missing_api_key", "invalid_api_key", "restricted_api_key"})
QUOTAS = frozenset({"daily_quota_exceeded", "monthly_quota_exceeded"})
QUOTA_RETRY_SECONDS = 3600.0


class ResendEmail:
    name = "resend"

    def __init__(
        self,
        http: OutboundHttp,
        api_key: str,
        base_url: str = DEFAULT_BASE_URL,
        timeout: tuple[float, float] = (3.0, 10.0),
    ) -> None:
        if not api_key:
            raise EmailNotConfiguredError("the Resend API key is not set (secret notifications/resend)")
        self.http = http
        self._api_key = api_key
        self.base_url = (base_url or DEFAULT_BASE_URL).rstrip("/")
        self.timeout = timeout

    def __repr__(self) -> str:  # never the key
        return f"ResendEmail(base_url={self.base_url!r})"

    def send(self, message: EmailMessage, idempotency_key: str) -> SentEmail:
        if not 1 <= len(idempotency_key) <= 256:
            raise ValueError("a Resend idempotency key has 1 to 256 characters")
        body: dict[str, Any] = {
            "from": message.sender,
            "to": list(message.to),
            "subject": message.subject,
            "text": message.text,
        }
        if message.html is not None:
            body["html"] = message.html
        response = self.http.post(
            f"{self.base_url}/emails",
            json=body,
            headers={
                "Authorization": f"Bearer {self._api_key}",
                "Idempotency-Key": idempotency_key,
                "Accept": "application/json",
            },
            timeout=self.timeout,
            raise_for_status=False,
        )
        data = _object(response.body)
        if 200 <= response.status < 300:
            message_id = data.get("id")
            if not isinstance(message_id, str) or not message_id:
                raise RetryableJobError(f"Resend answered {response.status} without an id")
            return SentEmail(self.name, message_id)
        name = str(data.get("name") or f"http_{response.status}")[:64]
        retry_after = parse_retry_after(response.headers.get("retry-after"))
        if retry_after is None:
            retry_after = parse_retry_after(response.headers.get("ratelimit-reset"))
        status = response.status
        if status == 429:
            if name in QUOTAS:
                raise RetryableJobError(f"Resend's {name}", retry_after=retry_after or QUOTA_RETRY_SECONDS)
            raise RetryableJobError(f"Resend rate limit ({name})", retry_after=retry_after)
        if status >= 500:
            raise RetryableJobError(f"Resend answered {status} ({name})", retry_after=retry_after)
        if status == 409:
            if name == "concurrent_idempotent_requests":  # the first request is still in flight
                raise RetryableJobError("Resend is still sending this key's first request", retry_after=1)
            raise PermanentJobError(
                f"Resend refused the idempotency key ({name}): it was used for another message",
                code="IDEMPOTENCY_CONFLICT",
            )
        if name in KEY_ERRORS or status == 401:
            raise EmailNotConfiguredError(f"Resend refused the API key ({status} {name})")
        raise EmailRejectedError(self.name, name, status)


def _object(body: bytes) -> dict[str, Any]:
    try:
        data = json.loads(body or b"{}")
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}
