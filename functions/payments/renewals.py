"""The payments workload's daily renewal run (layers/workloads/payments/renewals.py)."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext
from payments.renewals import enqueue_due

from tarefa.wiring import container

logger = Logger()
container().registry  # noqa: B018 - the job types load once per cold start


@logger.inject_lambda_context(clear_state=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return enqueue_due()
