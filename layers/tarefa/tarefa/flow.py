"""Flow control: per-key concurrency, unique-while-active, debounce and the fair-queue group.

Every option is off unless a job type's policy turns it on, and then costs only what its own
records cost (README "Flow control"). The records live in the idempotency table, beside the
idempotency keys and ctx.once's steps, each under a prefix of its own and each its own item (its
own partition): no key of any option is hot unless one user's one key is.

- Concurrency: `slot#<type>#<key digest>#<n>`, n < N. A worker takes a slot with one conditional
  PutItem (free, expired, or already this job's) before it claims the job and frees it with one
  conditional DeleteItem after the outcome is written. A slot's lease ends `timeout_seconds` +
  SLOT_MARGIN after it was taken, so a worker that dies holding one frees it by expiry. With all
  N taken the job is not claimed: its message comes back after a bounded, jittered backoff
  (1, 2, 4 ... SLOT_WAIT_CAP s, jittered down to half), its attempts untouched.
- Unique while active: `unique#<type>#<digest of owner and key>` names the job that holds it; a
  conditional PutItem takes it at enqueue. A holder that is terminal (or gone) is stale and is
  taken over with a write conditioned on that holder, so nothing needs releasing when a job ends.
- Debounce: `debounce#<type>#<digest of owner and key>` holds the burst: its first enqueue's time,
  the latest job and, once decided, the winner (and the burst before's winner). Each enqueue
  makes itself the latest (one UpdateItem) and is due after the period, or at the max wait,
  whichever is sooner. When a job's turn comes the latest marks itself winner and runs; an
  earlier one waits until its burst is decided (a second after the latest's turn) and then ends
  CANCELLED (DEBOUNCED) with `debouncedBy` naming the winner: the job that ran for its burst. A
  job whose turn comes past the burst's max wait closes it for the latest (a
  `debounce-won#<job>` marker), so a never-quiet stream runs by the max wait. A latest that was
  cancelled, or never recorded (its enqueue failed), hands the run to the job that finds it.
"""

from __future__ import annotations

import hashlib
import json
import random
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit

from tarefa.errors import Refusal
from tarefa.job import TERMINAL, Job, JobStatus
from tarefa.jobtypes import JobTypeRegistry

logger = Logger(child=True)
metrics = Metrics()

SLOT_MARGIN = timedelta(seconds=30)  # a slot's lease: the job's timeout and this
SLOT_WAIT_BASE = 1  # s: the first wait of a job over its key's concurrency
SLOT_WAIT_CAP = 30  # s: the longest (and never more than the type's timeout)
UNIQUE_LIFETIME = timedelta(days=31)  # a lock outlives any wait a job may have (30 days held)
UNIQUE_CREATION_GRACE = timedelta(seconds=30)  # a holder not yet recorded may still be in its enqueue
DEBOUNCE_GHOST_GRACE = timedelta(seconds=60)  # a latest job never recorded is given up after this
DEBOUNCE_LIFETIME = timedelta(days=1)  # past its max wait a record is only read to be replaced
ACTIVE = frozenset({JobStatus.PENDING, JobStatus.PROCESSING, JobStatus.RETRYING})
SYSTEM_GROUP = "tarefa:system"


@dataclass(frozen=True)
class UniqueHolder:
    job_id: str
    since: datetime


@dataclass(frozen=True)
class DebounceRecord:
    first_at: datetime  # the burst's first enqueue
    latest: str  # the burst's latest job
    latest_at: datetime  # when it was enqueued
    winner: str | None  # the job that runs for the burst, once decided
    previous_winner: str | None = None  # the burst before's (its late members' debouncedBy)


class FlowStore(Protocol):
    """Where flow-control records live (adapters/dynamodb_flow.py). Times are the engine's."""

    def take_slot(self, slot: str, holder: str, now: datetime, expires_at: datetime) -> bool:
        """Take `slot` for `holder` if free, expired, or already held by `holder`."""

    def free_slot(self, slot: str, holder: str) -> None:
        """Free `slot` if `holder` still holds it."""

    def take_unique(self, key: str, job_id: str, now: datetime, expires_at: datetime) -> UniqueHolder | None:
        """Take `key` for `job_id` if nobody holds it (or its lock expired); else who holds it."""

    def replace_unique(self, key: str, job_id: str, stale: str, now: datetime, expires_at: datetime) -> bool:
        """Take `key` from `stale` (a holder that is no longer active); False if it moved."""

    def release_unique(self, key: str, job_id: str) -> None: ...

    def debounce(self, key: str) -> DebounceRecord | None: ...

    def debounce_join(
        self, key: str, job_id: str, now: datetime, expires_at: datetime
    ) -> DebounceRecord | None:
        """Make `job_id` the latest of the open burst (one without a winner); None if none is open."""

    def debounce_start(
        self, key: str, job_id: str, now: datetime, expires_at: datetime, replacing: DebounceRecord | None
    ) -> bool:
        """Start a burst with `job_id`, if the record is still `replacing` (None: absent)."""

    def debounce_decide(self, key: str, latest: str, winner: str) -> bool:
        """Set the burst's winner, if `latest` is still its latest and no winner is set."""

    def debounce_adopt(self, key: str, job_id: str, ghost: str) -> bool:
        """Make `job_id` latest and winner in place of `ghost`, if nothing moved."""

    def mark_won(self, job_id: str, expires_at: datetime) -> None: ...

    def has_won(self, job_id: str) -> bool: ...


