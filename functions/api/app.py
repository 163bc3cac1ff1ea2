"""HTTP API: parse and authorise the request, call one core function, shape the response."""

from __future__ import annotations

from typing import Any, TypeVar

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import BaseModel, ValidationError

from tarefa import api, errors
from tarefa.api import json_response
from tarefa.job import Priority
from tarefa.jobs import (
    BatchEnqueueRequest,
    Caller,
    CancelRequest,
    Enqueued,
    EnqueueRequest,
    ListRequest,
    field_errors,
)
from tarefa.wiring import container

Model = TypeVar("Model", bound=BaseModel)
BATCH_MAX_BODY_BYTES = 1024 * 1024  # 100 jobs of up to 10 KiB each (POST /jobs: 256 KiB)

logger = Logger()
metrics = Metrics()
app = api.new_app()
# Job types (TAREFA_JOB_MODULES) load once per cold start: a broken module fails the start with
# its name in the error, never a request.
container().registry  # noqa: B018


def caller() -> Caller:
    return api.caller(app.current_event)


def admin() -> Caller:
    return api.admin(app.current_event)


def parse_body(model: type[Model], required: bool = True) -> Model:
    return api.parse_body(app.current_event, model, required)


def parse_query(model: type[Model]) -> Model:
    return api.parse_query(app.current_event, model)


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


@app.post("/jobs/batch")
def enqueue_batch() -> Response[str]:
    """Up to 100 jobs, each answered as POST /jobs would answer it alone; they count as that
    many requests in POST /jobs's rate limit (all or none)."""
    who = caller()
    batch = api.parse_body(app.current_event, BatchEnqueueRequest, max_bytes=BATCH_MAX_BODY_BYTES)
    return api.charged(app, "POST /jobs", len(batch.jobs), lambda: _enqueue_batch(who, batch))


def _enqueue_batch(who: Caller, batch: BatchEnqueueRequest) -> Response[str]:
    parsed: list[EnqueueRequest | Exception] = []
    for item in batch.jobs:
        try:
            parsed.append(api.parse_item(EnqueueRequest, item))
        except errors.TarefaError as exc:
            parsed.append(exc)
    outcomes: dict[int, Enqueued | Exception] = {
        i: r for i, r in enumerate(parsed) if isinstance(r, Exception)
    }
    valid = [(i, r) for i, r in enumerate(parsed) if isinstance(r, EnqueueRequest)]
    enqueued = container().jobs.enqueue_many(who, [r for _, r in valid])
    outcomes.update(zip((i for i, _ in valid), enqueued, strict=True))
    items: list[dict[str, Any]] = []
    for i in range(len(parsed)):
        outcome = outcomes[i]
        if isinstance(outcome, Enqueued):
            items.append({"index": i, "job": outcome.job.public(), "created": outcome.created})
        else:
            items.append({"index": i, "error": api.error_object(outcome)[1]})
    return json_response(202, {"items": items})


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


# -- bulk operations and user schedules (tarefa/bulk.py, tarefa/schedules.py) ---------------------
@app.post("/jobs/bulk/cancel")
def bulk_cancel() -> Response[str]:
    return _bulk("cancel")


@app.post("/jobs/bulk/retry")
def bulk_retry() -> Response[str]:
    return _bulk("retry")


def _bulk(action: str) -> Response[str]:
    from tarefa.bulk import BulkAction, BulkRequest

    who = caller()
    request = parse_body(BulkRequest, required=False)
    answer = container().bulk.start(who, BulkAction(action), request)
    return json_response(200 if request.dry_run else 202, answer)


@app.get("/jobs/bulk/<operation_id>")
def bulk_operation(operation_id: str) -> Response[str]:
    from tarefa.schedules import OwnerQuery

    who = caller()
    return json_response(200, container().bulk.read(who, operation_id, parse_query(OwnerQuery).owner))


@app.post("/schedules")
def create_schedule() -> Response[str]:
    from tarefa.schedules import CreateScheduleRequest

    who = caller()
    return json_response(201, container().schedules.create(who, parse_body(CreateScheduleRequest)))


@app.get("/schedules")
def list_schedules() -> Response[str]:
    from tarefa.schedules import ScheduleListRequest

    who = caller()
    return json_response(200, container().schedules.list(who, parse_query(ScheduleListRequest)))


