"""Stats: the jobs table's change stream in, job counts and per-minute figures out (GET /queues).

A batch is recorded whole or not at all; on an error Lambda retries the same batch, which the
store recognises and does not count twice.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext

from tarefa.adapters.dynamodb import stream_batch_token, stream_change
from tarefa.wiring import container

logger = Logger()


@logger.inject_lambda_context(clear_state=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, int]:
    records: list[dict[str, Any]] = event.get("Records", [])
    if not records:
        return {"records": 0}
    container().stats.record((stream_change(r) for r in records), stream_batch_token(records))
    return {"records": len(records)}
