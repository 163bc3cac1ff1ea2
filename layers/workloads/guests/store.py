"""The guests table (one table, `GUESTS_TABLE`): the workload's only boto3 importer.

Items, by `pk` (no phone number in any key: `<phoneKey>` is its keyed hash, keys.GuestKeys):
- `event#<eventId>`: an event; `doc` holds the record as JSON, `version` guards every write.
- `slug#<promoterSlug>#<eventSlug>`: which event a promoter's link names, one per promoter,
  written in one transaction with the event, so a link can never name two events.
- `seats#<eventId>#<n>`, n < SEAT_SHARDS: one shard of the event's places: `cap` (its share of
  the capacity), `registered`, `checkedIn`, `isOpen` and a counter per promoter (`p#<slug>`).
  A registration takes a place from a shard with room, in one transaction with its guest, so
  500 registrations at once spread over 8 items instead of conflicting on one.
- `client#<phoneKey>`: a client (one per phone, by a conditional put), its bcrypt hash in `doc`.
- `guest#<guestId>`: a guest; its id is derived from the event and the client, so the
  conditional put that creates it is the "once per event and client" rule. `checkedInAt` is set
  once, by a conditional update.
- `status#<jobId>`: the SHA-256 of the job's status token (`tokenHash`), until `expiresAt`.
- `sample#<jobId>`: one finished registration or login (outcome and timings) for the metrics,
  until `expiresAt` (7 days; the table's TTL deletes it).

Index `ByEventShard` (`eventShard`, `sortKey`): an event's guests (`guests#<eventId>#<n>`, by
registration time) and its samples (`samples#<eventId>#<n>`, by finish time), sharded as the
seats are, so neither listing nor writing them puts one event on one hot partition key.
"""

from __future__ import annotations

import base64
import json
import os
import zlib
from collections.abc import Iterator
from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel

from guests.models import Client, Event, Guest, Sample, Seats
from tarefa import Refusal

TABLE_VARIABLE = "GUESTS_TABLE"
SEAT_SHARDS = 8
MAX_SAMPLES_PER_SHARD = 20_000  # a metrics window reads at most this many per shard
SAMPLE_LIFETIME_SECONDS = 7 * 86_400


class StaleRecordError(Exception):
    """The record changed since it was read: read it again and decide again."""


class ContentionError(Exception):
    """A transaction met another on the same items: try again."""


class SlugTakenError(Exception):
    def __init__(self, links: list[str]) -> None:
        super().__init__(", ".join(links))
        self.links = links


class AlreadyCheckedInError(Exception):
    def __init__(self, checked_in_at: datetime | None) -> None:
        super().__init__("already checked in")
        self.checked_in_at = checked_in_at


class Admission(StrEnum):
    ADMITTED = "ADMITTED"  # the guest is written and holds a place of this shard
    EXISTS = "EXISTS"  # the guest was there already (a duplicate job, a repeated attempt)
    NO_ROOM = "NO_ROOM"  # this shard is full or closed


def _doc(record: BaseModel) -> str:
    """The record as JSON with the fields every view leaves out (a password hash): the store is
    the one place that keeps them."""
    body = record.model_dump(mode="json", by_alias=True)
    for name, info in type(record).model_fields.items():
        value = getattr(record, name)
        if info.exclude and value is not None:
            body[info.alias or name] = value
    return json.dumps(body, separators=(",", ":"))


def stamp(moment: datetime) -> str:
    return moment.isoformat(timespec="microseconds")


def sample_shard(job_id: str) -> int:
    return zlib.crc32(job_id.encode()) % SEAT_SHARDS


def _seats_key(event_id: str, shard: int) -> dict[str, Any]:
    return {"pk": {"S": f"seats#{event_id}#{shard}"}}


def _reasons(exc: Exception) -> list[str]:
    response = getattr(exc, "response", {}) or {}
    return [str(r.get("Code") or "None") for r in response.get("CancellationReasons", [])]


