"""The messaging table (one table, `MESSAGING_TABLE`): the workload's only boto3 importer.

Items, by `pk`:
- `session#<id>`: a session; `doc` holds the record as JSON, `version` guards every write.
- `number#<phoneNumberId>`: which session holds a business number while it is open (written in
  one transaction with the session; a second open session on the number is refused), and how
  the Cloud API's webhooks (addressed by phone_number_id) find their session.
- `message#<id>`: a message, with its index keys below and `expiresAt` (the jobs' retention).
- `provider#<provider>#<providerMessageId>`: which message (and which send of it) a provider id
  is: written with the SENT record in one transaction, and first for an inbound message (a
  redelivered webhook finds it there: no second message).
- `key#<owner>#<sessionId>#<idempotencyKey>`: the message a key made and the body's
  fingerprint, written in one transaction with it.

Indexes (all keyed by session, so the busiest session is one partition of each, far under
DynamoDB's per-partition limits at the 80-a-minute send rate; no scans anywhere):
- `ByOwner` (`ownerKind`, `createdAt`): a user's sessions, newest first.
- `BySession` (`sessionKey`, `sortKey`): a session's messages, newest first.
- `BySessionStatus` (`sessionStatus`, `sortKey`) and `BySessionDirection` (`sessionDirection`,
  `sortKey`): the same, one status or direction.
"""

from __future__ import annotations

import base64
import json
import os
import time
from datetime import datetime
from typing import Any, TypeVar

from pydantic import BaseModel

from messaging.models import OPEN_SESSION, Message, MessageStatus, Session
from tarefa import Refusal

TABLE_VARIABLE = "MESSAGING_TABLE"
RETENTION_VARIABLE = "JOB_RETENTION_SECONDS"  # the platform's retention, as the jobs'
DEFAULT_RETENTION_SECONDS = 7 * 86_400
Record = TypeVar("Record", Session, Message)


class StaleRecordError(Exception):
    """The record changed since it was read: read it again and decide again."""


class NumberInUseError(Exception):
    def __init__(self, session_id: str) -> None:
        super().__init__(session_id)
        self.session_id = session_id


class KeyExistsError(Exception):
    def __init__(self, message_id: str, fingerprint: str) -> None:
        super().__init__(message_id)
        self.message_id = message_id
        self.fingerprint = fingerprint


def retention_seconds() -> int:
    try:
        return max(60, int(os.environ.get(RETENTION_VARIABLE) or DEFAULT_RETENTION_SECONDS))
    except ValueError:
        return DEFAULT_RETENTION_SECONDS


def _doc(record: BaseModel) -> str:
    """The record as JSON, with the fields every view leaves out: the store keeps them."""
    body = record.model_dump(mode="json", by_alias=True)
    for name, info in type(record).model_fields.items():
        value = getattr(record, name)
        if info.exclude and value is not None:
            body[info.alias or name] = value.isoformat() if isinstance(value, datetime) else value
    return json.dumps(body, separators=(",", ":"))


def _stamp(moment: datetime) -> str:
    return moment.isoformat(timespec="microseconds")


def _expires(created: datetime) -> str:
    return str(int(created.timestamp()) + retention_seconds())


