"""Creates the template's queues and tables in an AWS endpoint (moto) and describes its
functions, their environment and their event sources for the local runtime."""

from __future__ import annotations

import contextlib
import io
import json
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tarefa.local.template import ACCOUNT, REGION, ROOT, Resolver, load_template, schedule_input


@dataclass(frozen=True)
class SqsSource:
    queue_logical_id: str
    queue_url: str
    batch_size: int
    batching_window_seconds: int
    maximum_concurrency: int
    mapping_id: str  # the emulator's event source mapping: disabled while the queue is paused


@dataclass(frozen=True)
class StreamSource:
    """A DynamoDB stream event source: batches of a table's changes, in order."""

    stream_arn: str
    batch_size: int
    batching_window_seconds: int
    maximum_retry_attempts: int  # then the batch is skipped, as Lambda does
    starting_position: str


@dataclass(frozen=True)
class ScheduleSource:
    name: str
    expression: str
    input: dict[str, Any]


@dataclass(frozen=True)
class HttpRoute:
    method: str
    path: str
    authorized: bool


@dataclass
class Function:
    logical_id: str
    code_dir: Path
    handler: str
    timeout: int
    memory_mb: int
    environment: dict[str, str]
    sqs: list[SqsSource] = field(default_factory=list)
    streams: list[StreamSource] = field(default_factory=list)
    schedules: list[ScheduleSource] = field(default_factory=list)
    routes: list[HttpRoute] = field(default_factory=list)
    layers: list[Path] = field(default_factory=list)  # the layers' code, as Lambda mounts it


@dataclass
class Stack:
    functions: dict[str, Function]
    queue_urls: dict[str, str]  # logical id -> URL
    tables: dict[str, str]  # logical id -> table name
    outputs: dict[str, str]

    def function_with_routes(self) -> Function:
        """The engine's API function (the first with routes; ApiFunction in the template)."""
        return self.functions.get("ApiFunction") or next(f for f in self.functions.values() if f.routes)

    def routes(self) -> dict[HttpRoute, Function]:
        """Every HTTP route of every function (a workload's routes may be a function of their
        own behind the same API)."""
        return {route: f for f in self.functions.values() for route in f.routes}


def provision(
    clients: Any, parameters: dict[str, str] | None = None, template: dict[str, Any] | None = None
) -> Stack:
    """Create every SQS queue and DynamoDB table of the template with `clients.sqs` and
    `clients.dynamodb`, and return what the local runtime needs to run the functions."""
    template = template or load_template()
    check_parameters(template, parameters or {})
    resolver = Resolver(template, dict(parameters or {}))
    resources: dict[str, Any] = template["Resources"]
    queue_urls: dict[str, str] = {}
    tables: dict[str, str] = {}

    queues = {k: v for k, v in resources.items() if v["Type"] == "AWS::SQS::Queue"}
    for logical_id, spec in queues.items():  # first pass: create, so every ARN exists
        props = resolver.resolve(
            {k: v for k, v in spec.get("Properties", {}).items() if k != "RedrivePolicy"}
        )
        attributes = {
            k: str(props[k])
            for k in ("VisibilityTimeout", "MessageRetentionPeriod", "DelaySeconds")
            if k in props
        }
        url = clients.sqs.create_queue(QueueName=props["QueueName"], Attributes=attributes)["QueueUrl"]
        queue_urls[logical_id] = url
        resolver.refs[logical_id] = url
        resolver.attributes[(logical_id, "Arn")] = f"arn:aws:sqs:{REGION}:{ACCOUNT}:{props['QueueName']}"
        resolver.attributes[(logical_id, "QueueName")] = props["QueueName"]
    for logical_id, spec in queues.items():  # second pass: redrive policies point at DLQ ARNs
        props = resolver.resolve(spec.get("Properties", {}))
        if "RedrivePolicy" in props:
            clients.sqs.set_queue_attributes(
                QueueUrl=queue_urls[logical_id],
                Attributes={"RedrivePolicy": json.dumps(props["RedrivePolicy"])},
            )

    for logical_id, spec in resources.items():
        if spec["Type"] != "AWS::DynamoDB::Table" or not resolver.exists(spec):
            continue
        props = resolver.resolve(spec["Properties"])
        create: dict[str, Any] = {
            "TableName": props["TableName"],
            "AttributeDefinitions": props["AttributeDefinitions"],
            "KeySchema": props["KeySchema"],
            "BillingMode": props.get("BillingMode", "PAY_PER_REQUEST"),
        }
        if props.get("GlobalSecondaryIndexes"):
            create["GlobalSecondaryIndexes"] = props["GlobalSecondaryIndexes"]
        if "StreamSpecification" in props:
            create["StreamSpecification"] = {"StreamEnabled": True, **props["StreamSpecification"]}
        created = clients.dynamodb.create_table(**create)["TableDescription"]
        if "LatestStreamArn" in created:
            resolver.attributes[(logical_id, "StreamArn")] = created["LatestStreamArn"]
        if "TimeToLiveSpecification" in props:
            ttl = props["TimeToLiveSpecification"]
            clients.dynamodb.update_time_to_live(
                TableName=props["TableName"],
                TimeToLiveSpecification={
                    "AttributeName": ttl["AttributeName"],
                    "Enabled": bool(ttl["Enabled"]),
                },
            )
        tables[logical_id] = props["TableName"]
        resolver.refs[logical_id] = props["TableName"]
        resolver.attributes[(logical_id, "Arn")] = (
            f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{props['TableName']}"
        )

    _kms_keys(clients, resources, resolver)
    _schedule_groups(clients, resources, resolver)
    _ses_identities(clients, resources, resolver)
    mappings = _event_source_mappings(clients, resources, resolver)
    for logical_id in resources:  # what other resources' !Ref gives, locally
        resolver.refs.setdefault(logical_id, f"local-{logical_id}")

    functions = {
        logical_id: _function(logical_id, spec, template, resolver, queue_urls, mappings)
        for logical_id, spec in resources.items()
        if spec["Type"] == "AWS::Serverless::Function" and resolver.exists(spec)
    }
    outputs: dict[str, str] = {}
    for name, spec in template.get("Outputs", {}).items():
        if not resolver.exists(spec):
            continue
        outputs[name] = str(resolver.resolve(spec["Value"]))
    return Stack(functions, queue_urls, tables, outputs)