class GuestsStore:
    def __init__(self, table: str | None = None, client: Any = None) -> None:
        self.table = table or os.environ[TABLE_VARIABLE]
        if client is None:
            import boto3

            client = boto3.client("dynamodb")
        self.client = client

    # -- events ----------------------------------------------------------------------------------
    def create_event(self, event: Event, seats: list[Seats]) -> None:
        """The event, its promoters' links and its seat shards in one transaction;
        SlugTakenError naming the links another event has."""
        links = [
            {
                "Put": {
                    "TableName": self.table,
                    "Item": {
                        "pk": {"S": f"slug#{p.slug}#{event.slug}"},
                        "eventId": {"S": event.event_id},
                    },
                    "ConditionExpression": "attribute_not_exists(pk)",
                }
            }
            for p in event.promoters
        ]
        items = [
            {
                "Put": {
                    "TableName": self.table,
                    "Item": self._event_item(event),
                    "ConditionExpression": "attribute_not_exists(pk)",
                }
            },
            *links,
            *({"Put": {"TableName": self.table, "Item": self._seats_item(event.event_id, s)}} for s in seats),
        ]
        try:
            self.client.transact_write_items(TransactItems=items)
        except self.client.exceptions.TransactionCanceledException as exc:
            reasons = _reasons(exc)
            taken = [
                f"{p.slug}/{event.slug}"
                for p, code in zip(event.promoters, reasons[1 : 1 + len(links)], strict=False)
                if code == "ConditionalCheckFailed"
            ]
            if taken or not reasons:
                raise SlugTakenError(taken or [f"{p.slug}/{event.slug}" for p in event.promoters]) from None
            raise ContentionError(event.event_id) from None

    def event(self, event_id: str) -> Event | None:
        item = self._get(f"event#{event_id}")
        return Event.model_validate_json(item["doc"]["S"]) if item else None

    def event_id_for(self, promoter_slug: str, event_slug: str) -> str | None:
        item = self._get(f"slug#{promoter_slug}#{event_slug}")
        return item["eventId"]["S"] if item else None

    def seats(self, event_id: str) -> list[Seats]:
        """Every shard of the event's places (one consistent BatchGetItem)."""
        keys = [_seats_key(event_id, n) for n in range(SEAT_SHARDS)]
        found: list[dict[str, Any]] = []
        request: dict[str, Any] = {self.table: {"Keys": keys, "ConsistentRead": True}}
        for _ in range(10):
            answer = self.client.batch_get_item(RequestItems=request)
            found.extend(answer.get("Responses", {}).get(self.table, []))
            request = answer.get("UnprocessedKeys") or {}
            if not request:
                break
        else:
            raise ContentionError(f"seats of {event_id}: unprocessed keys")
        return sorted((self._seats(item) for item in found), key=lambda s: s.shard)

    def change_event(
        self, event: Event, expected_version: int, before: list[Seats], after: list[Seats], hold_counts: bool
    ) -> Event:
        """The event as version expected+1 and its shards' caps and flag, in one transaction;
        with `hold_counts` (new caps) it holds only while no shard took a place since `before`
        was read. StaleRecordError when it did not hold (or someone changed the event)."""
        written = event.model_copy(update={"version": expected_version + 1})
        items: list[dict[str, Any]] = [
            {
                "Put": {
                    "TableName": self.table,
                    "Item": self._event_item(written),
                    "ConditionExpression": "version = :v",
                    "ExpressionAttributeValues": {":v": {"N": str(expected_version)}},
                }
            }
        ]
        for old, new in zip(before, after, strict=True):
            update: dict[str, Any] = {
                "TableName": self.table,
                "Key": _seats_key(event.event_id, new.shard),
                "UpdateExpression": "SET isOpen = :open",
                "ExpressionAttributeValues": {":open": {"BOOL": new.open}},
            }
            if hold_counts:
                update["UpdateExpression"] = "SET cap = :cap, isOpen = :open"
                update["ConditionExpression"] = "registered = :seen"
                update["ExpressionAttributeValues"] |= {
                    ":cap": {"N": str(new.cap)},
                    ":seen": {"N": str(old.registered)},
                }
            items.append({"Update": update})
        try:
            self.client.transact_write_items(TransactItems=items)
        except self.client.exceptions.TransactionCanceledException:
            raise StaleRecordError(event.event_id) from None
        return written

    # -- clients -----------------------------------------------------------------------------------
    def client_of(self, phone_key: str) -> Client | None:
        item = self._get(f"client#{phone_key}")
        return Client.model_validate_json(item["doc"]["S"]) if item else None

    def create_client(self, phone_key: str, client: Client) -> bool:
        """False when the phone has a client already."""
        try:
            self.client.put_item(
                TableName=self.table,
                Item=self._client_item(phone_key, client),
                ConditionExpression="attribute_not_exists(pk)",
            )
        except self.client.exceptions.ConditionalCheckFailedException:
            return False
        return True

    def put_client(self, phone_key: str, client: Client, expected_version: int) -> Client:
        written = client.model_copy(update={"version": expected_version + 1})
        try:
            self.client.put_item(
                TableName=self.table,
                Item=self._client_item(phone_key, written),
                ConditionExpression="version = :v",
                ExpressionAttributeValues={":v": {"N": str(expected_version)}},
            )
        except self.client.exceptions.ConditionalCheckFailedException:
            raise StaleRecordError(client.client_id) from None
        return written

    # -- guests ------------------------------------------------------------------------------------
    def guest(self, guest_id: str) -> Guest | None:
        item = self._get(f"guest#{guest_id}")
        return self._guest(item) if item else None

    def admit(self, guest: Guest) -> Admission:
        """The guest and a place of its shard, together: EXISTS when the guest is there already,
        NO_ROOM when the shard is full or closed; ContentionError when another transaction held
        the items (try again)."""
        counter = f"p#{guest.promoter_slug or '-'}"
        try:
            self.client.transact_write_items(
                TransactItems=[
                    {
                        "Put": {
                            "TableName": self.table,
                            "Item": self._guest_item(guest),
                            "ConditionExpression": "attribute_not_exists(pk)",
                        }
                    },
                    {
                        "Update": {
                            "TableName": self.table,
                            "Key": _seats_key(guest.event_id, guest.shard),
                            "UpdateExpression": "ADD registered :one, #promoter :one",
                            "ConditionExpression": "registered < cap AND isOpen = :open",
                            "ExpressionAttributeNames": {"#promoter": counter},
                            "ExpressionAttributeValues": {":one": {"N": "1"}, ":open": {"BOOL": True}},
                        }
                    },
                ]
            )
        except self.client.exceptions.TransactionCanceledException as exc:
            reasons = _reasons(exc)
            if reasons[:1] == ["ConditionalCheckFailed"]:
                return Admission.EXISTS
            if reasons[1:2] == ["ConditionalCheckFailed"]:
                return Admission.NO_ROOM
            raise ContentionError(guest.guest_id) from None
        return Admission.ADMITTED

    def check_in(self, guest: Guest, at: datetime) -> Guest:
        """Mark the guest checked in, once; AlreadyCheckedInError (with when) the next time."""
        try:
            self.client.transact_write_items(
                TransactItems=[
                    {
                        "Update": {
                            "TableName": self.table,
                            "Key": {"pk": {"S": f"guest#{guest.guest_id}"}},
                            "UpdateExpression": "SET checkedInAt = :at",
                            "ConditionExpression": "attribute_exists(pk) AND attribute_not_exists(checkedInAt)",
                            "ExpressionAttributeValues": {":at": {"S": stamp(at)}},
                        }
                    },
                    {
                        "Update": {
                            "TableName": self.table,
                            "Key": _seats_key(guest.event_id, guest.shard),
                            "UpdateExpression": "ADD checkedIn :one",
                            "ExpressionAttributeValues": {":one": {"N": "1"}},
                        }
                    },
                ]
            )
        except self.client.exceptions.TransactionCanceledException as exc:
            if _reasons(exc)[:1] == ["ConditionalCheckFailed"]:
                current = self.guest(guest.guest_id)
                raise AlreadyCheckedInError(current.checked_in_at if current else None) from None
            raise ContentionError(guest.guest_id) from None
        return guest.model_copy(update={"checked_in_at": at})

    def guests_page(self, event_id: str, cursor: str | None, limit: int) -> tuple[list[Guest], str | None]:
        """One page of the event's guests, shard after shard; the cursor says where to go on."""
        shard, start = decode_cursor(cursor, event_id) if cursor else (0, None)
        found: list[Guest] = []
        while shard < SEAT_SHARDS and len(found) < limit:
            kwargs: dict[str, Any] = {
                "TableName": self.table,
                "IndexName": "ByEventShard",
                "KeyConditionExpression": "eventShard = :s",
                "ExpressionAttributeValues": {":s": {"S": f"guests#{event_id}#{shard}"}},
                "Limit": limit - len(found),
            }
            if start:
                kwargs["ExclusiveStartKey"] = start
            page = self.client.query(**kwargs)
            found.extend(self._guest(item) for item in page.get("Items", []))
            start = page.get("LastEvaluatedKey")
            if not start:
                shard, start = shard + 1, None
        if shard >= SEAT_SHARDS:
            return found, None
        return found, encode_cursor(event_id, shard, start)

    def events_of(self, organiser: str, cursor: str | None, limit: int) -> tuple[list[Event], str | None]:
        """One page of an organiser's events, the latest start first."""
        kwargs: dict[str, Any] = {
            "TableName": self.table,
            "IndexName": "ByEventShard",
            "KeyConditionExpression": "eventShard = :o",
            "ExpressionAttributeValues": {":o": {"S": f"organiser#{organiser}"}},
            "ScanIndexForward": False,
            "Limit": limit,
        }
        if cursor:
            kwargs["ExclusiveStartKey"] = decode_events_cursor(cursor, organiser)
        page = self.client.query(**kwargs)
        events = [Event.model_validate_json(item["doc"]["S"]) for item in page.get("Items", [])]
        last = page.get("LastEvaluatedKey")
        return events, encode_events_cursor(organiser, last) if last else None

    # -- status tokens -----------------------------------------------------------------------------
    def put_status(self, job_id: str, token_hash: str, expires_at: int) -> None:
        self.client.put_item(
            TableName=self.table,
            Item={
                "pk": {"S": f"status#{job_id}"},
                "tokenHash": {"S": token_hash},
                "expiresAt": {"N": str(expires_at)},
            },
        )

    def status_hash(self, job_id: str, now: float) -> str | None:
        item = self._get(f"status#{job_id}")
        if not item or int(item["expiresAt"]["N"]) <= now:  # TTL deletes only eventually
            return None
        return str(item["tokenHash"]["S"])

    # -- samples -----------------------------------------------------------------------------------
    def put_sample(self, sample: Sample) -> None:
        self.client.put_item(
            TableName=self.table,
            Item={
                "pk": {"S": f"sample#{sample.job_id}"},
                "eventShard": {"S": f"samples#{sample.event_id}#{sample_shard(sample.job_id)}"},
                "sortKey": {"S": f"{stamp(sample.finished_at)}#{sample.job_id}"},
                "doc": {"S": sample.model_dump_json(by_alias=True)},
                "expiresAt": {"N": str(int(sample.finished_at.timestamp()) + SAMPLE_LIFETIME_SECONDS)},
            },
        )

    def samples(self, event_id: str, since: datetime) -> Iterator[Sample]:
        for shard in range(SEAT_SHARDS):
            start: dict[str, Any] | None = None
            read = 0
            while read < MAX_SAMPLES_PER_SHARD:
                kwargs: dict[str, Any] = {
                    "TableName": self.table,
                    "IndexName": "ByEventShard",
                    "KeyConditionExpression": "eventShard = :s AND sortKey >= :since",
                    "ExpressionAttributeValues": {
                        ":s": {"S": f"samples#{event_id}#{shard}"},
                        ":since": {"S": stamp(since)},
                    },
                }
                if start:
                    kwargs["ExclusiveStartKey"] = start
                page = self.client.query(**kwargs)
                for item in page.get("Items", []):
                    read += 1
                    yield Sample.model_validate_json(item["doc"]["S"])
                start = page.get("LastEvaluatedKey")
                if not start:
                    break

    # -- items ---------------------------------------------------------------------------------------
    def _get(self, key: str) -> dict[str, Any] | None:
        item: dict[str, Any] | None = self.client.get_item(
            TableName=self.table, Key={"pk": {"S": key}}, ConsistentRead=True
        ).get("Item")
        return item

    @staticmethod
    def _event_item(event: Event) -> dict[str, Any]:
        return {
            "pk": {"S": f"event#{event.event_id}"},
            # an organiser's events, newest start first (GET /events): an organiser has few
            "eventShard": {"S": f"organiser#{event.organiser}"},
            "sortKey": {"S": f"{stamp(event.starts_at)}#{event.event_id}"},
            "organiser": {"S": event.organiser},
            "version": {"N": str(event.version)},
            "doc": {"S": _doc(event)},
        }

    @staticmethod
    def _seats_item(event_id: str, seats: Seats) -> dict[str, Any]:
        item: dict[str, Any] = {
            **_seats_key(event_id, seats.shard),
            "shard": {"N": str(seats.shard)},
            "cap": {"N": str(seats.cap)},
            "registered": {"N": str(seats.registered)},
            "checkedIn": {"N": str(seats.checked_in)},
            "isOpen": {"BOOL": seats.open},
        }
        for slug, count in seats.by_promoter.items():
            item[f"p#{slug}"] = {"N": str(count)}
        return item

    @staticmethod
    def _seats(item: dict[str, Any]) -> Seats:
        return Seats(
            shard=int(item["shard"]["N"]),
            cap=int(item["cap"]["N"]),
            registered=int(item.get("registered", {}).get("N", 0)),
            checked_in=int(item.get("checkedIn", {}).get("N", 0)),
            open=bool(item.get("isOpen", {}).get("BOOL", False)),
            by_promoter={k[2:]: int(v["N"]) for k, v in item.items() if k.startswith("p#")},
        )

    @staticmethod
    def _client_item(phone_key: str, client: Client) -> dict[str, Any]:
        return {
            "pk": {"S": f"client#{phone_key}"},
            "version": {"N": str(client.version)},
            "doc": {"S": _doc(client)},
        }

    @staticmethod
    def _guest_item(guest: Guest) -> dict[str, Any]:
        return {
            "pk": {"S": f"guest#{guest.guest_id}"},
            "eventShard": {"S": f"guests#{guest.event_id}#{guest.shard}"},
            "sortKey": {"S": f"{stamp(guest.created_at)}#{guest.guest_id}"},
            "doc": {"S": guest.model_copy(update={"checked_in_at": None}).model_dump_json(by_alias=True)},
        }

    @staticmethod
    def _guest(item: dict[str, Any]) -> Guest:
        guest = Guest.model_validate_json(item["doc"]["S"])
        if "checkedInAt" in item:
            guest = guest.model_copy(
                update={"checked_in_at": datetime.fromisoformat(item["checkedInAt"]["S"])}
            )
        return guest


