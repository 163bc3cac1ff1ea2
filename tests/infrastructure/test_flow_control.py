"""Flow control's records live in the idempotency table (tarefa.flow): every function that
enqueues (a unique key taken and given back, a debounce burst updated) or runs jobs (a
concurrency slot taken and freed) may update and delete there, and only there."""

from __future__ import annotations

from typing import Any

from .test_template import RESOURCES, statements

IDEMPOTENCY_TABLE = {"Fn::GetAtt": ["IdempotencyTable", "Arn"]}
FLOW_ACTIONS = {"dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem"}


def _functions() -> dict[str, list[dict[str, Any]]]:
    return {
        logical_id: statements(logical_id)
        for logical_id, spec in RESOURCES.items()
        if spec["Type"] == "AWS::Serverless::Function"
    }


def _sends_jobs(found: list[dict[str, Any]]) -> bool:
    return any(
        "sqs:SendMessage" in s["Action"] and {"Fn::GetAtt": ["MediumQueue", "Arn"]} in s["Resource"]
        for s in found
        if isinstance(s["Resource"], list)
    )


def test_every_function_that_enqueues_or_runs_jobs_may_write_flow_records() -> None:
    # a function that makes jobs sends them and keeps idempotency keys; the maintenance only
    # requeues jobs that exist (no flow record is read or written on that path)
    makers = {
        name
        for name, found in _functions().items()
        if _sends_jobs(found) and any(s["Resource"] == IDEMPOTENCY_TABLE for s in found)
    }
    assert {"ApiFunction", "WorkerFunction", "PaymentsFunction", "GuestsFunction"} <= makers
    for name in makers:
        on_table = [s for s in statements(name) if s["Resource"] == IDEMPOTENCY_TABLE]
        assert {a for s in on_table for a in s["Action"]} >= FLOW_ACTIONS, name


def test_update_and_delete_on_the_idempotency_table_go_no_further() -> None:
    for name, found in _functions().items():
        for statement in found:
            writes = {"dynamodb:UpdateItem", "dynamodb:DeleteItem"} & set(statement["Action"])
            if writes and statement["Resource"] == IDEMPOTENCY_TABLE:
                assert set(statement["Action"]) <= FLOW_ACTIONS, name
