"""The messaging workload in template.yaml: its switch, its function's routes (three public,
the providers' webhooks), least-privilege IAM, its table's access paths and its secrets."""

from __future__ import annotations

from typing import Any

from tarefa.local.template import Resolver, load_template

TEMPLATE = load_template()
RESOURCES: dict[str, Any] = TEMPLATE["Resources"]
OURS = (
    "MessagingFunction",
    "MessagingTable",
    "MessagingCloudApiSecret",
    "MessagingEvolutionSecret",
    "MessagingLogGroup",
)
PUBLIC = {
    ("GET", "/webhooks/whatsapp"),
    ("POST", "/webhooks/whatsapp"),
    ("POST", "/webhooks/evolution/{instance}"),
}


def statements(logical_id: str) -> dict[str, dict[str, Any]]:
    policies = RESOURCES[logical_id]["Properties"]["Policies"]
    return {
        s["Sid"]: s
        for p in policies
        if isinstance(p, dict) and "Statement" in p
        for s in p["Statement"]
        if isinstance(s, dict)
    }


def test_the_switch_and_the_provider_parameters() -> None:
    parameters = TEMPLATE["Parameters"]
    assert parameters["MessagingWorkload"]["Default"] == "on"
    assert parameters["WhatsAppProvider"] == {
        **parameters["WhatsAppProvider"],
        "Default": "cloudapi",
        "AllowedValues": ["cloudapi", "evolution"],
    }
    assert parameters["MessagingDefaultRegion"]["Default"] == "BR"
    assert TEMPLATE["Conditions"]["MessagingOn"] == {"Fn::Equals": [{"Ref": "MessagingWorkload"}, "on"]}
    for logical_id in OURS:
        assert RESOURCES[logical_id]["Condition"] == "MessagingOn", logical_id
    off = Resolver(TEMPLATE, {"MessagingWorkload": "off"})
    modules = TEMPLATE["Globals"]["Function"]["Environment"]["Variables"]["TAREFA_JOB_MODULES"]
    assert "messaging.jobs" not in str(off.resolve(modules))


def test_every_route_but_the_three_webhooks_needs_a_token() -> None:
    events = RESOURCES["MessagingFunction"]["Properties"]["Events"]
    routes = {(e["Properties"]["Method"], e["Properties"]["Path"]): e["Properties"] for e in events.values()}
    assert set(routes) == PUBLIC | {
        ("POST", "/sessions"),
        ("GET", "/sessions"),
        ("GET", "/sessions/{sessionId}"),
        ("POST", "/sessions/{sessionId}/close"),
        ("POST", "/sessions/{sessionId}/messages"),
        ("GET", "/sessions/{sessionId}/messages"),
        ("GET", "/messages/{messageId}"),
        ("POST", "/messages/{messageId}/retry"),
    }
    for route, properties in routes.items():
        assert (properties.get("Auth") == {"Authorizer": "NONE"}) == (route in PUBLIC), route


def test_the_function_may_do_only_what_its_routes_need() -> None:
    by_sid = statements("MessagingFunction")
    assert set(by_sid["Messaging"]["Action"]) == {
        "dynamodb:GetItem",
        "dynamodb:PutItem",
        "dynamodb:UpdateItem",
    }
    assert by_sid["Messaging"]["Resource"] == {"Fn::GetAtt": ["MessagingTable", "Arn"]}
    assert by_sid["MessagingIndexes"]["Action"] == ["dynamodb:Query"]
    secrets = by_sid["ProviderSecrets"]
    assert secrets["Action"] == ["secretsmanager:GetSecretValue"]
    assert secrets["Resource"]["Fn::Sub"].endswith(":secret:tarefa/${Stage}/messaging/*")
    assert by_sid["Enqueue"]["Action"] == ["sqs:SendMessage"]
    assert by_sid["SensitiveFieldsSeal"]["Action"] == ["kms:GenerateDataKey"]  # never Decrypt
    every = {
        a for s in by_sid.values() for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])
    }
    assert not any(a.endswith(("Scan", "*")) for a in every), every
    # DeleteItem only on the idempotency table: the engine gives back a unique key (flow control)
    deleting = [s for s in by_sid.values() if "dynamodb:DeleteItem" in s["Action"]]
    assert [s["Resource"] for s in deleting] == [{"Fn::GetAtt": ["IdempotencyTable", "Arn"]}]


def test_the_worker_may_write_the_table_and_read_the_urls() -> None:
    worker = RESOURCES["WorkerFunction"]["Properties"]
    env = worker["Environment"]["Variables"]
    assert env["MESSAGING_TABLE"] == {"Fn::If": ["MessagingOn", {"Ref": "MessagingTable"}, ""]}
    assert env["WHATSAPP_API_URL"] == {"Ref": "WhatsAppApiUrl"} and env["EVOLUTION_API_URL"] == {
        "Ref": "EvolutionApiUrl"
    }
    records = [
        s["Fn::If"][1]
        for p in worker["Policies"]
        if isinstance(p, dict) and "Statement" in p
        for s in p["Statement"]
        if isinstance(s, dict) and "Fn::If" in s and s["Fn::If"][0] == "MessagingOn"
    ]
    (ours,) = [r for r in records if r["Sid"] == "MessagingRecords"]  # notifications' rides the same switch
    assert set(ours["Action"]) == {"dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem"}
    assert ours["Resource"] == {
        "Fn::If": ["MessagingOn", {"Fn::GetAtt": ["MessagingTable", "Arn"]}, {"Ref": "AWS::NoValue"}]
    }


def test_the_table_serves_every_access_path_without_a_scan() -> None:
    table = RESOURCES["MessagingTable"]["Properties"]
    assert table["KeySchema"] == [{"AttributeName": "pk", "KeyType": "HASH"}]
    indexes = {
        i["IndexName"]: [k["AttributeName"] for k in i["KeySchema"]] for i in table["GlobalSecondaryIndexes"]
    }
    assert indexes == {
        "ByOwner": ["ownerKind", "createdAt"],
        "BySession": ["sessionKey", "sortKey"],
        "BySessionStatus": ["sessionStatus", "sortKey"],
        "BySessionDirection": ["sessionDirection", "sortKey"],
    }
    assert table["TimeToLiveSpecification"] == {"AttributeName": "expiresAt", "Enabled": True}
    assert table["BillingMode"] == "PAY_PER_REQUEST" and table["SSESpecification"] == {"SSEEnabled": True}


def test_the_secrets_are_the_ones_the_code_reads() -> None:
    from messaging.jobs import CLOUDAPI_SECRET, EVOLUTION_SECRET

    names = {
        RESOURCES[r]["Properties"]["Name"]["Fn::Sub"]
        for r in ("MessagingCloudApiSecret", "MessagingEvolutionSecret")
    }
    assert names == {f"tarefa/${{Stage}}/{CLOUDAPI_SECRET}", f"tarefa/${{Stage}}/{EVOLUTION_SECRET}"}
