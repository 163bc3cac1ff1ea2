"""Reads template.yaml: what the deployed stack must guarantee, checked before any deploy."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tarefa.local.template import ROOT, Resolver, load_template

TEMPLATE = load_template()
RESOURCES: dict[str, Any] = TEMPLATE["Resources"]
RESOLVE = Resolver(TEMPLATE).resolve
PRIORITY_QUEUES = ("HighQueue", "MediumQueue", "LowQueue")


def props(logical_id: str) -> dict[str, Any]:
    properties: dict[str, Any] = RESOURCES[logical_id]["Properties"]
    return properties


def test_cfn_lint_passes() -> None:
    result = subprocess.run(
        [str(Path(sys.executable).parent / "cfn-lint"), str(ROOT / "template.yaml")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_sam_transform_expands_the_template() -> None:
    """What `sam validate` does first: the SAM translator expands every serverless resource."""
    from samtranslator.translator.transform import transform

    class NoManagedPolicies:
        def load(self) -> dict[str, str]:
            return {}

    template = load_template()
    for spec in template["Resources"].values():  # as `sam validate` does: code is uploaded first
        for key in ("CodeUri", "ContentUri"):
            if key in spec.get("Properties", {}):
                spec["Properties"][key] = "s3://bucket/code.zip"
    expanded = transform(template, {"AWS::Region": "us-east-1"}, NoManagedPolicies())
    resources = expanded["Resources"]
    mappings = [r for r in resources.values() if r["Type"] == "AWS::Lambda::EventSourceMapping"]
    assert len(mappings) == 3
    assert all(m["Properties"]["FunctionResponseTypes"] == ["ReportBatchItemFailures"] for m in mappings)
    assert sum(r["Type"] == "AWS::Scheduler::Schedule" for r in resources.values()) == 3


def test_functions_run_python313_on_arm64() -> None:
    function = TEMPLATE["Globals"]["Function"]
    assert function["Runtime"] == "python3.13"
    assert function["Architectures"] == ["arm64"]
    for logical_id, spec in RESOURCES.items():
        if spec["Type"] == "AWS::Serverless::Function":
            code = Path(ROOT / spec["Properties"]["CodeUri"])
            assert (code / "app.py").is_file(), logical_id


@pytest.mark.parametrize("queue", PRIORITY_QUEUES)
def test_each_priority_queue_has_its_own_dlq_through_a_redrive_policy(queue: str) -> None:
    redrive = props(queue)["RedrivePolicy"]
    dlq = redrive["deadLetterTargetArn"]["Fn::GetAtt"][0]
    assert dlq == queue.replace("Queue", "DeadLetterQueue")
    assert RESOURCES[dlq]["Type"] == "AWS::SQS::Queue"
    # Above the largest maxAttempts: a retrying job's message is received once per attempt.
    assert int(RESOLVE(redrive["maxReceiveCount"])) > 25


@pytest.mark.parametrize("queue", PRIORITY_QUEUES)
def test_visibility_is_at_least_six_times_the_worker_timeout(queue: str) -> None:
    visibility = int(RESOLVE(props(queue)["VisibilityTimeout"]))
    timeout = int(RESOLVE(props("WorkerFunction")["Timeout"]))
    assert visibility >= 6 * timeout


def test_worker_reads_every_priority_queue_with_partial_batch_responses() -> None:
    events = props("WorkerFunction")["Events"]
    queues = {e["Properties"]["Queue"]["Fn::GetAtt"][0] for e in events.values() if e["Type"] == "SQS"}
    assert queues == set(PRIORITY_QUEUES)
    for event in events.values():
        assert event["Properties"]["FunctionResponseTypes"] == ["ReportBatchItemFailures"]


def test_high_priority_gets_the_largest_share_of_concurrency() -> None:
    events = props("WorkerFunction")["Events"]
    share = {
        name: int(RESOLVE(e["Properties"]["ScalingConfig"]["MaximumConcurrency"]))
        for name, e in events.items()
    }
    assert share["High"] > share["Medium"] > share["Low"] >= 2


def test_maintenance_schedules() -> None:
    events = props("MaintenanceFunction")["Events"]
    schedules = {e["Properties"]["Input"]: e["Properties"]["ScheduleExpression"] for e in events.values()}
    assert schedules == {
        '{"task": "cleanup"}': "cron(0 3 * * ? *)",
        '{"task": "recover"}': "rate(5 minutes)",
        '{"task": "promote"}': "rate(1 minute)",
    }


def test_every_route_but_health_goes_through_the_jwt_authorizer() -> None:
    auth = props("HttpApi")["Auth"]
    assert auth["DefaultAuthorizer"] == "JwtAuthorizer"
    jwt = auth["Authorizers"]["JwtAuthorizer"]
    assert jwt["IdentitySource"] == "$request.header.Authorization"
    assert set(jwt["JwtConfiguration"]) == {"issuer", "audience"}
    for event in props("ApiFunction")["Events"].values():
        route = event["Properties"]
        opened = route.get("Auth", {}).get("Authorizer") == "NONE"
        assert opened == (route["Path"] == "/health"), route


def test_a_user_pool_is_created_only_when_no_issuer_is_given() -> None:
    assert TEMPLATE["Conditions"]["CreateUserPool"] == {"Fn::Equals": [{"Ref": "JwtIssuer"}, ""]}
    for logical_id in ("UserPool", "UserPoolClient", "AdminGroup"):
        assert RESOURCES[logical_id]["Condition"] == "CreateUserPool"
    assert props("AdminGroup")["GroupName"] == "admin"


def test_jobs_table_indexes_are_sharded_or_sparse_and_ttl_is_on() -> None:
    table = props("JobsTable")
    assert table["TimeToLiveSpecification"] == {"AttributeName": "expiresAt", "Enabled": True}
    indexes = {i["IndexName"]: i for i in table["GlobalSecondaryIndexes"]}
    assert set(indexes) == {"ByUser", "ByCreated", "ByOrder", "Sweep"}
    # Partition keys are shard-suffixed values or per-order ids, never a bare status.
    hashes = {name: i["KeySchema"][0]["AttributeName"] for name, i in indexes.items()}
    assert hashes == {
        "ByUser": "userShard",
        "ByCreated": "allShard",
        "ByOrder": "orderId",
        "Sweep": "sweepShard",
    }
    assert all(i["Projection"]["ProjectionType"] == "KEYS_ONLY" for i in indexes.values())


def test_policies_are_least_privilege() -> None:
    """No wildcard actions or resources, no Scan anywhere."""
    for logical_id, spec in RESOURCES.items():
        if spec["Type"] != "AWS::Serverless::Function":
            continue
        for policy in spec["Properties"].get("Policies", []):
            for statement in policy["Statement"]:
                actions = statement["Action"]
                assert all("*" not in a and a != "dynamodb:Scan" for a in actions), logical_id
                assert statement["Resource"] != "*", logical_id


def test_outputs_name_the_api_queues_and_tables() -> None:
    outputs = set(TEMPLATE["Outputs"])
    assert {
        "ApiUrl",
        "HighQueueUrl",
        "MediumQueueUrl",
        "LowQueueUrl",
        "JobsTableName",
        "IdempotencyTableName",
    } <= outputs


def test_environment_names_match_the_settings_model() -> None:
    from tarefa.settings import Settings

    known = {name.upper() for name in Settings.model_fields} | {
        "POWERTOOLS_SERVICE_NAME",
        "POWERTOOLS_METRICS_NAMESPACE",
        "POWERTOOLS_LOG_LEVEL",
    }
    variables = set(TEMPLATE["Globals"]["Function"]["Environment"]["Variables"])
    assert variables <= known, variables - known
