"""`vault.register`: a guest's password travels through the queue as a sensitive field; the
job hashes it. Flags in the payload make an attempt fail in the ways the tests need, each time
quoting the password, so that the engine has something to scrub."""

from __future__ import annotations

import hashlib
import logging
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from tarefa import JobContext, JobPolicy, PermanentJobError, RetryableJobError, job_type

SEEN: list[tuple[str, int, str]] = []  # (job id, attempt, password) as each handler call saw it


class Registration(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    email: str = Field(min_length=3, max_length=200)
    password: str = Field(min_length=8, max_length=200)
    fail_first: str | None = Field(
        None, alias="failFirst", description="retryable | crash | permanent: how attempt 1 ends"
    )

    @field_validator("password")
    @classmethod
    def _not_an_email(cls, value: str) -> str:
        if "@" in value:  # a validator that quotes its input, as many do
            raise ValueError(f"the password {value!r} looks like an e-mail address")
        return value


def digest(password: str, email: str) -> str:
    return hashlib.pbkdf2_hmac("sha256", password.encode(), email.encode(), 1_000).hex()


@job_type(
    "vault.register",
    policy=JobPolicy(max_attempts=3, backoff=(5,), sensitive=("password",)),
)
def register(payload: Registration, ctx: JobContext) -> dict[str, Any]:
    SEEN.append((ctx.job_id, ctx.attempt, payload.password))
    # A workload that logs the value (a bug): the engine scrubs its log records.
    ctx.logger.info(
        "registering %s with %s", payload.email, payload.password, extra={"secret": payload.password}
    )
    logging.getLogger(__name__).warning("plain logging sees %s", payload.password)
    ctx.progress(50, f"hashing the password {payload.password}")
    if ctx.attempt == 1 and payload.fail_first == "retryable":
        raise RetryableJobError(f"the directory refused {payload.password} for now", retry_after=5)
    if ctx.attempt == 1 and payload.fail_first == "crash":
        raise ValueError(f"unexpected character in {payload.password}")
    if payload.fail_first == "permanent":
        raise PermanentJobError(f"{payload.password} is on the breach list", code="BREACHED_PASSWORD")
    return {"email": payload.email, "hash": digest(payload.password, payload.email), "echo": payload.password}
