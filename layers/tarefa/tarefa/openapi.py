"""The OpenAPI document, built from the pydantic models the API handler validates with, and the
interactive docs page. Imported only by GET /openapi.json and GET /docs (no cold-start cost).

The infrastructure tests check that the routes listed here are exactly template.yaml's.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, Field
from pydantic.json_schema import models_json_schema

from tarefa.bulk import BulkAnswer, BulkOperationView, BulkRequest
from tarefa.deadletters import (
    DeadLetterEntry,
    DeadLetterQuery,
    DeadLetterReport,
    PurgeRequest,
    RedriveRequest,
)
from tarefa.job import Job
from tarefa.jobs import BatchEnqueueRequest, CancelRequest, EnqueueRequest, ListRequest
from tarefa.maintenance import CleanupRequest, RecoverRequest
from tarefa.queues import QueuesOverview, QueueView
from tarefa.schedules import (
    CreateScheduleRequest,
    OwnerQuery,
    PatchScheduleRequest,
    ScheduleListRequest,
    SchedulePageView,
    ScheduleView,
)
from tarefa.webhooks import (
    CreateSubscriptionRequest,
    Delivery,
    PageRequest,
    SubscriptionStatus,
    UpdateSubscriptionRequest,
)

INTERNAL_JOB_FIELDS = ("runAt", "held", "version", "retryDelaySeconds", "wake", "crashes", "sealed")


class ErrorBody(BaseModel):
    code: str
    message: str
    details: list[dict[str, Any]] | dict[str, Any] | None = Field(
        None,
        description="422: [{field, message}] per invalid field; 400 UNKNOWN_JOB_TYPE: {knownTypes}",
    )


class ErrorResponse(BaseModel):
    error: ErrorBody


class BatchEnqueueItem(BaseModel):
    """One job of a batch: `job` and `created`, or `error`."""

    index: int = Field(description="the job's position in the request's `jobs`")
    job: Job | None = None
    created: bool | None = Field(None, description="false: its idempotency key named an existing job")
    error: ErrorBody | None = Field(None, description="what POST /jobs would answer for this job alone")


class BatchEnqueueAnswer(BaseModel):
    items: list[BatchEnqueueItem] = Field(description="one per job, in request order")


class GatewayErrorResponse(BaseModel):
    """What API Gateway's JWT authorizer itself answers before any function runs."""

    message: str = Field(examples=["Unauthorized"])


class JobPage(BaseModel):
    items: list[Job]
    next_cursor: str | None = Field(alias="nextCursor")


class DeadLetterList(BaseModel):
    items: list[DeadLetterEntry]


class JobTypeInfo(BaseModel):
    name: str
    aliases: list[str]
    priority: str
    max_attempts: int = Field(alias="maxAttempts")
    timeout_seconds: int = Field(alias="timeoutSeconds")
    sensitive: list[str] = Field(
        description="payload fields encrypted before the job is stored or sent; every view shows them as "
        '"[redacted]"'
    )
    flow_control: dict[str, Any] = Field(
        alias="flowControl",
        description="the flow-control options that are on: concurrency {limit, perKey}, uniqueWhileActive, "
        'debounce {seconds, maxWaitSeconds, perKey}, rate {limit, windowSeconds, perKey}, and fairness ("owner" '
        'or "fairness_key": what the SQS message group is)',
    )
    payload_schema: dict[str, Any] = Field(alias="payloadSchema", description="JSON Schema of the payload")


class JobTypeList(BaseModel):
    items: list[JobTypeInfo]


class WebhookSubscription(BaseModel):
    id: str = Field(description="wh_...", examples=["wh_4f1c2b7a9e0d3c5b8a6f1e2d"])
    user_id: str = Field(alias="userId")
    url: str
    events: list[str] = Field(
        description="event names (job.completed, job.failed, job.cancelled, webhook.test, a workload's) or *"
    )
    status: SubscriptionStatus = Field(description="DISABLED once the URL answered 410 Gone")
    timeout_seconds: int = Field(alias="timeoutSeconds")
    created_at: str = Field(alias="createdAt")
    updated_at: str = Field(alias="updatedAt")
    disabled_at: str | None = Field(None, alias="disabledAt")
    disabled_reason: str | None = Field(None, alias="disabledReason")
    previous_secret_expires_at: str | None = Field(
        None,
        alias="previousSecretExpiresAt",
        description="after a rotation: until when the old secret also signs",
    )


