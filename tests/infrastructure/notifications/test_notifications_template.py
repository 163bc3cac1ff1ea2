"""Reads template.yaml for the e-mail notifications workload: its switch, its function's least
privilege, the worker's one SES grant (pinned to EmailFrom), its table and its secret."""

from __future__ import annotations

import re
from typing import Any

import pytest

from tarefa.local.template import Resolver, load_template

TEMPLATE = load_template()
RESOURCES: dict[str, Any] = TEMPLATE["Resources"]
PARAMETERS: dict[str, Any] = TEMPLATE["Parameters"]
NO_VALUE = "<AWS::NoValue>"
OURS = (
    "NotificationsFunction",
    "NotificationsTable",
    "NotificationsResendSecret",
    "NotificationsLogGroup",
)


def resolver_for(**parameters: str) -> Resolver:
    resolver = Resolver(TEMPLATE, dict(parameters))
    resolver.pseudo["AWS::NoValue"] = NO_VALUE
    for logical_id, spec in RESOURCES.items():
        resolver.refs.setdefault(logical_id, f"local-{logical_id}")
        for event in spec.get("Properties", {}).get("Events", {}):
            resolver.refs.setdefault(logical_id + event, f"local-{logical_id}{event}")
    return resolver


def statements(logical_id: str, resolver: Resolver) -> list[dict[str, Any]]:
    found = []
    for policy in RESOURCES[logical_id]["Properties"].get("Policies", []):
        if isinstance(policy, dict) and "Statement" in policy:
            found += [s for s in resolver.resolve(policy["Statement"]) if s != NO_VALUE]
    return found


def actions(statement: dict[str, Any]) -> list[str]:
    granted = statement["Action"]
    return [granted] if isinstance(granted, str) else list(granted)


def test_the_workload_switch_creates_or_leaves_out_all_of_it() -> None:
    on, off = resolver_for(), resolver_for(MessagingWorkload="off")
    for logical_id in OURS:
        assert RESOURCES[logical_id]["Condition"] == "MessagingOn", logical_id
        assert on.exists(RESOURCES[logical_id]) and not off.exists(RESOURCES[logical_id])
    worker = resolver_for(MessagingWorkload="off").resolve(
        RESOURCES["WorkerFunction"]["Properties"]["Environment"]["Variables"]
    )
    assert worker["NOTIFICATIONS_TABLE"] == ""
    assert not any(a.startswith("ses:") for s in statements("WorkerFunction", off) for a in actions(s))
    modules = on.resolve(TEMPLATE["Globals"]["Function"]["Environment"]["Variables"]["TAREFA_JOB_MODULES"])
    assert "notifications.jobs" in modules.split(",")
    assert "notifications.jobs" not in off.resolve(
        TEMPLATE["Globals"]["Function"]["Environment"]["Variables"]["TAREFA_JOB_MODULES"]
    )


def test_the_routes_need_a_jwt_and_the_function_only_what_it_uses() -> None:
    function = RESOURCES["NotificationsFunction"]["Properties"]
    assert (function["CodeUri"], function["Handler"]) == ("functions/notifications", "app.lambda_handler")
    routes = {
        (e["Properties"]["Method"], e["Properties"]["Path"]): e["Properties"]
        for e in function["Events"].values()
    }
    assert set(routes) == {("POST", "/notifications/email"), ("GET", "/notifications/{notificationId}")}
    assert all("Auth" not in r for r in routes.values())  # the API's JWT authorizer
    granted = {
        (a, str(s["Resource"]))
        for s in statements("NotificationsFunction", resolver_for())
        for a in actions(s)
    }
    table = str(resolver_for().resolve({"Fn::GetAtt": ["NotificationsTable", "Arn"]}))
    assert {a for a, r in granted if r == table} == {
        "dynamodb:GetItem",
        "dynamodb:PutItem",
        "dynamodb:UpdateItem",
    }
    assert not any(a.startswith(("ses:", "secretsmanager:", "kms:")) or a.endswith("*") for a, _ in granted)
    assert {"Ref": "CacheAccessPolicy"} in function["Policies"]