class UniqueKeyBusyError(Refusal):
    """A concurrent enqueue holds the key and has not recorded its job yet (a moment)."""

    code = "UNIQUE_KEY_BUSY"
    status = 409


class SlotsFull:
    """All of a key's slots are held: the job waits."""


FULL = SlotsFull()


@dataclass(frozen=True)
class Verdict:
    """What the debounce check decided for a job whose turn came."""

    run: bool
    debounced_by: str | None = None  # replaced: by this job (None: not known any more)
    wait: int | None = None  # not decided yet: look again in this many seconds


def digest(*parts: str) -> str:
    return hashlib.sha256("\x00".join(parts).encode()).hexdigest()[:32]


class FlowControl:
    def __init__(
        self,
        store: FlowStore,
        now: Callable[[], datetime],
        rand: Callable[[], float] = random.random,
    ) -> None:
        self.store = store
        self.now = now
        self.rand = rand

    # -- per-key concurrency -----------------------------------------------------------------
    def take_slot(
        self, type_name: str, key: str, limit: int, job_id: str, timeout_seconds: int
    ) -> str | SlotsFull:
        """A slot of `key` for `job_id`, or FULL. Starts at a slot picked from the job id, so
        jobs spread over the slots and a job retaking its own slot usually finds it first."""
        now = self.now()
        expires = now + timedelta(seconds=timeout_seconds) + SLOT_MARGIN
        base = f"slot#{type_name}#{digest(key)}#"
        start = zlib.crc32(job_id.encode()) % limit
        for n in range(limit):
            slot = f"{base}{(start + n) % limit}"
            if self.store.take_slot(slot, job_id, now, expires):
                return slot
        metrics.add_metric("JobsOverConcurrency", MetricUnit.Count, 1)
        return FULL

    def free_slot(self, slot: str, job_id: str) -> None:
        """Advice: a slot that cannot be freed frees itself when its lease ends."""
        try:
            self.store.free_slot(slot, job_id)
        except Exception:
            logger.warning(
                "could not free a concurrency slot; it frees itself at its lease's end", exc_info=True
            )

    def slot_wait(self, waits: int, timeout_seconds: int) -> int:
        """Seconds a job over its key's limit waits: exponential in how often its message came
        back, capped, with jitter (half to all of it, never 0), so waiters do not all poll the same second."""
        cap = max(1, min(SLOT_WAIT_CAP, timeout_seconds))
        ceiling: int = min(cap, SLOT_WAIT_BASE << min(max(waits - 1, 0), 10))
        return max(1, round(ceiling * (0.5 + 0.5 * self.rand())))

    # -- unique while active -----------------------------------------------------------------
    def claim_unique(
        self,
        type_name: str,
        owner: str,
        key: str,
        job_id: str,
        read: Callable[[str], Job | None],
        pause: Callable[[float], None],
    ) -> tuple[str, Job | None]:
        """Take the owner's `key` for `job_id`: (lock key, None) when taken, (lock key, job)
        when an active job holds it. `read` gets a job by id."""
        lock = f"unique#{type_name}#{digest(owner, key)}"
        for _ in range(20):
            now = self.now()
            holder = self.store.take_unique(lock, job_id, now, now + UNIQUE_LIFETIME)
            if holder is None:
                return lock, None
            job = read(holder.job_id)
            if job is not None and job.status in ACTIVE:
                return lock, job
            if job is None and now - holder.since < UNIQUE_CREATION_GRACE:
                pause(0.05)  # a concurrent enqueue took it and has not recorded its job yet
                continue
            # terminal, or never recorded: stale, taken over only if it is still that holder's
            if self.store.replace_unique(lock, job_id, holder.job_id, now, now + UNIQUE_LIFETIME):
                return lock, None
        raise UniqueKeyBusyError("Another enqueue with the same unique key is in progress; retry in a moment")

    def release_unique(self, lock: str, job_id: str) -> None:
        try:
            self.store.release_unique(lock, job_id)
        except Exception:  # the holder is terminal or never recorded: stale, taken over later
            logger.warning("could not release a unique key", exc_info=True)

    # -- debounce ----------------------------------------------------------------------------
    def debounce_key(self, type_name: str, owner: str, key: str) -> str:
        return f"debounce#{type_name}#{digest(owner, key)}"

    def debounce_enqueue(self, record_key: str, job: Job, seconds: int, max_wait: int) -> int:
        """Make `job` its key's latest; the seconds until its turn. The burst's times are its
        jobs' creation times."""
        job_id, now = job.job_id, job.created_at
        for _ in range(10):
            expires = now + timedelta(seconds=max_wait) + DEBOUNCE_LIFETIME
            joined = self.store.debounce_join(record_key, job_id, now, expires)
            if joined is not None:
                deadline = joined.first_at + timedelta(seconds=max_wait)
                return max(0, min(seconds, _ceil_seconds(deadline - now)))
            current = self.store.debounce(record_key)
            if current is not None and current.winner is None:
                continue  # a burst opened meanwhile: join it
            if self.store.debounce_start(record_key, job_id, now, expires, current):
                return seconds
        raise RuntimeError("the debounce record kept changing")

    def debounce_turn(
        self, record_key: str, job: Job, seconds: int, max_wait: int, read: Callable[[str], Job | None]
    ) -> Verdict:
        """Whether `job`, whose turn came, runs for its burst, waits for its burst to be decided,
        or is replaced (by the job that ran, or will run, for its burst)."""
        for _ in range(5):
            record = self.store.debounce(record_key)
            if record is None:  # expired or lost: nothing says another job replaced it
                return Verdict(True)
            if record.winner == job.job_id:
                return Verdict(True)
            if record.latest == job.job_id and record.winner is None:
                if self.store.debounce_decide(record_key, job.job_id, job.job_id):
                    return Verdict(True)
                continue  # a later job joined meanwhile
            if self.store.has_won(job.job_id):  # its burst was closed for it at the max wait
                return Verdict(True)
            if record.first_at > job.created_at:  # its burst was decided and a new one began
                return Verdict(False, debounced_by=record.previous_winner)
            if record.winner is not None:
                return Verdict(False, debounced_by=record.winner)
            latest, now = record.latest, self.now()
            holder = read(latest)
            ghost = holder is None and now - record.latest_at > DEBOUNCE_GHOST_GRACE
            if ghost or (holder is not None and holder.status in TERMINAL):
                # the latest was never recorded (its enqueue failed) or was cancelled: this one runs
                if self.store.debounce_adopt(record_key, job.job_id, latest):
                    return Verdict(True)
                continue
            deadline = record.first_at + timedelta(seconds=max_wait)
            if now >= deadline:
                # past the max wait: the burst is closed for its latest, which runs at its turn
                self.store.mark_won(latest, now + DEBOUNCE_LIFETIME)
                if not self.store.debounce_decide(record_key, latest, latest):
                    continue
                return Verdict(False, debounced_by=latest)
            # undecided: it waits for the latest's turn (a second after it), and then knows
            turn = min(record.latest_at + timedelta(seconds=seconds), deadline)
            return Verdict(False, wait=_ceil_seconds(turn - now) + 1)
        return Verdict(False, wait=1)  # pragma: no cover - a record that never settles: look again