@app.get("/schedules/<name>")
def get_schedule(name: str) -> Response[str]:
    from tarefa.schedules import OwnerQuery

    who = caller()
    return json_response(200, container().schedules.get(who, name, parse_query(OwnerQuery).owner))


@app.patch("/schedules/<name>")
def patch_schedule(name: str) -> Response[str]:
    from tarefa.schedules import OwnerQuery, PatchScheduleRequest

    who = caller()
    request = parse_body(PatchScheduleRequest)
    return json_response(200, container().schedules.patch(who, name, request, parse_query(OwnerQuery).owner))


@app.delete("/schedules/<name>")
def delete_schedule(name: str) -> Response[str]:
    from tarefa.schedules import OwnerQuery

    who = caller()
    container().schedules.delete(who, name, parse_query(OwnerQuery).owner)
    return Response(204, "application/json", "")


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


# -- webhook subscriptions, their delivery log and test event (tarefa/webhooks.py) ----------------
# Each test event is an outbound request: limited per user, so the API is nobody's amplifier
# (TAREFA_RATE_LIMITS overrides both).
api.declare_limit("POST /webhooks/{subscriptionId}/test", "10/60")
api.declare_limit("POST /webhooks", "30/60")


@app.post("/webhooks")
def create_webhook() -> Response[str]:
    from tarefa.webhooks import CreateSubscriptionRequest

    who = caller()
    c = container()
    subscription, secret = c.webhooks.create(who, parse_body(CreateSubscriptionRequest))
    return json_response(201, {**subscription.public(c.now()), "secret": secret})  # shown this once


@app.get("/webhooks")
def list_webhooks() -> Response[str]:
    from tarefa.webhooks import PageRequest

    who = caller()
    return json_response(200, container().webhooks.listing(who, parse_query(PageRequest)))


@app.get("/webhooks/<subscription_id>")
def get_webhook(subscription_id: str) -> Response[str]:
    c = container()
    return json_response(200, c.webhooks.get(caller(), subscription_id).public(c.now()))


@app.delete("/webhooks/<subscription_id>")
def delete_webhook(subscription_id: str) -> Response[str]:
    container().webhooks.delete(caller(), subscription_id)
    return Response(204, "application/json", "")


@app.patch("/webhooks/<subscription_id>")
def patch_webhook(subscription_id: str) -> Response[str]:
    from tarefa.webhooks import UpdateSubscriptionRequest

    who = caller()
    c = container()
    request = parse_body(UpdateSubscriptionRequest)
    return json_response(200, c.webhooks.set_enabled(who, subscription_id, request.enabled).public(c.now()))


@app.post("/webhooks/<subscription_id>/rotate-secret")
def rotate_webhook_secret(subscription_id: str) -> Response[str]:
    c = container()
    subscription, secret = c.webhooks.rotate(caller(), subscription_id)
    return json_response(200, {**subscription.public(c.now()), "secret": secret})  # shown this once


@app.get("/webhooks/<subscription_id>/deliveries")
def list_webhook_deliveries(subscription_id: str) -> Response[str]:
    from tarefa.webhooks import PageRequest

    who = caller()
    return json_response(200, container().webhooks.deliveries(who, subscription_id, parse_query(PageRequest)))


@app.post("/webhooks/<subscription_id>/test")
def test_webhook(subscription_id: str) -> Response[str]:
    delivery = container().webhooks.test(caller(), subscription_id)
    return json_response(202, {"deliveryId": delivery.id, "jobId": delivery.job_id, "event": delivery.event})


# -- documentation ---------------------------------------------------------------------------------
@app.get("/openapi.json")
def openapi_document() -> Response[str]:
    caller()
    from tarefa.openapi import document

    stage = app.current_event.request_context.stage
    from tarefa.openapi import workload_routes

    c = container()
    names = [name for t in c.registry.types() for name in (t.name, *t.aliases)]
    extra = workload_routes(c.settings.job_modules)
    return json_response(200, document("/" if stage in (None, "$default") else f"/{stage}", names, extra))


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
    from tarefa.panels import with_panels  # the workloads' panels (tarefa.panels)

    return Response(200, "text/html; charset=utf-8", with_panels(PAGE), PAGE_HEADERS)


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


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