def test_the_worker_may_send_only_from_email_from() -> None:
    resolver = resolver_for(EmailFrom="avisos@garcezpalha.com.br")
    (ses,) = [
        s for s in statements("WorkerFunction", resolver) if any(a.startswith("ses:") for a in actions(s))
    ]
    assert actions(ses) == ["ses:SendEmail"]
    assert ses["Resource"] == [
        "arn:aws:ses:us-east-1:123456789012:identity/avisos@garcezpalha.com.br",
        "arn:aws:ses:us-east-1:123456789012:identity/garcezpalha.com.br",
    ]
    assert ses["Condition"] == {"StringEquals": {"ses:FromAddress": "avisos@garcezpalha.com.br"}}
    resend = resolver_for(EmailProvider="resend")
    assert not any(a.startswith("ses:") for s in statements("WorkerFunction", resend) for a in actions(s))
    for logical_id, spec in RESOURCES.items():  # nobody else sends
        if spec["Type"] == "AWS::Serverless::Function" and logical_id != "WorkerFunction":
            assert not any(a.startswith("ses:") for s in statements(logical_id, resolver) for a in actions(s))
    (records,) = [s for s in statements("WorkerFunction", resolver) if s.get("Sid") == "NotificationsRecords"]
    assert actions(records) == ["dynamodb:GetItem", "dynamodb:UpdateItem"]


def test_the_worker_gets_the_providers_settings() -> None:
    variables = resolver_for(EmailProvider="resend", ResendApiUrl="http://127.0.0.1:4620").resolve(
        RESOURCES["WorkerFunction"]["Properties"]["Environment"]["Variables"]
    )
    assert variables["NOTIFICATIONS_TABLE"] == "local-NotificationsTable"
    assert (variables["EMAIL_PROVIDER"], variables["EMAIL_FROM"]) == ("resend", "no-reply@example.com")
    assert (variables["RESEND_API_URL"], variables["EMAIL_SEND_RATE"]) == ("http://127.0.0.1:4620", "2/1")


def test_the_table_and_the_secret() -> None:
    table = RESOURCES["NotificationsTable"]["Properties"]
    assert table["KeySchema"] == [{"AttributeName": "pk", "KeyType": "HASH"}]
    assert "GlobalSecondaryIndexes" not in table  # read by id only
    assert table["TimeToLiveSpecification"] == {"AttributeName": "expiresAt", "Enabled": True}
    assert table["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"] is True
    assert table["SSESpecification"]["SSEEnabled"] is True
    assert table["BillingMode"] == "PAY_PER_REQUEST"
    secret = RESOURCES["NotificationsResendSecret"]["Properties"]
    assert secret["Name"] == {"Fn::Sub": "tarefa/${Stage}/notifications/resend"}
    assert secret["SecretString"] == '{"apiKey": ""}'  # created empty: never a key in the template


def test_the_ses_identity_only_when_asked_for() -> None:
    identity = RESOURCES["NotificationsEmailIdentity"]
    assert not resolver_for().exists(identity)
    assert not resolver_for(EmailCreateIdentity="yes", EmailProvider="resend").exists(identity)
    asked = resolver_for(EmailCreateIdentity="yes", EmailFrom="avisos@garcezpalha.com.br")
    assert asked.exists(identity)
    assert asked.resolve(identity["Properties"]["EmailIdentity"]) == "garcezpalha.com.br"


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        ("no-reply@example.com", True),
        ("avisos@mail.garcezpalha.com.br", True),
        ("Garcez <avisos@garcezpalha.com.br>", False),
        ("avisos", False),
        ("a@b", False),
    ],
)
def test_email_from_is_one_bare_address(value: str, ok: bool) -> None:
    assert bool(re.fullmatch(PARAMETERS["EmailFrom"]["AllowedPattern"], value)) is ok
    assert PARAMETERS["EmailProvider"]["AllowedValues"] == ["ses", "resend"]
    assert PARAMETERS["EmailProvider"]["Default"] == "ses"
