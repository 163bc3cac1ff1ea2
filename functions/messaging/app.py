"""The messaging workload's routes (layers/workloads/messaging/routes.py) behind the same HTTP API."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.utilities.typing import LambdaContext
from messaging.routes import router

from tarefa import api
from tarefa.wiring import container

logger = Logger()
metrics = Metrics()
app = api.new_app()
app.include_router(router)
container().registry  # noqa: B018 - the job types load once per cold start, as in the API


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