def _schedule_groups(clients: Any, resources: dict[str, Any], resolver: Resolver) -> None:
    """The template's EventBridge Scheduler groups, where the API puts user schedules (the local
    scheduler, tarefa/local/schedules.py, fires what is in them)."""
    scheduler = getattr(clients, "scheduler", None)
    for logical_id, spec in resources.items():
        if spec["Type"] != "AWS::Scheduler::ScheduleGroup" or not resolver.exists(spec) or scheduler is None:
            continue
        name = resolver.resolve(spec["Properties"])["Name"]
        with contextlib.suppress(scheduler.exceptions.ConflictException):
            scheduler.create_schedule_group(Name=name)
        resolver.refs[logical_id] = name


def _kms_keys(clients: Any, resources: dict[str, Any], resolver: Resolver) -> None:
    """The template's KMS keys (the sensitive fields' key) with their policy and rotation, and
    their aliases; !Ref gives a key's id and !GetAtt its ARN, as CloudFormation does."""
    for logical_id, spec in resources.items():
        if spec["Type"] != "AWS::KMS::Key" or not resolver.exists(spec):
            continue
        props = resolver.resolve(spec.get("Properties", {}))
        create: dict[str, Any] = {
            "KeyUsage": props.get("KeyUsage", "ENCRYPT_DECRYPT"),
            "KeySpec": props.get("KeySpec", "SYMMETRIC_DEFAULT"),
        }
        if "Description" in props:
            create["Description"] = str(props["Description"])
        if "KeyPolicy" in props:
            create["Policy"] = json.dumps(props["KeyPolicy"])
        key = clients.kms.create_key(**create)["KeyMetadata"]
        if props.get("EnableKeyRotation"):
            clients.kms.enable_key_rotation(KeyId=key["KeyId"])
        resolver.refs[logical_id] = key["KeyId"]
        resolver.attributes[(logical_id, "Arn")] = key["Arn"]
        resolver.attributes[(logical_id, "KeyId")] = key["KeyId"]
    for logical_id, spec in resources.items():
        if spec["Type"] != "AWS::KMS::Alias" or not resolver.exists(spec):
            continue
        props = resolver.resolve(spec["Properties"])
        clients.kms.create_alias(AliasName=props["AliasName"], TargetKeyId=props["TargetKeyId"])
        resolver.refs[logical_id] = props["AliasName"]


def _ses_identities(clients: Any, resources: dict[str, Any], resolver: Resolver) -> None:
    """The template's SES identities (a sender's domain or address), created in the emulator,
    which counts them verified at once (on AWS the domain's DNS records verify it)."""
    for logical_id, spec in resources.items():
        if spec["Type"] != "AWS::SES::EmailIdentity" or not resolver.exists(spec):
            continue
        identity = str(resolver.resolve(spec["Properties"]["EmailIdentity"]))
        sesv2 = getattr(clients, "sesv2", None)
        if sesv2 is None:  # clients of an older caller: nothing sends e-mail there
            continue
        with contextlib.suppress(sesv2.exceptions.AlreadyExistsException):
            sesv2.create_email_identity(EmailIdentity=identity)
        resolver.refs[logical_id] = identity


