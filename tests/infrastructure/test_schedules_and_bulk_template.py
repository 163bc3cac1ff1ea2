"""template.yaml for user schedules and bulk operations: the stage's Scheduler group, the role
Scheduler assumes (sqs:SendMessage to exactly the three priority queues and nothing else), the
API's least privilege on schedules in that group and PassRole of that role only, the schedules
table, the jobs table's sparse ByStatus index, and the routes (each behind the JWT authorizer)."""

from __future__ import annotations

from typing import Any

from tarefa.local.template import load_template

TEMPLATE = load_template()
RESOURCES: dict[str, Any] = TEMPLATE["Resources"]
QUEUES = [{"Fn::GetAtt": [q, "Arn"]} for q in ("HighQueue", "MediumQueue", "LowQueue")]


def props(logical_id: str) -> dict[str, Any]:
    properties: dict[str, Any] = RESOURCES[logical_id]["Properties"]
    return properties


def statements(logical_id: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    for policy in props(logical_id).get("Policies", []):
        if not isinstance(policy, dict) or "Statement" not in policy:
            continue
        for statement in policy["Statement"]:
            if "Fn::If" in statement:
                found.extend(b for b in statement["Fn::If"][1:] if b != {"Ref": "AWS::NoValue"})
            else:
                found.append(statement)
    return found


def actions(statement: dict[str, Any]) -> set[str]:
    given = statement["Action"]
    return set([given] if isinstance(given, str) else given)


def test_a_schedule_group_per_stage() -> None:
    group = RESOURCES["UserSchedules"]
    assert group["Type"] == "AWS::Scheduler::ScheduleGroup"
    assert group["Properties"]["Name"] == {"Fn::Sub": "tarefa-${Stage}-schedules"}
    api_env = props("ApiFunction")["Environment"]["Variables"]
    assert api_env["SCHEDULE_GROUP"] == {"Fn::Sub": "tarefa-${Stage}-schedules"}
    assert api_env["SCHEDULER_ROLE_ARN"] == {"Fn::GetAtt": ["SchedulerRole", "Arn"]}
    assert [api_env[f"{p}_QUEUE_ARN"] for p in ("HIGH", "MEDIUM", "LOW")] == QUEUES


def test_the_scheduler_role_may_only_send_to_the_three_priority_queues() -> None:
    role = RESOURCES["SchedulerRole"]
    assert role["Type"] == "AWS::IAM::Role"
    trust = role["Properties"]["AssumeRolePolicyDocument"]["Statement"]
    assert len(trust) == 1
    assert trust[0]["Principal"] == {"Service": "scheduler.amazonaws.com"}
    assert trust[0]["Action"] == "sts:AssumeRole" and trust[0]["Effect"] == "Allow"
    assert trust[0]["Condition"] == {"StringEquals": {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}}
    assert "ManagedPolicyArns" not in role["Properties"]
    granted = [s for p in role["Properties"]["Policies"] for s in p["PolicyDocument"]["Statement"]]
    assert len(granted) == 1
    assert granted[0]["Effect"] == "Allow" and actions(granted[0]) == {"sqs:SendMessage"}
    assert granted[0]["Resource"] == QUEUES  # exactly these: no DLQ, no wildcard


def test_the_api_may_manage_schedules_in_its_group_only_and_pass_that_role_only() -> None:
    # The API (the routes) and the maintenance function (the reconciler, which lists the group
    # too): the same scoped grant, and nobody else anything of Scheduler or IAM
    for logical_id in ("ApiFunction", "MaintenanceFunction"):
        found = statements(logical_id)
        scheduler = [
            s for s in found if any(a.startswith("scheduler:") for a in actions(s)) and s["Resource"] != "*"
        ]
        assert len(scheduler) == 1, logical_id
        assert actions(scheduler[0]) == {
            "scheduler:CreateSchedule",
            "scheduler:UpdateSchedule",
            "scheduler:DeleteSchedule",
            "scheduler:GetSchedule",
        }
        assert scheduler[0]["Resource"] == {
            "Fn::Sub": "arn:${AWS::Partition}:scheduler:${AWS::Region}:${AWS::AccountId}:schedule/tarefa-${Stage}-schedules/*"
        }
        listing = [s for s in found if s["Resource"] == "*"]
        expected_listing = [{"scheduler:ListSchedules"}] if logical_id == "MaintenanceFunction" else []
        assert [actions(s) for s in listing] == expected_listing, logical_id
        passing = [s for s in found if "iam:PassRole" in actions(s)]
        assert len(passing) == 1 and actions(passing[0]) == {"iam:PassRole"}
        assert passing[0]["Resource"] == {"Fn::GetAtt": ["SchedulerRole", "Arn"]}
        assert passing[0]["Condition"] == {"StringEquals": {"iam:PassedToService": "scheduler.amazonaws.com"}}
    for logical_id, spec in RESOURCES.items():
        if spec["Type"] != "AWS::Serverless::Function" or logical_id in (
            "ApiFunction",
            "MaintenanceFunction",
        ):
            continue
        for statement in statements(logical_id):
            assert not any(a.startswith(("scheduler:", "iam:")) for a in actions(statement)), logical_id


def test_the_schedules_table_and_who_may_use_it() -> None:
    table = props("SchedulesTable")
    assert [k["AttributeName"] for k in table["KeySchema"]] == ["owner", "item"]
    (index,) = table["GlobalSecondaryIndexes"]
    assert index["IndexName"] == "AllSchedules"
    assert [k["AttributeName"] for k in index["KeySchema"]] == ["allShard", "listKey"]
    assert table["SSESpecification"] == {"SSEEnabled": True}
    assert TEMPLATE["Globals"]["Function"]["Environment"]["Variables"]["SCHEDULES_TABLE"] == {
        "Ref": "SchedulesTable"
    }
    worker = [s for s in statements("WorkerFunction") if s.get("Sid") in ("BulkOperations", "BulkIndex")]
    assert {s["Sid"]: (actions(s), s["Resource"]) for s in worker} == {
        "BulkOperations": (
            {"dynamodb:GetItem", "dynamodb:PutItem"},
            {"Fn::GetAtt": ["SchedulesTable", "Arn"]},
        ),
        # PENDING jobs have no ByStatus entry: bulk finds them through the listing indexes
        "BulkIndex": (
            {"dynamodb:Query"},
            [{"Fn::Sub": f"${{JobsTable.Arn}}/index/{name}"} for name in ("ByStatus", "ByUser", "ByCreated")],
        ),
    }
    for statement in statements("WorkerFunction"):
        assert "dynamodb:Scan" not in actions(statement)


def test_the_jobs_table_has_a_sparse_sharded_by_status_index() -> None:
    table = props("JobsTable")
    indexes = {i["IndexName"]: i for i in table["GlobalSecondaryIndexes"]}
    by_status = indexes["ByStatus"]
    assert [(k["AttributeName"], k["KeyType"]) for k in by_status["KeySchema"]] == [
        ("bulkShard", "HASH"),
        ("bulkKey", "RANGE"),
    ]
    assert by_status["Projection"] == {
        "ProjectionType": "INCLUDE",
        "NonKeyAttributes": ["type", "createdAt", "version"],
    }
    defined = {a["AttributeName"]: a["AttributeType"] for a in table["AttributeDefinitions"]}
    assert defined["bulkShard"] == "S" and defined["bulkKey"] == "S"


def test_the_adapter_writes_the_index_keys_only_while_bulk_can_act() -> None:
    """Sparse: the keys exist for RETRYING and FAILED jobs only (so the index never holds the
    finished majority, and a new job pays no index write in and out of PENDING), sharded by id."""
    from tarefa.adapters.dynamodb import DynamoJobStore
    from tarefa.job import Job, JobStatus

    store = DynamoJobStore(None, "jobs", "keys", 60)  # type: ignore[arg-type]
    shards = set()
    for n in range(64):
        for status in JobStatus:
            item = store._to_item(Job(job_id=f"job-{n}", type="t", status=status, user_id="alice"))
            if status in (JobStatus.RETRYING, JobStatus.FAILED):
                shard = item["bulkShard"]["S"]
                assert shard.startswith(f"{status}#")
                assert item["bulkKey"]["S"].startswith("alice#")
                shards.add(shard.split("#")[1])
            else:
                assert "bulkShard" not in item and "bulkKey" not in item
    assert shards == {str(n) for n in range(8)}


def test_the_routes_are_behind_the_jwt_authorizer() -> None:
    events = props("ApiFunction")["Events"]
    wanted = {
        ("POST", "/schedules"),
        ("GET", "/schedules"),
        ("GET", "/schedules/{name}"),
        ("PATCH", "/schedules/{name}"),
        ("DELETE", "/schedules/{name}"),
        ("POST", "/jobs/bulk/cancel"),
        ("POST", "/jobs/bulk/retry"),
        ("GET", "/jobs/bulk/{operationId}"),
    }
    found = {
        (e["Properties"]["Method"], e["Properties"]["Path"]): e
        for e in events.values()
        if e["Type"] == "HttpApi"
    }
    for route in wanted:
        assert route in found, route
        assert "Auth" not in found[route]["Properties"], route  # the default: JwtAuthorizer
    order = [(e["Properties"]["Method"], e["Properties"]["Path"]) for e in events.values()]
    # the local stack matches in template order: the bulk routes come before /jobs/{jobId}/...
    assert order.index(("POST", "/jobs/bulk/cancel")) < order.index(("POST", "/jobs/{jobId}/cancel"))
    assert order.index(("POST", "/jobs/bulk/retry")) < order.index(("POST", "/jobs/{jobId}/retry"))
