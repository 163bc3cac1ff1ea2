"""The three priority queues and their dead-letter queues."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from tarefa.flow import message_group
from tarefa.job import Priority
from tarefa.ports import DeadLetter, QueueDepth
from tarefa.queue import SQS_MAX_MESSAGE_BYTES

if TYPE_CHECKING:
    from mypy_boto3_sqs.client import SQSClient

ERROR_ATTRIBUTE = "tarefa-error"
JOB_ID_ATTRIBUTE = "tarefa-job-id"
BATCH_ENTRIES = 10  # SendMessageBatch's limits: entries per call, and their bodies together
BATCH_MAX_BYTES = SQS_MAX_MESSAGE_BYTES
BATCH_ATTEMPTS = 2  # an entry SQS failed on its side gets one more try


class SqsJobQueue:
    def __init__(
        self,
        client: SQSClient,
        queue_urls: dict[Priority, str],
        dlq_urls: dict[Priority, str],
        group_of: Callable[[str], str] = message_group,
    ) -> None:
        self.client = client
        self.queue_urls = queue_urls
        self.dlq_urls = dlq_urls
        self.group_of = group_of  # the fair-queue tenant of a message (tarefa.flow.message_group)

    def send(self, priority: Priority, body: str, delay_seconds: int = 0) -> str:
        """Every message carries a MessageGroupId: on a standard queue that is the fair queues'
        tenant, so one owner's burst does not delay the others' jobs (README "Flow control")."""
        response = self.client.send_message(
            QueueUrl=self.queue_urls[priority],
            MessageBody=body,
            DelaySeconds=delay_seconds,
            MessageGroupId=self.group_of(body),
        )
        return response["MessageId"]

    def send_batch(self, priority: Priority, messages: Sequence[tuple[str, int]]) -> list[str | Exception]:
        """SendMessageBatch: up to 10 entries and BATCH_MAX_BYTES of bodies per call, each entry
        with the MessageGroupId and DelaySeconds `send` would give it. An entry SQS failed on
        its side (SenderFault false) is sent once more in the next call; what still failed, and
        every entry of a call that raised, is that entry's error (a ClientError naming SQS's
        code, as a refused SendMessage raises)."""
        results: list[str | Exception | None] = [None] * len(messages)
        for chunk in _chunks(messages):
            pending = chunk
            for attempt in range(BATCH_ATTEMPTS):
                pending = self._send_chunk(
                    priority, messages, pending, results, last=attempt == BATCH_ATTEMPTS - 1
                )
                if not pending:
                    break
        return [r if r is not None else RuntimeError("not sent") for r in results]

    def _send_chunk(
        self,
        priority: Priority,
        messages: Sequence[tuple[str, int]],
        chunk: list[int],
        results: list[str | Exception | None],
        last: bool,
    ) -> list[int]:
        """Send the messages at `chunk`'s indexes in one call; the indexes worth sending again."""
        entries: Any = [
            {
                "Id": str(i),
                "MessageBody": messages[i][0],
                "DelaySeconds": messages[i][1],
                "MessageGroupId": self.group_of(messages[i][0]),
            }
            for i in chunk
        ]
        try:
            response = self.client.send_message_batch(QueueUrl=self.queue_urls[priority], Entries=entries)
        except Exception as exc:  # the call failed, or its answer was lost: each entry may be queued
            for i in chunk:
                results[i] = exc
            return []
        for sent in response.get("Successful", []):
            results[int(sent["Id"])] = sent["MessageId"]
        again: list[int] = []
        for failed in response.get("Failed", []):
            i = int(failed["Id"])
            if not failed.get("SenderFault", False) and not last:
                again.append(i)
                continue
            error: Any = {
                "Error": {"Code": failed.get("Code", "InternalError"), "Message": failed.get("Message", "")},
                "ResponseMetadata": {"HTTPStatusCode": 400 if failed.get("SenderFault") else 500},
            }
            results[i] = ClientError(error, "SendMessageBatch")
        return again

    def change_visibility(self, priority: Priority, receipt_handle: str, seconds: int) -> None:
        self.client.change_message_visibility(
            QueueUrl=self.queue_urls[priority], ReceiptHandle=receipt_handle, VisibilityTimeout=seconds
        )

    def send_to_dead_letter(self, priority: Priority, body: str, reason: str, job_id: str) -> None:
        self.client.send_message(
            QueueUrl=self.dlq_urls[priority],
            MessageBody=body,
            MessageGroupId=self.group_of(body),
            MessageAttributes={
                ERROR_ATTRIBUTE: {"DataType": "String", "StringValue": reason[:1000]},
                JOB_ID_ATTRIBUTE: {"DataType": "String", "StringValue": job_id},
            },
        )

    # -- dead-letter queues ----------------------------------------------------------------
    def receive_dead_letters(
        self, priority: Priority, max_messages: int, hide_seconds: int
    ) -> list[DeadLetter]:
        messages = self.client.receive_message(
            QueueUrl=self.dlq_urls[priority],
            MaxNumberOfMessages=max(1, min(10, max_messages)),
            VisibilityTimeout=hide_seconds,
            AttributeNames=["ApproximateReceiveCount", "SentTimestamp"],
            MessageAttributeNames=[ERROR_ATTRIBUTE, JOB_ID_ATTRIBUTE],
        ).get("Messages", [])
        return [_dead_letter(m) for m in messages]

    def release_dead_letters(self, priority: Priority, receipt_handles: list[str]) -> None:
        for start in range(0, len(receipt_handles), 10):
            entries: Any = [
                {"Id": str(i), "ReceiptHandle": handle, "VisibilityTimeout": 0}
                for i, handle in enumerate(receipt_handles[start : start + 10])
            ]
            self.client.change_message_visibility_batch(QueueUrl=self.dlq_urls[priority], Entries=entries)

    def delete_dead_letter(self, priority: Priority, receipt_handle: str) -> None:
        self.client.delete_message(QueueUrl=self.dlq_urls[priority], ReceiptHandle=receipt_handle)

    def priority_of_queue(self, queue_arn: str) -> Priority:
        name = queue_arn.rsplit(":", 1)[-1]
        for priority, url in self.queue_urls.items():
            if url.rstrip("/").rsplit("/", 1)[-1] == name:
                return priority
        raise LookupError(f"{queue_arn} is not one of Tarefa's job queues")

    def depth(self, priority: Priority) -> QueueDepth:
        names: Any = [
            "ApproximateNumberOfMessages",
            "ApproximateNumberOfMessagesNotVisible",
            "ApproximateNumberOfMessagesDelayed",
        ]
        main = self.client.get_queue_attributes(QueueUrl=self.queue_urls[priority], AttributeNames=names)
        dead = self.client.get_queue_attributes(QueueUrl=self.dlq_urls[priority], AttributeNames=names[:2])
        counts = {k: int(v) for k, v in main["Attributes"].items()}
        return QueueDepth(
            waiting=counts.get(names[0], 0),
            in_flight=counts.get(names[1], 0),
            delayed=counts.get(names[2], 0),
            dead_letter=sum(int(v) for v in dead["Attributes"].values()),
        )

    def name(self, priority: Priority) -> str:
        return self.queue_urls[priority].rstrip("/").rsplit("/", 1)[-1]

    def ping(self) -> None:
        for url in self.queue_urls.values():
            self.client.get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"])


def _chunks(messages: Sequence[tuple[str, int]]) -> Iterator[list[int]]:
    """Indexes of `messages` in request order, cut at BATCH_ENTRIES entries or BATCH_MAX_BYTES."""
    chunk: list[int] = []
    size = 0
    for i, (body, _) in enumerate(messages):
        length = len(body.encode())
        if chunk and (len(chunk) == BATCH_ENTRIES or size + length > BATCH_MAX_BYTES):
            yield chunk
            chunk, size = [], 0
        chunk.append(i)
        size += length
    if chunk:
        yield chunk


def _dead_letter(message: Any) -> DeadLetter:
    attributes = message.get("MessageAttributes", {})
    system = message.get("Attributes", {})
    return DeadLetter(
        message_id=message["MessageId"],
        receipt_handle=message["ReceiptHandle"],
        body=message["Body"],
        receive_count=int(system.get("ApproximateReceiveCount", 1)),
        sent_at=datetime.fromtimestamp(int(system.get("SentTimestamp", 0)) / 1000, UTC),
        job_id=attributes.get(JOB_ID_ATTRIBUTE, {}).get("StringValue"),
        error=attributes.get(ERROR_ATTRIBUTE, {}).get("StringValue"),
    )
