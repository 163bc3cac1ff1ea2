"""The HTTP face every route handler shares, the engine's and a workload's: one error shape,
one status per domain error, strict body parsing, the caller from the JWT authorizer's claims,
per-route rate limits, and AWS outages answered as 503 with Retry-After.

`new_app()` gives a Powertools resolver with all of it installed; a workload's function includes
its own Router in it (`app.include_router(router)`), so its routes behave like the engine's.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

from aws_lambda_powertools import Logger
from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response
from aws_lambda_powertools.event_handler.exceptions import NotFoundError
from pydantic import BaseModel, ValidationError

from tarefa import errors
from tarefa.jobs import Caller, Enqueued, EnqueueRequest, field_errors
from tarefa.ratelimit import Decision, Rate, RouteLimit
from tarefa.wiring import container

if TYPE_CHECKING:
    from aws_lambda_powertools.event_handler.middlewares import NextMiddleware
    from aws_lambda_powertools.utilities.data_classes import APIGatewayProxyEventV2

    from tarefa.cache import Cache
    from tarefa.job import Job
    from tarefa.ratelimit import RateLimiter
    from tarefa.sessions import SessionStore

logger = Logger(child=True)

MAX_BODY_BYTES = 256 * 1024
JSON_WHITESPACE = " \t\n\r"  # RFC 8259's four; Python's isspace() knows many more
ADMIN_GROUP = "admin"
# Limits a workload gives its own routes (a public route limited by address); TAREFA_RATE_LIMITS
# (the template's RateLimits) overrides them per route.
DEFAULT_LIMITS: dict[str, RouteLimit] = {}


def declare_limit(route_key: str, rate: str, fail_open: bool = True) -> None:
    """A default limit for a route ("GET /demo/hello/{name}", "30/60"): per user with a token,
    else per source address."""
    DEFAULT_LIMITS[route_key] = RouteLimit(rate=Rate.parse(rate), fail_open=fail_open)


def enqueue(
    who: Caller,
    job_type: str,
    payload: Any,
    *,
    idempotency_key: str | None = None,
    priority: str | None = None,
    delay_seconds: int = 0,
    order_id: str | None = None,
    callback_url: str | None = None,
) -> Enqueued:
    """Enqueue a job from a workload's route, exactly as POST /jobs does for `who`;
    `callback_url` (one of `who`'s webhook subscriptions) gets the job's ending."""
    request = EnqueueRequest.model_validate(
        {
            "type": job_type,
            "payload": payload,
            "idempotencyKey": idempotency_key,
            "priority": priority,
            "delaySeconds": delay_seconds,
            "orderId": order_id,
            "callbackUrl": callback_url,
        }
    )
    return container().jobs.enqueue(who, request)


def publish(
    owner: str,
    event: str,
    data: dict[str, Any],
    *,
    key: str,
    url: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> list[str]:
    """Deliver `event` to the owner's active subscriptions whose events include it (or "*"), and, when `url` is given,
    to the owner's subscription with exactly that URL even if its events do not list it (deduplicated). Each delivery is
    a delivery job owned by `owner`, idempotent on (subscription, key): a repeat with the same key makes no second job.
    Returns the delivery job ids. `headers`: extra headers, names must start with "X-Tarefa-" (e.g. X-Tarefa-Session)."""
    return container().webhooks.publish(owner, event, data, key=key, url=url, headers=headers)


def subscription_exists(owner: str, url: str) -> bool:
    """Whether `url` is one of the owner's active webhook subscriptions (to validate a webhookUrl)."""
    return container().webhooks.subscription_exists(owner, url)


def secret(name: str, transform: str | None = None) -> Any:
    """A Secrets Manager secret for a route (a provider's webhook secret), as a job's
    `ctx.secret` reads it: the stage's prefix, cached 5 minutes."""
    return container().secret(name, transform)


def as_user(user_id: str) -> Caller:
    """Who owns the jobs a public route enqueues for nobody in particular (a provider's
    webhook, a schedule acting for a subscriber); only they and admins see those jobs."""
    return Caller(user_id=user_id)


def wake(job_id: str) -> bool:
    """Run a waiting job now (see `JobContext.wake`); False when it is not waiting."""
    return container().jobs.run_now(job_id)


def read_job(job_id: str) -> Job | None:
    """A job as its poller reads it (finished jobs from the cache), for a public route that
    authorized the reader itself (a guest's status token): no owner check here."""
    try:
        return container().jobs.read(Caller(user_id="tarefa:route", is_admin=True), job_id).value
    except errors.JobNotFoundError:
        return None


def cache() -> Cache | None:
    """The platform cache for a route (None when the deployment has none): never the source of
    truth, an outage is a miss."""
    return container().cache


def limiter() -> RateLimiter | None:
    """The rate limiter (None when the deployment has no cache backend)."""
    return container().limiter


def sessions() -> SessionStore:
    """The platform's sessions (tarefa.sessions): 256-bit tokens stored as SHA-256, sliding
    expiry; SessionsUnavailableError (503) when the deployment has no cache backend."""
    store = container().sessions
    if store is None:
        raise errors.SessionsUnavailableError("Sessions need a cache backend (CACHE_BACKEND)")
    return store


def limit(scope: str, identity: str, rate: Rate | str, fail_open: bool = True) -> Decision | None:
    """Count one hit of a limit a route keeps itself, per any key it chooses (a phone number's
    hash, an event), in the same sliding windows as the route limits; None when the deployment
    has no limiter. A refused decision is answered with `limited(decision)`."""
    found = container().limiter
    if found is None:
        return None
    return found.hit(scope, identity, rate if isinstance(rate, Rate) else Rate.parse(rate), fail_open)


def limited(decision: Decision) -> Response[str]:
    """The answer to a refused `limit`, as the route limits answer: 429 RATE_LIMITED (503 when
    the limiter is down and the limit fails closed), with X-RateLimit-* and Retry-After."""
    if decision.degraded:
        response = error_response(
            503, errors.RateLimiterUnavailableError.code, "Rate limiting is unavailable; try again shortly"
        )
    else:
        response = error_response(
            429, errors.RateLimitedError.code, f"Rate limit reached; retry in {decision.retry_after} s"
        )
    response.headers.update(decision.headers())
    return response


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


def claims(event: APIGatewayProxyEventV2) -> dict[str, Any]:
    authorizer = event.request_context.authorizer
    return (authorizer.jwt_claim if authorizer else None) or {}


def caller(event: APIGatewayProxyEventV2) -> Caller:
    """The user the JWT authorizer (or the local stack, the same way) let through."""
    token = claims(event)
    subject = token.get("sub")
    if not subject:
        raise errors.UnauthorizedError("A valid bearer token is required")
    groups = token.get("cognito:groups", [])
    if isinstance(groups, str):  # HTTP APIs pass array claims as "[a b]"
        groups = groups.strip("[]").replace(",", " ").split()
    return Caller(user_id=str(subject), is_admin=ADMIN_GROUP in groups)


def admin(event: APIGatewayProxyEventV2) -> Caller:
    who = caller(event)
    if not who.is_admin:
        raise errors.ForbiddenError("This route is for admins")
    return who


def source_ip(event: APIGatewayProxyEventV2) -> str:
    """The client's address as API Gateway saw it: never a header the caller controls."""
    return str(event.request_context.http.source_ip)


def parse_body(
    event: APIGatewayProxyEventV2, model: type[Model], required: bool = True, max_bytes: int = MAX_BODY_BYTES
) -> Model:
    """The JSON body as `model`, strictly: JSON types as the document gives them (no `true` or
    `"3"` for an integer), UTF-8 only, and no NaN or Infinity (Python's json and pydantic accept
    them; JSON does not)."""
    import base64

    body = event.body or ""
    try:  # API Gateway base64-encodes a body that is not UTF-8 text
        data = base64.b64decode(body, validate=True) if event.is_base64_encoded else body.encode()
    except ValueError:  # binascii.Error, UnicodeEncodeError (a lone surrogate), non-ASCII base64
        raise errors.MalformedRequestError("The body is not valid UTF-8") from None
    if len(data) > max_bytes:
        raise errors.PayloadTooLargeError(f"The body is over {max_bytes // 1024} KiB")
    try:
        raw = data.decode()
    except UnicodeDecodeError:
        raise errors.MalformedRequestError("The body is not valid UTF-8") from None
    if not raw.strip(JSON_WHITESPACE):  # str.strip() would also take "\x1f" for blank
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
    return _validated(model, raw)


def parse_item(model: type[Model], value: Any) -> Model:
    """One item of a batch body (already parsed JSON) as `model`, as strictly as `parse_body`
    reads a body, with the same errors: what a single request with that body would answer."""
    return _validated(model, json.dumps(value))


def _validated(model: type[Model], raw: str) -> Model:
    try:
        return model.model_validate_json(raw, strict=True)
    except ValidationError as exc:
        if any(e["type"] == "json_invalid" for e in exc.errors()):
            raise errors.MalformedRequestError("The body is not valid JSON") from None
        if any(e["type"] == "model_type" and not e["loc"] for e in exc.errors()):
            raise errors.MalformedRequestError("The body must be a JSON object") from None
        raise errors.ValidationFailedError("The request is not valid", field_errors(exc)) from None


def parse_query(event: APIGatewayProxyEventV2, model: type[Model]) -> Model:
    try:
        return model.model_validate(event.query_string_parameters or {})
    except ValidationError as exc:
        raise errors.ValidationFailedError("The query is not valid", field_errors(exc)) from None


def rate_limit(app: APIGatewayHttpResolver, next_middleware: NextMiddleware) -> Response[str]:
    """Per-route sliding-window limits (TAREFA_RATE_LIMITS, TAREFA_ENQUEUE_RATE_LIMIT) for the
    authenticated user, else the source IP API Gateway saw (never X-Forwarded-For)."""
    return charged(app, app.current_event.route_key, 1, lambda: next_middleware(app))


def charged(
    app: APIGatewayHttpResolver, route: str, cost: int, handle: Callable[[], Response[str]]
) -> Response[str]:
    """`handle()` if `cost` hits fit in `route`'s limit for the caller, with the X-RateLimit-*
    headers; else 429 (503 when the limiter is down and the limit fails closed) and `handle` is
    not called. POST /jobs/batch counts its jobs in the window of POST /jobs this way."""
    limit = container().settings.route_limits().get(route) or DEFAULT_LIMITS.get(route)
    limiter = container().limiter
    if limit is None or limiter is None:
        return handle()
    subject = claims(app.current_event).get("sub")
    identity = f"user:{subject}" if subject else f"ip:{app.current_event.request_context.http.source_ip}"
    decision = limiter.hit(route, identity, limit.rate, limit.fail_open, cost, lease=True)
    if decision.allowed:
        response = handle()
    elif decision.degraded:
        response = error_response(
            503, errors.RateLimiterUnavailableError.code, "Rate limiting is unavailable; try again shortly"
        )
    elif cost == 1:
        response = error_response(
            429,
            errors.RateLimitedError.code,
            f"Rate limit of {limit.rate.limit} requests per {limit.rate.window_seconds} s reached; "
            f"retry in {decision.retry_after} s",
        )
    else:
        response = error_response(
            429,
            errors.RateLimitedError.code,
            f"Rate limit of {limit.rate.limit} jobs per {limit.rate.window_seconds} s: this batch "
            f"counts {cost} and {decision.remaining} are left; nothing was enqueued, retry in "
            f"{decision.retry_after} s (or send fewer)",
        )
    if not decision.degraded or not decision.allowed:
        response.headers.update(decision.headers())
    return response


def domain_error(exc: errors.TarefaError) -> Response[str]:
    status = _status_of(exc)
    response = error_response(status, exc.code, exc.message, exc.details)
    if status == 401:
        response.headers["WWW-Authenticate"] = "Bearer"
    return response


def _status_of(exc: errors.TarefaError) -> int:
    if isinstance(exc, errors.Refusal):
        return exc.status
    return next((s for cls, s in STATUS_OF.items() if isinstance(exc, cls)), 500)


def error_object(exc: Exception) -> tuple[int, dict[str, Any]]:
    """The status and `error` object a route answers `exc` with (a batch item's error): a
    domain error's, an AWS outage's 503 SERVICE_UNAVAILABLE, or else 500 INTERNAL (logged)."""
    if isinstance(exc, errors.TarefaError):
        error: dict[str, Any] = {"code": exc.code, "message": exc.message}
        if exc.details:
            error["details"] = exc.details
        return _status_of(exc), error
    if _is_aws_outage(exc):
        logger.warning("an AWS dependency failed", extra={"error": type(exc).__name__})
        return 503, {"code": "SERVICE_UNAVAILABLE", "message": OUTAGE_MESSAGE}
    logger.error("unhandled error", exc_info=exc)
    return 500, {"code": "INTERNAL", "message": INTERNAL_MESSAGE}


def not_found(exc: NotFoundError) -> Response[str]:
    return error_response(404, "ROUTE_NOT_FOUND", "No such route")


OUTAGE_MESSAGE = "A dependency is unavailable for a moment; retry the request"
INTERNAL_MESSAGE = "Something went wrong on our side; the request was logged"


def unexpected(exc: Exception) -> Response[str]:
    if _is_aws_outage(exc):
        logger.warning("an AWS dependency failed", extra={"error": type(exc).__name__})
        response = error_response(503, "SERVICE_UNAVAILABLE", OUTAGE_MESSAGE)
        response.headers["Retry-After"] = "1"
        return response
    logger.exception("unhandled error")
    return error_response(500, "INTERNAL", INTERNAL_MESSAGE)


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


def new_app() -> APIGatewayHttpResolver:
    """A resolver with the rate limits, the error shape and the outage answers installed."""
    app = APIGatewayHttpResolver()
    app.use(middlewares=[rate_limit])
    app.exception_handler(errors.TarefaError)(domain_error)
    app.not_found(not_found)
    app.exception_handler(Exception)(unexpected)
    return app
