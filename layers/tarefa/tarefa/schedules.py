"""Recurring jobs users define at run time: POST/GET/PATCH/DELETE /schedules.

A schedule's definition is engine data in DynamoDB (the schedules table, keyed by owner), so
listings never call Scheduler; on AWS each enabled or disabled schedule is also an EventBridge
Scheduler schedule in the stage's group whose target is the job type's priority queue and whose
Input is a job message the worker records on first sight (tarefa.queue.QueueMessage).

Each firing is one job, idempotent per firing time: the message's `jobId` is
`sched-<schedule key>-<aws.scheduler.scheduled-time>`, a context attribute Scheduler replaces
with the firing's time (2026-12-02T03:00:00Z). A repeated delivery of the same firing carries the
same job id: the worker's first write is conditional on the id being new, so the repeat finds the
job and is dropped (or waits for it) instead of making a second one. The same id tells when the
schedule last ran: `lastRunAt` is the last firing time the expression gives, if its job exists.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any, Protocol

from aws_lambda_powertools import Logger
from pydantic import Field, ValidationError

from tarefa import cron
from tarefa.errors import (
    ConflictError,
    MalformedRequestError,
    QueueUnavailableError,
    Refusal,
    ValidationFailedError,
)
from tarefa.job import CamelModel, Priority, utcnow
from tarefa.jobs import Caller, field_errors
from tarefa.jobtypes import JobTypeRegistry
from tarefa.ports import JobStore
from tarefa.sensitive import input_secrets, withholding

logger = Logger(child=True)

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
MAX_INPUT_BYTES = 8_192  # what the Scheduler target's Input holds, with room for the envelope
SCHEDULED_TIME = "<aws.scheduler.scheduled-time>"
SCHEDULED_TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"  # how Scheduler writes it
INTERNAL_TYPES = frozenset({"system.bulk"})  # run by the engine for an operation, never scheduled
# A definition or schedule changed this recently may be a request's half-done work (a create
# writes the definition, then the schedule; a delete the other way round): the reconciler leaves
# it to the next run. Far above a request's 30 s.
RECONCILE_GRACE = timedelta(minutes=10)
RECONCILE_PAGE = 100


class ScheduleExistsError(Refusal):
    code = "SCHEDULE_EXISTS"
    status = 409


class ScheduleNotFoundError(Refusal):
    code = "SCHEDULE_NOT_FOUND"
    status = 404

    def __init__(self, name: str) -> None:
        super().__init__(f"Schedule {name!r} was not found")


# -- requests ---------------------------------------------------------------------------------
class CreateScheduleRequest(CamelModel):
    name: str = Field(pattern=NAME_PATTERN)
    type: str = Field(min_length=1, max_length=128)
    payload: Any = None
    cron: str | None = Field(None, min_length=1, max_length=256)
    rate: str | None = Field(None, min_length=1, max_length=64)
    timezone: str = Field("UTC", min_length=1, max_length=64)
    enabled: bool = True


class PatchScheduleRequest(CamelModel):
    payload: Any = None
    cron: str | None = Field(None, min_length=1, max_length=256)
    rate: str | None = Field(None, min_length=1, max_length=64)
    timezone: str | None = Field(None, min_length=1, max_length=64)
    enabled: bool | None = None


class ScheduleListRequest(CamelModel):
    limit: int = Field(20, ge=1, le=100)
    cursor: str | None = Field(None, min_length=1, max_length=2048)


class OwnerQuery(CamelModel):
    """An admin names another user's schedule with ?owner=; anyone else's is their own."""

    owner: str | None = Field(None, min_length=1, max_length=256)


# -- the definition ---------------------------------------------------------------------------
class Schedule(CamelModel):
    owner: str
    name: str
    type: str
    payload: Any = None
    expression: str
    timezone: str = "UTC"
    enabled: bool = True
    priority: Priority = Priority.MEDIUM
    # When the expression (or enabling) last took effect: a rate fires at it and every interval
    # after; lastRunAt never looks before it.
    since: datetime
    created_at: datetime
    updated_at: datetime
    version: int = 0

    @property
    def key(self) -> str:
        """Names the schedule on Scheduler and in its jobs' ids: the owner and name hashed
        (Scheduler's names allow 64 characters of [0-9A-Za-z_.-], and owners may be e-mails)."""
        return schedule_key(self.owner, self.name)

    @property
    def parsed(self) -> cron.Expression:
        return cron.parse(self.expression)

    def job_id_at(self, fired: datetime) -> str:
        return f"sched-{self.key}-{fired.astimezone(UTC).strftime(SCHEDULED_TIME_FORMAT)}"

    def message_template(self) -> str:
        """The Input of the Scheduler target: a job message with the firing time in its id."""
        body = {
            "type": self.type,
            "payload": self.payload,
            "jobId": f"sched-{self.key}-{SCHEDULED_TIME}",
            "userId": self.owner,
        }
        return json.dumps(body, separators=(",", ":"))

    def next_run(self, now: datetime) -> datetime | None:
        if not self.enabled:
            return None
        return cron.next_fire(self.parsed, now, cron.zone_of(self.timezone), self.since)

    def last_due(self, now: datetime) -> datetime | None:
        return cron.last_fire(self.parsed, now, cron.zone_of(self.timezone), self.since)


def schedule_key(owner: str, name: str) -> str:
    return hashlib.sha256(f"{owner}\x00{name}".encode()).hexdigest()[:24]


def start_of(now: datetime) -> datetime:
    """A schedule starts on the next whole minute (Scheduler's precision)."""
    return (now + timedelta(minutes=1)).replace(second=0, microsecond=0)


def _iso(moment: datetime | None) -> str | None:
    return moment.astimezone(UTC).strftime(SCHEDULED_TIME_FORMAT) if moment else None


# -- ports -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SchedulePage:
    items: list[Schedule]
    cursor: dict[str, Any] | None


class ScheduleStore(Protocol):
    def get_schedule(self, owner: str, name: str) -> Schedule | None: ...

    def create_schedule(self, schedule: Schedule) -> None:
        """ConflictError when the owner has a schedule of that name."""

    def replace_schedule(self, schedule: Schedule, expected_version: int) -> None:
        """ConflictError when it changed (or went) since it was read."""

    def delete_schedule(self, owner: str, name: str) -> None: ...

    def list_schedules(self, owner: str | None, limit: int, cursor: dict[str, Any] | None) -> SchedulePage:
        """An owner's schedules by name, or every owner's (None) for admins."""


@dataclass(frozen=True)
class Deployed:
    """What fires a schedule, as the scheduler holds it (or as `put` would make it)."""

    key: str
    expression: str
    timezone: str
    enabled: bool
    target: str  # the queue's ARN
    role: str
    input: str

    def differences(self, other: Deployed) -> list[str]:
        return [
            name
            for name in ("expression", "timezone", "enabled", "target", "role", "input")
            if getattr(self, name) != getattr(other, name)
        ]


@dataclass(frozen=True)
class Listed:
    """One schedule of the group in a listing: its name and when it last changed."""

    key: str
    modified_at: datetime | None


class Scheduler(Protocol):
    """Where schedules fire: EventBridge Scheduler on AWS (tarefa.adapters.scheduler)."""

    def put(self, schedule: Schedule) -> None:
        """Create or update the schedule that sends `schedule.message_template()` to its
        priority's queue on its expression, enabled or not."""

    def delete(self, schedule: Schedule) -> None:
        """Gone afterwards, also when it was not there."""

    def delete_key(self, key: str) -> None:
        """The schedule named `key` gone (an orphan: no definition names it)."""

    def listed(self) -> Iterator[Listed]:
        """Every schedule of the group, page by page."""

    def deployed(self, key: str) -> Deployed | None:
        """The schedule named `key` as it is, None when there is none."""

    def wanted(self, schedule: Schedule) -> Deployed:
        """The schedule `put(schedule)` makes."""


@dataclass
class Reconciled:
    """What a reconciliation found and did (README "Schedules")."""

    definitions: int = 0
    deployed: int = 0
    recreated: int = 0  # a definition whose schedule was missing
    updated: int = 0  # a schedule that differed from its definition
    deleted: int = 0  # a schedule no definition names
    skipped: int = 0  # changed within the grace: a request may still be making it
    failed: int = 0  # a repair that failed (the next run tries again)
    unchecked: int = 0  # not compared: the run's time was up (the next run's order differs)

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


# -- the service -------------------------------------------------------------------------------
class ScheduleService:
    def __init__(
        self,
        store: ScheduleStore,
        scheduler: Scheduler,
        registry: JobTypeRegistry,
        jobs: JobStore,
        now: Callable[[], datetime] = utcnow,
    ) -> None:
        self.store = store
        self.scheduler = scheduler
        self.registry = registry
        self.jobs = jobs
        self.now = now

    def create(self, caller: Caller, request: CreateScheduleRequest) -> dict[str, Any]:
        expression = _expression(request.cron, request.rate, required=True)
        assert expression is not None
        _zone(request.timezone)
        job_type, payload = self._payload(request.type, request.payload)
        now = self.now()
        schedule = Schedule(
            owner=caller.user_id,
            name=request.name,
            type=job_type,
            payload=payload,
            expression=expression,
            timezone=request.timezone,
            enabled=request.enabled,
            priority=self.registry.get(job_type).policy.priority,
            since=start_of(now),
            created_at=now,
            updated_at=now,
        )
        _check_size(schedule)
        try:
            self.store.create_schedule(schedule)
        except ConflictError:
            raise ScheduleExistsError(f"You already have a schedule named {request.name!r}") from None
        try:
            self.scheduler.put(schedule)
        except Exception as exc:
            self.store.delete_schedule(schedule.owner, schedule.name)  # nothing half-made stays
            raise QueueUnavailableError("The scheduler is unavailable; nothing was created, retry") from exc
        return self.public(schedule, caller)

    def get(self, caller: Caller, name: str, owner: str | None = None) -> dict[str, Any]:
        return self.public(self._visible(caller, name, owner), caller)

    def list(self, caller: Caller, request: ScheduleListRequest) -> dict[str, Any]:
        cursor = _decode_cursor(request.cursor) if request.cursor else None
        page = self.store.list_schedules(None if caller.is_admin else caller.user_id, request.limit, cursor)
        return {
            "items": [self.public(s, caller) for s in page.items],
            "nextCursor": _encode_cursor(page.cursor) if page.cursor else None,
        }

    def patch(
        self, caller: Caller, name: str, request: PatchScheduleRequest, owner: str | None = None
    ) -> dict[str, Any]:
        current = self._visible(caller, name, owner)
        given = request.model_fields_set
        changes: dict[str, Any] = {}
        now = self.now()
        if "cron" in given or "rate" in given:
            changes["expression"] = _expression(request.cron, request.rate, required=True)
        if "timezone" in given:
            if request.timezone is None:
                raise ValidationFailedError(
                    "The request is not valid", [{"field": "timezone", "message": "may not be null"}]
                )
            _zone(request.timezone)
            changes["timezone"] = request.timezone
        if "payload" in given:
            changes["payload"] = self._payload(current.type, request.payload)[1]
        if "enabled" in given:
            if request.enabled is None:
                raise ValidationFailedError(
                    "The request is not valid", [{"field": "enabled", "message": "may not be null"}]
                )
            changes["enabled"] = request.enabled
        restarts = "expression" in changes or (changes.get("enabled") and not current.enabled)
        if restarts:
            changes["since"] = start_of(now)
        updated = current.model_copy(update={**changes, "updated_at": now, "version": current.version + 1})
        _check_size(updated)
        try:
            self.store.replace_schedule(updated, current.version)
        except ConflictError:
            raise ScheduleExistsError(
                f"Schedule {name!r} changed while this request ran; read it and try again"
            ) from None
        try:
            self.scheduler.put(updated)
        except Exception as exc:
            try:  # put the definition back: it says what Scheduler runs
                self.store.replace_schedule(
                    current.model_copy(update={"version": updated.version + 1}), updated.version
                )
            except Exception:
                logger.warning("could not restore a schedule's definition", extra={"schedule": current.key})
            raise QueueUnavailableError("The scheduler is unavailable; nothing was changed, retry") from exc
        return self.public(updated, caller)

    def delete(self, caller: Caller, name: str, owner: str | None = None) -> None:
        schedule = self._visible(caller, name, owner)
        self.scheduler.delete(schedule)  # first: a definition never outlives what fires
        self.store.delete_schedule(schedule.owner, schedule.name)

    # -- drift -----------------------------------------------------------------------------
    def reconcile(self, out_of_time: Callable[[], bool] = lambda: False) -> Reconciled:
        """Make the scheduler's group say what the definitions say: a definition whose schedule
        is missing gets it again, a schedule that differs from its definition (expression, time
        zone, state, target, role, input) is put again, a schedule no definition names is deleted.

        Run by the maintenance function on its schedule. The group is listed first, then the
        definitions (the AllSchedules index, every shard, paged; no scan): a create writes its
        definition before its schedule, so a schedule in the listing whose definition is not in
        the later one is a true orphan, unless it changed within RECONCILE_GRACE (a request at
        work: left to the next run). Each repair reads the definition again first (one
        consistent GetItem) and one failing never stops the others. The missing and the orphans
        (known from the listings alone) go first; then the rest are compared (a GetSchedule
        each) in a random order until `out_of_time()`: a run cut short leaves the others
        `unchecked`, and the next run's order differs."""
        report = Reconciled()
        now = self.now()
        listed = {entry.key: entry for entry in self.scheduler.listed()}
        report.deployed = len(listed)
        definitions: dict[str, Schedule] = {}
        cursor: dict[str, Any] | None = None
        while True:
            page = self.store.list_schedules(None, RECONCILE_PAGE, cursor)
            for schedule in page.items:
                definitions[schedule.key] = schedule
            if page.cursor is None:
                break
            cursor = page.cursor
        report.definitions = len(definitions)
        settled = [s for s in definitions.values() if now - s.updated_at >= RECONCILE_GRACE]
        report.skipped += len(definitions) - len(settled)
        for schedule in [s for s in settled if s.key not in listed]:
            self._guarded(report, schedule.key, partial(self._repair, schedule, False, report))
        for key, entry in listed.items():
            if key in definitions:
                continue
            if entry.modified_at is None or now - entry.modified_at < RECONCILE_GRACE:
                report.skipped += 1
                continue
            if self._guarded(report, key, partial(self.scheduler.delete_key, key)):
                report.deleted += 1
                logger.warning("deleted a schedule no definition names", extra={"schedule": key})
        present = [s for s in settled if s.key in listed]
        random.shuffle(present)
        for n, schedule in enumerate(present):
            if out_of_time():
                report.unchecked = len(present) - n
                break
            self._guarded(report, schedule.key, partial(self._repair, schedule, True, report))
        logger.info("schedules reconciled", extra=report.as_dict())
        return report

    def _guarded(self, report: Reconciled, key: str, repair: Callable[[], object]) -> bool:
        try:
            repair()
        except Exception:
            report.failed += 1
            logger.warning("could not repair a schedule", extra={"schedule": key}, exc_info=True)
            return False
        return True

    def _repair(self, schedule: Schedule, present: bool, report: Reconciled) -> None:
        deployed = self.scheduler.deployed(schedule.key) if present else None
        drift: list[str] = []
        if deployed is not None:
            drift = self.scheduler.wanted(schedule).differences(deployed)
            if not drift:
                return
        current = self.store.get_schedule(schedule.owner, schedule.name)
        if current is None or current.version != schedule.version:
            report.skipped += 1  # deleted or changed since it was listed: the next run looks again
            return
        self.scheduler.put(current)
        if deployed is None:
            report.recreated += 1
            logger.warning("re-created a missing schedule", extra={"schedule": schedule.key})
        else:
            report.updated += 1
            logger.warning(
                "put back a schedule that drifted", extra={"schedule": schedule.key, "fields": drift}
            )

    # -- helpers ---------------------------------------------------------------------------
    def _visible(self, caller: Caller, name: str, owner: str | None) -> Schedule:
        who = owner if (owner and caller.is_admin) else caller.user_id
        found = self.store.get_schedule(who, name)
        if found is None:
            raise ScheduleNotFoundError(name)  # another user's name is as absent as no name
        return found

    def _payload(self, type_name: str, payload: Any) -> tuple[str, Any]:
        """Validated exactly as JobService.enqueue validates a new job's payload."""
        job_type = self.registry.get(type_name)  # UnknownJobTypeError: 400, as POST /jobs
        if job_type.name in INTERNAL_TYPES:
            raise ValidationFailedError(
                f"Job type {job_type.name} is run by the engine and cannot be scheduled",
                [{"field": "type", "message": "an engine-internal type"}],
            )
        if job_type.sensitive_fields:
            raise ValidationFailedError(
                f"Job type {job_type.name} has sensitive fields; a schedule would keep them in "
                "the clear in the scheduler's target, so it cannot be scheduled",
                [{"field": "type", "message": "declares sensitive fields"}],
            )
        try:
            model = job_type.payload_model.model_validate(payload)
        except ValidationError as exc:
            withhold = withholding(input_secrets(job_type, payload))
            raise ValidationFailedError(
                f"Payload does not match job type {type_name}", field_errors(exc, "payload", withhold)
            ) from None
        return job_type.name, model.model_dump(mode="json", by_alias=True)

    def public(self, schedule: Schedule, caller: Caller) -> dict[str, Any]:
        now = self.now()
        last = schedule.last_due(now)
        last_job = schedule.job_id_at(last) if last else None
        if last_job is not None and self.jobs.get(last_job) is None:
            last, last_job = None, None
        kind = "cron" if schedule.expression.startswith("cron(") else "rate"
        body: dict[str, Any] = {
            "name": schedule.name,
            "type": schedule.type,
            "payload": schedule.payload,
            kind: schedule.expression,
            "timezone": schedule.timezone,
            "enabled": schedule.enabled,
            "priority": str(schedule.priority),
            "nextRunAt": _iso(schedule.next_run(now)),
            "lastRunAt": _iso(last),
            "lastJobId": last_job,
            "createdAt": _iso(schedule.created_at),
            "updatedAt": _iso(schedule.updated_at),
        }
        if caller.is_admin:
            body["owner"] = schedule.owner
        return body


def _expression(cron_text: str | None, rate_text: str | None, required: bool) -> str | None:
    if cron_text is not None and rate_text is not None:
        raise ValidationFailedError(
            "Give either cron or rate, not both",
            [{"field": "cron", "message": "cron and rate are exclusive"}],
        )
    if cron_text is None and rate_text is None:
        if not required:
            return None
        raise ValidationFailedError(
            "A schedule needs cron or rate",
            [{"field": "cron", "message": "give cron(...) or rate(...)"}],
        )
    field, text = ("cron", cron_text) if cron_text is not None else ("rate", rate_text)
    assert text is not None
    try:
        parsed = cron.parse(text)
    except cron.ScheduleExpressionError as exc:
        raise ValidationFailedError(
            f"The {field} expression is not valid", [{"field": field, "message": str(exc)}]
        ) from None
    if (field == "cron") != isinstance(parsed, cron.Cron):
        raise ValidationFailedError(
            f"The {field} field takes a {field}(...) expression",
            [{"field": field, "message": f"expected {field}(...), got {text!r}"}],
        )
    if isinstance(parsed, cron.Cron) and parsed.next_after(utcnow(), cron.zone_of("UTC")) is None:
        raise ValidationFailedError(
            "The cron expression never fires",
            [{"field": "cron", "message": f"{text!r} matches no date from now on (e.g. 30 February)"}],
        )
    return text


def _zone(name: str) -> None:
    try:
        cron.zone_of(name)
    except cron.ScheduleExpressionError as exc:
        raise ValidationFailedError(
            "The time zone is not valid", [{"field": "timezone", "message": str(exc)}]
        ) from None


def _check_size(schedule: Schedule) -> None:
    size = len(schedule.message_template().encode())
    if size > MAX_INPUT_BYTES:
        raise ValidationFailedError(
            f"The schedule's job message would be {size} bytes; a schedule holds {MAX_INPUT_BYTES}",
            [{"field": "payload", "message": "too large for a schedule"}],
        )


def _encode_cursor(cursor: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(cursor, separators=(",", ":")).encode()).decode().rstrip("=")


def _decode_cursor(text: str) -> dict[str, Any]:
    try:
        raw = base64.b64decode(text + "=" * (-len(text) % 4), altchars=b"-_", validate=True)
        cursor = json.loads(raw)
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise MalformedRequestError("cursor is not one this API returned") from None
    if not isinstance(cursor, dict) or not all(isinstance(v, str | int) for v in cursor.values()):
        raise MalformedRequestError("cursor is not one this API returned")
    return cursor


# -- the documented shapes (tarefa.openapi) ---------------------------------------------------------
class ScheduleView(CamelModel):
    """A schedule as the API shows it: `cron` or `rate`, whichever it has."""

    name: str
    type: str
    payload: Any = None
    cron: str | None = Field(None, examples=["cron(0 3 * * ? *)"])
    rate: str | None = Field(None, examples=["rate(5 minutes)"])
    timezone: str = Field(examples=["America/Sao_Paulo"])
    enabled: bool
    priority: Priority
    next_run_at: str | None = Field(description="UTC; null while disabled")
    last_run_at: str | None = Field(description="the last firing whose job exists (UTC)")
    last_job_id: str | None = Field(description="sched-<key>-<firing time>: one job per firing")
    created_at: str
    updated_at: str
    owner: str | None = Field(None, description="admins only")


class SchedulePageView(CamelModel):
    items: list[ScheduleView]
    next_cursor: str | None
