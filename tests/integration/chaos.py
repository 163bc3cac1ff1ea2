"""The chaos run: many jobs through the real API and handlers on moto, with faults injected into
a fraction of the AWS calls, duplicate deliveries and abandoned worker invocations, then the
maintenance schedules until nothing changes, and a count of everything that went wrong.

Used by tests/integration/test_chaos.py (the short form, in `make test`) and bench/chaos.py
(`make chaos`, the long form). Everything is seeded: the plans, the faults, the job ids (uuid4),
the backoff jitter, moto's own ids, and the time SQS and the services see (one simulated clock,
moved only by the harness and by the engine's own pauses between write retries).

Faults are botocore event hooks on the clients the functions use (the container's, and the
local runtime's for its DeleteMessageBatch after a batch): `before-parameter-build` raises
before the call is sent (throttling, a 5xx, a read timeout, a refused connection) and
`after-call` raises once the call went through (its answer lost). A copy of some job messages is
sent (SQS delivers at least once), and some worker invocations die right after a claim write
(a BaseException, as Lambda stopping the process), caught here around the poll.
"""

from __future__ import annotations

import json
import logging
import random
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from typing import Any
from unittest import mock

from botocore.exceptions import ClientError, EndpointConnectionError, ReadTimeoutError

from tarefa import wiring
from tarefa.local.app import HttpResult, LocalApp
from tarefa.local.provision import Function, SqsSource
from tarefa.local.runtime import deliver

from .chaos_workload.jobs import LEDGER, PERMANENT_CODE
from .conftest import ADMIN, Clock, let_sqs_timers_pass

MODULES = "demo,tests.integration.chaos_workload"
JOB_TYPE = "chaos.work"
CLIENT_RETRIES = 5  # after a 5xx: the same request again, as the API documents (see ChaosRun.send)
DOCUMENTED_5XX = frozenset({"SERVICE_UNAVAILABLE", "QUEUE_UNAVAILABLE"})
TERMINAL = frozenset({"COMPLETED", "FAILED", "CANCELLED"})
MAINTENANCE = ("Recover", "Promote", "DeadLetters")
DYNAMODB_OPERATIONS = ("PutItem", "GetItem", "TransactWriteItems", "Query")
SQS_OPERATIONS = ("SendMessage", "ChangeMessageVisibility")
RUNTIME_OPERATIONS = ("DeleteMessageBatch",)  # the local event source mapping's own delete
BEFORE_KINDS = ("throttled", "5xx", "read timeout", "connection refused")
TAIL_SECONDS = (10, 30, 130, 330, 800)  # the rounds under faults after the last submission
QUIET_ROUND_SECONDS = 800  # > stuck threshold (300 s), worker lease (120 s), queue visibility (720 s)
USERS = tuple(f"chaos-{n}" for n in range(4))
SUBMIT_SHARE = 0.72  # of the time budget: submission stops there


@dataclass(frozen=True)
class ChaosConfig:
    jobs: int = 300
    seed: int = 20261122
    fault_rate: float = 0.05  # of eligible calls: fail before they are sent
    lost_rate: float = 0.03  # of eligible calls: go through, and the answer is lost
    duplicate_rate: float = 0.05  # of job messages sent: SQS delivers a copy as well
    abandon_rate: float = 0.03  # of the worker's PROCESSING writes: the invocation dies after it
    keyed_share: float = 0.6  # submissions with an Idempotency-Key
    resend_share: float = 0.1  # keyed submissions sent again after a 2xx (the answer was lost)
    read_share: float = 0.2  # submissions the client reads back at once (GET, under faults)
    delayed_share: float = 0.05  # submissions delayed past SQS's 15 minutes (held, promoted)
    wave: int = 50  # submissions between two drains of the queues
    maintenance_every: int = 3  # waves between two runs of the schedules under faults
    max_seconds: float = 1e9  # wall-clock budget; submission stops at 72 % of it
    # The final check reads every job through the API's listing (as an admin). moto answers a
    # listing page in O(jobs), so past a few thousand jobs the long form scans the table instead.
    check_by_listing: bool = True
    quiet_rounds: int = 15  # at most this many maintenance rounds once faults are off