class WebhookWithSecret(WebhookSubscription):
    secret: str = Field(
        description="whsec_...: shown only in this answer; verify deliveries with it (Standard Webhooks)"
    )


class WebhookPage(BaseModel):
    items: list[WebhookSubscription]
    next_cursor: str | None = Field(alias="nextCursor")


class DeliveryPage(BaseModel):
    items: list[Delivery]
    next_cursor: str | None = Field(alias="nextCursor")


class WebhookTestAnswer(BaseModel):
    delivery_id: str = Field(alias="deliveryId", description="the webhook-id header the receiver gets")
    job_id: str = Field(alias="jobId", description="the webhook.delivery job")
    event: str


@dataclass(frozen=True)
class RouteDoc:
    method: str
    path: str
    summary: str
    status: int = 200
    response: type[BaseModel] | None = None
    body: type[BaseModel] | None = None
    query: type[BaseModel] | None = None
    admin: bool = False
    errors: tuple[int, ...] = field(default=(400, 401, 404, 422))
    public: bool = False  # no JWT: open, or checked another way (a provider's signature)
    tag: str | None = None  # a workload's name groups its routes
    also: tuple[int, ...] = ()  # other success statuses, with the same response (a dry run's 200)


def routes() -> list[RouteDoc]:
    return [
        RouteDoc("GET", "/health", "Health of DynamoDB, SQS and the cache (no token)", errors=(503,), public=True),
        RouteDoc("GET", "/job-types", "The job types this deployment runs, with their payload schemas", 200, JobTypeList, errors=(401,)),
        RouteDoc("POST", "/jobs", "Enqueue a job (200: an Idempotency-Key or a type's unique key named an existing job; 409 IDEMPOTENCY_KEY_REUSED: the key made another request; 409 UNIQUE_KEY_BUSY: a concurrent enqueue holds the unique key, retry)", 202, Job, EnqueueRequest, errors=(400, 401, 409, 413, 422, 429, 503)),
        RouteDoc("POST", "/jobs/batch", "Enqueue 1 to 100 jobs, each as POST /jobs would alone: items in request order, {index, job, created} (created false: its idempotency key named an existing job) or {index, error} (the error POST /jobs would answer for that job: 400, 409, 413, 422, 503 QUEUE_UNAVAILABLE naming its jobId ...); one bad item never sinks the others. Counts as its number of jobs in POST /jobs's rate limit: a batch that does not fit is 429 whole, nothing enqueued", 202, BatchEnqueueAnswer, BatchEnqueueRequest, errors=(400, 401, 413, 422, 429)),
        RouteDoc("GET", "/jobs", "Your jobs (every job for admins), newest first", 200, JobPage, query=ListRequest),
        RouteDoc("GET", "/jobs/{jobId}", "One job (X-Cache: HIT when a finished job came from the cache)", 200, Job),
        RouteDoc("POST", "/jobs/{jobId}/cancel", "Cancel a PENDING, RETRYING or FAILED job", 200, Job, CancelRequest, errors=(401, 404, 409, 422)),
        RouteDoc("POST", "/jobs/{jobId}/retry", "Run a FAILED job again", 202, Job, errors=(401, 404, 409)),
        RouteDoc("POST", "/jobs/bulk/cancel", "Cancel every matching job (dryRun: count only, 200)", 202, BulkAnswer, BulkRequest, errors=(401, 422), tag="bulk", also=(200,)),
        RouteDoc("POST", "/jobs/bulk/retry", "Retry every matching FAILED job (dryRun: count only, 200)", 202, BulkAnswer, BulkRequest, errors=(401, 422), tag="bulk", also=(200,)),
        RouteDoc("GET", "/jobs/bulk/{operationId}", "A bulk operation's progress and counts", 200, BulkOperationView, query=OwnerQuery, errors=(401, 404, 422), tag="bulk"),
        RouteDoc("POST", "/schedules", "A recurring job on cron(...) or rate(...) (409 SCHEDULE_EXISTS)", 201, ScheduleView, CreateScheduleRequest, errors=(400, 401, 409, 422, 503), tag="schedules"),
        RouteDoc("GET", "/schedules", "Your schedules (everyone's for admins), by name", 200, SchedulePageView, query=ScheduleListRequest, tag="schedules"),
        RouteDoc("GET", "/schedules/{name}", "One schedule, with its next and last runs", 200, ScheduleView, query=OwnerQuery, errors=(401, 404, 422), tag="schedules"),
        RouteDoc("PATCH", "/schedules/{name}", "Change its payload, cron/rate, timezone or enabled", 200, ScheduleView, PatchScheduleRequest, query=OwnerQuery, errors=(401, 404, 409, 422, 503), tag="schedules"),
        RouteDoc("DELETE", "/schedules/{name}", "Delete a schedule (on Scheduler first)", 204, query=OwnerQuery, errors=(401, 404, 422), tag="schedules"),
        RouteDoc("POST", "/maintenance/cleanup", "Delete finished jobs past retention", body=CleanupRequest, admin=True),
        RouteDoc("POST", "/maintenance/recover", "Recover jobs stuck in PROCESSING", body=RecoverRequest, admin=True),
        RouteDoc("GET", "/queues", "Queue depths, states, job counts and 1/5/60-minute figures", 200, QueuesOverview, admin=True),
        RouteDoc("POST", "/queues/{priority}/pause", "Stop consuming a queue", 200, QueueView, admin=True),
        RouteDoc("POST", "/queues/{priority}/resume", "Consume a queue again", 200, QueueView, admin=True),
        RouteDoc("GET", "/queues/{priority}/dead-letters", "What is in a dead-letter queue", 200, DeadLetterList, query=DeadLetterQuery, admin=True),
        RouteDoc("POST", "/queues/{priority}/dead-letters/redrive", "Move chosen dead letters back", 200, DeadLetterReport, RedriveRequest, admin=True),
        RouteDoc("POST", "/queues/{priority}/dead-letters/purge", "Delete chosen dead letters; their jobs end FAILED", 200, DeadLetterReport, PurgeRequest, admin=True),
        RouteDoc("POST", "/webhooks", "Subscribe a URL to events; the answer holds its signing secret, once", 201, WebhookWithSecret, CreateSubscriptionRequest, errors=(400, 401, 409, 413, 422), tag="webhooks"),
        RouteDoc("GET", "/webhooks", "Your webhook subscriptions (every one for admins), newest first", 200, WebhookPage, query=PageRequest, tag="webhooks"),
        RouteDoc("GET", "/webhooks/{subscriptionId}", "One subscription (never its secret)", 200, WebhookSubscription, tag="webhooks"),
        RouteDoc("DELETE", "/webhooks/{subscriptionId}", "Delete a subscription; its pending deliveries end unsent", 204, errors=(401, 404), tag="webhooks"),
        RouteDoc("PATCH", "/webhooks/{subscriptionId}", "Turn a subscription off or on again (one a 410 disabled); yours only", 200, WebhookSubscription, UpdateSubscriptionRequest, errors=(400, 401, 404, 409, 422), tag="webhooks"),
        RouteDoc("POST", "/webhooks/{subscriptionId}/rotate-secret", "A new secret, once; the old one also signs for 24 h", 200, WebhookWithSecret, errors=(401, 404, 409), tag="webhooks"),
        RouteDoc("GET", "/webhooks/{subscriptionId}/deliveries", "The delivery log: status, attempts, response code, latency", 200, DeliveryPage, query=PageRequest, tag="webhooks"),
        RouteDoc("POST", "/webhooks/{subscriptionId}/test", "Send a webhook.test event (409 when the subscription is disabled)", 202, WebhookTestAnswer, errors=(401, 404, 409), tag="webhooks"),
        RouteDoc("GET", "/openapi.json", "This document"),
        RouteDoc("GET", "/docs", "Interactive documentation (an HTML page; no token)", errors=(), public=True),
        RouteDoc("GET", "/dashboard", "The operators' web dashboard (an HTML page; no token)", errors=(), public=True),
    ]  # fmt: skip


