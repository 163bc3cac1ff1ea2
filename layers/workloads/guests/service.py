"""The guests rules: an event's places, a client once per phone, a guest once per event and
client, the door's check-in, an event's figures. No boto3 and no HTTP here: the store, the
password hasher and the failed-login counter come in as ports, so the rules are tested with fakes.

Three rules carry the weight:
- **Once per event and client.** A guest's id is derived from the event and the client, and
  the store creates it only if absent, so a double submit, a duplicated message or a repeated
  attempt finds the guest instead of making another (and takes no second place).
- **Never over capacity.** A place is taken in the same transaction that creates the guest,
  from a seats shard whose condition (`registered < cap`, open) still holds; the shards' caps
  add up to the capacity, and a capacity change redistributes what is left without ever
  lowering a cap below what a shard has given.
- **A known phone is a password check.** Registering a phone that has an account is a login
  with the given password: the same person submitting twice gets their guest; anyone else gets
  PHONE_TAKEN and the attempt counts as a failed login, so the register route is no way round
  the failed-login limit.
"""

from __future__ import annotations

import math
import random
import time
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol

from guests.models import (
    Client,
    Event,
    EventChange,
    EventRequest,
    Guest,
    OutcomeCode,
    Seats,
)
from guests.payloads import LoginJob, RegisterJob
from guests.store import (
    SEAT_SHARDS,
    Admission,
    AlreadyCheckedInError,
    ContentionError,
    GuestsStore,
    SlugTakenError,
    StaleRecordError,
)
from tarefa import Refusal

if TYPE_CHECKING:
    from guests.keys import GuestKeys
    from guests.passwords import PasswordHasher

GUEST_NAMESPACE = uuid.UUID("3f0d9a61-7c2b-4e8f-b5a4-9d1e6c0b2a77")
ADMIT_TRIES = SEAT_SHARDS + 4  # every shard once, and a few transactions that met another
WRITE_TRIES = 8
STATUS_LIFETIME = timedelta(hours=1)  # how long a status token reads its job


def guest_id_for(event_id: str, client_id: str) -> str:
    """The one guest id a client can have at an event."""
    return str(uuid.uuid5(GUEST_NAMESPACE, f"{event_id}/{client_id}"))


def split_caps(capacity: int, seats: Sequence[Seats]) -> list[int]:
    """Each shard's cap for `capacity`: what it has given plus an even share of what is left
    (none when the event already has more guests than the new capacity)."""
    left = max(0, capacity - sum(s.registered for s in seats))
    base, extra = divmod(left, len(seats))
    return [s.registered + base + (1 if n < extra else 0) for n, s in enumerate(seats)]


def places_left(seats: Sequence[Seats]) -> int:
    return sum(s.room for s in seats)


def p95(values: Sequence[float]) -> float | None:
    """The 95th percentile, nearest rank; None without values."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)]


class Failures(Protocol):
    """Failed logins per phone (guests.attempts.FailedLogins)."""

    def record(self, phone_key: str) -> None: ...

    def retry_after(self, phone_key: str) -> int: ...


class GuestError(Refusal):
    code = "GUEST_ERROR"
    status = 409


class NotFoundError(GuestError):
    code = "NOT_FOUND"
    status = 404


class EventNotFoundError(NotFoundError):
    code = "EVENT_NOT_FOUND"


class LinkTakenError(GuestError):
    code = "SLUG_TAKEN"


class InvalidPassError(GuestError):
    code = "INVALID_PASS"
    status = 403


class AlreadyCheckedIn(GuestError):
    code = "ALREADY_CHECKED_IN"


class BusyError(GuestError):
    """The event's records stayed contended through every try: a 503, try again."""

    code = "BUSY"
    status = 503


@dataclass(frozen=True)
class Outcome:
    """What a registration or login ended with: a business outcome, never a failure."""

    code: OutcomeCode
    guest: Guest | None = None
    already: bool = False  # the guest existed (a double submit, a second login)
    new_client: bool = False  # this job made the phone's account (the phone cache learns it)

    @property
    def success(self) -> bool:
        return self.code == OutcomeCode.ADMITTED

    def as_result(self) -> dict[str, object]:
        if self.guest is None:
            return {"success": False, "code": str(self.code)}
        return {
            "success": True,
            "guest": {"guestId": self.guest.guest_id, "name": self.guest.name},
            "alreadyRegistered": self.already,
        }