# -- simulated time ------------------------------------------------------------------------
class SimClock(Clock):
    """The conftest Clock with a frozen base: time moves only when someone advances it, so a
    run does not depend on how fast the machine is. SQS (moto) reads the same time."""

    def __init__(self, base: datetime) -> None:
        super().__init__()
        self.base = base
        self._millis = base.timestamp() * 1000  # moto reads it for every message it looks at

    def __call__(self) -> datetime:
        return self.base + self.offset

    def advance(self, seconds: float) -> None:
        super().advance(seconds)
        self._millis = (self.base + self.offset).timestamp() * 1000

    def millis(self) -> float:
        return self._millis


class Abandoned(BaseException):
    """The invocation is gone (Lambda timed out, the host died): nothing after it runs."""


# -- faults --------------------------------------------------------------------------------
def _client_error(kind: str, service: str, operation: str, rng: random.Random) -> Exception:
    if kind == "read timeout":
        return ReadTimeoutError(endpoint_url=f"https://{service}.chaos.invalid")
    if kind == "connection refused":
        return EndpointConnectionError(endpoint_url=f"https://{service}.chaos.invalid")
    if kind == "throttled":
        codes = (
            ("ProvisionedThroughputExceededException", "ThrottlingException", "RequestLimitExceeded")
            if service == "dynamodb"
            else ("ThrottlingException", "RequestThrottled")
        )
        code, status = rng.choice(codes), 400
    else:
        code, status = rng.choice(
            (("InternalServerError", 500), ("ServiceUnavailable", 503))
            if service == "dynamodb"
            else (("InternalFailure", 500), ("ServiceUnavailable", 503))
        )
    response: Any = {
        "Error": {"Code": code, "Message": "injected by the chaos run"},
        "ResponseMetadata": {"HTTPStatusCode": status},
    }
    return ClientError(response, operation)


def _written_jobs(params: dict[str, Any]) -> list[dict[str, Any]]:
    """The job items a PutItem or TransactWriteItems writes (items with a jobId and a status)."""
    items = [params.get("Item") or {}]
    items += [(t.get("Put") or {}).get("Item") or {} for t in params.get("TransactItems") or []]
    return [i for i in items if "jobId" in i and "status" in i]


class Chaos:
    """The botocore hooks: decide, with one seeded generator, which calls fail and how."""

    def __init__(self, app: LocalApp, config: ChaosConfig, rng: random.Random) -> None:
        self.app = app
        self.config = config
        self.rng = rng
        self.enabled = False
        self.path = "harness"  # api, worker or maintenance: who is calling
        self.injected: Counter[str] = Counter()  # "<path> <service>.<Operation> <kind>"
        self.duplicates = 0
        self.abandoned = 0
        # By job: invocations that died after its PROCESSING write, and faults on its writes.
        self.deaths: Counter[str] = Counter()
        self.write_faults: Counter[str] = Counter()
        self.attempted: list[str] = []  # job ids the current API request tried to create
        queue = wiring.container().queue
        self.job_queues = set(queue.queue_urls.values())

    def attach(self, client: Any, service: str, operations: tuple[str, ...]) -> None:
        for operation in operations:
            client.meta.events.register(f"before-parameter-build.{service}.{operation}", self._before)
            client.meta.events.register(f"after-call.{service}.{operation}", self._after)

    def _before(self, params: dict[str, Any], context: dict[str, Any], event_name: str, **_: Any) -> None:
        service, operation = event_name.split(".")[1:3]
        context["chaos_params"] = params
        if self.path == "api":
            self._note_attempt(operation, params)
        if not self.enabled or self.path == "harness":
            return
        draw = self.rng.random()
        if draw < self.config.fault_rate:
            kind = self.rng.choice(BEFORE_KINDS)
            self.injected[f"{self.path} {service}.{operation} {kind}"] += 1
            self.write_faults.update(i["jobId"]["S"] for i in _written_jobs(params))
            raise _client_error(kind, service, operation, self.rng)
        if draw < self.config.fault_rate + self.config.lost_rate:
            context["chaos_lose"] = True

    def _after(self, http_response: Any, context: dict[str, Any], event_name: str, **_: Any) -> None:
        service, operation = event_name.split(".")[1:3]
        params: dict[str, Any] = context.get("chaos_params") or {}
        if context.pop("chaos_lose", False):
            self.injected[f"{self.path} {service}.{operation} answer lost"] += 1
            self.write_faults.update(i["jobId"]["S"] for i in _written_jobs(params))
            raise ReadTimeoutError(endpoint_url=f"https://{service}.chaos.invalid")
        if not self.enabled or http_response.status_code >= 300:
            return
        if (
            operation == "SendMessage"
            and params.get("QueueUrl") in self.job_queues
            and self.rng.random() < self.config.duplicate_rate
        ):
            self.duplicates += 1  # the runtime's own client: no hooks on its SendMessage
            self.app.sqs.send_message(
                QueueUrl=params["QueueUrl"],
                MessageBody=params["MessageBody"],
                DelaySeconds=params.get("DelaySeconds", 0),
            )
        if (
            self.path == "worker"
            and operation in ("PutItem", "TransactWriteItems")
            and any(i["status"].get("S") == "PROCESSING" for i in _written_jobs(params))
            and self.rng.random() < self.config.abandon_rate
        ):
            self.abandoned += 1
            self.deaths.update(i["jobId"]["S"] for i in _written_jobs(params))
            raise Abandoned

    def _note_attempt(self, operation: str, params: dict[str, Any]) -> None:
        found: list[str] = []
        if operation == "SendMessage":
            try:
                job_id = json.loads(params.get("MessageBody", "")).get("jobId")
            except (ValueError, AttributeError):
                job_id = None
            found = [job_id] if isinstance(job_id, str) else []
        elif operation in ("PutItem", "TransactWriteItems"):
            found = [i["jobId"]["S"] for i in _written_jobs(params)]
        self.attempted += [j for j in found if j not in self.attempted]


