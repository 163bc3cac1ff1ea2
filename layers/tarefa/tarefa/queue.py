"""The SQS message contract shared by the API, external producers and the worker."""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from tarefa.job import Job

SQS_MAX_DELAY_SECONDS = 900  # longer delays are held in DynamoDB and promoted by a schedule


class QueueMessage(BaseModel):
    """Body of a job message. Producers outside Tarefa send `type` and `payload` at least."""

    model_config = ConfigDict(populate_by_name=True, extra="ignore")

    type: str = Field(min_length=1, max_length=128)
    payload: Any = None
    job_id: str | None = Field(None, alias="jobId", min_length=1, max_length=128)
    user_id: str | None = Field(None, alias="userId", min_length=1, max_length=256)
    max_attempts: int | None = Field(None, alias="maxAttempts", ge=1, le=25)
    wake: int = Field(0, ge=0)  # the job's wake count when sent; an older one is stale

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