def fairness_group(value: str | None) -> str:
    """The SQS MessageGroupId for an owner or a fairness key: a digest (the value may be personal
    data: an e-mail as a user id, a phone number as a key), or the system's group."""
    return "g:" + digest(value) if value else SYSTEM_GROUP


def message_group(body: str, registry: Callable[[], JobTypeRegistry] | None = None) -> str:
    """The group of a job message: its type's `fairness_key(payload)` when the policy has one
    (the payload as stored: sensitive fields read "[redacted]"), else its owner (every message
    names one, or it is the system's)."""
    try:
        message: Any = json.loads(body)
    except ValueError:
        return SYSTEM_GROUP
    if not isinstance(message, dict):
        return SYSTEM_GROUP
    user = message.get("userId")
    owner = fairness_group(user if isinstance(user, str) else None)
    name = message.get("type")
    if registry is None or not isinstance(name, str):
        return owner
    types = registry()
    if name not in types:
        return owner
    job_type = types.get(name)
    key_of = job_type.policy.fairness_key
    if key_of is None:
        return owner
    try:
        return fairness_group(str(key_of(job_type.payload_model.model_validate(message.get("payload")))))
    except Exception:  # a payload the key cannot read fails in its handler, visibly
        return owner


def _ceil_seconds(delta: timedelta) -> int:
    seconds = delta.total_seconds()
    whole = int(seconds)
    return whole + (1 if seconds > whole else 0)
