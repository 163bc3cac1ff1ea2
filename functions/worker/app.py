"""Worker: one SQS batch in, partial batch failures out (ReportBatchItemFailures)."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from tarefa.ports import QueueMessageRef
from tarefa.wiring import container

logger = Logger()
metrics = Metrics()
processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)
# Job types (TAREFA_JOB_MODULES) load once per cold start; a broken module fails the start.
container().registry  # noqa: B018


class MessageKeptError(Exception):
    """Not a failure: the message stays in the queue until the job is due again."""


def record_handler(record: SQSRecord, lambda_context: LambdaContext | None = None) -> None:
    queue = container().queue
    ref = QueueMessageRef(
        priority=queue.priority_of_queue(record.event_source_arn),
        receipt_handle=record.receipt_handle,
        message_id=record.message_id,
        receive_count=int(record.attributes.approximate_receive_count or 1),
    )
    remaining = lambda_context.get_remaining_time_in_millis() / 1000 if lambda_context else float("inf")
    outcome = container().worker.process(record.body, ref, remaining)
    if outcome.visible_again_in is not None:
        raise MessageKeptError(f"message returns in {outcome.visible_again_in} s")


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    response = process_partial_response(
        event=event, record_handler=record_handler, processor=processor, context=context
    )
    return dict(response)