def workload_routes(modules: Iterable[str]) -> list[RouteDoc]:
    """The routes the loaded workloads document: `ROUTES` in each package's `openapi` module
    (read only when the document is built, so it costs no cold start)."""
    found: list[RouteDoc] = []
    for module in modules:
        package = module.split(".")[0]
        if importlib.util.find_spec(package) is None:
            continue
        name = f"{package}.openapi"
        try:
            spec = importlib.util.find_spec(name)
        except ModuleNotFoundError:
            spec = None
        if spec is not None:
            declared = getattr(importlib.import_module(name), "ROUTES", [])
            found += [r for r in declared if r not in found]
    return found


def document(
    server_url: str = "/", job_types: list[str] | None = None, extra: Iterable[RouteDoc] = ()
) -> dict[str, Any]:
    """`job_types`: the names (and aliases) POST /jobs accepts, listed in its schema; `extra`:
    the workloads' own routes."""
    documented = [*routes(), *extra]
    errors: set[type[BaseModel]] = {ErrorResponse, GatewayErrorResponse}
    responses_models = {r.response for r in documented if r.response is not None} | errors
    body_models = {r.body for r in documented if r.body is not None}
    _, schema = models_json_schema(
        [(m, "serialization") for m in sorted(responses_models, key=lambda m: m.__name__)]
        + [(m, "validation") for m in sorted(body_models, key=lambda m: m.__name__)],
        by_alias=True,
        ref_template="#/components/schemas/{model}",
    )  # fmt: skip
    components: dict[str, Any] = schema.get("$defs", {})
    for prop in INTERNAL_JOB_FIELDS:  # what Job.public() leaves out
        components["Job"]["properties"].pop(prop, None)
    if job_types:
        components["EnqueueRequest"]["properties"]["type"]["enum"] = sorted(job_types)

    def ref(model: type[BaseModel]) -> dict[str, Any]:
        return {"$ref": f"#/components/schemas/{model.__name__}"}

    paths: dict[str, Any] = {}
    for route in documented:
        tag = route.tag or ("admin" if route.admin else "jobs")
        operation: dict[str, Any] = {"summary": route.summary, "tags": [tag]}
        parameters = [
            {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
            for name in _path_params(route.path)
        ]
        if route.query is not None:
            query_schema = route.query.model_json_schema(
                by_alias=True, ref_template="#/components/schemas/{model}"
            )
            components.update(query_schema.get("$defs", {}))
            for name, prop in query_schema.get("properties", {}).items():
                parameters.append({"name": name, "in": "query", "required": False, "schema": prop})
        if parameters:
            operation["parameters"] = parameters
        if route.body is not None:
            required = route.body not in (CancelRequest, CleanupRequest, RecoverRequest, BulkRequest)
            operation["requestBody"] = {"required": required, "content": {"application/json": {"schema": ref(route.body)}}}  # fmt: skip
        ok: dict[str, Any] = {"description": "OK"}
        if route.response is not None:
            ok["content"] = {"application/json": {"schema": ref(route.response)}}
        responses: dict[str, Any] = {str(route.status): ok} | {str(s): ok for s in route.also}
        statuses = {*route.errors, *((401, 403) if route.admin else ()), *((400, 413) if route.body else ())}
        for status in sorted(statuses):
            # A missing or refused token is answered by API Gateway's authorizer, in its own shape
            # (the API's own 401, e.g. a token without `sub`, has the usual shape)
            schema_of: dict[str, Any] = ref(ErrorResponse)
            if status == 401 and not route.public:
                schema_of = {"oneOf": [ref(GatewayErrorResponse), ref(ErrorResponse)]}
            responses[str(status)] = {"description": _reason(status), "content": {"application/json": {"schema": schema_of}}}  # fmt: skip
        operation["responses"] = responses
        operation["security"] = [] if route.public else [{"bearer": []}]
        paths.setdefault(route.path, {})[route.method.lower()] = operation
    return {
        "openapi": "3.1.0",
        "info": {"title": "Tarefa", "version": "1", "description": "Serverless job queue: jobs, queues, dead letters."},
        "servers": [{"url": server_url}],
        "paths": paths,
        "components": {"schemas": components, "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}}},
    }  # fmt: skip


def _path_params(path: str) -> list[str]:
    return [part[1:-1] for part in path.split("/") if part.startswith("{")]


def _reason(status: int) -> str:
    return {
        400: "Bad request", 401: "No valid token", 403: "Admins only", 404: "Not found", 409: "Wrong state",
        413: "Too large", 422: "Invalid fields", 429: "Rate limited", 503: "Unavailable",
    }.get(status, "Error")  # fmt: skip


DOCS_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Tarefa API</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body{font:14px/1.4 system-ui,sans-serif;margin:0;background:#f6f7f9;color:#1d2330}
header{background:#1d2330;color:#fff;padding:12px 20px;display:flex;gap:12px;align-items:center}
header input{flex:1;max-width:520px;padding:6px}main{padding:16px 20px;max-width:1100px}
details{background:#fff;border:1px solid #d8dce3;border-radius:6px;margin:8px 0;padding:8px 12px}
summary{cursor:pointer;font-weight:600}.m{display:inline-block;width:52px;font-family:monospace}
.GET{color:#1769aa}.POST{color:#2e7d32}textarea{width:100%;min-height:90px;font-family:monospace}
pre{background:#1d2330;color:#e6e6e6;padding:8px;overflow:auto;max-height:420px;white-space:pre-wrap;word-break:break-word}
label{display:block;margin:4px 0}#help{background:#fff;border-radius:6px;padding:4px 16px 10px}#problem{color:#8e1c1c}
</style></head><body>
<header><strong>Tarefa API</strong><input id="token" type="password" autocomplete="off" placeholder="Bearer token (kept for this tab only)">
<button id="save">Use token</button></header>
<main><p id="problem" role="alert" hidden></p>
<section id="help" hidden>
<h2>This page needs a token</h2>
<p>It holds no data of its own: it loads the API description (openapi.json) and sends every call with a
bearer token, which you paste above. It is kept in this tab only (sessionStorage).</p>
<p><b>Locally</b> (the stack <code>make run</code> or <code>tarefa local</code> started), mint one in a terminal,
from the repository's folder (the command is <code>.venv/bin/tarefa</code> there):</p>
<pre>tarefa token --user NAME            # NAME's own jobs
tarefa token --user NAME --admin    # every job, the queues and the dead letters</pre>
<p><b>On AWS</b>: a token of the stack's Cognito user pool (its <code>admin</code> group makes an admin),
or of the identity provider the stack trusts (<code>JwtIssuer</code>).</p>
</section>
<div id="ops"></div></main>
<script>
const ops = document.getElementById('ops'), tokenBox = document.getElementById('token');
const help = document.getElementById('help'), problem = document.getElementById('problem');
tokenBox.value = sessionStorage.getItem('tarefa-token') || '';
document.getElementById('save').onclick = () => { sessionStorage.setItem('tarefa-token', tokenBox.value.trim()); load(); };
tokenBox.onkeydown = e => { if (e.key === 'Enter') document.getElementById('save').click(); };
function headers() { const t = sessionStorage.getItem('tarefa-token'); return t ? {'Authorization': 'Bearer ' + t, 'Content-Type': 'application/json'} : {'Content-Type': 'application/json'}; }
function el(tag, attrs, ...kids) { const e = document.createElement(tag); Object.assign(e, attrs || {}); kids.forEach(k => e.append(k)); return e; }
function pretty(text) { try { return JSON.stringify(JSON.parse(text), null, 2); } catch (e) { return text; } }
async function load() {
  ops.textContent = ''; problem.hidden = true;
  if (!sessionStorage.getItem('tarefa-token')) { help.hidden = false; return; }
  const r = await fetch('openapi.json', {headers: headers()});
  if (!r.ok) {
    problem.textContent = 'Could not load the API description: HTTP ' + r.status + (r.status === 401 ? ': the token is missing, expired or not accepted; get a new one as below.' : '.');
    problem.hidden = false; help.hidden = r.status !== 401; return;
  }
  help.hidden = true;
  const spec = await r.json();
  for (const [path, methods] of Object.entries(spec.paths)) for (const [method, op] of Object.entries(methods)) ops.append(operation(path, method.toUpperCase(), op));
}
function operation(path, method, op) {
  const box = el('details'), inputs = {}, out = el('pre');
  box.dataset.route = method + ' ' + path;
  box.append(el('summary', {}, el('span', {className: 'm ' + method, textContent: method}), path + ' \u2014 ' + op.summary));
  for (const p of op.parameters || []) { const i = el('input', {placeholder: p.in}); inputs[p.name] = [p, i]; box.append(el('label', {}, p.name + ' ', i)); }
  const body = op.requestBody ? el('textarea', {value: '{}'}) : null; if (body) box.append(el('label', {}, 'JSON body', body));
  const send = el('button', {textContent: 'Send'}); box.append(send, out);
  send.onclick = async () => {
    let url = path; const q = new URLSearchParams();
    for (const [name, [p, i]] of Object.entries(inputs)) { if (p.in === 'path') url = url.replace('{' + name + '}', encodeURIComponent(i.value)); else if (i.value) q.set(name, i.value); }
    const base = location.pathname.replace(/docs$/, '');
    try {
      const r = await fetch(base + url.slice(1) + (q.toString() ? '?' + q : ''), {method, headers: headers(), body: body ? body.value : undefined});
      const text = await r.text();
      out.textContent = r.status + ' ' + r.statusText + '\\n' + pretty(text);
    } catch (e) { out.textContent = 'The API did not answer: ' + e.message; }
  };
  return box;
}
load();
</script></body></html>
"""