class BadCursorError(Refusal):
    code = "VALIDATION_ERROR"
    status = 422

    def __init__(self, message: str) -> None:
        super().__init__(message, [{"field": "cursor", "message": message}])


def encode_cursor(event_id: str, shard: int, key: dict[str, Any] | None) -> str:
    body = {"e": event_id, "s": shard, "k": key}
    return base64.urlsafe_b64encode(json.dumps(body, separators=(",", ":")).encode()).decode()


def decode_cursor(cursor: str, event_id: str) -> tuple[int, dict[str, Any] | None]:
    """Where a page starts, refused unless the cursor is one of this event's (no peeking elsewhere)."""
    try:
        body = json.loads(base64.urlsafe_b64decode(cursor.encode()))
        if body["e"] != event_id:
            raise ValueError
        shard = body["s"]
        if not isinstance(shard, int) or isinstance(shard, bool) or not 0 <= shard < SEAT_SHARDS:
            raise ValueError
        key = body["k"]
        if key is None:
            return shard, None
        if not isinstance(key, dict) or key.get("eventShard", {}).get("S") != f"guests#{event_id}#{shard}":
            raise ValueError
        return shard, {k: {"S": str(v["S"])} for k, v in key.items()}
    except (ValueError, TypeError, KeyError, AttributeError):
        raise BadCursorError("cursor is not one this listing gave") from None


def encode_events_cursor(organiser: str, key: dict[str, Any]) -> str:
    body = {"o": organiser, "k": {k: v["S"] for k, v in key.items()}}
    return base64.urlsafe_b64encode(json.dumps(body, separators=(",", ":")).encode()).decode()


def decode_events_cursor(cursor: str, organiser: str) -> dict[str, Any]:
    """Where a page of events starts, refused unless the cursor is one of this organiser's."""
    try:
        body = json.loads(base64.urlsafe_b64decode(cursor.encode()))
        key = body["k"]
        if body["o"] != organiser or not isinstance(key, dict):
            raise ValueError
        if set(key) != {"pk", "eventShard", "sortKey"} or key["eventShard"] != f"organiser#{organiser}":
            raise ValueError
        return {k: {"S": str(v)} for k, v in key.items()}
    except (ValueError, TypeError, KeyError, AttributeError):
        raise BadCursorError("cursor is not one this listing gave") from None
