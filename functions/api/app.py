"""HTTP API: parse and authorise the request, call one core function, shape the response."""

from __future__ import annotations

import json
from typing import Any, TypeVar

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response
from aws_lambda_powertools.event_handler.exceptions import NotFoundError
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import BaseModel, Field, ValidationError

from tarefa import errors
from tarefa.jobs import Caller, CancelRequest, EnqueueRequest, ListRequest, field_errors
from tarefa.wiring import container

logger = Logger()
metrics = Metrics()
app = APIGatewayHttpResolver()

MAX_BODY_BYTES = 256 * 1024
ADMIN_GROUP = "admin"

# The one place domain errors become status codes.
STATUS_OF: dict[type[errors.TarefaError], int] = {
    errors.MalformedRequestError: 400,
    errors.UnknownJobTypeError: 400,
    errors.UnauthorizedError: 401,
    errors.ForbiddenError: 403,
    errors.JobNotFoundError: 404,
    errors.InvalidTransitionError: 409,
    errors.PayloadTooLargeError: 413,
    errors.ValidationFailedError: 422,
    errors.QueueUnavailableError: 503,
}

Model = TypeVar("Model", bound=BaseModel)


class CleanupRequest(BaseModel):
    older_than_seconds: int | None = Field(None, alias="olderThanSeconds", ge=0, le=10 * 365 * 86_400)


class RecoverRequest(BaseModel):
    stuck_after_seconds: int | None = Field(None, alias="stuckAfterSeconds", ge=1, le=7 * 86_400)


def json_response(status: int, body: Any, headers: dict[str, str] | None = None) -> Response[str]:
    return Response(status, "application/json", json.dumps(body, separators=(",", ":")), headers)


def error_response(status: int, code: str, message: str, details: Any = None) -> Response[str]:
    error: dict[str, Any] = {"code": code, "message": message}
    if details:
        error["details"] = details
    return json_response(status, {"error": error})


def caller() -> Caller:
    """The user the JWT authorizer (or the local stack, the same way) let through."""
    authorizer = app.current_event.request_context.authorizer
    claims = authorizer.jwt_claim if authorizer else None
    subject = (claims or {}).get("sub")
    if not subject:
        raise errors.UnauthorizedError("A valid bearer token is required")
    groups = claims.get("cognito:groups", []) if claims else []
    if isinstance(groups, str):  # HTTP APIs pass array claims as "[a b]"
        groups = groups.strip("[]").replace(",", " ").split()
    return Caller(user_id=str(subject), is_admin=ADMIN_GROUP in groups)


def admin() -> Caller:
    who = caller()
    if not who.is_admin:
        raise errors.ForbiddenError("This route is for admins")
    return who


def parse_body(model: type[Model], required: bool = True) -> Model:
    raw = app.current_event.decoded_body or ""
    if len(raw.encode()) > MAX_BODY_BYTES:
        raise errors.PayloadTooLargeError(f"The body is over {MAX_BODY_BYTES // 1024} KiB")
    if not raw.strip():
        if required:
            raise errors.MalformedRequestError("A JSON body is required")
        raw = "{}"
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        if any(e["type"] == "json_invalid" for e in exc.errors()):
            raise errors.MalformedRequestError("The body is not valid JSON") from None
        if any(e["type"] == "model_type" and not e["loc"] for e in exc.errors()):
            raise errors.MalformedRequestError("The body must be a JSON object") from None
        raise errors.ValidationFailedError("The request is not valid", field_errors(exc)) from None


@app.get("/health")
def health() -> Response[str]:
    checks: dict[str, str] = {}
    for name, ping in (("dynamodb", container().store.ping), ("sqs", container().queue.ping)):
        try:
            ping()
            checks[name] = "ok"
        except Exception as exc:
            logger.warning("health check failed", extra={"dependency": name, "error": type(exc).__name__})
            checks[name] = f"unavailable: {type(exc).__name__}"
    healthy = all(v == "ok" for v in checks.values())
    failed = [name for name, v in checks.items() if v != "ok"]
    body: dict[str, Any] = {"status": "ok" if healthy else "unavailable", "checks": checks}
    if failed:
        body["failed"] = failed
    return json_response(200 if healthy else 503, body)


@app.post("/jobs")
def enqueue() -> Response[str]:
    who = caller()
    request = parse_body(EnqueueRequest)
    header_key = app.current_event.headers.get("idempotency-key")
    if header_key and not request.idempotency_key:
        try:  # the same limits as the body field
            request = EnqueueRequest.model_validate(
                {**request.model_dump(by_alias=True), "idempotencyKey": header_key}
            )
        except ValidationError as exc:
            raise errors.ValidationFailedError(
                "The Idempotency-Key header is not valid", field_errors(exc)
            ) from None
    result = container().jobs.enqueue(who, request)
    return json_response(202 if result.created else 200, result.job.public())


@app.get("/jobs")
def list_jobs() -> Response[str]:
    who = caller()
    try:
        request = ListRequest.model_validate(app.current_event.query_string_parameters or {})
    except ValidationError as exc:
        raise errors.ValidationFailedError("The query is not valid", field_errors(exc)) from None
    return json_response(200, container().jobs.list(who, request).model_dump(by_alias=True))


@app.get("/jobs/<job_id>")
def get_job(job_id: str) -> Response[str]:
    return json_response(200, container().jobs.get(caller(), job_id).public())


@app.post("/jobs/<job_id>/cancel")
def cancel_job(job_id: str) -> Response[str]:
    who = caller()
    request = parse_body(CancelRequest, required=False)
    return json_response(200, container().jobs.cancel(who, job_id, request).public())


@app.post("/jobs/<job_id>/retry")
def retry_job(job_id: str) -> Response[str]:
    return json_response(202, container().jobs.retry(caller(), job_id).public())


@app.post("/maintenance/cleanup")
def cleanup() -> Response[str]:
    admin()
    request = parse_body(CleanupRequest, required=False)
    return json_response(200, {"deleted": container().maintenance.cleanup(request.older_than_seconds)})


@app.post("/maintenance/recover")
def recover() -> Response[str]:
    admin()
    request = parse_body(RecoverRequest, required=False)
    return json_response(200, {"recovered": container().maintenance.recover(request.stuck_after_seconds)})


@app.exception_handler(errors.TarefaError)  # type: ignore[untyped-decorator]
def domain_error(exc: errors.TarefaError) -> Response[str]:
    status = next((s for cls, s in STATUS_OF.items() if isinstance(exc, cls)), 500)
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    response = error_response(status, exc.code, exc.message, exc.details)
    if headers:
        response.headers.update(headers)
    return response


@app.not_found
def not_found(exc: NotFoundError) -> Response[str]:
    return error_response(404, "ROUTE_NOT_FOUND", "No such route")


@app.exception_handler(Exception)  # type: ignore[untyped-decorator]
def unexpected(exc: Exception) -> Response[str]:
    logger.exception("unhandled error")
    return error_response(500, "INTERNAL", "Something went wrong on our side; the request was logged")


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