# -- the evidence: warnings by job ---------------------------------------------------------
class LogTap(logging.Handler):
    """Keeps the functions' warnings and errors, by the job id Powertools appends."""

    def __init__(self, formatter: logging.Formatter | None) -> None:
        super().__init__(logging.WARNING)
        self.format_with = formatter
        self.by_job: dict[str, list[str]] = defaultdict(list)
        self.messages: Counter[str] = Counter()

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        self.messages[f"{record.levelname} {message[:120]}"] += 1
        job_id = None
        if self.format_with is not None:
            try:
                job_id = json.loads(self.format_with.format(record)).get("job_id")
            except Exception:  # a line that is not JSON: no job to file it under
                job_id = None
        if isinstance(job_id, str) and len(self.by_job[job_id]) < 8:
            line = f"{record.levelname} {message}"
            if record.exc_info and record.exc_info[1] is not None:
                line += f" [{type(record.exc_info[1]).__name__}: {str(record.exc_info[1])[:160]}]"
            self.by_job[job_id].append(line)


# -- the client's side ---------------------------------------------------------------------
@dataclass
class Answer:
    status: int
    code: str | None
    job_id: str | None  # the job a 2xx named
    attempted: list[str]  # job ids this request tried to create (seen in its SendMessage/PutItem)
    named: str | None = None  # the job a 5xx named (error.details.jobId)
    route: str = "POST /jobs"


@dataclass
class Submission:
    tag: str
    user: str
    body: dict[str, Any]
    key: str | None
    planned_success: bool
    answers: list[Answer] = field(default_factory=list)
    job_id: str | None = None  # the job a 2xx named
    resend_ids: list[str] = field(default_factory=list)  # what a resend with the same key named

    @property
    def claims(self) -> dict[str, Any]:
        return {"sub": self.user}


def plan_submissions(config: ChaosConfig, rng: random.Random) -> list[Submission]:
    submissions = []
    for n in range(config.jobs):
        tag = f"c{n:06d}"
        draw = rng.random()
        plan: dict[str, Any] = {"tag": tag}
        if draw < 0.40:
            pass  # plain success
        elif draw < 0.70:
            plan["fail_times"] = rng.choice((1, 2))
        elif draw < 0.85:
            plan["permanent"] = True
        else:
            plan["effect"] = True
            plan["crash"] = rng.choice(("exception", "retryable"))
        body: dict[str, Any] = {
            "type": JOB_TYPE,
            "payload": plan,
            "priority": rng.choice(("HIGH", "MEDIUM", "MEDIUM", "LOW")),
        }
        if rng.random() < config.delayed_share:
            body["delaySeconds"] = rng.randint(901, 1800)
        key = f"key-{tag}" if rng.random() < config.keyed_share else None
        submissions.append(
            Submission(tag, rng.choice(USERS), body, key, planned_success=not plan.get("permanent"))
        )
    return submissions


