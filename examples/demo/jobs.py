"""`demo.greet`: greets someone in a few steps, reporting progress, with its one side effect
(composing the greeting) recorded once so a retried attempt reuses it.

Only pydantic and the public `tarefa` face are imported here: this module loads on the API's
cold start to validate payloads, so anything heavy belongs inside the handler.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from tarefa import JobContext, JobPolicy, PermanentJobError, Priority, RetryableJobError, job_type

GREETINGS = {"en": "Hello", "pt": "Olá", "es": "Hola"}


class Greet(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    name: str = Field(min_length=1, max_length=100)
    language: Literal["en", "pt", "es"] = "en"
    steps: int = Field(3, ge=1, le=10, description="progress reports before the greeting")
    fail_first_attempts: int = Field(
        0, alias="failFirstAttempts", ge=0, le=5, description="demo: fail this many attempts first"
    )


class Greeting(BaseModel):
    greeting: str
    greeting_id: str = Field(serialization_alias="greetingId")
    attempt: int


@job_type(
    "demo.greet",
    policy=JobPolicy(priority=Priority.LOW, max_attempts=4, backoff=(1, 2, 4), timeout_seconds=30),
    aliases=["DEMO_GREET"],
)
def greet(payload: Greet, ctx: JobContext) -> Greeting:
    if payload.name.strip().lower() == "nobody":
        raise PermanentJobError("there is nobody to greet", code="NOBODY")

    def compose() -> dict[str, str]:
        # The side effect a real job would send to a provider with ctx.step_key("compose")
        # as its idempotency key; recorded once, so a later attempt returns the same greeting.
        ctx.logger.info("composing a greeting")
        return {"text": f"{GREETINGS[payload.language]}, {payload.name}!", "id": ctx.step_key("compose")}

    composed = ctx.once("compose", compose)
    for done in range(1, payload.steps + 1):
        ctx.progress(100 * done // (payload.steps + 1), f"step {done} of {payload.steps}")
    if ctx.attempt <= payload.fail_first_attempts:
        raise RetryableJobError(f"planned failure on attempt {ctx.attempt}", retry_after=1)
    ctx.progress(100, "greeted")
    return Greeting(greeting=composed["text"], greeting_id=composed["id"], attempt=ctx.attempt)
