"""The SQS message contract shared by the API, external producers and the worker."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from tarefa.job import Job

SQS_MAX_DELAY_SECONDS = 900  # longer delays are held in DynamoDB and promoted by a schedule
SQS_MAX_MESSAGE_BYTES = 262_144


class QueueMessage(BaseModel):
    """Body of a job message. Producers outside Tarefa send `type` and `payload` at least."""

    model_config = ConfigDict(populate_by_name=True, extra="ignore")

    type: str = Field(min_length=1, max_length=128)
    payload: Any = None
    job_id: str | None = Field(None, alias="jobId", min_length=1, max_length=128)
    user_id: str | None = Field(None, alias="userId", min_length=1, max_length=256)
    max_attempts: int | None = Field(None, alias="maxAttempts", ge=1, le=25)
    wake: int = Field(0, ge=0)  # the job's wake count when sent; an older one is stale
    # The rest of a new job, so a worker can record it if the API could not (sent before the
    # record is written): a job that exists is always on a queue, held, or finished.
    order_id: str | None = Field(None, alias="orderId", max_length=128)
    retry_delay_seconds: int | None = Field(None, alias="retryDelaySeconds", ge=0, le=43_200)
    created_at: datetime | None = Field(None, alias="createdAt")
    run_at: datetime | None = Field(None, alias="runAt")
    idempotency_key_id: str | None = Field(None, alias="idempotencyKeyId", max_length=200)
    idempotency_expires_at: datetime | None = Field(None, alias="idempotencyExpiresAt")
    idempotency_fingerprint: str | None = Field(None, alias="idempotencyFingerprint", max_length=64)
    # The sensitive payload fields, encrypted (tarefa.sensitive); the payload has "[redacted]"
    # in their place. Never their plaintext: the message outlives the job in a DLQ.
    sealed: dict[str, Any] | None = None
    # Where the job's ending is posted (tarefa.webhooks): kept when the worker records the job.
    callback_url: str | None = Field(None, alias="callbackUrl", max_length=2048)

    @classmethod
    def for_new_job(
        cls, job: Job, key_id: str | None, key_expires_at: datetime | None, fingerprint: str | None = None
    ) -> str:
        """The body of a job the API sends before it records it: everything the record needs."""
        body = cls(
            type=job.type,
            payload=job.payload,
            job_id=job.job_id,
            user_id=job.user_id,
            max_attempts=job.max_attempts,
            order_id=job.order_id,
            retry_delay_seconds=job.retry_delay_seconds,
            created_at=job.created_at,
            run_at=job.run_at,
            idempotency_key_id=key_id,
            idempotency_expires_at=key_expires_at,
            idempotency_fingerprint=fingerprint,
            sealed=job.sealed,
            callback_url=job.callback_url,
        )
        return body.model_dump_json(by_alias=True, exclude_none=True, exclude_defaults=True)

    @classmethod
    def for_job(cls, job: Job) -> str:
        """The body the API sends: the job lives in DynamoDB, so the payload is not repeated."""
        body: dict[str, object] = {"jobId": job.job_id, "type": job.type}
        if job.wake:
            body["wake"] = job.wake
        return json.dumps(body)


class PoisonMessageError(Exception):
    """A message no worker can ever process: it goes to the DLQ at once."""


def parse_message(body: str) -> QueueMessage:
    try:
        data = json.loads(body)
    except json.JSONDecodeError as exc:
        raise PoisonMessageError(f"Message body is not valid JSON: {exc.msg}") from None
    try:
        return QueueMessage.model_validate(data)
    except ValidationError as exc:
        fields = ", ".join(".".join(str(p) for p in e["loc"]) or "body" for e in exc.errors())
        raise PoisonMessageError(f"Message body is not a job message (check: {fields})") from None
