"""A Python client for Tarefa's HTTP API: for producers, scripts and the `tarefa` CLI.

Standard library only (urllib). Every API error becomes an exception named for what the caller
can do about it; a 429 is retried after its Retry-After (twice by default, since the request was
not processed), then raised as RateLimitedError with `retry_after`.
"""

from __future__ import annotations

import builtins
import json
import os
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

TERMINAL = frozenset({"COMPLETED", "FAILED", "CANCELLED"})
BATCH_SIZE = 100  # jobs per POST /jobs/batch, the API's most


class _Camel(BaseModel):
    model_config = ConfigDict(populate_by_name=True, extra="allow")  # newer servers may add fields


class Progress(_Camel):
    """How far a running job says it is (ctx.progress in its handler)."""

    percent: int
    message: str | None = None
    updated_at: datetime = Field(alias="updatedAt")


class Job(_Camel):
    job_id: str = Field(alias="jobId")
    type: str
    status: str
    priority: str
    payload: Any = None
    result: Any = None
    error: str | None = None
    error_details: Any = Field(None, alias="errorDetails")
    attempts: int = 0
    max_attempts: int = Field(3, alias="maxAttempts")
    next_retry_at: datetime | None = Field(None, alias="nextRetryAt")
    user_id: str | None = Field(None, alias="userId")
    order_id: str | None = Field(None, alias="orderId")
    created_at: datetime = Field(alias="createdAt")
    updated_at: datetime = Field(alias="updatedAt")
    dead_lettered: bool = Field(False, alias="deadLettered")
    progress: Progress | None = None

    @property
    def finished(self) -> bool:
        return self.status in TERMINAL


class JobTypeInfo(_Camel):
    """One job type a deployment runs (GET /job-types)."""

    name: str
    aliases: list[str] = Field(default_factory=list)
    priority: str
    max_attempts: int = Field(alias="maxAttempts")
    timeout_seconds: int = Field(alias="timeoutSeconds")
    sensitive: list[str] = Field(default_factory=list)  # shown as "[redacted]" in every job
    payload_schema: dict[str, Any] = Field(alias="payloadSchema")


class JobPage(_Camel):
    items: list[Job]
    next_cursor: str | None = Field(None, alias="nextCursor")


class Window(_Camel):
    """What happened in the last `minutes` minutes."""

    minutes: int
    completed: int
    failed: int
    retried: int
    processing_rate_per_minute: float = Field(alias="processingRatePerMinute")
    avg_processing_ms: float | None = Field(alias="avgProcessingMs")
    p95_processing_ms: float | None = Field(alias="p95ProcessingMs")
    avg_queue_wait_ms: float | None = Field(alias="avgQueueWaitMs")
    error_rate: float | None = Field(alias="errorRate")


class Queue(_Camel):
    name: str
    priority: str
    waiting: int
    in_flight: int = Field(alias="inFlight")
    delayed: int
    dead_letter: int = Field(alias="deadLetter")
    state: str
    paused: bool
    jobs: dict[str, int]  # by status
    windows: dict[str, Window]  # "1m", "5m", "60m"


class Overview(_Camel):
    queues: list[Queue]
    jobs: dict[str, int]  # every queue's together
    windows: dict[str, Window]


class DeadLetter(_Camel):
    job_id: str = Field(alias="jobId")
    message_id: str = Field(alias="messageId")
    type: str | None
    receive_count: int = Field(alias="receiveCount")
    last_error: str | None = Field(alias="lastError")
    failed_at: datetime = Field(alias="failedAt")
    job_status: str | None = Field(alias="jobStatus")


class DeadLetterReport(_Camel):
    job_ids: list[str] = Field(alias="jobIds")
    not_found: list[str] = Field(alias="notFound")
    skipped: list[dict[str, str]]
    complete: bool


class ItemError(_Camel):
    """Why one job of a batch was not enqueued: the error POST /jobs would answer for it alone."""

    code: str
    message: str
    details: Any = None


class BatchItem(_Camel):
    """One job of `enqueue_many`: `index` is its position in the list given; `job` and
    `created` (False: its idempotency key named an existing job), or `error`."""

    index: int
    job: Job | None = None
    created: bool | None = None
    error: ItemError | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


