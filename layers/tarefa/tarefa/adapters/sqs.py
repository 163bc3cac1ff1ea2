"""The three priority queues and their dead-letter queues."""

from __future__ import annotations

from typing import TYPE_CHECKING

from tarefa.job import Priority

if TYPE_CHECKING:
    from mypy_boto3_sqs.client import SQSClient

ERROR_ATTRIBUTE = "tarefa-error"


class SqsJobQueue:
    def __init__(
        self, client: SQSClient, queue_urls: dict[Priority, str], dlq_urls: dict[Priority, str]
    ) -> None:
        self.client = client
        self.queue_urls = queue_urls
        self.dlq_urls = dlq_urls

    def send(self, priority: Priority, body: str, delay_seconds: int = 0) -> str:
        response = self.client.send_message(
            QueueUrl=self.queue_urls[priority], MessageBody=body, DelaySeconds=delay_seconds
        )
        return response["MessageId"]

    def change_visibility(self, priority: Priority, receipt_handle: str, seconds: int) -> None:
        self.client.change_message_visibility(
            QueueUrl=self.queue_urls[priority], ReceiptHandle=receipt_handle, VisibilityTimeout=seconds
        )

    def send_to_dead_letter(self, priority: Priority, body: str, reason: str) -> None:
        self.client.send_message(
            QueueUrl=self.dlq_urls[priority],
            MessageBody=body,
            MessageAttributes={ERROR_ATTRIBUTE: {"DataType": "String", "StringValue": reason[:1000]}},
        )

    def priority_of_queue(self, queue_arn: str) -> Priority:
        name = queue_arn.rsplit(":", 1)[-1]
        for priority, url in self.queue_urls.items():
            if url.rstrip("/").rsplit("/", 1)[-1] == name:
                return priority
        raise LookupError(f"{queue_arn} is not one of Tarefa's job queues")

    def ping(self) -> None:
        for url in self.queue_urls.values():
            self.client.get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"])
