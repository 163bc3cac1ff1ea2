"""Creates the template's queues and tables in an AWS endpoint (moto) and describes its
functions, their environment and their event sources for the local runtime."""

from __future__ import annotations

import json
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
    schedules: list[ScheduleSource] = field(default_factory=list)
    routes: list[HttpRoute] = field(default_factory=list)


@dataclass
class Stack:
    functions: dict[str, Function]
    queue_urls: dict[str, str]  # logical id -> URL
    tables: dict[str, str]  # logical id -> table name
    outputs: dict[str, str]

    def function_with_routes(self) -> Function:
        return next(f for f in self.functions.values() if f.routes)


def provision(
    clients: Any, parameters: dict[str, str] | None = None, template: dict[str, Any] | None = None
) -> Stack:
    """Create every SQS queue and DynamoDB table of the template with `clients.sqs` and
    `clients.dynamodb`, and return what the local runtime needs to run the functions."""
    template = template or load_template()
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
        if spec["Type"] != "AWS::DynamoDB::Table":
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
        clients.dynamodb.create_table(**create)
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

    for logical_id in resources:  # what other resources' !Ref gives, locally
        resolver.refs.setdefault(logical_id, f"local-{logical_id}")

    functions = {
        logical_id: _function(logical_id, spec, template, resolver, queue_urls)
        for logical_id, spec in resources.items()
        if spec["Type"] == "AWS::Serverless::Function"
    }
    outputs: dict[str, str] = {}
    for name, spec in template.get("Outputs", {}).items():
        if "Condition" in spec and not resolver.condition(spec["Condition"]):
            continue
        outputs[name] = str(resolver.resolve(spec["Value"]))
    return Stack(functions, queue_urls, tables, outputs)


def _function(
    logical_id: str,
    spec: dict[str, Any],
    template: dict[str, Any],
    resolver: Resolver,
    queue_urls: dict[str, str],
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
                )
            )
        elif kind in ("Schedule", "ScheduleV2"):
            function.schedules.append(ScheduleSource(name, ev["ScheduleExpression"], schedule_input(ev)))
        elif kind == "HttpApi":
            authorizer = ev.get("Auth", {}).get("Authorizer")
            function.routes.append(HttpRoute(ev["Method"].upper(), ev["Path"], authorizer != "NONE"))
    return function