def _event_source_mappings(clients: Any, resources: dict[str, Any], resolver: Resolver) -> dict[str, str]:
    """An event source mapping in the emulator for each SQS event, as SAM creates them (logical
    id: function id + event name; !Ref gives its UUID), so pausing works through the same Lambda
    API as on AWS. They point at a placeholder queue: the emulator would otherwise try to run the
    function in Docker on every send, and the local stack runs the functions itself."""
    mappings: dict[str, str] = {}
    role = ""
    for logical_id, spec in resources.items():
        if spec["Type"] != "AWS::Serverless::Function":
            continue
        events = {n: e for n, e in spec["Properties"].get("Events", {}).items() if e["Type"] == "SQS"}
        if not events:
            continue
        if not role:
            created = clients.iam.create_role(
                RoleName="tarefa-local-functions", AssumeRolePolicyDocument="{}"
            )
            role = created["Role"]["Arn"]
        name = str(resolver.resolve(spec["Properties"].get("FunctionName", logical_id)))
        code = io.BytesIO()
        with zipfile.ZipFile(code, "w") as archive:
            archive.writestr("app.py", "# the local stack runs the real handler itself\n")
        clients.lambda_.create_function(
            FunctionName=name,
            Runtime="python3.13",
            Role=role,
            Handler="app.h",
            Code={"ZipFile": code.getvalue()},
        )
        placeholder = clients.sqs.create_queue(QueueName=f"{name}-local-mappings")["QueueUrl"]
        placeholder_arn = clients.sqs.get_queue_attributes(QueueUrl=placeholder, AttributeNames=["QueueArn"])
        for event_name in events:
            mapping = clients.lambda_.create_event_source_mapping(
                EventSourceArn=placeholder_arn["Attributes"]["QueueArn"], FunctionName=name, Enabled=True
            )
            mappings[logical_id + event_name] = mapping["UUID"]
            resolver.refs[logical_id + event_name] = mapping["UUID"]
    return mappings


def check_parameters(template: dict[str, Any], parameters: dict[str, str]) -> None:
    """What CloudFormation checks before it deploys: known names, allowed values and patterns."""
    declared: dict[str, Any] = template.get("Parameters", {})
    for name, value in parameters.items():
        spec = declared.get(name)
        if spec is None:
            raise ValueError(f"unknown template parameter {name!r}; known: {', '.join(sorted(declared))}")
        allowed = [str(v) for v in spec.get("AllowedValues", [])]
        if allowed and value not in allowed:
            raise ValueError(f"parameter {name}={value!r} is not one of {allowed}")
        pattern = spec.get("AllowedPattern")
        if pattern and not re.fullmatch(pattern, value):
            raise ValueError(f"parameter {name}={value!r}: {spec.get('ConstraintDescription', pattern)}")


def _layer_dirs(template: dict[str, Any], layers: list[Any]) -> list[Path]:
    """The code directories (ContentUri) of the template's own layers a function uses."""
    resources = template["Resources"]
    found = []
    for layer in layers:
        name = layer.get("Ref") if isinstance(layer, dict) else None
        spec = resources.get(name, {}) if name else {}
        if spec.get("Type") == "AWS::Serverless::LayerVersion":
            found.append(ROOT / spec["Properties"]["ContentUri"])
    return found


def _function(
    logical_id: str,
    spec: dict[str, Any],
    template: dict[str, Any],
    resolver: Resolver,
    queue_urls: dict[str, str],
    mappings: dict[str, str],
) -> Function:
    defaults = template.get("Globals", {}).get("Function", {})
    props = spec["Properties"]
    environment = {
        **resolver.resolve(defaults.get("Environment", {}).get("Variables", {})),
        **resolver.resolve(props.get("Environment", {}).get("Variables", {})),
    }
    function = Function(
        logical_id=logical_id,
        code_dir=ROOT / props["CodeUri"],
        handler=props["Handler"],
        timeout=int(resolver.resolve(props.get("Timeout", defaults.get("Timeout", 3)))),
        memory_mb=int(resolver.resolve(props.get("MemorySize", defaults.get("MemorySize", 128)))),
        environment={k: str(v) for k, v in environment.items()},
        layers=_layer_dirs(template, props.get("Layers", defaults.get("Layers", []))),
    )
    arn_to_queue = {resolver.attributes[(q, "Arn")]: q for q in queue_urls}
    for name, event in props.get("Events", {}).items():
        kind, ev = event["Type"], resolver.resolve(event.get("Properties", {}))
        if kind == "SQS":
            queue = arn_to_queue[ev["Queue"]]
            function.sqs.append(
                SqsSource(
                    queue_logical_id=queue,
                    queue_url=queue_urls[queue],
                    batch_size=int(ev.get("BatchSize", 10)),
                    batching_window_seconds=int(ev.get("MaximumBatchingWindowInSeconds", 0)),
                    maximum_concurrency=int(ev.get("ScalingConfig", {}).get("MaximumConcurrency", 2)),
                    mapping_id=mappings[logical_id + name],
                )
            )
        elif kind == "DynamoDB":
            function.streams.append(
                StreamSource(
                    stream_arn=ev["Stream"],
                    batch_size=int(ev.get("BatchSize", 100)),
                    batching_window_seconds=int(ev.get("MaximumBatchingWindowInSeconds", 0)),
                    maximum_retry_attempts=int(ev.get("MaximumRetryAttempts", -1)),
                    starting_position=ev.get("StartingPosition", "LATEST"),
                )
            )
        elif kind in ("Schedule", "ScheduleV2"):
            function.schedules.append(ScheduleSource(name, ev["ScheduleExpression"], schedule_input(ev)))
        elif kind == "HttpApi":
            authorizer = ev.get("Auth", {}).get("Authorizer")
            function.routes.append(HttpRoute(ev["Method"].upper(), ev["Path"], authorizer != "NONE"))
    return function
