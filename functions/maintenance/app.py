"""Maintenance: the EventBridge schedules' target (cleanup, recover, promote, deadletters, and
schedules: user schedules' definitions and Scheduler's group reconciled)."""

from __future__ import annotations

from typing import Any, Literal

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import BaseModel, Field

from tarefa.wiring import container

logger = Logger()
metrics = Metrics()


class MaintenanceEvent(BaseModel):
    task: Literal["cleanup", "recover", "promote", "deadletters", "schedules"]
    older_than_seconds: int | None = Field(None, alias="olderThanSeconds", ge=0, strict=True)
    stuck_after_seconds: int | None = Field(None, alias="stuckAfterSeconds", ge=0, strict=True)


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, int]:
    request = MaintenanceEvent.model_validate(event)
    maintenance = container().maintenance
    if request.task == "cleanup":
        return {"deleted": maintenance.cleanup(request.older_than_seconds)}
    if request.task == "recover":
        return {"recovered": maintenance.recover(request.stuck_after_seconds)}
    if request.task == "schedules":
        # leaves a minute of the function's timeout for what it must still write and log
        return (
            container().schedules.reconcile(lambda: context.get_remaining_time_in_millis() < 60_000).as_dict()
        )
    if request.task == "deadletters":
        from tarefa.job import Priority

        dead_letters = container().dead_letters
        return {"deadLettered": sum(dead_letters.reflect(priority) for priority in Priority)}
    return {"promoted": maintenance.promote()}
