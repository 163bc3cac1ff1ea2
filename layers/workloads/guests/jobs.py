"""The guests job types: a registration and a login (the seed's `register-guest` and
`login-guest`, accepted as aliases). The seed's third, `verify-phone`, is no job here: it is
one cached read, answered by its route at once.

Each handler reads top to bottom: payload, policy, the service call. A wrong password, a phone
that has an account, a full or closed event are business outcomes: the job ends COMPLETED with
`{success: false, code}` in its result; only failures of the system end a job FAILED. The
password, the phone number and the e-mail are sensitive fields: sealed before the job is stored
or sent, opened only here.

This module loads on the API's cold start (to validate payloads): the table's client, bcrypt and
the keys' secret load on first use, in the worker.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from typing import TYPE_CHECKING, Any, Literal

from aws_lambda_powertools import Logger

from guests.keys import SECRET_NAME, GuestKeys
from guests.payloads import LoginJob, RegisterJob
from tarefa import JobContext, JobPolicy, PermanentJobError, Priority, RetryableJobError, job_type
from tarefa.panels import Panel, declare_panel

if TYPE_CHECKING:
    from datetime import datetime

    from guests.models import OutcomeCode
    from guests.service import Failures, GuestService, Outcome

logger = Logger(child=True)

# The organiser's figures on the operators' dashboard: their events, and an event's metrics.
declare_panel(
    Panel(
        title="Events",
        items="events",
        item_id="eventId",
        item_label="name",
        detail="events/{eventId}/metrics",
        note="Your events (an admin's own): registrations per minute, queue wait and processing p95, "
        "success rate, guests so far and per promoter, over the last hour.",
    )
)

# Interactive: the guest is polling. Two quick retries for the system's troubles, then FAILED.
REGISTER_POLICY = JobPolicy(
    priority=Priority.HIGH,
    max_attempts=3,
    backoff=(1, 3),
    timeout_seconds=30,
    sensitive=("password", "phone", "email"),
)
LOGIN_POLICY = JobPolicy(
    priority=Priority.HIGH,
    max_attempts=3,
    backoff=(1, 3),
    timeout_seconds=30,
    sensitive=("password", "phone"),
)


@cache
def service() -> GuestService:
    """The rules and the table: built on the first job (the API never needs them)."""
    from guests.service import GuestService
    from guests.store import GuestsStore

    return GuestService(GuestsStore())


def keys(secret: Callable[[str], Any]) -> GuestKeys:
    """The workload's keys from its secret; a missing or short secret is an operator's fix."""
    try:
        return GuestKeys(str(secret(SECRET_NAME)))
    except ValueError as exc:
        raise PermanentJobError(
            f"the guests' keys are not configured: {exc}", code="GUESTS_NOT_CONFIGURED"
        ) from None


def _run(
    kind: Literal["register", "login"],
    payload: RegisterJob | LoginJob,
    ctx: JobContext,
    decide: Callable[[str, Failures], Outcome],
) -> dict[str, Any]:
    from guests.attempts import FailedLogins
    from guests.models import OutcomeCode
    from guests.store import ContentionError, StaleRecordError

    guests = service()
    started = guests.now()
    phone_key = keys(ctx.secret).phone_key(payload.phone)
    try:
        outcome = decide(phone_key, FailedLogins.configured(ctx.limiter))
    except (ContentionError, StaleRecordError) as exc:
        _teach_after_failure(kind, phone_key, ctx)
        if ctx.is_last_attempt:
            _sample(kind, payload, ctx, started, OutcomeCode.FAILED)
        raise RetryableJobError(f"the event's places are contended: {exc}", retry_after=1) from None
    except Exception as exc:
        _teach_after_failure(kind, phone_key, ctx)
        if ctx.is_last_attempt or isinstance(exc, PermanentJobError):
            _sample(kind, payload, ctx, started, OutcomeCode.FAILED)
        raise
    if outcome.new_client:
        _teach(phone_key, ctx)
    _sample(kind, payload, ctx, started, outcome.code, outcome.already)
    return outcome.as_result()


def _teach(phone_key: str, ctx: JobContext) -> None:
    """Write through: the phone has an account now, and a cached "unknown" ends here."""
    if ctx.cache is not None:
        ctx.cache.set("phone", phone_key, {"known": True})


def _teach_after_failure(kind: str, phone_key: str, ctx: JobContext) -> None:
    """An attempt that failed after it made the account: the cache learns it all the same."""
    if kind != "register" or ctx.cache is None:
        return
    try:
        client = service().store.client_of(phone_key)
    except Exception:
        return
    if client is not None and client.created_by_job == ctx.job_id:
        _teach(phone_key, ctx)


def _sample(
    kind: Literal["register", "login"],
    payload: RegisterJob | LoginJob,
    ctx: JobContext,
    started: datetime,
    outcome: OutcomeCode,
    already: bool = False,
) -> None:
    """The job's outcome and timings for the event's figures; never the job's failure."""
    from guests.models import Sample

    guests = service()
    try:
        guests.store.put_sample(
            Sample(
                job_id=ctx.job_id,
                event_id=payload.event_id,
                kind=kind,
                outcome=outcome,
                already=already,
                promoter_slug=payload.promoter_slug,
                submitted_at=payload.submitted_at,
                started_at=started,
                finished_at=guests.now(),
            )
        )
    except Exception:
        logger.warning("the job's sample was not recorded", extra={"event_id": payload.event_id})


@job_type("guests.register", policy=REGISTER_POLICY, aliases=["register-guest"])
def register(payload: RegisterJob, ctx: JobContext) -> dict[str, Any]:
    """A new client (once per phone; the password hashed with bcrypt) and their guest at the
    event (once per event and client), with a place; a known phone is checked as a login."""
    return _run(
        "register", payload, ctx, lambda key, failures: service().register(payload, key, ctx.job_id, failures)
    )


@job_type("guests.login", policy=LOGIN_POLICY, aliases=["login-guest"])
def login(payload: LoginJob, ctx: JobContext) -> dict[str, Any]:
    """Check the phone's password, then the client's guest at the event (once per event and
    client), with a place."""
    return _run(
        "login", payload, ctx, lambda key, failures: service().login(payload, key, ctx.job_id, failures)
    )