# -- the run -------------------------------------------------------------------------------
@dataclass
class ChaosResult:
    figures: dict[str, Any]

    def losses(self) -> dict[str, int]:
        """Every figure that must be 0: a job or an answer the system got wrong."""
        f = self.figures
        return {
            "lost": len(f["lost"]),
            "succeeded_recorded_failed": len(f["succeeded_recorded_failed"]),
            "infra_failed": len(f["infra_failed"]),
            "twice": len(f["twice"]),
            "stuck": len(f["stuck"]),
            "5xx_left_unfindable_job": len(f["5xx_left_unfindable_job"]),
            "duplicate_jobs": len(f["duplicate_jobs"]),
            "500": f["answers_500"],
            "undocumented_5xx": len(f["undocumented_5xx"]),
        }


class ChaosRun:
    def __init__(self, app: LocalApp, config: ChaosConfig, clock: SimClock) -> None:
        self.app = app
        self.config = config
        self.clock = clock
        self.rng = random.Random(config.seed)
        self.client_rng = random.Random(config.seed + 1)
        self.chaos = Chaos(app, config, random.Random(config.seed + 2))
        container = wiring.container()
        self.chaos.attach(container.dynamodb, "dynamodb", DYNAMODB_OPERATIONS)
        self.chaos.attach(container.queue.client, "sqs", SQS_OPERATIONS)
        self.chaos.attach(app.sqs, "sqs", RUNTIME_OPERATIONS)
        # The engine's pauses between write retries are time passing, not the machine sleeping.
        container.worker.sleep = self.advance
        container.jobs.sleep = self.advance
        # The mapping's batching window waits on the wall clock for fuller batches: here each
        # poll takes what is visible at once.
        self.sources: list[tuple[Function, SqsSource]] = [
            (f, replace(s, batching_window_seconds=0)) for f, s in app.sqs_sources()
        ]
        self.api_5xx: Counter[str] = Counter()
        self.statuses: Counter[str] = Counter()
        self.runtime_errors: Counter[str] = Counter()
        self.maintenance_errors: Counter[str] = Counter()
        self.abandoned_polls = 0
        self.messages_after_submitting: dict[str, int] = {}

    # -- time, calls -----------------------------------------------------------------------
    def advance(self, seconds: float) -> None:
        self.clock.advance(seconds)

    def api(
        self,
        method: str,
        path: str,
        body: Any = b"",
        claims: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> HttpResult:
        self.chaos.path, self.chaos.attempted = "api", []
        try:
            result = self.app.api(method, path, body, claims, headers)
        except Exception as exc:  # the function itself failed: API Gateway answers 500
            result = HttpResult(500, {}, {"error": {"code": f"UNHANDLED {type(exc).__name__}"}})
        finally:
            self.chaos.path = "harness"
        route = path.split("?", maxsplit=1)[0]
        if route.startswith("/jobs/"):
            route = "/jobs/{id}/retry" if route.endswith("/retry") else "/jobs/{id}"
        self.statuses[f"{method} {route} {result.status}"] += 1
        if result.status >= 500:
            self.api_5xx[f"{result.status} {_code(result)}"] += 1
        return result

    def drain(self, max_passes: int = 60) -> int:
        """Poll every queue, as the event source mappings do, until a pass finds nothing."""
        delivered = 0
        self.chaos.path = "worker"
        try:
            for _ in range(max_passes):
                this_pass = 0
                for function, source in self.sources:
                    handler = self.app.handlers[function.logical_id]
                    try:
                        this_pass += deliver(self.app.sqs, function, handler, source)
                    except Abandoned:
                        self.abandoned_polls += 1
                        this_pass += 1
                    except Exception as exc:  # the runtime's delete failed: the batch returns
                        self.runtime_errors[type(exc).__name__] += 1
                        this_pass += 1
                delivered += this_pass
                if this_pass == 0:
                    break
        finally:
            self.chaos.path = "harness"
        return delivered

    def fire(self, schedule: str) -> int:
        """One run of a schedule; how many jobs it changed (1 if it failed: not quiet)."""
        self.chaos.path = "maintenance"
        try:
            result = self.app.fire(schedule)
            return sum(int(v) for v in result.values())
        except Exception as exc:
            self.maintenance_errors[f"{schedule} {type(exc).__name__}"] += 1
            return 1
        finally:
            self.chaos.path = "harness"

    # -- the client ------------------------------------------------------------------------
    def post(self, submission: Submission, headers: dict[str, str]) -> Answer:
        result = self.api("POST", "/jobs", submission.body, submission.claims, headers)
        job_id = result.body.get("jobId") if 200 <= result.status < 300 and result.body else None
        answer = Answer(result.status, _code(result), job_id, list(self.chaos.attempted), _named(result))
        submission.answers.append(answer)
        return answer

    def send(self, submission: Submission) -> str | None:
        """POST until a 2xx, retrying a 5xx up to CLIENT_RETRIES times; the job id or None.
        As the API documents it: with a key, the same request again; without one, a 503 that
        names a job (QUEUE_UNAVAILABLE, the job recorded FAILED ENQUEUE_FAILED) is retried with
        POST /jobs/{id}/retry, and only a job that does not exist (404) is posted again."""
        headers = {"Idempotency-Key": submission.key} if submission.key else {}
        for attempt in range(1 + CLIENT_RETRIES):
            answer = self.post(submission, headers)
            if answer.job_id is not None:
                return answer.job_id
            if answer.status < 500 or attempt == CLIENT_RETRIES:
                return None
            if submission.key is None and answer.named is not None:
                kept = self.retry_named(submission, answer.named)
                if kept is not None:
                    return kept
            self.advance(1)  # Retry-After: 1
        return None

    def retry_named(self, submission: Submission, job_id: str) -> str | None:
        """POST /jobs/{id}/retry until it answers: 202 (requeued) or 409 (not FAILED: its
        message got through and the worker has it) keep the job; 404 means it was never made."""
        for attempt in range(1 + CLIENT_RETRIES):
            self.advance(1)
            result = self.api("POST", f"/jobs/{job_id}/retry", claims=submission.claims)
            answer = Answer(result.status, _code(result), None, list(self.chaos.attempted), _named(result))
            answer.route = "POST /jobs/{id}/retry"
            submission.answers.append(answer)
            if result.status in (202, 409):
                return job_id
            if result.status < 500 or attempt == CLIENT_RETRIES:
                return None
        return None

    def submit(self, submission: Submission) -> None:
        submission.job_id = self.send(submission)
        if submission.job_id and submission.key and self.client_rng.random() < self.config.resend_share:
            again = self.send(submission)  # the client never saw the first answer
            if again is not None:
                submission.resend_ids.append(again)
        if submission.job_id and self.client_rng.random() < self.config.read_share:
            self.api("GET", f"/jobs/{submission.job_id}", claims=submission.claims)

    # -- phases ----------------------------------------------------------------------------
    def run(self) -> ChaosResult:
        started = time.monotonic()
        # What follows the submissions (the tail, settling, the check) took about a quarter of
        # the submitting time in the long run: submission stops at 72 % of the budget.
        submit_until = started + SUBMIT_SHARE * self.config.max_seconds
        submissions = plan_submissions(self.config, self.rng)
        LEDGER.clear()
        sent: list[Submission] = []
        phases: dict[str, float] = {}
        self.chaos.enabled = True
        waves = range(0, len(submissions), self.config.wave)
        for number, start in enumerate(waves, start=1):
            if time.monotonic() > submit_until:
                break
            for submission in submissions[start : start + self.config.wave]:
                self.submit(submission)
                sent.append(submission)
            user = self.client_rng.choice(USERS)
            self.api("GET", "/jobs?limit=20", claims={"sub": user})
            self.drain()
            self.advance(5)
            if number % self.config.maintenance_every == 0:
                for schedule in MAINTENANCE:
                    self.fire(schedule)
        phases["submitting"] = time.monotonic() - started
        self.messages_after_submitting = self.messages_left()
        for seconds in TAIL_SECONDS:  # retries, expired leases and sweeps, still under faults
            self.advance(seconds)
            self.drain()
            for schedule in MAINTENANCE:
                self.fire(schedule)
        phases["tail_under_faults"] = time.monotonic() - started - sum(phases.values())
        self.chaos.enabled = False
        rounds, quiet = self.settle()
        phases["settling"] = time.monotonic() - started - sum(phases.values())
        figures = self.figures(sent, rounds, quiet)
        phases["checking"] = time.monotonic() - started - sum(phases.values())
        figures["submitted"] = len(sent)
        figures["requested"] = self.config.jobs
        figures["time_bound_hit"] = len(sent) < len(submissions)
        figures["seconds_by_phase"] = {k: round(v, 1) for k, v in phases.items()}
        figures["messages_after_submitting"] = self.messages_after_submitting
        figures["duration_seconds"] = round(time.monotonic() - started, 1)
        return ChaosResult(figures)

    def settle(self) -> tuple[int, bool]:
        """Faults off: the schedules and the queues until a whole round changes nothing."""
        for number in range(1, self.config.quiet_rounds + 1):
            self.advance(QUIET_ROUND_SECONDS)
            let_sqs_timers_pass()
            self.advance(1)  # moto's "visible" is strict (now > visible_at)
            changed = sum(self.fire(schedule) for schedule in MAINTENANCE)
            delivered = self.drain()
            if changed == 0 and delivered == 0:
                return number, True
        return self.config.quiet_rounds, False

    # -- figures ---------------------------------------------------------------------------
    @staticmethod
    def messages_left() -> dict[str, int]:
        """Messages still in each queue (visible, in flight or delayed), by queue name."""
        from moto.backends import get_backend

        backend = get_backend("sqs")["123456789012"]["us-east-1"]
        return {name: len(queue._messages) for name, queue in sorted(backend.queues.items())}

    def every_job(self) -> dict[str, dict[str, Any]]:
        """Every job, as the API shows it: through its listing, or read from the table."""
        if self.config.check_by_listing:
            return self.listing()
        import boto3

        from tarefa.adapters.dynamodb import _to_job

        table = wiring.container().settings.jobs_table
        jobs: dict[str, dict[str, Any]] = {}
        for page in boto3.client("dynamodb").get_paginator("scan").paginate(TableName=table):
            for item in page["Items"]:
                job = _to_job(item).public()
                jobs[job["jobId"]] = job
        return jobs

    def listing(self) -> dict[str, dict[str, Any]]:
        """Every job, through the API as an admin (newest first, page by page)."""
        jobs: dict[str, dict[str, Any]] = {}
        cursor: str | None = None
        for _ in range(100_000):
            query = "/jobs?limit=100" + (f"&cursor={cursor}" if cursor else "")
            page = self.api("GET", query, claims=ADMIN)
            assert page.status == 200, page.body
            for job in page.body["items"]:
                jobs[job["jobId"]] = job
            cursor = page.body.get("nextCursor")
            if not cursor:
                break
        return jobs

    def figures(self, sent: list[Submission], rounds: int, quiet: bool) -> dict[str, Any]:
        jobs = self.every_job()
        final: dict[str, str] = {job_id: job["status"] for job_id, job in jobs.items()}
        accepted = [s for s in sent if s.job_id is not None]
        for submission in accepted:  # not listed: ask for it by id (404: gone or never recorded)
            assert submission.job_id is not None
            if submission.job_id not in final:
                found = self.api("GET", f"/jobs/{submission.job_id}", claims=submission.claims)
                final[submission.job_id] = (
                    found.body["status"] if found.status == 200 else f"HTTP {found.status}"
                )
                if found.status == 200:
                    jobs[submission.job_id] = found.body
        by_tag: dict[str, list[str]] = defaultdict(list)
        for job_id, job in jobs.items():
            tag = (job.get("payload") or {}).get("tag")
            if isinstance(tag, str):
                by_tag[tag].append(job_id)

        def described(job_id: str) -> dict[str, Any]:
            job = jobs.get(job_id) or {}
            return {
                "jobId": job_id,
                "status": final.get(job_id, "absent"),
                "attempts": job.get("attempts"),
                "error": job.get("error"),
                "code": (job.get("errorDetails") or {}).get("code"),
                "deadLettered": job.get("deadLettered"),
                "runs": LEDGER.runs.get(job_id, 0),
                "injected_deaths": self.chaos.deaths.get(job_id, 0),
                "injected_write_faults": self.chaos.write_faults.get(job_id, 0),
                "log": self.tap.by_job.get(job_id, [])[:4] if self.tap else [],
            }

        lost = [described(s.job_id) for s in accepted if s.job_id and final[s.job_id] not in TERMINAL]
        stuck = [described(j) for j, status in final.items() if status == "PROCESSING"]
        succeeded_failed = sorted(j for j in LEDGER.succeeded if final.get(j) == "FAILED")
        infra_failed = [
            described(s.job_id)
            for s in accepted
            if s.job_id and s.planned_success and final[s.job_id] == "FAILED"
        ]
        twice = {j: n for j, n in sorted(LEDGER.effects.items()) if n > 1}
        unfindable: list[dict[str, Any]] = []
        duplicates: list[dict[str, Any]] = []
        resend_mismatch = [
            {"tag": s.tag, "jobId": s.job_id, "resend": s.resend_ids}
            for s in accepted
            if any(r != s.job_id for r in s.resend_ids)
        ]
        for submission in sent:
            known = {submission.job_id} if submission.job_id else set()
            extra = [j for j in by_tag.get(submission.tag, []) if j not in known]
            if not extra:
                continue
            blamed = [
                {"tag": submission.tag, "keyed": submission.key is not None, "route": a.route,
                 "status": a.status, "code": a.code, "named": a.named,
                 "created": [described(j) for j in a.attempted if j in extra]}
                for a in submission.answers
                if a.status >= 500 and any(j in extra for j in a.attempted)
            ]  # fmt: skip
            unfindable += blamed
            if not blamed:
                duplicates.append({"tag": submission.tag, "known": sorted(known), "extra": extra})
        beyond = [
            described(j)
            for j, status in final.items()
            if status in TERMINAL and (jobs.get(j) or {}).get("attempts", 0) > LEDGER.runs.get(j, 0)
            and (jobs.get(j) or {}).get("type") == JOB_TYPE
        ]  # fmt: skip
        outcomes = Counter(final[s.job_id] for s in accepted if s.job_id)
        codes = Counter(
            str(described(s.job_id)["code"]) for s in accepted if s.job_id and final[s.job_id] == "FAILED"
        )
        wrong_permanent = [
            described(s.job_id)
            for s in accepted
            if s.job_id
            and not s.planned_success
            and (final[s.job_id] != "FAILED" or (jobs[s.job_id].get("errorDetails") or {}).get("code") != PERMANENT_CODE)
        ]  # fmt: skip
        five = {k: v for k, v in sorted(self.api_5xx.items())}
        return {
            "accepted": len(accepted),
            "not_accepted": [
                {"tag": s.tag, "answers": [(a.status, a.code) for a in s.answers]}
                for s in sent
                if s.job_id is None
            ],
            "lost": lost,
            "succeeded_recorded_failed": [described(j) for j in succeeded_failed],
            "infra_failed": infra_failed,
            "twice": [{**described(j), "effects": n} for j, n in twice.items()],
            "stuck": stuck,
            "5xx_by_code": five,
            "answers_500": sum(v for k, v in self.api_5xx.items() if k.startswith("500 ")),
            "undocumented_5xx": sorted(k for k in five if k.split(" ", 1)[1] not in DOCUMENTED_5XX),
            "5xx_on_post": sum(
                1 for s in sent for a in s.answers if a.status >= 500 and a.route == "POST /jobs"
            ),
            "retried_named_jobs": sum(1 for s in sent for a in s.answers if a.route != "POST /jobs"),
            "5xx_left_unfindable_job": unfindable,
            "duplicate_jobs": duplicates,
            "resend_named_another_job": resend_mismatch,
            "permanent_not_failed_as_planned": wrong_permanent,
            "attempts_beyond_handler_runs": beyond,
            "final_statuses": dict(sorted(outcomes.items())),
            "failed_by_code": dict(sorted(codes.items())),
            "jobs_in_table": len(jobs),
            "checked_by": "listing" if self.config.check_by_listing else "scan",
            "messages_left": self.messages_left(),
            "faults_injected": sum(self.chaos.injected.values()),
            "faults_by_path_call_kind": dict(sorted(self.chaos.injected.items())),
            "duplicate_messages_sent": self.chaos.duplicates,
            "abandoned_invocations": self.chaos.abandoned,
            "runtime_delete_errors": dict(self.runtime_errors),
            "maintenance_errors": dict(sorted(self.maintenance_errors.items())),
            "handler_runs": sum(LEDGER.runs.values()),
            "side_effects": sum(LEDGER.effects.values()),
            "api_answers": dict(sorted(self.statuses.items())),
            "settle_rounds": rounds,
            "quiet": quiet,
            "warnings_top": dict(self.tap.messages.most_common(12)) if self.tap else {},
            "config": asdict(self.config),
        }

    tap: LogTap | None = None


def _named(result: HttpResult) -> str | None:
    """The job id a 5xx names in error.details.jobId, if any."""
    body = result.body
    error = body.get("error") if isinstance(body, dict) else None
    details = error.get("details") if isinstance(error, dict) else None
    job_id = details.get("jobId") if isinstance(details, dict) else None
    return job_id if isinstance(job_id, str) and result.status >= 500 else None


def _code(result: HttpResult) -> str | None:
    body = result.body
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        code = body["error"].get("code")
        return str(code) if code is not None else None
    return None


class _TransactionSnapshots:
    """moto keeps a copy of every table a TransactWriteItems touches, to roll back to: a deep
    copy of the whole table (its stream too), which makes each keyed enqueue cost O(jobs) and
    the long run quadratic. The engine's transactions are Puts, which replace items and never
    change one in place, so a copy of the table's item map is as good a rollback point."""

    def __init__(self) -> None:
        import copy

        self.copy = copy

    def deepcopy(self, value: Any, memo: Any = None) -> Any:
        from moto.dynamodb.models.table import Table

        if isinstance(value, Table):
            snapshot = self.copy.copy(value)
            if value.range_key_attr is None:  # {hash: item}
                snapshot.items = self.copy.copy(value.items)
            else:  # {hash: {range: item}}
                snapshot.items = defaultdict(dict, {k: dict(v) for k, v in value.items.items()})
            return snapshot
        return self.copy.deepcopy(value, memo)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.copy, name)