class GuestService:
    def __init__(
        self,
        store: GuestsStore,
        hasher: PasswordHasher | None = None,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        new_id: Callable[[], str] = lambda: str(uuid.uuid4()),
        choose: Callable[[Sequence[Seats]], Seats] = random.choice,
        pause: Callable[[float], None] = time.sleep,
    ) -> None:
        self.store = store
        self._hasher = hasher
        self.now = now
        self.new_id = new_id
        self.choose = choose
        self.pause = pause

    @property
    def hasher(self) -> PasswordHasher:
        if self._hasher is None:  # bcrypt loads with the first job that needs it
            from guests.passwords import Bcrypt

            self._hasher = Bcrypt()
        return self._hasher

    # -- events ------------------------------------------------------------------------------------
    def create_event(self, organiser: str, request: EventRequest) -> Event:
        now = self.now()
        event = Event(
            event_id=self.new_id(),
            organiser=organiser,
            slug=request.slug,
            name=request.name,
            starts_at=request.starts_at,
            capacity=request.capacity,
            registration_open=request.registration_open,
            promoters=request.promoters,
            created_at=now,
            updated_at=now,
        )
        empty = [Seats(shard=n, cap=0) for n in range(SEAT_SHARDS)]
        seats = [
            Seats(shard=n, cap=cap, open=request.registration_open)
            for n, cap in enumerate(split_caps(request.capacity, empty))
        ]
        try:
            self.store.create_event(event, seats)
        except SlugTakenError as exc:
            raise LinkTakenError(
                f"Another event has the link {', '.join(exc.links)}", {"links": exc.links}
            ) from None
        return event

    def event(self, event_id: str) -> Event:
        found = self.store.event(event_id)
        if found is None:
            raise EventNotFoundError(f"Event {event_id} not found")
        return found

    def change_event(self, event_id: str, change: EventChange) -> Event:
        """Open or close registration, change the capacity. Closing never waits on the crowd:
        only a capacity change needs the shards to hold still between read and write."""
        for attempt in range(WRITE_TRIES):
            event = self.event(event_id)
            before = self.store.seats(event_id)
            capacity = change.capacity if change.capacity is not None else event.capacity
            is_open = (
                change.registration_open if change.registration_open is not None else event.registration_open
            )
            caps = split_caps(capacity, before) if capacity != event.capacity else [s.cap for s in before]
            after = [
                s.model_copy(update={"cap": cap, "open": is_open})
                for s, cap in zip(before, caps, strict=True)
            ]
            changed = event.model_copy(
                update={"capacity": capacity, "registration_open": is_open, "updated_at": self.now()}
            )
            try:
                return self.store.change_event(
                    changed, event.version, before, after, hold_counts=capacity != event.capacity
                )
            except StaleRecordError:
                self.pause(0.02 * (attempt + 1) * random.random())
        raise BusyError("The event is changing too fast; try again")

    def places(self, event_id: str) -> int:
        return places_left(self.store.seats(event_id))

    # -- registration and login (jobs) ---------------------------------------------------------
    def register(self, request: RegisterJob, phone_key: str, job_id: str, failures: Failures) -> Outcome:
        event = self.store.event(request.event_id)
        if event is None:
            return Outcome(OutcomeCode.EVENT_NOT_FOUND)
        if failures.retry_after(phone_key):
            return Outcome(OutcomeCode.TOO_MANY_ATTEMPTS)
        client = self.store.client_of(phone_key)
        seats: list[Seats] | None = None
        if client is None:
            seats = self.store.seats(event.event_id)  # a closed or full event makes no account
            if not event.registration_open or not all(s.open for s in seats):
                return Outcome(OutcomeCode.REGISTRATION_CLOSED)
            if places_left(seats) == 0:
                return Outcome(OutcomeCode.EVENT_FULL)
            new = Client(
                client_id=self.new_id(),
                phone=request.phone,
                first_name=request.first_name,
                last_name=request.last_name,
                email=request.email,
                password_hash=self.hasher.hash(request.password),
                created_at=self.now(),
                created_by_job=job_id,
            )
            client = new if self.store.create_client(phone_key, new) else self.store.client_of(phone_key)
            if client is None:
                raise ContentionError("the phone's client was created and is gone")
        if client.created_by_job != job_id and not self.hasher.verify(request.password, client.password_hash):
            failures.record(phone_key)  # someone else's phone, or its owner's other password
            return Outcome(OutcomeCode.PHONE_TAKEN)
        outcome = self._attend(event, client, request.promoter_slug, job_id, seats)
        return Outcome(
            outcome.code, outcome.guest, outcome.already, new_client=client.created_by_job == job_id
        )

    def login(self, request: LoginJob, phone_key: str, job_id: str, failures: Failures) -> Outcome:
        event = self.store.event(request.event_id)
        if event is None:
            return Outcome(OutcomeCode.EVENT_NOT_FOUND)
        if failures.retry_after(phone_key):
            return Outcome(OutcomeCode.TOO_MANY_ATTEMPTS)
        client = self.store.client_of(phone_key)
        # Checked even without a client: an unknown phone costs the time of a wrong password
        matches = self.hasher.verify(request.password, client.password_hash if client else None)
        if client is None or not matches:
            failures.record(phone_key)
            return Outcome(OutcomeCode.INVALID_CREDENTIALS)
        if self.hasher.needs_rehash(client.password_hash):  # the cost went up since it was hashed
            try:
                rehashed = client.model_copy(update={"password_hash": self.hasher.hash(request.password)})
                client = self.store.put_client(phone_key, rehashed, client.version)
            except StaleRecordError:
                pass  # another login rehashed it
        return self._attend(event, client, request.promoter_slug, job_id)

    def _attend(
        self,
        event: Event,
        client: Client,
        promoter_slug: str | None,
        job_id: str,
        seats: list[Seats] | None = None,
    ) -> Outcome:
        """The client on the event's list: the guest they are already, or a new one with a place
        (`seats`: the shards as just read, for the first try)."""
        guest_id = guest_id_for(event.event_id, client.client_id)
        existing = self.store.guest(guest_id)
        if existing is not None:
            return Outcome(OutcomeCode.ADMITTED, existing, already=True)
        promoter = event.promoter(promoter_slug)
        for attempt in range(ADMIT_TRIES):
            seats = seats if seats is not None and attempt == 0 else self.store.seats(event.event_id)
            if not event.registration_open or not all(s.open for s in seats):
                return Outcome(OutcomeCode.REGISTRATION_CLOSED)
            with_room = [s for s in seats if s.room > 0]
            if not with_room:
                return Outcome(OutcomeCode.EVENT_FULL)
            guest = Guest(
                guest_id=guest_id,
                event_id=event.event_id,
                client_id=client.client_id,
                name=client.name,
                promoter_slug=promoter.slug if promoter else None,
                team=promoter.team if promoter else None,
                shard=self.choose(with_room).shard,
                job_id=job_id,
                created_at=self.now(),
            )
            try:
                admission = self.store.admit(guest)
            except ContentionError:
                self.pause(0.01 * (attempt + 1) * random.random())
                continue
            if admission == Admission.ADMITTED:
                return Outcome(OutcomeCode.ADMITTED, guest)
            if admission == Admission.EXISTS:  # a duplicate of this registration won the race
                return Outcome(OutcomeCode.ADMITTED, self.store.guest(guest_id) or guest, already=True)
            # NO_ROOM: that shard filled (or closed) since it was read; read them again
        raise ContentionError(f"no place taken for {guest_id} after {ADMIT_TRIES} tries")

    # -- the door --------------------------------------------------------------------------------
    def check_in(self, event: Event, token: str, keys: GuestKeys) -> Guest:
        guest_id = keys.pass_guest(event.event_id, token)
        guest = self.store.guest(guest_id) if guest_id else None
        if guest is None or guest.event_id != event.event_id:
            raise InvalidPassError("This pass is not valid for this event")
        if guest.checked_in_at is not None:
            raise AlreadyCheckedIn(
                "This guest is already in",
                {"checkedInAt": guest.checked_in_at.isoformat(), "guest": guest.public()},
            )
        try:
            return self.store.check_in(guest, self.now())
        except AlreadyCheckedInError as exc:  # the same pass at two doors at once
            at = exc.checked_in_at.isoformat() if exc.checked_in_at else None
            raise AlreadyCheckedIn(
                "This guest is already in", {"checkedInAt": at, "guest": guest.public()}
            ) from None

    # -- figures ----------------------------------------------------------------------------------
    def metrics(self, event: Event, minutes: int) -> dict[str, Any]:
        now = self.now()
        since = now - timedelta(minutes=minutes)
        samples = list(self.store.samples(event.event_id, since))
        seats = self.store.seats(event.event_id)
        per_promoter: Counter[str] = Counter()
        for shard in seats:
            per_promoter.update(shard.by_promoter)
        admitted = [s for s in samples if s.outcome == OutcomeCode.ADMITTED and not s.already]
        per_minute = Counter(s.finished_at.replace(second=0, microsecond=0) for s in admitted)
        finished = len(samples)
        failed = sum(1 for s in samples if s.outcome == OutcomeCode.FAILED)

        def ms(values: list[float]) -> float | None:
            found = p95(values)
            return None if found is None else round(found * 1000, 1)

        done = [s for s in samples if s.outcome != OutcomeCode.FAILED]
        return {
            "eventId": event.event_id,
            "windowMinutes": minutes,
            "since": since.isoformat(),
            "guests": {
                "total": sum(s.registered for s in seats),
                "capacity": event.capacity,
                "placesLeft": places_left(seats),
                "checkedIn": sum(s.checked_in for s in seats),
                "perPromoter": dict(sorted((k, v) for k, v in per_promoter.items() if v)),
            },
            "registrationsPerMinute": [
                {"minute": minute.isoformat(), "count": count} for minute, count in sorted(per_minute.items())
            ],
            "jobs": {
                "finished": finished,
                "outcomes": dict(sorted(Counter(str(s.outcome) for s in samples).items())),
                "successRate": None if not finished else round((finished - failed) / finished, 4),
                "queueWaitP95Ms": ms([(s.started_at - s.submitted_at).total_seconds() for s in done]),
                "processingP95Ms": ms([(s.finished_at - s.started_at).total_seconds() for s in done]),
                "submitToDoneP95Ms": ms([(s.finished_at - s.submitted_at).total_seconds() for s in done]),
            },
        }