# -- errors ------------------------------------------------------------------------------------
class TarefaClientError(Exception):
    """Any failed call; `status` is the HTTP status (0: no answer), `code` the API's error code."""

    def __init__(self, status: int, code: str, message: str, details: Any = None) -> None:
        super().__init__(f"{status} {code}: {message}" if status else message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details


class InvalidRequestError(TarefaClientError):
    """400 or 422: fix the request; `details` names the fields."""


class UnauthorizedError(TarefaClientError):
    """401: no token, or an invalid or expired one."""


class ForbiddenError(TarefaClientError):
    """403: the token is valid but may not do this (admin routes)."""


class NotFoundError(TarefaClientError):
    """404: no such job (or not yours), or no such queue."""


class ConflictError(TarefaClientError):
    """409: the job is not in a state that allows this (e.g. cancelling a COMPLETED job)."""


class RateLimitedError(TarefaClientError):
    """429 after the retries: wait `retry_after` seconds."""

    def __init__(
        self, status: int, code: str, message: str, details: Any = None, retry_after: int = 1
    ) -> None:
        super().__init__(status, code, message, details)
        self.retry_after = retry_after


class UnavailableError(TarefaClientError):
    """503, 5xx or no answer at all: try again later."""


class WaitTimeoutError(TimeoutError):
    def __init__(self, job: Job, timeout: float) -> None:
        super().__init__(f"job {job.job_id} is still {job.status} after {timeout:g} s")
        self.job = job


ERRORS: dict[int, type[TarefaClientError]] = {
    400: InvalidRequestError,
    401: UnauthorizedError,
    403: ForbiddenError,
    404: NotFoundError,
    409: ConflictError,
    413: InvalidRequestError,
    422: InvalidRequestError,
    429: RateLimitedError,
}


def default_api_url(state_dir: str | None = None) -> str:
    """$TAREFA_API_URL, else the running local stack's (from its local.json), else :3000."""
    if os.environ.get("TAREFA_API_URL"):
        return os.environ["TAREFA_API_URL"]
    state = os.path.join(state_dir or os.environ.get("TAREFA_STATE_DIR", ".tarefa"), "local.json")
    try:
        with open(state) as fh:
            return str(json.load(fh)["apiUrl"])
    except (OSError, ValueError, KeyError):
        return "http://127.0.0.1:3000"


class TarefaClient:
    def __init__(
        self,
        api_url: str | None = None,
        token: str | None = None,
        timeout: float = 30,
        rate_limit_retries: int = 2,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.api_url = (api_url or default_api_url()).rstrip("/")
        if urllib.parse.urlsplit(self.api_url).scheme not in ("http", "https"):
            raise ValueError(f"the API URL must be http(s)://...; got {self.api_url!r}")
        self.token = token if token is not None else os.environ.get("TAREFA_TOKEN")
        self.timeout = timeout
        self.rate_limit_retries = rate_limit_retries
        self.sleep = sleep

    # -- jobs ------------------------------------------------------------------------------
    def enqueue(
        self,
        job_type: str,
        payload: Any = None,
        *,
        priority: str | None = None,
        max_attempts: int | None = None,
        retry_delay_seconds: int | None = None,
        delay_seconds: int | None = None,
        idempotency_key: str | None = None,
        order_id: str | None = None,
    ) -> Job:
        body = {
            "type": job_type,
            "payload": payload,
            "priority": priority,
            "maxAttempts": max_attempts,
            "retryDelaySeconds": retry_delay_seconds,
            "delaySeconds": delay_seconds,
            "idempotencyKey": idempotency_key,
            "orderId": order_id,
        }
        return Job.model_validate(
            self._call("POST", "/jobs", {k: v for k, v in body.items() if v is not None})
        )

    def enqueue_many(self, jobs: builtins.list[dict[str, Any]]) -> builtins.list[BatchItem]:
        """Enqueue many jobs (each a POST /jobs body: {"type", "payload", ...}) with POST
        /jobs/batch, BATCH_SIZE a request: one item per job, in order, with its index in `jobs`.
        A job the API refused has its item's `error`; the others are enqueued all the same.
        A failure of the whole first request (401, 429 after the retries, unreachable) is
        raised: nothing was enqueued. One of a later request makes its jobs' items errors
        with that code (the earlier jobs are enqueued: their items say so)."""
        items: builtins.list[BatchItem] = []
        for start in range(0, len(jobs), BATCH_SIZE):
            chunk = jobs[start : start + BATCH_SIZE]
            try:
                answer = self._call("POST", "/jobs/batch", {"jobs": chunk})
            except TarefaClientError as exc:
                if start == 0:
                    raise
                error = ItemError(code=exc.code, message=exc.message, details=exc.details)
                items += [BatchItem(index=start + n, error=error) for n in range(len(chunk))]
                continue
            for item in answer["items"]:
                items.append(BatchItem.model_validate({**item, "index": start + int(item["index"])}))
        return items

    def get(self, job_id: str) -> Job:
        return Job.model_validate(self._call("GET", f"/jobs/{_segment(job_id)}"))

    def list(
        self,
        status: str | None = None,
        job_type: str | None = None,
        order_id: str | None = None,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> JobPage:
        query = {"status": status, "type": job_type, "orderId": order_id, "limit": limit, "cursor": cursor}
        return JobPage.model_validate(self._call("GET", "/jobs", query=query))

    def cancel(self, job_id: str, reason: str | None = None) -> Job:
        body = {"reason": reason} if reason else {}
        return Job.model_validate(self._call("POST", f"/jobs/{_segment(job_id)}/cancel", body))

    def retry(self, job_id: str) -> Job:
        return Job.model_validate(self._call("POST", f"/jobs/{_segment(job_id)}/retry", {}))

    def wait(
        self, job_id: str, timeout: float = 60, first_interval: float = 0.2, max_interval: float = 5
    ) -> Job:
        """Poll until the job is COMPLETED, FAILED or CANCELLED, backing off from
        `first_interval` to `max_interval`; WaitTimeoutError with the last state after `timeout`."""
        deadline = time.monotonic() + timeout
        interval = first_interval
        while True:
            job = self.get(job_id)
            if job.finished:
                return job
            left = deadline - time.monotonic()
            if left <= 0:
                raise WaitTimeoutError(job, timeout)
            self.sleep(min(interval, left))
            interval = min(interval * 2, max_interval)

    # -- schedules and bulk operations ---------------------------------------------------------
    def schedules(self, limit: int | None = None, cursor: str | None = None) -> dict[str, Any]:
        """Your schedules (everyone's for admins): {items, nextCursor}."""
        answer: dict[str, Any] = self._call("GET", "/schedules", query={"limit": limit, "cursor": cursor})
        return answer

    def schedule(self, name: str) -> dict[str, Any]:
        answer: dict[str, Any] = self._call("GET", f"/schedules/{_segment(name)}")
        return answer

    def create_schedule(
        self,
        name: str,
        job_type: str,
        payload: Any = None,
        *,
        cron: str | None = None,
        rate: str | None = None,
        timezone: str | None = None,
        enabled: bool = True,
    ) -> dict[str, Any]:
        """`cron` or `rate` in EventBridge Scheduler's syntax: cron(0 3 * * ? *), rate(5 minutes)."""
        body = {"name": name, "type": job_type, "payload": payload, "cron": cron, "rate": rate}
        body.update(timezone=timezone, enabled=enabled)
        answer: dict[str, Any] = self._call(
            "POST", "/schedules", {k: v for k, v in body.items() if v is not None}
        )
        return answer

    def update_schedule(self, name: str, **changes: Any) -> dict[str, Any]:
        """PATCH: any of payload, cron, rate, timezone, enabled."""
        answer: dict[str, Any] = self._call("PATCH", f"/schedules/{_segment(name)}", changes)
        return answer

    def delete_schedule(self, name: str) -> None:
        self._call("DELETE", f"/schedules/{_segment(name)}", expect=(204,))

    def bulk(
        self,
        action: str,
        status: str | None = None,
        job_type: str | None = None,
        created_after: str | None = None,
        created_before: str | None = None,
        dry_run: bool = False,
    ) -> dict[str, Any]:
        """Cancel or retry every job that matches: {matched} for a dry run, else {operationId}."""
        body = {
            "status": status,
            "type": job_type,
            "createdAfter": created_after,
            "createdBefore": created_before,
            "dryRun": dry_run or None,
        }
        path = f"/jobs/bulk/{_segment(action)}"
        answer: dict[str, Any] = self._call("POST", path, {k: v for k, v in body.items() if v is not None})
        return answer

    def bulk_operation(self, operation_id: str) -> dict[str, Any]:
        """{status, matched, processed, failed} of a bulk operation."""
        answer: dict[str, Any] = self._call("GET", f"/jobs/bulk/{_segment(operation_id)}")
        return answer

    # -- operations (admin) ----------------------------------------------------------------
    def health(self) -> dict[str, Any]:
        answer: dict[str, Any] = self._call("GET", "/health", expect=(200, 503))
        return answer

    def queues(self) -> builtins.list[Queue]:
        return self.overview().queues

    def job_types(self) -> builtins.list[JobTypeInfo]:
        """The job types this deployment runs, with their payload schemas."""
        return [JobTypeInfo.model_validate(t) for t in self._call("GET", "/job-types")["items"]]

    def overview(self) -> Overview:
        """Every queue, and the job counts and windows of all of them together."""
        return Overview.model_validate(self._call("GET", "/queues"))

    def pause(self, priority: str) -> Queue:
        return Queue.model_validate(self._call("POST", f"/queues/{_segment(priority)}/pause"))

    def resume(self, priority: str) -> Queue:
        return Queue.model_validate(self._call("POST", f"/queues/{_segment(priority)}/resume"))

    def dead_letters(self, priority: str, limit: int = 20) -> builtins.list[DeadLetter]:
        answer = self._call("GET", f"/queues/{_segment(priority)}/dead-letters", query={"limit": limit})
        return [DeadLetter.model_validate(i) for i in answer["items"]]

    def redrive(
        self, priority: str, job_ids: builtins.list[str] | None = None, all: bool = False
    ) -> DeadLetterReport:
        """One call; when `complete` is false, call again for the rest."""
        body: dict[str, Any] = {"all": True} if all else {"jobIds": job_ids}
        path = f"/queues/{_segment(priority)}/dead-letters/redrive"
        return DeadLetterReport.model_validate(self._call("POST", path, body))

    def purge(self, priority: str, job_ids: builtins.list[str]) -> DeadLetterReport:
        path = f"/queues/{_segment(priority)}/dead-letters/purge"
        return DeadLetterReport.model_validate(self._call("POST", path, {"jobIds": job_ids}))

    # -- transport -------------------------------------------------------------------------
    def _call(
        self,
        method: str,
        path: str,
        body: Any = None,
        query: dict[str, Any] | None = None,
        expect: tuple[int, ...] = (200, 201, 202),
    ) -> Any:
        url = self.api_url + path
        if query:
            url += "?" + urllib.parse.urlencode({k: v for k, v in query.items() if v is not None})
        data = json.dumps(body).encode() if body is not None else None
        for attempt in range(self.rate_limit_retries + 1):
            status, headers, answer = self._send(method, url, data)
            if status in expect:
                return answer
            retry_after = _seconds(headers.get("retry-after"))
            if status == 429 and attempt < self.rate_limit_retries:
                self.sleep(retry_after)
                continue
            raise _error(status, answer, retry_after)
        raise AssertionError("unreachable")

    def _send(self, method: str, url: str, data: bytes | None) -> tuple[int, dict[str, str], Any]:
        request = urllib.request.Request(url, data=data, method=method)  # noqa: S310 - http(s) only
        request.add_header("Accept", "application/json")
        if data is not None:
            request.add_header("Content-Type", "application/json")
        if self.token:
            request.add_header("Authorization", f"Bearer {self.token}")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:  # noqa: S310
                return response.status, _lower(response.headers), _json(response.read())
        except urllib.error.HTTPError as exc:
            return exc.code, _lower(exc.headers), _json(exc.read())
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise UnavailableError(0, "UNREACHABLE", f"cannot reach {self.api_url}: {reason}") from None


def _segment(value: str) -> str:
    return urllib.parse.quote(value, safe="")


def _lower(headers: Any) -> dict[str, str]:
    return {k.lower(): v for k, v in headers.items()} if headers else {}


def _json(raw: bytes) -> Any:
    try:
        return json.loads(raw) if raw else None
    except ValueError:
        return {"message": raw.decode(errors="replace")[:500]}


def _seconds(value: str | None) -> int:
    try:
        return max(1, int(value or 1))
    except ValueError:
        return 1


def _error(status: int, answer: Any, retry_after: int) -> TarefaClientError:
    error = answer.get("error", answer) if isinstance(answer, dict) else {}
    code = str(error.get("code", "HTTP_ERROR"))
    message = str(error.get("message", f"HTTP {status}"))
    details = error.get("details")
    if status == 429:
        return RateLimitedError(status, code, message, details, retry_after)
    kind = ERRORS.get(status, UnavailableError if status >= 500 else TarefaClientError)
    return kind(status, code, message, details)
