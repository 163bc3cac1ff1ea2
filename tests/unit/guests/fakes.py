"""In-memory stand-ins for the guests workload's ports, for unit tests with no network.

- `FakeGuestsStore`: `GuestsStore`'s public methods and semantics (an event and its links in
  one write, slugs taken once, the seats' conditions `registered < cap` and open checked together
  with the guest's absence, optimistic versions, check-in once), behind one lock as DynamoDB's
  transactions are atomic; contention and NO_ROOM can be scripted.
- `FakeHasher`: the `PasswordHasher` port without bcrypt's cost: a salted SHA-256 that records
  every hash and check, so a test sees which passwords were checked and how often.
- `FakeFailures`: the failed-login counter (guests.attempts) with a clock: `limit` failures in
  `window` seconds.
- `Clock` and `Ids` (tests/unit/fakes.py): a clock the test moves and ids that count up.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

from guests.models import Client, Event, Guest, Sample, Seats
from guests.service import GuestService
from guests.store import (
    SEAT_SHARDS,
    Admission,
    AlreadyCheckedInError,
    ContentionError,
    SlugTakenError,
    StaleRecordError,
)

from ..fakes import Ids

START = datetime(2026, 7, 1, 20, 0, 0, tzinfo=UTC)
SECRET = "k" * 48  # a keys secret for the tests


class FakeHasher:
    def __init__(self, rounds: int = 10) -> None:
        self.rounds = rounds
        self.hashed: list[str] = []
        self.checked: list[tuple[str, str | None]] = []

    def hash(self, password: str) -> str:
        self.hashed.append(password)
        return f"fake${self.rounds}${hashlib.sha256(('salt' + password).encode()).hexdigest()}"

    def verify(self, password: str, hashed: str | None) -> bool:
        self.checked.append((password, hashed))
        if hashed is None:
            return False
        return hashed.split("$")[2] == hashlib.sha256(("salt" + password).encode()).hexdigest()

    def needs_rehash(self, hashed: str) -> bool:
        return int(hashed.split("$")[1]) < self.rounds


class FakeFailures:
    def __init__(self, clock: Callable[[], datetime], limit: int = 5, window: float = 60) -> None:
        self.clock = clock
        self.limit = limit
        self.window = window
        self.failures: dict[str, list[datetime]] = {}

    def _recent(self, phone_key: str) -> list[datetime]:
        since = self.clock() - timedelta(seconds=self.window)
        return [t for t in self.failures.get(phone_key, []) if t > since]

    def record(self, phone_key: str) -> None:
        recent = self._recent(phone_key)
        if len(recent) < self.limit:
            self.failures[phone_key] = [*recent, self.clock()]

    def retry_after(self, phone_key: str) -> int:
        recent = self._recent(phone_key)
        if len(recent) < self.limit:
            return 0
        return max(1, int((min(recent) + timedelta(seconds=self.window) - self.clock()).total_seconds()))


class FakeGuestsStore:
    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.events: dict[str, Event] = {}
        self.links: dict[tuple[str, str], str] = {}
        self.shards: dict[tuple[str, int], Seats] = {}
        self.clients: dict[str, Client] = {}
        self.guests: dict[str, Guest] = {}
        self.status: dict[str, tuple[str, int]] = {}
        self.sample_items: dict[str, Sample] = {}
        self.contend = 0  # admit raises ContentionError this many times first
        self.no_room = 0  # admit answers NO_ROOM this many times first (a shard filled meanwhile)
        self.admits: list[Guest] = []
        self.event_changes: list[bool] = []  # hold_counts of each change_event

    # -- events -------------------------------------------------------------------------------
    def create_event(self, event: Event, seats: list[Seats]) -> None:
        with self.lock:
            taken = [f"{p.slug}/{event.slug}" for p in event.promoters if (p.slug, event.slug) in self.links]
            if taken:
                raise SlugTakenError(taken)
            self.events[event.event_id] = event
            for p in event.promoters:
                self.links[(p.slug, event.slug)] = event.event_id
            for s in seats:
                self.shards[(event.event_id, s.shard)] = s.model_copy(deep=True)

    def event(self, event_id: str) -> Event | None:
        return self.events.get(event_id)

    def event_id_for(self, promoter_slug: str, event_slug: str) -> str | None:
        return self.links.get((promoter_slug, event_slug))

    def seats(self, event_id: str) -> list[Seats]:
        with self.lock:
            return [self.shards[(event_id, n)].model_copy(deep=True) for n in range(SEAT_SHARDS)]

    def change_event(
        self, event: Event, expected_version: int, before: list[Seats], after: list[Seats], hold_counts: bool
    ) -> Event:
        with self.lock:
            self.event_changes.append(hold_counts)
            current = self.events[event.event_id]
            if current.version != expected_version:
                raise StaleRecordError(event.event_id)
            if hold_counts and any(
                self.shards[(event.event_id, b.shard)].registered != b.registered for b in before
            ):
                raise StaleRecordError(event.event_id)
            written = event.model_copy(update={"version": expected_version + 1})
            self.events[event.event_id] = written
            for a in after:
                shard = self.shards[(event.event_id, a.shard)]
                update: dict[str, Any] = {"open": a.open}
                if hold_counts:
                    update["cap"] = a.cap
                self.shards[(event.event_id, a.shard)] = shard.model_copy(update=update)
            return written

    # -- clients ----------------------------------------------------------------------------------
    def client_of(self, phone_key: str) -> Client | None:
        return self.clients.get(phone_key)

    def create_client(self, phone_key: str, client: Client) -> bool:
        with self.lock:
            if phone_key in self.clients:
                return False
            self.clients[phone_key] = client
            return True

    def put_client(self, phone_key: str, client: Client, expected_version: int) -> Client:
        with self.lock:
            if self.clients[phone_key].version != expected_version:
                raise StaleRecordError(client.client_id)
            written = client.model_copy(update={"version": expected_version + 1})
            self.clients[phone_key] = written
            return written

    # -- guests -----------------------------------------------------------------------------------
    def guest(self, guest_id: str) -> Guest | None:
        return self.guests.get(guest_id)

    def admit(self, guest: Guest) -> Admission:
        with self.lock:
            self.admits.append(guest)
            if self.contend:
                self.contend -= 1
                raise ContentionError(guest.guest_id)
            if guest.guest_id in self.guests:
                return Admission.EXISTS
            shard = self.shards[(guest.event_id, guest.shard)]
            if self.no_room:
                self.no_room -= 1
                return Admission.NO_ROOM
            if not (shard.registered < shard.cap and shard.open):
                return Admission.NO_ROOM
            self.guests[guest.guest_id] = guest
            counter = guest.promoter_slug or "-"
            by_promoter = {**shard.by_promoter, counter: shard.by_promoter.get(counter, 0) + 1}
            self.shards[(guest.event_id, guest.shard)] = shard.model_copy(
                update={"registered": shard.registered + 1, "by_promoter": by_promoter}
            )
            return Admission.ADMITTED

    def check_in(self, guest: Guest, at: datetime) -> Guest:
        with self.lock:
            current = self.guests[guest.guest_id]
            if current.checked_in_at is not None:
                raise AlreadyCheckedInError(current.checked_in_at)
            checked = current.model_copy(update={"checked_in_at": at})
            self.guests[guest.guest_id] = checked
            shard = self.shards[(guest.event_id, guest.shard)]
            self.shards[(guest.event_id, guest.shard)] = shard.model_copy(
                update={"checked_in": shard.checked_in + 1}
            )
            return checked

    def guests_page(self, event_id: str, cursor: str | None, limit: int) -> tuple[list[Guest], str | None]:
        ordered = sorted(
            (g for g in self.guests.values() if g.event_id == event_id), key=lambda g: g.created_at
        )
        start = int(cursor or 0)
        page = ordered[start : start + limit]
        return page, (str(start + limit) if start + limit < len(ordered) else None)

    # -- status tokens, samples ---------------------------------------------------------------------
    def put_status(self, job_id: str, token_hash: str, expires_at: int) -> None:
        self.status[job_id] = (token_hash, expires_at)

    def status_hash(self, job_id: str, now: float) -> str | None:
        found = self.status.get(job_id)
        return found[0] if found and found[1] > now else None

    def put_sample(self, sample: Sample) -> None:
        self.sample_items[sample.job_id] = sample

    def samples(self, event_id: str, since: datetime) -> Iterator[Sample]:
        yield from (
            s for s in self.sample_items.values() if s.event_id == event_id and s.finished_at >= since
        )


def fake_service(
    store: FakeGuestsStore,
    clock: Callable[[], datetime],
    hasher: FakeHasher | None = None,
    new_id: Callable[[], str] | None = None,
) -> GuestService:
    """The real service over the fakes: every shard choice the first with room, no pauses."""
    return GuestService(
        store,  # type: ignore[arg-type]  # the fake has GuestsStore's methods
        hasher or FakeHasher(),
        now=clock,
        new_id=new_id or Ids(),
        choose=lambda shards: shards[0],
        pause=lambda seconds: None,
    )
