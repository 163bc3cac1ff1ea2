"""Reads template.yaml: what the deployed stack must guarantee, checked before any deploy."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tarefa.local.template import ROOT, Resolver, load_template
from tarefa.settings import Settings

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
    from_queues = [m for m in mappings if "StartingPosition" not in m["Properties"]]
    assert len(from_queues) == 3
    assert all(m["Properties"]["FunctionResponseTypes"] == ["ReportBatchItemFailures"] for m in from_queues)
    (from_stream,) = [m for m in mappings if "StartingPosition" in m["Properties"]]
    assert from_stream["Properties"]["EventSourceArn"] == {"Fn::GetAtt": ["JobsTable", "StreamArn"]}
    # the 5 maintenance schedules and the payments workload's renewal run
    assert sum(r["Type"] == "AWS::Scheduler::Schedule" for r in resources.values()) == 6
    roles = [r for r in resources.values() if r["Type"] == "AWS::IAM::Role"]
    with_cache = [
        r for r in roles if {"Ref": "CacheAccessPolicy"} in r["Properties"].get("ManagedPolicyArns", [])
    ]
    # the managed policy reaches each function's role but the stats consumer's (api, worker,
    # maintenance, demo, the payments workload's routes and renewal run, the guests' routes,
    # the messaging routes, the e-mail notifications' routes)
    assert len(with_cache) == 9


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
        '{"task": "deadletters"}': "rate(5 minutes)",
        '{"task": "schedules"}': "rate(1 hour)",
    }


def test_every_route_but_health_and_the_two_pages_goes_through_the_jwt_authorizer() -> None:
    """/docs and /dashboard are static pages with no data; they ask for a token and send it
    with every call they make."""
    auth = props("HttpApi")["Auth"]
    assert auth["DefaultAuthorizer"] == "JwtAuthorizer"
    jwt = auth["Authorizers"]["JwtAuthorizer"]
    assert jwt["IdentitySource"] == "$request.header.Authorization"
    assert set(jwt["JwtConfiguration"]) == {"issuer", "audience"}
    for event in props("ApiFunction")["Events"].values():
        route = event["Properties"]
        opened = route.get("Auth", {}).get("Authorizer") == "NONE"
        assert opened == (route["Path"] in ("/health", "/docs", "/dashboard")), route


def test_a_user_pool_is_created_only_when_no_issuer_is_given() -> None:
    assert TEMPLATE["Conditions"]["CreateUserPool"] == {"Fn::Equals": [{"Ref": "JwtIssuer"}, ""]}
    for logical_id in ("UserPool", "UserPoolClient", "AdminGroup"):
        assert RESOURCES[logical_id]["Condition"] == "CreateUserPool"
    assert props("AdminGroup")["GroupName"] == "admin"


def test_jobs_table_indexes_are_sharded_or_sparse_and_ttl_is_on() -> None:
    table = props("JobsTable")
    assert table["TimeToLiveSpecification"] == {"AttributeName": "expiresAt", "Enabled": True}
    indexes = {i["IndexName"]: i for i in table["GlobalSecondaryIndexes"]}
    assert set(indexes) == {"ByUser", "ByCreated", "ByOrder", "Sweep", "ByStatus"}
    # Partition keys are shard-suffixed values or per-order ids, never a bare status.
    hashes = {name: i["KeySchema"][0]["AttributeName"] for name, i in indexes.items()}
    assert hashes == {
        "ByUser": "userShard",
        "ByCreated": "allShard",
        "ByOrder": "orderId",
        "Sweep": "sweepShard",
        "ByStatus": "bulkShard",  # "<status>#<0..7>", sparse: test_schedules_and_bulk_template.py
    }
    keys_only = [i for n, i in indexes.items() if n != "ByStatus"]  # ByStatus projects 3 attributes
    assert all(i["Projection"]["ProjectionType"] == "KEYS_ONLY" for i in keys_only)


def statements(logical_id: str) -> list[dict[str, Any]]:
    """A function's or managed policy's statements: inline ones, those of the managed policies
    it references, and both branches of any Fn::If."""
    spec = RESOURCES[logical_id]
    if spec["Type"] == "AWS::IAM::ManagedPolicy":
        documents = [spec["Properties"]["PolicyDocument"]]
    else:
        documents = []
        for policy in spec["Properties"].get("Policies", []):
            ref = policy.get("Ref") if isinstance(policy, dict) else None
            documents.append(props(ref)["PolicyDocument"] if ref in RESOURCES else policy)
    found: list[dict[str, Any]] = []
    for document in documents:
        for statement in document["Statement"]:
            if "Fn::If" in statement:
                found.extend(b for b in statement["Fn::If"][1:] if b != {"Ref": "AWS::NoValue"})
            else:
                found.append(statement)
    return found


def test_policies_are_least_privilege() -> None:
    """No wildcard actions or resources, no Scan anywhere."""
    for logical_id, spec in RESOURCES.items():
        if spec["Type"] not in ("AWS::Serverless::Function", "AWS::IAM::ManagedPolicy"):
            continue
        for statement in statements(logical_id):
            actions = statement["Action"]
            assert all("*" not in a and a != "dynamodb:Scan" for a in actions), logical_id
            if statement["Resource"] == "*":
                # The one exception: Scheduler's ListSchedules has no resource type (its request
                # names the group), so the schedules' reconciler may list, and nothing else.
                assert (logical_id, actions) == ("MaintenanceFunction", ["scheduler:ListSchedules"])
                continue
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

    known = {(f.alias or name).upper() for name, f in Settings.model_fields.items()} | {
        "POWERTOOLS_SERVICE_NAME",
        "POWERTOOLS_METRICS_NAMESPACE",
        "POWERTOOLS_LOG_LEVEL",
    }
    variables = set(TEMPLATE["Globals"]["Function"]["Environment"]["Variables"])
    assert variables <= known, variables - known


# -- cache, rate limits, sessions ----------------------------------------------------------------


def test_the_cache_backend_is_dynamodb_unless_redis_is_chosen() -> None:
    assert TEMPLATE["Parameters"]["CacheBackend"]["Default"] == "dynamodb"
    assert RESOURCES["CacheTable"]["Condition"] == "UseDynamoCache"
    for redis_only in ("Cache", "CacheSecret", "CacheUserGroup", "CacheAppUser", "CacheDefaultUser"):
        assert RESOURCES[redis_only]["Condition"] == "UseRedis", redis_only
    assert Resolver(TEMPLATE).exists(RESOURCES["CacheTable"])
    assert not Resolver(TEMPLATE, {"CacheBackend": "redis"}).exists(RESOURCES["CacheTable"])
    assert Resolver(TEMPLATE, {"CacheBackend": "redis"}).exists(RESOURCES["Cache"])


def test_cache_table_has_no_hot_key_and_expires_items() -> None:
    table = props("CacheTable")
    assert [k["AttributeName"] for k in table["KeySchema"]] == ["pk", "sk"]  # pk: 64 hash shards
    assert table["TimeToLiveSpecification"] == {"AttributeName": "expiresAt", "Enabled": True}
    assert "GlobalSecondaryIndexes" not in table


def test_redis_cache_is_serverless_with_tls_and_an_rbac_user_limited_to_the_stage_keys() -> None:
    cache = props("Cache")
    assert RESOURCES["Cache"]["Type"] == "AWS::ElastiCache::ServerlessCache"  # TLS is always on
    assert cache["UserGroupId"] == {"Ref": "CacheUserGroup"}
    assert cache["SubnetIds"] == {"Ref": "CacheSubnetIds"}
    assert cache["SecurityGroupIds"] == {"Ref": "CacheSecurityGroupIds"}
    assert props("CacheDefaultUser")["AccessString"].startswith("off")
    assert props("CacheAppUser")["AccessString"] == {"Fn::Sub": "on ~tarefa:${Stage}:* +@all -@dangerous"}
    assert "GenerateSecretString" in props("CacheSecret")  # no password in the template
    env = TEMPLATE["Globals"]["Function"]["Environment"]["Variables"]
    assert env["REDIS_URL"]["Fn::If"][1] == {
        "Fn::Sub": "rediss://${Cache.Endpoint.Address}:${Cache.Endpoint.Port}"
    }
    assert env["CACHE_KEY_PREFIX"] == {"Fn::Sub": "tarefa:${Stage}:"}


def test_functions_join_the_vpc_only_when_redis_is_chosen() -> None:
    """Only the functions that use the cache join its VPC, each through its own VpcConfig (a
    Globals one would also reach StatsFunction, and an AWS::NoValue override there would still
    give its role SAM's VPC-access managed policy)."""
    vpc = {
        "Fn::If": [
            "UseRedis",
            {"SubnetIds": {"Ref": "CacheSubnetIds"}, "SecurityGroupIds": {"Ref": "CacheSecurityGroupIds"}},
            {"Ref": "AWS::NoValue"},
        ]
    }
    assert "VpcConfig" not in TEMPLATE["Globals"]["Function"]
    functions = [k for k, v in RESOURCES.items() if v["Type"] == "AWS::Serverless::Function"]
    for function in functions:
        uses_cache = {"Ref": "CacheAccessPolicy"} in props(function).get("Policies", [])
        assert props(function).get("VpcConfig") == (vpc if uses_cache else None), function
    endpoints = {k: v for k, v in RESOURCES.items() if v["Type"] == "AWS::EC2::VPCEndpoint"}
    services = {v["Properties"]["ServiceName"]["Fn::Sub"].rsplit(".", 1)[1] for v in endpoints.values()}
    assert services == {"dynamodb", "sqs", "secretsmanager", "lambda", "kms", "scheduler"}
    assert all(v["Condition"] == "CreateCacheEndpoints" for v in endpoints.values())
    rules = TEMPLATE["Rules"]["RedisNeedsAVpc"]
    assert rules["RuleCondition"] == {"Fn::Equals": [{"Ref": "CacheBackend"}, "redis"]}


def test_functions_may_use_the_cache_table_or_the_redis_password_and_nothing_more() -> None:
    by_sid = {s["Sid"]: s for s in statements("CacheAccessPolicy")}
    assert set(by_sid) == {"Cache", "CachePassword"}
    assert by_sid["Cache"]["Resource"] == {"Fn::GetAtt": ["CacheTable", "Arn"]}
    assert "dynamodb:Scan" not in by_sid["Cache"]["Action"]
    assert by_sid["CachePassword"] == {
        "Sid": "CachePassword",
        "Effect": "Allow",
        "Action": ["secretsmanager:GetSecretValue"],
        "Resource": {"Ref": "CacheSecret"},
    }
    for function in ("ApiFunction", "WorkerFunction", "MaintenanceFunction"):
        assert {"Ref": "CacheAccessPolicy"} in props(function)["Policies"], function


def test_enqueue_rate_limit_defaults_to_600_per_minute_and_reaches_the_functions() -> None:
    parameter = TEMPLATE["Parameters"]["EnqueueRateLimit"]
    assert parameter["Default"] == "600/60"
    env = TEMPLATE["Globals"]["Function"]["Environment"]["Variables"]
    assert env["TAREFA_ENQUEUE_RATE_LIMIT"] == {"Ref": "EnqueueRateLimit"}
    assert env["CACHE_BACKEND"] == {"Ref": "CacheBackend"}
    assert env["CACHE_TABLE"] == {"Fn::If": ["UseDynamoCache", {"Ref": "CacheTable"}, ""]}


# -- operations ------------------------------------------------------------------------------------


def test_the_operator_routes_are_declared() -> None:
    routes = {
        (e["Properties"]["Method"], e["Properties"]["Path"]) for e in props("ApiFunction")["Events"].values()
    }
    assert {
        ("GET", "/queues"),
        ("POST", "/queues/{priority}/pause"),
        ("POST", "/queues/{priority}/resume"),
        ("GET", "/queues/{priority}/dead-letters"),
        ("POST", "/queues/{priority}/dead-letters/redrive"),
        ("POST", "/queues/{priority}/dead-letters/purge"),
    } <= routes


def test_only_the_api_may_pause_and_only_the_workers_own_mappings() -> None:
    variables = props("ApiFunction")["Environment"]["Variables"]
    assert {k: v for k, v in variables.items() if k.endswith("_EVENT_SOURCE_MAPPING")} == {
        f"{p}_EVENT_SOURCE_MAPPING": {"Ref": f"WorkerFunction{p.title()}"} for p in ("HIGH", "MEDIUM", "LOW")
    }
    by_sid = {s["Sid"]: s for s in statements("ApiFunction")}
    pause = by_sid["PauseAndResume"]
    assert pause["Action"] == ["lambda:GetEventSourceMapping", "lambda:UpdateEventSourceMapping"]
    assert [r["Fn::Sub"].rsplit(":", 1)[1] for r in pause["Resource"]] == [
        "${WorkerFunctionHigh}",
        "${WorkerFunctionMedium}",
        "${WorkerFunctionLow}",
    ]
    dead = by_sid["DeadLetters"]
    assert {r["Fn::GetAtt"][0] for r in dead["Resource"]} == {
        "HighDeadLetterQueue",
        "MediumDeadLetterQueue",
        "LowDeadLetterQueue",
    }
    assert not any("lambda:" in a for s in statements("WorkerFunction") for a in s["Action"])


def alarm(logical_id: str) -> dict[str, Any]:
    assert RESOURCES[logical_id]["Type"] == "AWS::CloudWatch::Alarm"
    return props(logical_id)


def test_alarms_cover_the_dlq_depth_age_failure_rate_errors_and_throttles() -> None:
    # DLQ not empty: the sum over the three DLQs above 0
    dead = alarm("DeadLettersAlarm")
    assert (dead["Threshold"], dead["ComparisonOperator"]) == (0, "GreaterThanThreshold")
    assert dead["Metrics"][0]["Expression"] == "high + medium + low"
    # Depth over 1,000 for 5 minutes, in any queue
    depth = alarm("QueueDepthAlarm")
    assert (depth["Threshold"], depth["EvaluationPeriods"], depth["DatapointsToAlarm"]) == (1000, 5, 5)
    assert {m["MetricStat"]["Period"] for m in depth["Metrics"][1:]} == {60}
    assert alarm("OldestMessageAlarm")["Threshold"] == {"Ref": "OldestMessageAlarmSeconds"}
    # Failure rate over 5% over 5 minutes, by metric math on the jobs' own metrics
    rate = alarm("FailureRateAlarm")
    assert rate["Threshold"] == 5 and "failed" in rate["Metrics"][0]["Expression"]
    assert {m["MetricStat"]["Metric"]["MetricName"] for m in rate["Metrics"][1:]} == {
        "JobsFailed",
        "JobsCompleted",
    }
    assert {m["MetricStat"]["Period"] for m in rate["Metrics"][1:]} == {300}
    assert alarm("WorkerErrorsAlarm")["MetricName"] == "Errors"
    assert alarm("WorkerThrottlesAlarm")["MetricName"] == "Throttles"
    for logical_id, spec in RESOURCES.items():
        if spec["Type"] == "AWS::CloudWatch::Alarm":
            assert spec["Properties"]["AlarmActions"] == [{"Ref": "AlarmTopic"}], logical_id
            assert spec["Properties"]["TreatMissingData"] == "notBreaching", logical_id


def test_alarm_mail_is_optional_and_the_topic_is_encrypted() -> None:
    assert props("AlarmTopic")["KmsMasterKeyId"] == "alias/aws/sns"
    assert RESOURCES["AlarmEmailSubscription"]["Condition"] == "HasAlarmEmail"
    assert TEMPLATE["Parameters"]["AlarmEmail"]["Default"] == ""


def test_the_dashboard_is_valid_json_and_shows_every_alarm() -> None:
    import json

    resolver = Resolver(TEMPLATE)
    for logical_id in RESOURCES:
        resolver.refs.setdefault(logical_id, f"local-{logical_id}")
    body = json.loads(resolver.resolve(props("Dashboard")["DashboardBody"]))
    titles = [w["properties"]["title"] for w in body["widgets"]]
    assert "Waiting jobs" in titles and "Failure rate (%)" in titles and "Alarms" in titles
    alarms = next(w for w in body["widgets"] if w["type"] == "alarm")["properties"]["alarms"]
    declared = [k for k, v in RESOURCES.items() if v["Type"] == "AWS::CloudWatch::Alarm"]
    assert len(alarms) == len(declared)


def test_job_figures_are_folded_from_the_jobs_stream_into_their_own_table() -> None:
    """Counts and windows cost no write on a job's path: the jobs table streams its changes to
    StatsFunction, which alone writes the stats table; the API only reads it."""
    assert props("JobsTable")["StreamSpecification"] == {"StreamViewType": "NEW_AND_OLD_IMAGES"}
    (event,) = props("StatsFunction")["Events"].values()
    assert event["Type"] == "DynamoDB"
    assert event["Properties"]["Stream"] == {"Fn::GetAtt": ["JobsTable", "StreamArn"]}
    assert event["Properties"]["MaximumRetryAttempts"] >= 1  # a failing batch cannot block it forever
    stats_table = props("StatsTable")
    assert stats_table["TimeToLiveSpecification"] == {"AttributeName": "expiresAt", "Enabled": True}
    assert [k["AttributeName"] for k in stats_table["KeySchema"]] == ["pk", "sk"]
    writers = {
        logical_id
        for logical_id, spec in RESOURCES.items()
        if spec["Type"] == "AWS::Serverless::Function"
        for statement in statements(logical_id)
        if statement["Resource"] == {"Fn::GetAtt": ["StatsTable", "Arn"]}
        and any(a != "dynamodb:GetItem" and a != "dynamodb:Query" for a in statement["Action"])
    }
    assert writers == {"StatsFunction"}
    assert props("ApiFunction")["Environment"]["Variables"]["STATS_TABLE"] == {"Ref": "StatsTable"}


# -- workloads -------------------------------------------------------------------------------------


def test_the_workload_modules_and_the_outbound_allow_list_reach_the_functions() -> None:
    parameters = TEMPLATE["Parameters"]
    assert parameters["JobModules"]["Default"] == "demo"
    assert parameters["HttpAllow"]["Default"] == ""
    env = TEMPLATE["Globals"]["Function"]["Environment"]["Variables"]
    # JobModules and the workloads that are on, in each of the eight combinations (a workload
    # that is off leaves an empty entry, which the engine and `tarefa local` skip)
    modules = env["TAREFA_JOB_MODULES"]
    messaging = "messaging.jobs,notifications.jobs"
    for payments, guests, messages, expected in (
        ("on", "on", "on", f"demo,payments.jobs,guests.jobs,{messaging}"),  # the defaults
        ("on", "on", "off", "demo,payments.jobs,guests.jobs"),
        ("on", "off", "on", f"demo,payments.jobs,{messaging}"),
        ("on", "off", "off", "demo,payments.jobs"),
        ("off", "on", "on", f"demo,guests.jobs,{messaging}"),
        ("off", "on", "off", "demo,guests.jobs"),
        ("off", "off", "on", f"demo,{messaging}"),
        ("off", "off", "off", "demo"),
    ):
        given = {"PaymentsWorkload": payments, "GuestsWorkload": guests, "MessagingWorkload": messages}
        resolved = str(Resolver(TEMPLATE, given).resolve(modules))
        assert ",".join(m for m in resolved.split(",") if m) == expected, given
        assert (
            tuple(m for m in expected.split(","))
            == Settings.model_validate({"tarefa_job_modules": resolved}).job_modules
        ), given
    assert TEMPLATE["Parameters"]["GuestsWorkload"]["Default"] == "on"
    assert TEMPLATE["Parameters"]["MessagingWorkload"]["Default"] == "on"
    assert env["TAREFA_HTTP_ALLOW"] == {"Ref": "HttpAllow"}


def test_workloads_ship_in_a_layer_of_their_own_beside_the_engine() -> None:
    assert TEMPLATE["Globals"]["Function"]["Layers"] == [
        {"Ref": "TarefaLayer"},
        {"Ref": "WorkloadsLayer"},
        {"Ref": "ExamplesLayer"},
    ]
    engine = RESOURCES["TarefaLayer"]
    for logical_id, content, name in (
        ("ExamplesLayer", "examples", "tarefa-examples-${Stage}"),
        ("WorkloadsLayer", "layers/workloads", "tarefa-workloads-${Stage}"),
    ):
        spec = RESOURCES[logical_id]
        assert spec["Type"] == "AWS::Serverless::LayerVersion"
        assert spec["Metadata"] == engine["Metadata"]  # built the same way: python3.13, arm64
        layer = spec["Properties"]
        assert layer["ContentUri"] == content
        assert layer["LayerName"] == {"Fn::Sub": name}
        for key in ("CompatibleRuntimes", "CompatibleArchitectures", "RetentionPolicy"):
            assert layer[key] == engine["Properties"][key], key
    for spec in (engine, RESOURCES["ExamplesLayer"], RESOURCES["WorkloadsLayer"]):  # sam build reads them
        assert (ROOT / spec["Properties"]["ContentUri"] / "requirements.txt").is_file()
    assert (ROOT / "layers/workloads/payments/jobs.py").is_file()  # a package at the layer's root
    assert (ROOT / "layers/workloads/guests/jobs.py").is_file()
    assert (ROOT / "layers/workloads/messaging/jobs.py").is_file()


def test_the_job_types_route_is_declared_and_authorized() -> None:
    event = props("ApiFunction")["Events"]["ListJobTypes"]
    assert event == {
        "Type": "HttpApi",
        "Properties": {"ApiId": {"Ref": "HttpApi"}, "Method": "GET", "Path": "/job-types"},
    }


def test_the_worker_may_record_steps_enqueue_chained_jobs_and_read_its_secrets() -> None:
    by_sid = {s["Sid"]: s for s in statements("WorkerFunction")}
    # A chained enqueue is a TransactWriteItems of one PutItem on each table: IAM checks PutItem.
    assert set(by_sid["Jobs"]["Action"]) >= {"dynamodb:PutItem"}
    assert by_sid["IdempotencyKeysAndSteps"]["Action"] == [
        "dynamodb:GetItem",
        "dynamodb:PutItem",
        "dynamodb:UpdateItem",  # flow control: debounce bursts
        "dynamodb:DeleteItem",  # flow control: freed slots and unique keys
    ]
    assert by_sid["IdempotencyKeysAndSteps"]["Resource"] == {"Fn::GetAtt": ["IdempotencyTable", "Arn"]}
    assert "dynamodb:TransactWriteItems" not in {a for s in by_sid.values() for a in s["Action"]}
    secrets = by_sid["JobSecrets"]
    assert secrets["Action"] == ["secretsmanager:GetSecretValue"]
    assert RESOLVE(secrets["Resource"]) == "arn:aws:secretsmanager:us-east-1:123456789012:secret:tarefa/dev/*"
    assert {"sqs:SendMessage"} <= set(by_sid["RetryAndRequeue"]["Action"])


# -- reliability -----------------------------------------------------------------------------------

NO_VALUE = "<AWS::NoValue>"
GATEWAY_SERVICES = {"dynamodb", "s3"}  # the services AWS offers gateway endpoints for


def resolver_for(**parameters: str) -> Resolver:
    resolver = Resolver(TEMPLATE, dict(parameters))
    resolver.pseudo["AWS::NoValue"] = NO_VALUE
    for logical_id, spec in RESOURCES.items():
        resolver.refs.setdefault(logical_id, f"local-{logical_id}")
        for event in spec.get("Properties", {}).get("Events", {}):  # SAM's ids: function + event
            resolver.refs.setdefault(logical_id + event, f"local-{logical_id}{event}")
    return resolver


def functions() -> list[str]:
    return [k for k, v in RESOURCES.items() if v["Type"] == "AWS::Serverless::Function"]


def effective_actions(logical_id: str, resolver: Resolver) -> set[str]:
    """Every IAM action a function's own policies grant under these parameters. Fails on a
    policy form it cannot read (a SAM policy template, a managed policy ARN), so none is missed."""
    actions: set[str] = set()
    for declared in props(logical_id).get("Policies", []):
        ref = declared.get("Ref") if isinstance(declared, dict) else None
        policy = props(ref)["PolicyDocument"] if ref in RESOURCES else declared
        assert isinstance(policy, dict) and set(policy) <= {"Statement", "Version"}, (logical_id, policy)
        for statement in resolver.resolve(policy["Statement"]):
            if statement == NO_VALUE:
                continue
            granted = statement["Action"]
            actions.update([granted] if isinstance(granted, str) else granted)
    return actions


def joins_the_vpc(logical_id: str, resolver: Resolver) -> bool:
    """SAM's Globals rule: a function's own VpcConfig replaces the Globals one."""
    vpc = props(logical_id).get("VpcConfig", TEMPLATE["Globals"]["Function"].get("VpcConfig"))
    return vpc is not None and resolver.resolve(vpc) != NO_VALUE


def test_every_aws_service_the_vpc_functions_call_has_an_endpoint() -> None:
    """With the Redis backend and no NAT, a call to a service without an endpoint times out
    (GET /queues and pause did, for lambda:*). The services are derived from the IAM actions of
    the functions in the VPC, so a new action brings its endpoint or fails here."""
    resolver = resolver_for(CacheBackend="redis", CreateVpcEndpoints="true")
    in_vpc = [f for f in functions() if joins_the_vpc(f, resolver)]
    assert set(in_vpc) == {
        "ApiFunction",
        "WorkerFunction",
        "MaintenanceFunction",
        "DemoFunction",
        "PaymentsFunction",
        "PaymentsRenewalsFunction",
        "GuestsFunction",
        "MessagingFunction",
        "NotificationsFunction",
    }
    needed = {action.split(":", 1)[0] for f in in_vpc for action in effective_actions(f, resolver)}
    # SES's API has no interface endpoint (AWS offers one for SMTP only): the worker reaches it,
    # as it reaches Resend, through the VPC's NAT gateway (README, "E-mail notifications").
    needed -= {"ses"}
    # iam:PassRole (the API hands Scheduler its target role) is a permission, not a call.
    needed -= {"iam"}
    assert {"dynamodb", "sqs", "secretsmanager", "lambda"} <= needed
    endpoints: dict[str, str] = {}
    for logical_id, spec in RESOURCES.items():
        if spec["Type"] != "AWS::EC2::VPCEndpoint" or not resolver.exists(spec):
            continue
        endpoint = resolver.resolve(spec["Properties"])
        prefix = "com.amazonaws.us-east-1."
        assert endpoint["ServiceName"].startswith(prefix), logical_id
        service = endpoint["ServiceName"].removeprefix(prefix)
        endpoints[service] = endpoint["VpcEndpointType"]
        assert endpoint["VpcId"] == resolver.parameters["CacheVpcId"]
        if endpoint["VpcEndpointType"] == "Interface":
            assert endpoint["PrivateDnsEnabled"] is True, logical_id  # the SDKs' default hostnames
            assert spec["Properties"]["SubnetIds"] == {"Ref": "CacheSubnetIds"}, logical_id
            assert spec["Properties"]["SecurityGroupIds"] == {"Ref": "CacheSecurityGroupIds"}, logical_id
        else:
            assert spec["Properties"]["RouteTableIds"] == {"Ref": "CacheRouteTableIds"}, logical_id
    assert set(endpoints) == needed  # each one needed, none missing
    for service, kind in endpoints.items():
        assert kind == ("Gateway" if service in GATEWAY_SERVICES else "Interface"), service
    # Without the parameter that turns them off, the gateway endpoint must get its route tables.
    rule = TEMPLATE["Rules"]["EndpointsNeedRouteTables"]
    assert rule["RuleCondition"] == {
        "Fn::And": [
            {"Fn::Equals": [{"Ref": "CacheBackend"}, "redis"]},
            {"Fn::Equals": [{"Ref": "CreateVpcEndpoints"}, "true"]},
        ]
    }
    assert not any(
        resolver_for(CacheBackend="redis", CreateVpcEndpoints="false").exists(RESOURCES[e])
        for e in RESOURCES
        if RESOURCES[e]["Type"] == "AWS::EC2::VPCEndpoint"
    )


def test_the_stats_function_stays_out_of_the_vpc() -> None:
    """It only talks to DynamoDB: no VPC with any backend, and no ENI rights on its role."""
    for backend in ("dynamodb", "redis"):
        assert not joins_the_vpc("StatsFunction", resolver_for(CacheBackend=backend)), backend
    assert {a.split(":", 1)[0] for a in effective_actions("StatsFunction", resolver_for())} == {"dynamodb"}
    expanded = sam_expanded()
    assert "VpcConfig" not in expanded["StatsFunction"]["Properties"]
    managed = expanded["StatsFunctionRole"]["Properties"]["ManagedPolicyArns"]
    assert not any("VPCAccess" in str(arn) for arn in managed), managed


def test_metrics_namespace_is_per_stage_and_alarms_and_the_dashboard_read_it() -> None:
    import json

    env = TEMPLATE["Globals"]["Function"]["Environment"]["Variables"]
    assert env["POWERTOOLS_SERVICE_NAME"] == "tarefa"
    namespaces = {}
    for stage in ("dev", "prod", "pr-42"):
        resolver = resolver_for(Stage=stage)
        namespace = resolver.resolve(env["POWERTOOLS_METRICS_NAMESPACE"])
        namespaces[stage] = namespace
        service = resolver.resolve(env["POWERTOOLS_SERVICE_NAME"])
        custom = 0
        for logical_id, spec in RESOURCES.items():
            if spec["Type"] != "AWS::CloudWatch::Alarm":
                continue
            alarm_props = resolver.resolve(spec["Properties"])
            metrics = [m["MetricStat"]["Metric"] for m in alarm_props.get("Metrics", []) if "MetricStat" in m]
            if "Namespace" in alarm_props:
                metrics.append(alarm_props)
            for metric in metrics:
                if not metric["Namespace"].startswith("AWS/"):
                    custom += 1
                    assert metric["Namespace"] == namespace, logical_id
                    assert metric["Dimensions"] == [{"Name": "service", "Value": service}], logical_id
        assert custom >= 2  # the failure rate reads JobsFailed and JobsCompleted
        body = json.loads(resolver.resolve(props("Dashboard")["DashboardBody"]))
        rows = [
            row
            for widget in body["widgets"]
            if widget["type"] == "metric"
            for row in widget["properties"]["metrics"]
            if isinstance(row[0], str) and row[0] not in (".", "...")
        ]
        custom_rows = [row for row in rows if not row[0].startswith("AWS/")]
        assert custom_rows and all(row[0] == namespace for row in custom_rows), custom_rows
        assert all(row[2:4] == ["service", service] for row in custom_rows), custom_rows
    assert len(set(namespaces.values())) == 3, namespaces


CLOUDWATCH_RETENTIONS = [1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827,
                         2192, 2557, 2922, 3288, 3653]  # fmt: skip


def test_every_function_logs_json_to_its_own_group_with_a_retention() -> None:
    parameter = TEMPLATE["Parameters"]["LogRetentionDays"]
    assert parameter["Default"] == 30
    assert parameter["AllowedValues"] == CLOUDWATCH_RETENTIONS
    assert TEMPLATE["Globals"]["Function"]["LoggingConfig"] == {"LogFormat": "JSON"}
    expanded = sam_expanded()
    groups = set()
    for function in functions():
        logging = props(function)["LoggingConfig"]
        group = logging["LogGroup"]["Ref"]
        groups.add(group)
        assert logging.get("LogFormat", "JSON") == "JSON", function
        assert RESOURCES[group]["Type"] == "AWS::Logs::LogGroup", function
        # created exactly when its function is (a workload that is off has neither)
        assert RESOURCES[group].get("Condition") == RESOURCES[function].get("Condition"), group
        assert props(group)["RetentionInDays"] == {"Ref": "LogRetentionDays"}, group
        for stage in ("dev", "prod"):  # the name Lambda would give it, so nothing else creates one
            resolver = resolver_for(Stage=stage)
            name = resolver.resolve(props(function)["FunctionName"])
            assert resolver.resolve(props(group)["LogGroupName"]) == f"/aws/lambda/{name}", group
        # What SAM hands CloudFormation: the Globals format merged with the function's group.
        assert expanded[function]["Properties"]["LoggingConfig"] == {
            "LogFormat": "JSON",
            "LogGroup": {"Ref": group},
        }, function
    assert len(groups) == len(functions())
    assert {k for k, v in RESOURCES.items() if v["Type"] == "AWS::Logs::LogGroup"} == groups


def test_the_stage_is_any_short_lower_case_name() -> None:
    import re

    from tarefa.local.provision import check_parameters

    stage = TEMPLATE["Parameters"]["Stage"]
    assert stage["Default"] == "dev" and "AllowedValues" not in stage
    for good in ("dev", "prod", "pr-42", "sandbox1", "a", "abcdefghijklmnop"):
        assert re.fullmatch(stage["AllowedPattern"], good), good
        check_parameters(TEMPLATE, {"Stage": good})
    # Upper case, a leading digit or hyphen, too long; "--" and a trailing "-" make names that
    # ElastiCache refuses (its cache name and user ids carry the stage).
    for bad in ("Dev", "1dev", "-dev", "abcdefghijklmnopq", "a--b", "dev-", "dev_1", ""):
        assert not re.fullmatch(stage["AllowedPattern"], bad), bad
        with pytest.raises(ValueError, match="Stage"):
            check_parameters(TEMPLATE, {"Stage": bad})


NAME_PROPERTIES = {"Name", "UserId", "UserGroupId"}


def test_a_deleted_stage_can_be_deployed_again_and_prod_jobs_are_protected() -> None:
    """A retained resource with a fixed name keeps the name taken after its stack is deleted, and
    the next deploy of that stage fails. Named resources are deleted with the stack; prod's jobs
    table is protected by DynamoDB deletion protection instead (the stack's deletion stops there)."""
    for logical_id, spec in RESOURCES.items():
        named = [k for k in spec.get("Properties", {}) if k.endswith("Name") or k in NAME_PROPERTIES]
        if named:
            assert spec.get("DeletionPolicy", "Delete") != "Retain", (logical_id, named)
    jobs = RESOURCES["JobsTable"]
    assert jobs["Properties"]["TableName"] == {"Fn::Sub": "tarefa-${Stage}-jobs"}  # the local stack reads it
    assert jobs["Properties"]["DeletionProtectionEnabled"] == {"Fn::If": ["IsProd", True, False]}
    assert jobs["UpdateReplacePolicy"] == "Retain"  # a replacement never drops the jobs
    assert props("JobsTable")["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
    assert resolver_for(Stage="prod").condition("IsProd")
    assert not any(resolver_for(Stage=s).condition("IsProd") for s in ("dev", "production", "prod-1"))


_EXPANDED: dict[str, Any] = {}


def sam_expanded() -> dict[str, Any]:
    """The resources SAM's translator makes of the template (once per test session)."""
    if not _EXPANDED:
        import os

        from samtranslator.translator.transform import transform

        class NoManagedPolicies:
            def load(self) -> dict[str, str]:
                return {}

        template = load_template()
        for spec in template["Resources"].values():
            for key in ("CodeUri", "ContentUri"):
                if key in spec.get("Properties", {}):
                    spec["Properties"][key] = "s3://bucket/code.zip"
        os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
        _EXPANDED.update(transform(template, {"AWS::Region": "us-east-1"}, NoManagedPolicies())["Resources"])
    return _EXPANDED
