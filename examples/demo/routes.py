"""The demo workload's own HTTP routes, served by a function of their own (functions/demo) behind
the same API, with the engine's error shape, limits and outage answers (`tarefa.api`).

- `GET /demo/hello/{name}`: public (no token), limited per source address: how a workload
  serves callers without a JWT (a guest's page, a provider's webhook checked by signature).
- `POST /demo/greetings`: with a JWT; enqueues `demo.greet` for the caller.
"""

from __future__ import annotations

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.router import APIGatewayHttpRouter
from pydantic import BaseModel, ConfigDict, Field

from tarefa import api

router = APIGatewayHttpRouter()  # type: ignore[no-untyped-call]  # Powertools leaves __init__ untyped
HELLO = "GET /demo/hello/{name}"
api.declare_limit(HELLO, "30/60")  # per source address: nobody here has a token


class GreetingRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=100)
    language: str = Field("en", pattern="^(en|pt|es)$")


class GreetingAccepted(BaseModel):
    job_id: str = Field(serialization_alias="jobId")
    status: str


class Hello(BaseModel):
    greeting: str


@router.get("/demo/hello/<name>")
def hello(name: str) -> Response[str]:
    if not 1 <= len(name) <= 100:
        return api.error_response(422, "VALIDATION_ERROR", "name must be 1 to 100 characters")
    return api.json_response(200, Hello(greeting=f"Hello, {name}!").model_dump())


@router.post("/demo/greetings")
def greet() -> Response[str]:
    who = api.caller(router.current_event)
    request = api.parse_body(router.current_event, GreetingRequest)
    enqueued = api.enqueue(who, "demo.greet", request.model_dump())
    accepted = GreetingAccepted(job_id=enqueued.job.job_id, status=enqueued.job.status)
    return api.json_response(202, accepted.model_dump(by_alias=True))