class MessagingStore:
    def __init__(self, table: str | None = None, client: Any = None) -> None:
        self.table = table or os.environ[TABLE_VARIABLE]
        if client is None:
            import boto3

            client = boto3.client("dynamodb")
        self.client = client

    # -- sessions ------------------------------------------------------------------------------
    def get_session(self, session_id: str) -> Session | None:
        return self._get(f"session#{session_id}", Session)

    def create_session(self, session: Session) -> None:
        """The session and its number's hold in one transaction; NumberInUseError when another
        open session holds the number."""
        try:
            self.client.transact_write_items(
                TransactItems=[
                    {
                        "Put": {
                            "TableName": self.table,
                            "Item": self._number_item(session),
                            "ConditionExpression": "attribute_not_exists(pk) OR active = :no",
                            "ExpressionAttributeValues": {":no": {"BOOL": False}},
                        }
                    },
                    {
                        "Put": {
                            "TableName": self.table,
                            "Item": self._session_item(session),
                            "ConditionExpression": "attribute_not_exists(pk)",
                        }
                    },
                ]
            )
        except self.client.exceptions.TransactionCanceledException:
            holder = self.number_holder(session.phone_number_id)
            if holder is None or holder == session.session_id:
                raise StaleRecordError(session.session_id) from None
            raise NumberInUseError(holder) from None

    def number_holder(self, phone_number_id: str) -> str | None:
        """The open session holding a business number, if any."""
        item = self.client.get_item(
            TableName=self.table, Key={"pk": {"S": f"number#{phone_number_id}"}}, ConsistentRead=True
        ).get("Item")
        if not item or not item.get("active", {}).get("BOOL"):
            return None
        return str(item["sessionId"]["S"])

    def put_session(self, session: Session, expected_version: int) -> Session:
        written = session.model_copy(update={"version": expected_version + 1})
        item = self._session_item(written)
        if session.status in OPEN_SESSION:
            self._put(item, expected_version)
            return written
        # Closed or failed: the number is free again (if this session still holds it).
        try:
            self.client.transact_write_items(
                TransactItems=[
                    {
                        "Put": {
                            "TableName": self.table,
                            "Item": item,
                            "ConditionExpression": "version = :v",
                            "ExpressionAttributeValues": {":v": {"N": str(expected_version)}},
                        }
                    },
                    {
                        "Update": {
                            "TableName": self.table,
                            "Key": {"pk": {"S": f"number#{session.phone_number_id}"}},
                            "UpdateExpression": "SET active = :no",
                            "ConditionExpression": "sessionId = :s",
                            "ExpressionAttributeValues": {
                                ":no": {"BOOL": False},
                                ":s": {"S": session.session_id},
                            },
                        }
                    },
                ]
            )
        except self.client.exceptions.TransactionCanceledException as exc:
            reasons = [r.get("Code") for r in exc.response.get("CancellationReasons", [])]
            if reasons and reasons[0] == "ConditionalCheckFailed":
                raise StaleRecordError(item["pk"]["S"]) from None
            self._put(item, expected_version)  # the number is another session's already
        return written

    def list_sessions(self, owner: str, cursor: str | None, limit: int) -> tuple[list[Session], str | None]:
        return self._query("ByOwner", "ownerKind", f"{owner}#session", Session, cursor, limit)

    # -- messages --------------------------------------------------------------------------------
    def get_message(self, message_id: str) -> Message | None:
        return self._get(f"message#{message_id}", Message)

    def create_message(self, message: Message, fingerprint: str | None) -> None:
        """The message (and its idempotency key's record); KeyExistsError when the key made one."""
        items: list[dict[str, Any]] = [
            {
                "Put": {
                    "TableName": self.table,
                    "Item": self._message_item(message),
                    "ConditionExpression": "attribute_not_exists(pk)",
                }
            }
        ]
        if message.idempotency_key and fingerprint is not None:
            items.insert(
                0,
                {
                    "Put": {
                        "TableName": self.table,
                        "Item": {
                            "pk": {
                                "S": self._key_pk(message.owner, message.session_id, message.idempotency_key)
                            },
                            "messageId": {"S": message.message_id},
                            "fingerprint": {"S": fingerprint},
                            "expiresAt": {"N": _expires(message.created_at)},
                        },
                        "ConditionExpression": "attribute_not_exists(pk)",
                    }
                },
            )
        try:
            self.client.transact_write_items(TransactItems=items)
        except self.client.exceptions.TransactionCanceledException:
            if message.idempotency_key:
                found = self.keyed(message.owner, message.session_id, message.idempotency_key)
                if found is not None:
                    raise KeyExistsError(*found) from None
            raise StaleRecordError(message.message_id) from None

    def keyed(self, owner: str, session_id: str, key: str) -> tuple[str, str] | None:
        item = self.client.get_item(
            TableName=self.table, Key={"pk": {"S": self._key_pk(owner, session_id, key)}}, ConsistentRead=True
        ).get("Item")
        return (item["messageId"]["S"], item["fingerprint"]["S"]) if item else None

    def create_inbound(self, message: Message, provider: str) -> bool:
        """The inbound message and its provider id's record; False when that id made one."""
        assert message.provider_message_id is not None
        try:
            self.client.transact_write_items(
                TransactItems=[
                    {
                        "Put": {
                            "TableName": self.table,
                            "Item": self._provider_item(provider, message.provider_message_id, message, 0),
                            "ConditionExpression": "attribute_not_exists(pk)",
                        }
                    },
                    {
                        "Put": {
                            "TableName": self.table,
                            "Item": self._message_item(message),
                            "ConditionExpression": "attribute_not_exists(pk)",
                        }
                    },
                ]
            )
        except self.client.exceptions.TransactionCanceledException:
            if self.by_provider_id(provider, message.provider_message_id) is not None:
                return False
            raise StaleRecordError(message.message_id) from None
        return True

    def put_message(self, message: Message, expected_version: int) -> Message:
        written = message.model_copy(update={"version": expected_version + 1})
        self._put(self._message_item(written), expected_version)
        return written

    def put_sent(self, message: Message, expected_version: int, provider: str) -> Message:
        """The message as SENT and its provider id's record, in one transaction."""
        assert message.provider_message_id is not None
        written = message.model_copy(update={"version": expected_version + 1})
        try:
            self.client.transact_write_items(
                TransactItems=[
                    {
                        "Put": {
                            "TableName": self.table,
                            "Item": self._message_item(written),
                            "ConditionExpression": "version = :v",
                            "ExpressionAttributeValues": {":v": {"N": str(expected_version)}},
                        }
                    },
                    {
                        "Put": {
                            "TableName": self.table,
                            "Item": self._provider_item(
                                provider, message.provider_message_id, message, message.generation
                            ),
                        }
                    },
                ]
            )
        except self.client.exceptions.TransactionCanceledException:
            raise StaleRecordError(message.message_id) from None
        return written

    def by_provider_id(self, provider: str, provider_message_id: str) -> tuple[str, int] | None:
        """(messageId, generation) a provider's message id is."""
        item = self.client.get_item(
            TableName=self.table,
            Key={"pk": {"S": f"provider#{provider}#{provider_message_id}"}},
            ConsistentRead=True,
        ).get("Item")
        return (item["messageId"]["S"], int(item["generation"]["N"])) if item else None

    def list_messages(
        self,
        session_id: str,
        status: MessageStatus | None,
        direction: str | None,
        cursor: str | None,
        limit: int,
    ) -> tuple[list[Message], str | None]:
        if status is not None:
            index, attribute, value = "BySessionStatus", "sessionStatus", f"{session_id}#{status}"
            other = ("direction", direction) if direction else None
        elif direction is not None:
            index, attribute, value = "BySessionDirection", "sessionDirection", f"{session_id}#{direction}"
            other = None
        else:
            index, attribute, value, other = "BySession", "sessionKey", session_id, None
        return self._query(index, attribute, value, Message, cursor, limit, other)

    # -- items -----------------------------------------------------------------------------------
    @staticmethod
    def _key_pk(owner: str, session_id: str, key: str) -> str:
        return f"key#{owner}#{session_id}#{key}"

    def _number_item(self, session: Session) -> dict[str, Any]:
        return {
            "pk": {"S": f"number#{session.phone_number_id}"},
            "sessionId": {"S": session.session_id},
            "active": {"BOOL": True},
        }

    def _session_item(self, session: Session) -> dict[str, Any]:
        return {
            "pk": {"S": f"session#{session.session_id}"},
            "ownerKind": {"S": f"{session.owner}#session"},
            "createdAt": {"S": _stamp(session.created_at)},
            "status": {"S": str(session.status)},
            "version": {"N": str(session.version)},
            "doc": {"S": _doc(session)},
        }

    def _message_item(self, message: Message) -> dict[str, Any]:
        sort = f"{_stamp(message.created_at)}#{message.message_id}"
        return {
            "pk": {"S": f"message#{message.message_id}"},
            "sessionKey": {"S": message.session_id},
            "sessionStatus": {"S": f"{message.session_id}#{message.status}"},
            "sessionDirection": {"S": f"{message.session_id}#{message.direction}"},
            "direction": {"S": str(message.direction)},
            "sortKey": {"S": sort},
            "version": {"N": str(message.version)},
            "expiresAt": {"N": _expires(message.created_at)},
            "doc": {"S": _doc(message)},
        }

    def _provider_item(
        self, provider: str, provider_id: str, message: Message, generation: int
    ) -> dict[str, Any]:
        return {
            "pk": {"S": f"provider#{provider}#{provider_id}"},
            "messageId": {"S": message.message_id},
            "generation": {"N": str(generation)},
            "expiresAt": {"N": _expires(message.created_at)},
        }

    def _get(self, key: str, model: type[Record]) -> Record | None:
        item = self.client.get_item(TableName=self.table, Key={"pk": {"S": key}}, ConsistentRead=True).get(
            "Item"
        )
        if not item:
            return None
        expires = item.get("expiresAt", {}).get("N")
        if expires and int(expires) < time.time():  # past its retention, not yet swept by TTL
            return None
        return model.model_validate_json(item["doc"]["S"])

    def _put(self, item: dict[str, Any], expected_version: int) -> None:
        try:
            self.client.put_item(
                TableName=self.table,
                Item=item,
                ConditionExpression="version = :v",
                ExpressionAttributeValues={":v": {"N": str(expected_version)}},
            )
        except self.client.exceptions.ConditionalCheckFailedException:
            raise StaleRecordError(item["pk"]["S"]) from None

    def _query(
        self,
        index: str,
        attribute: str,
        value: str,
        model: type[Record],
        cursor: str | None,
        limit: int,
        other: tuple[str, str] | None = None,
    ) -> tuple[list[Record], str | None]:
        kwargs: dict[str, Any] = {
            "TableName": self.table,
            "IndexName": index,
            "KeyConditionExpression": "#k = :k",
            "ExpressionAttributeNames": {"#k": attribute},
            "ExpressionAttributeValues": {":k": {"S": value}},
            "ScanIndexForward": False,
            "Limit": limit,
        }
        if other is not None:
            kwargs["FilterExpression"] = "#o = :o"
            kwargs["ExpressionAttributeNames"]["#o"] = other[0]
            kwargs["ExpressionAttributeValues"][":o"] = {"S": other[1]}
        if cursor:
            kwargs["ExclusiveStartKey"] = decode_cursor(cursor, attribute, value)
        page = self.client.query(**kwargs)
        records = [model.model_validate_json(item["doc"]["S"]) for item in page.get("Items", [])]
        last = page.get("LastEvaluatedKey")
        return records, (encode_cursor(last) if last else None)


class BadCursorError(Refusal):
    code = "VALIDATION_ERROR"
    status = 422

    def __init__(self, message: str) -> None:
        super().__init__(message, [{"field": "cursor", "message": message}])


def encode_cursor(key: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(key, separators=(",", ":")).encode()).decode()


def decode_cursor(cursor: str, attribute: str, value: str) -> dict[str, Any]:
    """The page's start key, refused unless it is one of this listing's (no peeking elsewhere)."""
    try:
        key = json.loads(base64.urlsafe_b64decode(cursor.encode()))
        if not isinstance(key, dict) or key.get(attribute, {}).get("S") != value:
            raise ValueError
        return {k: {"S": str(v["S"])} for k, v in key.items()}
    except (ValueError, TypeError, KeyError, AttributeError):
        raise BadCursorError("cursor is not one this listing gave") from None