@contextmanager
def seeded(seed: int, clock: SimClock) -> Iterator[None]:
    """Job ids, backoff jitter, moto's ids and SQS's clock from the seed and the simulated time."""
    from moto.moto_api._internal import mock_random

    ids = random.Random(seed + 3)
    state = random.getstate()
    random.seed(seed + 4)
    mock_random.seed(seed + 5)

    def uuid4() -> uuid.UUID:
        return uuid.UUID(int=ids.getrandbits(128), version=4)

    with ExitStack() as stack:
        stack.enter_context(mock.patch("uuid.uuid4", uuid4))
        stack.enter_context(mock.patch("moto.sqs.models.unix_time_millis", clock.millis))
        stack.enter_context(mock.patch("moto.sqs.models.unix_time", lambda: clock.millis() / 1000))
        stack.enter_context(mock.patch("moto.dynamodb.models.copy", _TransactionSnapshots()))
        try:
            yield
        finally:
            random.setstate(state)


def run_chaos(config: ChaosConfig, on_app: Callable[[LocalApp], None] | None = None) -> ChaosResult:
    """A fresh application on moto, the run, and its figures. The caller sets the AWS
    environment (tests/conftest.py, bench/chaos.py); the functions' environment is put back."""
    import os

    import boto3
    from moto import mock_aws

    saved = dict(os.environ)
    clock = SimClock(datetime(2026, 11, 22, 12, 0, 0, tzinfo=UTC))
    tarefa_logger = logging.getLogger("tarefa")
    tap: LogTap | None = None
    try:
        with seeded(config.seed, clock), mock_aws():
            parameters = {"JobModules": MODULES, "EnqueueRateLimit": "off", "LogLevel": "WARNING"}
            app = LocalApp(boto3.client("sqs"), boto3.client("dynamodb"), parameters)
            wiring.container().clock = clock
            if on_app is not None:
                on_app(app)
            formatter = next((h.formatter for h in tarefa_logger.handlers if h.formatter), None)
            tap = LogTap(formatter)
            tarefa_logger.addHandler(tap)
            run = ChaosRun(app, config, clock)
            run.tap = tap
            return run.run()
    finally:
        if tap is not None:
            tarefa_logger.removeHandler(tap)
        wiring.reset()
        os.environ.clear()
        os.environ.update(saved)
