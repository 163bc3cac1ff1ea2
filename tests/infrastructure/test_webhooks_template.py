"""Reads template.yaml: the webhooks table, who may touch it and how, and the /webhooks routes."""

from __future__ import annotations

from typing import Any

from tarefa.local.template import load_template

from .test_template import RESOURCES, statements

TEMPLATE = load_template()
TABLE = "WebhooksTable"
ROUTES = {
    ("POST", "/webhooks"),
    ("GET", "/webhooks"),
    ("GET", "/webhooks/{subscriptionId}"),
    ("DELETE", "/webhooks/{subscriptionId}"),
    ("PATCH", "/webhooks/{subscriptionId}"),
    ("POST", "/webhooks/{subscriptionId}/rotate-secret"),
    ("GET", "/webhooks/{subscriptionId}/deliveries"),
    ("POST", "/webhooks/{subscriptionId}/test"),
}


def webhook_grants(function: str) -> dict[str, set[str]]:
    """Resource (as written) -> actions, for every statement of `function` naming the table."""
    found: dict[str, set[str]] = {}
    for statement in statements(function):
        resources = (
            statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
        )
        for resource in resources:
            if TABLE in str(resource):
                found.setdefault(str(resource), set()).update(statement["Action"])
    return found


def test_the_table_is_on_demand_encrypted_expiring_and_listed_by_indexes_not_scans() -> None:
    table = RESOURCES[TABLE]
    properties: dict[str, Any] = table["Properties"]
    assert table["Type"] == "AWS::DynamoDB::Table"
    assert properties["BillingMode"] == "PAY_PER_REQUEST"
    assert properties["TableName"] == {"Fn::Sub": "tarefa-${Stage}-webhooks"}
    assert properties["SSESpecification"] == {"SSEEnabled": True}
    assert properties["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
    assert properties["TimeToLiveSpecification"] == {"AttributeName": "expiresAt", "Enabled": True}
    assert [k["AttributeName"] for k in properties["KeySchema"]] == ["pk", "sk"]
    indexes = {i["IndexName"]: i for i in properties["GlobalSecondaryIndexes"]}
    assert set(indexes) == {"ByOwner", "ByCreated"}
    assert [k["AttributeName"] for k in indexes["ByOwner"]["KeySchema"]] == ["ownerKey", "createdKey"]
    assert [k["AttributeName"] for k in indexes["ByCreated"]["KeySchema"]] == ["allShard", "createdKey"]
    assert all(i["Projection"] == {"ProjectionType": "KEYS_ONLY"} for i in indexes.values())
    # every function knows the table's name
    assert TEMPLATE["Globals"]["Function"]["Environment"]["Variables"]["WEBHOOKS_TABLE"] == {"Ref": TABLE}


def test_the_api_worker_and_maintenance_get_only_what_they_use() -> None:
    api = webhook_grants("ApiFunction")
    worker = webhook_grants("WorkerFunction")
    maintenance = webhook_grants("MaintenanceFunction")
    table_arn = str({"Fn::GetAtt": [TABLE, "Arn"]})
    # The API: subscriptions (transactions of Put and Delete), listings by its two indexes
    assert api[table_arn] == {
        "dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:DeleteItem", "dynamodb:Query", "dynamodb:BatchGetItem",
    }  # fmt: skip
    assert {r for r in api if "index" in r} == {
        str({"Fn::Sub": "${WebhooksTable.Arn}/index/ByOwner"}),
        str({"Fn::Sub": "${WebhooksTable.Arn}/index/ByCreated"}),
    }
    # The worker (deliveries, publish, callbacks) never deletes and lists one owner at a time
    assert worker[table_arn] == {
        "dynamodb:GetItem",
        "dynamodb:PutItem",
        "dynamodb:Query",
        "dynamodb:BatchGetItem",
    }
    assert {r for r in worker if "index" in r} == {str({"Fn::Sub": "${WebhooksTable.Arn}/index/ByOwner"})}
    # Maintenance only records a failed job's callback: reads and puts, no query, no delete
    assert maintenance == {table_arn: {"dynamodb:GetItem", "dynamodb:PutItem"}}
    # ...and the delivery job it enqueues is keyed (the idempotency table)
    assert any(
        statement["Resource"] == [{"Fn::GetAtt": [TABLE, "Arn"]}, {"Fn::GetAtt": ["IdempotencyTable", "Arn"]}]
        for statement in statements("MaintenanceFunction")
    )
    # nobody scans it, and no other function may touch it
    for function, spec in RESOURCES.items():
        if spec["Type"] != "AWS::Serverless::Function":
            continue
        grants = webhook_grants(function)
        assert all("dynamodb:Scan" not in actions for actions in grants.values()), function
        if function not in ("ApiFunction", "WorkerFunction", "MaintenanceFunction"):
            assert not grants or function.startswith("Messaging"), function  # messaging publishes


def test_the_routes_are_the_api_functions_and_every_one_needs_a_token() -> None:
    events = RESOURCES["ApiFunction"]["Properties"]["Events"]
    declared = {
        (e["Properties"]["Method"], e["Properties"]["Path"]): e["Properties"]
        for e in events.values()
        if e["Type"] == "HttpApi" and e["Properties"]["Path"].startswith("/webhooks")
    }
    assert set(declared) == ROUTES
    assert all("Auth" not in p for p in declared.values())  # the default JWT authorizer
    # A subscription id never collides with a workload's static /webhooks/<provider> segment
    from tarefa.webhooks import new_subscription_id

    assert all(new_subscription_id().startswith("wh_") for _ in range(20))
