"""HTTP API: parse and authorise the request, call one core function, shape the response."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, TypeVar

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response
from aws_lambda_powertools.event_handler.exceptions import NotFoundError
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import BaseModel, ValidationError

from tarefa import errors
from tarefa.job import Priority
from tarefa.jobs import Caller, CancelRequest, EnqueueRequest, ListRequest, field_errors
from tarefa.wiring import container

if TYPE_CHECKING:
    from aws_lambda_powertools.event_handler.middlewares import NextMiddleware

logger = Logger()
metrics = Metrics()
app = APIGatewayHttpResolver()
# Job types (TAREFA_JOB_MODULES) load once per cold start: a broken module fails the start with
# its name in the error, never a request.
container().registry  # noqa: B018

MAX_BODY_BYTES = 256 * 1024
ADMIN_GROUP = "admin"

# The one place domain errors become status codes.
STATUS_OF: dict[type[errors.TarefaError], int] = {
    errors.MalformedRequestError: 400,
    errors.UnknownJobTypeError: 400,
    errors.UnauthorizedError: 401,
    errors.ForbiddenError: 403,
    errors.JobNotFoundError: 404,
    errors.QueueNotFoundError: 404,
    errors.InvalidTransitionError: 409,
    errors.IdempotencyKeyReusedError: 409,
    errors.PayloadTooLargeError: 413,
    errors.ValidationFailedError: 422,
    errors.RateLimitedError: 429,
    errors.QueueUnavailableError: 503,
    errors.RateLimiterUnavailableError: 503,
    errors.SessionsUnavailableError: 503,
}

Model = TypeVar("Model", bound=BaseModel)


def json_response(status: int, body: Any, headers: dict[str, str] | None = None) -> Response[str]:
    return Response(status, "application/json", json.dumps(body, separators=(",", ":")), headers)


def error_response(status: int, code: str, message: str, details: Any = None) -> Response[str]:
    error: dict[str, Any] = {"code": code, "message": message}
    if details:
        error["details"] = details
    return json_response(status, {"error": error})


def claims() -> dict[str, Any]:
    authorizer = app.current_event.request_context.authorizer
    return (authorizer.jwt_claim if authorizer else None) or {}


def caller() -> Caller:
    """The user the JWT authorizer (or the local stack, the same way) let through."""
    token = claims()
    subject = token.get("sub")
    if not subject:
        raise errors.UnauthorizedError("A valid bearer token is required")
    groups = token.get("cognito:groups", [])
    if isinstance(groups, str):  # HTTP APIs pass array claims as "[a b]"
        groups = groups.strip("[]").replace(",", " ").split()
    return Caller(user_id=str(subject), is_admin=ADMIN_GROUP in groups)


def admin() -> Caller:
    who = caller()
    if not who.is_admin:
        raise errors.ForbiddenError("This route is for admins")
    return who


def parse_body(model: type[Model], required: bool = True) -> Model:
    """The JSON body as `model`, strictly: JSON types as the document gives them (no `true` or
    `"3"` for an integer), UTF-8 only, and no NaN or Infinity (Python's json and pydantic accept
    them; JSON does not)."""
    import base64

    event = app.current_event
    body = event.body or ""
    try:  # API Gateway base64-encodes a body that is not UTF-8 text
        data = base64.b64decode(body, validate=True) if event.is_base64_encoded else body.encode()
    except ValueError:  # binascii.Error, UnicodeEncodeError (a lone surrogate), non-ASCII base64
        raise errors.MalformedRequestError("The body is not valid UTF-8") from None
    if len(data) > MAX_BODY_BYTES:
        raise errors.PayloadTooLargeError(f"The body is over {MAX_BODY_BYTES // 1024} KiB")
    try:
        raw = data.decode()
    except UnicodeDecodeError:
        raise errors.MalformedRequestError("The body is not valid UTF-8") from None
    if not raw.strip():
        if required:
            raise errors.MalformedRequestError("A JSON body is required")
        raw = "{}"
    if "NaN" in raw or "Infinity" in raw:  # rare: only then pay for a second parse

        def refuse(constant: str) -> Any:
            raise ValueError(f"{constant} is not JSON")

        try:
            json.loads(raw, parse_constant=refuse)
        except (json.JSONDecodeError, RecursionError):
            raise errors.MalformedRequestError("The body is not valid JSON") from None
        except ValueError:
            raise errors.MalformedRequestError(
                "The body is not valid JSON: NaN and Infinity are not JSON numbers"
            ) from None
    try:
        return model.model_validate_json(raw, strict=True)
    except ValidationError as exc:
        if any(e["type"] == "json_invalid" for e in exc.errors()):
            raise errors.MalformedRequestError("The body is not valid JSON") from None
        if any(e["type"] == "model_type" and not e["loc"] for e in exc.errors()):
            raise errors.MalformedRequestError("The body must be a JSON object") from None
        raise errors.ValidationFailedError("The request is not valid", field_errors(exc)) from None


def parse_query(model: type[Model]) -> Model:
    try:
        return model.model_validate(app.current_event.query_string_parameters or {})
    except ValidationError as exc:
        raise errors.ValidationFailedError("The query is not valid", field_errors(exc)) from None


def rate_limit(app: APIGatewayHttpResolver, next_middleware: NextMiddleware) -> Response[str]:
    """Per-route sliding-window limits (TAREFA_RATE_LIMITS, TAREFA_ENQUEUE_RATE_LIMIT) for the
    authenticated user, else the source IP API Gateway saw (never X-Forwarded-For)."""
    route = app.current_event.route_key
    limit = container().settings.route_limits().get(route)
    limiter = container().limiter
    if limit is None or limiter is None:
        return next_middleware(app)
    subject = claims().get("sub")
    identity = f"user:{subject}" if subject else f"ip:{app.current_event.request_context.http.source_ip}"
    decision = limiter.hit(route, identity, limit.rate, limit.fail_open)
    if decision.allowed:
        response = next_middleware(app)
    elif decision.degraded:
        response = error_response(
            503, errors.RateLimiterUnavailableError.code, "Rate limiting is unavailable; try again shortly"
        )
    else:
        response = error_response(
            429,
            errors.RateLimitedError.code,
            f"Rate limit of {limit.rate.limit} requests per {limit.rate.window_seconds} s reached; "
            f"retry in {decision.retry_after} s",
        )
    if not decision.degraded or not decision.allowed:
        response.headers.update(decision.headers())
    return response


app.use(middlewares=[rate_limit])


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
    body["cache"] = cache_health()
    return json_response(200 if healthy else 503, body)


def cache_health() -> dict[str, Any]:
    """The cache never decides health (requests fall back to the source): it is reported."""
    c = container()
    backend = c.cache_backend
    if backend is None:
        return {"backend": "none"}
    try:
        backend.ping()
        state = "ok"
    except Exception as exc:  # the breaker raises at once while the circuit is open
        state = f"degraded: {exc}"
    report: dict[str, Any] = {"backend": backend.name, "state": state, "circuit": backend.breaker.state}
    if c.cache is not None:
        stats = c.cache.stats
        report.update(hits=stats.hits, misses=stats.misses, errors=stats.errors, hitRate=stats.hit_rate)
    return report


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


@app.get("/job-types")
def list_job_types() -> Response[str]:
    caller()
    return json_response(200, {"items": [t.describe() for t in container().registry.types()]})


@app.get("/jobs")
def list_jobs() -> Response[str]:
    who = caller()
    request = parse_query(ListRequest)
    return json_response(200, container().jobs.list(who, request).model_dump(by_alias=True))


@app.get("/jobs/<job_id>")
def get_job(job_id: str) -> Response[str]:
    found = container().jobs.read(caller(), job_id)
    return json_response(200, found.value.public(), {"X-Cache": "HIT" if found.hit else "MISS"})


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
    from tarefa.maintenance import CleanupRequest  # admin routes: kept off the enqueue cold start

    request = parse_body(CleanupRequest, required=False)
    return json_response(200, {"deleted": container().maintenance.cleanup(request.older_than_seconds)})


@app.post("/maintenance/recover")
def recover() -> Response[str]:
    admin()
    from tarefa.maintenance import RecoverRequest

    request = parse_body(RecoverRequest, required=False)
    return json_response(200, {"recovered": container().maintenance.recover(request.stuck_after_seconds)})


# -- documentation ---------------------------------------------------------------------------------
@app.get("/openapi.json")
def openapi_document() -> Response[str]:
    caller()
    from tarefa.openapi import document

    stage = app.current_event.request_context.stage
    registry = container().registry
    names = [name for t in registry.types() for name in (t.name, *t.aliases)]
    return json_response(200, document("/" if stage in (None, "$default") else f"/{stage}", names))


# The pages hold an admin's token in memory: no framing, no sniffing, no referrer, and scripts,
# styles and calls only from this origin (their scripts and styles are inline).
PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
        "connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; "
        "frame-ancestors 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


@app.get("/docs")
def docs_page() -> Response[str]:
    """A static page with no data: it asks for a token and calls the API with it."""
    from tarefa.openapi import DOCS_PAGE

    return Response(200, "text/html; charset=utf-8", DOCS_PAGE, PAGE_HEADERS)


@app.get("/dashboard")
def dashboard_page() -> Response[str]:
    """A static page with no data: it asks for a token and calls the API with it."""
    from tarefa.dashboard import PAGE

    return Response(200, "text/html; charset=utf-8", PAGE, PAGE_HEADERS)


# -- queues (admin) -------------------------------------------------------------------------------
def priority_of(name: str) -> Priority:
    try:
        return Priority(name.upper())
    except ValueError:
        raise errors.QueueNotFoundError(name) from None


@app.get("/queues")
def list_queues() -> Response[str]:
    admin()
    overview = container().queues.overview()
    return json_response(200, overview.model_dump(mode="json", by_alias=True))


@app.post("/queues/<priority>/pause")
def pause_queue(priority: str) -> Response[str]:
    admin()
    view = container().queues.pause(priority_of(priority))
    return json_response(200, view.model_dump(mode="json", by_alias=True))


@app.post("/queues/<priority>/resume")
def resume_queue(priority: str) -> Response[str]:
    admin()
    view = container().queues.resume(priority_of(priority))
    return json_response(200, view.model_dump(mode="json", by_alias=True))


# -- dead-letter queues (admin) --------------------------------------------------------------------
@app.get("/queues/<priority>/dead-letters")
def list_dead_letters(priority: str) -> Response[str]:
    admin()
    queue = priority_of(priority)
    from tarefa.deadletters import DeadLetterQuery

    query = parse_query(DeadLetterQuery)
    entries = container().dead_letters.browse(queue, query.limit)
    return json_response(200, {"items": [e.model_dump(mode="json", by_alias=True) for e in entries]})


@app.post("/queues/<priority>/dead-letters/redrive")
def redrive_dead_letters(priority: str) -> Response[str]:
    admin()
    queue = priority_of(priority)
    from tarefa.deadletters import RedriveRequest

    report = container().dead_letters.redrive(queue, parse_body(RedriveRequest))
    return json_response(200, report.model_dump(mode="json", by_alias=True))


@app.post("/queues/<priority>/dead-letters/purge")
def purge_dead_letters(priority: str) -> Response[str]:
    admin()
    queue = priority_of(priority)
    from tarefa.deadletters import PurgeRequest

    report = container().dead_letters.purge(queue, parse_body(PurgeRequest))
    return json_response(200, report.model_dump(mode="json", by_alias=True))


@app.exception_handler(errors.TarefaError)  # type: ignore[untyped-decorator]
def domain_error(exc: errors.TarefaError) -> Response[str]:
    status = next((s for cls, s in STATUS_OF.items() if isinstance(exc, cls)), 500)
    response = error_response(status, exc.code, exc.message, exc.details)
    if status == 401:
        response.headers["WWW-Authenticate"] = "Bearer"
    return response


@app.not_found
def not_found(exc: NotFoundError) -> Response[str]:
    return error_response(404, "ROUTE_NOT_FOUND", "No such route")


@app.exception_handler(Exception)  # type: ignore[untyped-decorator]
def unexpected(exc: Exception) -> Response[str]:
    if _is_aws_outage(exc):
        logger.warning("an AWS dependency failed", extra={"error": type(exc).__name__})
        response = error_response(
            503, "SERVICE_UNAVAILABLE", "A dependency is unavailable for a moment; retry the request"
        )
        response.headers["Retry-After"] = "1"
        return response
    logger.exception("unhandled error")
    return error_response(500, "INTERNAL", "Something went wrong on our side; the request was logged")


def _is_aws_outage(exc: Exception) -> bool:
    """Throttling, 5xx, timeouts and dropped connections of an AWS call: worth a retry."""
    from botocore.exceptions import BotoCoreError, ClientError, ConnectionError, HTTPClientError

    if isinstance(exc, ConnectionError | HTTPClientError):
        return True
    if isinstance(exc, ClientError):
        code = exc.response.get("Error", {}).get("Code", "")
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        return status >= 500 or "Throttl" in code or code in RETRYABLE_AWS_CODES
    return isinstance(exc, BotoCoreError) and "timeout" in type(exc).__name__.lower()


RETRYABLE_AWS_CODES = frozenset(
    {
        "ProvisionedThroughputExceededException",
        "RequestLimitExceeded",
        "ServiceUnavailable",
        "InternalServerError",
        "InternalFailure",
        "TransactionConflictException",
    }
)


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
