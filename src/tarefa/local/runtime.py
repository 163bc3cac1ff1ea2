"""Runs the real Lambda handlers in this process: loads them, gives them a Lambda-like context,
and turns HTTP requests and SQS messages into the events AWS would send."""

from __future__ import annotations

import base64
import importlib.util
import re
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from types import ModuleType
from typing import Any
from urllib.parse import unquote_plus

from tarefa.local.provision import Function, HttpRoute, SqsSource, StreamSource
from tarefa.local.template import ACCOUNT, REGION

Handler = Callable[[dict[str, Any], Any], Any]
# While a batch fills, the queue is asked again at most this often once it ran dry. Each ask is
# an emulator call that scans the queue: asking every 50 ms, a burst cost 2.3 receives per job
# (docs/local-concurrency.md).
BATCH_POLL_SECONDS = 0.2


@dataclass
class LambdaContext:
    """The attributes Powertools and the handlers read from a real context."""

    function_name: str
    memory_limit_in_mb: int
    timeout_seconds: int

    def __post_init__(self) -> None:
        self.aws_request_id = str(uuid.uuid4())
        self.invoked_function_arn = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{self.function_name}"
        self.function_version = "$LATEST"
        self.log_group_name = f"/aws/lambda/{self.function_name}"
        self.log_stream_name = "local"
        self._deadline = time.monotonic() + self.timeout_seconds

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


def load_handler(function: Function) -> Handler:
    module_name, attribute = function.handler.rsplit(".", 1)
    path = function.code_dir / f"{module_name}.py"
    spec = importlib.util.spec_from_file_location(f"tarefa_function_{function.logical_id}", path)
    assert spec is not None and spec.loader is not None
    module: ModuleType = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # pydantic resolves annotations through sys.modules
    spec.loader.exec_module(module)
    handler: Handler = getattr(module, attribute)
    return handler


def match_route(routes: list[HttpRoute], method: str, path: str) -> tuple[HttpRoute, dict[str, str]] | None:
    """The template's route for a request, with its path parameters (API Gateway's matching:
    the most specific route wins, so a static segment beats a {parameter} in its place, e.g.
    GET /webhooks/whatsapp before GET /webhooks/{subscriptionId}, whatever their order)."""
    for route in sorted(routes, key=_specificity):
        pattern = "^" + re.sub(r"\\{([^}+]+)\\}", r"(?P<\1>[^/]+)", re.escape(route.path)) + "$"
        found = re.match(pattern, path)
        if found and route.method in (method, "ANY"):
            return route, found.groupdict()
    return None


def _specificity(route: HttpRoute) -> tuple[int, ...]:
    """Sorts static segments before parameters, position by position (a stable sort keeps the
    template's order among equals)."""
    return tuple(1 if segment.startswith("{") else 0 for segment in route.path.strip("/").split("/"))


def invoke(function: Function, handler: Handler, event: dict[str, Any]) -> Any:
    context = LambdaContext(function.logical_id, function.memory_mb, function.timeout)
    return handler(event, context)


def http_event(
    method: str,
    path: str,
    route_key: str,
    path_parameters: dict[str, str],
    query: str,
    headers: dict[str, str],
    body: bytes,
    source_ip: str,
    claims: dict[str, Any] | None,
) -> dict[str, Any]:
    """An API Gateway HTTP API payload 2.0 event, as the deployed API sends it."""
    now = datetime.now(UTC)
    lowered = {k.lower(): v for k, v in headers.items()}
    try:
        text, encoded = body.decode(), False
    except UnicodeDecodeError:
        text, encoded = base64.b64encode(body).decode(), True
    query_params: dict[str, str] = {}
    for pair in filter(None, query.split("&")):
        key, _, value = pair.partition("=")
        query_params[unquote_plus(key)] = unquote_plus(value)  # API Gateway joins repeats with ","
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": route_key,
        "rawPath": path,
        "rawQueryString": query,
        "headers": lowered,
        "requestContext": {
            "accountId": ACCOUNT,
            "apiId": "local",
            "domainName": lowered.get("host", "localhost"),
            "domainPrefix": "local",
            "http": {
                "method": method,
                "path": path,
                "protocol": "HTTP/1.1",
                "sourceIp": source_ip,
                "userAgent": lowered.get("user-agent", ""),
            },
            "requestId": str(uuid.uuid4()),
            "routeKey": route_key,
            "stage": "$default",
            "time": now.strftime("%d/%b/%Y:%H:%M:%S +0000"),
            "timeEpoch": int(now.timestamp() * 1000),
        },
        "isBase64Encoded": encoded,
    }
    if query_params:
        event["queryStringParameters"] = query_params
    if path_parameters:
        event["pathParameters"] = path_parameters
    if body:
        event["body"] = text
    if claims is not None:
        event["requestContext"]["authorizer"] = {
            "jwt": {"claims": {k: _claim_text(v) for k, v in claims.items()}, "scopes": None}
        }
    return event


def _claim_text(value: Any) -> str:
    """HTTP APIs hand JWT claims to Lambda as strings; arrays become "[a b]"."""
    if isinstance(value, list):
        return "[" + " ".join(str(v) for v in value) + "]"
    return str(value)


def sqs_event(source: SqsSource, messages: list[dict[str, Any]]) -> dict[str, Any]:
    arn = f"arn:aws:sqs:{REGION}:{ACCOUNT}:{source.queue_url.rsplit('/', 1)[-1]}"
    return {
        "Records": [
            {
                "messageId": m["MessageId"],
                "receiptHandle": m["ReceiptHandle"],
                "body": m["Body"],
                "attributes": {
                    "ApproximateReceiveCount": m.get("Attributes", {}).get("ApproximateReceiveCount", "1"),
                    "SentTimestamp": m.get("Attributes", {}).get("SentTimestamp", "0"),
                    "SenderId": ACCOUNT,
                    "ApproximateFirstReceiveTimestamp": m.get("Attributes", {}).get(
                        "ApproximateFirstReceiveTimestamp", "0"
                    ),
                },
                "messageAttributes": {},
                "md5OfBody": m.get("MD5OfBody", ""),
                "eventSource": "aws:sqs",
                "eventSourceARN": arn,
                "awsRegion": REGION,
            }
            for m in messages
        ]
    }


def receive(sqs: Any, source: SqsSource, wait_seconds: int = 0) -> list[dict[str, Any]]:
    """Gather a batch as an event source mapping does: up to BatchSize messages, waiting at
    most MaximumBatchingWindowInSeconds for more once the first has arrived."""
    batch: list[dict[str, Any]] = sqs.receive_message(
        QueueUrl=source.queue_url,
        MaxNumberOfMessages=min(source.batch_size, 10),
        WaitTimeSeconds=wait_seconds,
        AttributeNames=["All"],
    ).get("Messages", [])
    window_ends = time.monotonic() + source.batching_window_seconds
    while batch and len(batch) < source.batch_size and time.monotonic() < window_ends:
        wanted = min(source.batch_size - len(batch), 10)
        more = sqs.receive_message(
            QueueUrl=source.queue_url, MaxNumberOfMessages=wanted, AttributeNames=["All"]
        ).get("Messages", [])
        if len(more) < wanted:  # the queue is empty for now: let more arrive before asking again
            time.sleep(max(0.0, min(BATCH_POLL_SECONDS, window_ends - time.monotonic())))
        batch += more
    return batch


def process_batch(
    sqs: Any, function: Function, handler: Handler, source: SqsSource, messages: list[dict[str, Any]]
) -> set[str]:
    """Invoke the handler with the batch, then delete what it did not report in
    batchItemFailures (a crashed invocation leaves the whole batch). Returns the failed ids."""
    try:
        response = invoke(function, handler, sqs_event(source, messages)) or {}
        failed = {f["itemIdentifier"] for f in response.get("batchItemFailures", [])}
    except Exception:
        failed = {m["MessageId"] for m in messages}
    done = [m for m in messages if m["MessageId"] not in failed]
    for start in range(0, len(done), 10):
        sqs.delete_message_batch(
            QueueUrl=source.queue_url,
            Entries=[
                {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]}
                for i, m in enumerate(done[start : start + 10])
            ],
        )
    return failed


def deliver(sqs: Any, function: Function, handler: Handler, source: SqsSource, wait_seconds: int = 0) -> int:
    """One poll of an event source mapping; returns how many messages were delivered."""
    messages = receive(sqs, source, wait_seconds)
    if messages:
        process_batch(sqs, function, handler, source, messages)
    return len(messages)


class StreamPoller:
    """A DynamoDB stream event source mapping: the table's changes, in order, in batches of at
    most BatchSize. A batch whose invocation fails is offered again exactly as it was, and skipped
    after MaximumRetryAttempts (-1: never), as Lambda does. The emulator has one shard."""

    def __init__(self, streams: Any, function: Function, source: StreamSource) -> None:
        self.streams = streams
        self.function = function
        self.source = source
        shard = streams.describe_stream(StreamArn=source.stream_arn)["StreamDescription"]["Shards"][0]
        self.iterator: str = streams.get_shard_iterator(
            StreamArn=source.stream_arn, ShardId=shard["ShardId"], ShardIteratorType=source.starting_position
        )["ShardIterator"]
        self.failed: tuple[list[dict[str, Any]], str] | None = None  # a batch to offer again
        self.attempts = 0

    def deliver(self, handler: Handler) -> int:
        """Offer one batch; how many records it held (0: nothing new)."""
        if self.failed is not None:
            records, following = self.failed
        else:
            page = self.streams.get_records(
                ShardIterator=self.iterator, Limit=min(self.source.batch_size, 1000)
            )
            records, following = (
                [self.as_event_record(r) for r in page["Records"]],
                page["NextShardIterator"],
            )
            if not records:
                self.iterator = following
                return 0
        try:
            invoke(self.function, handler, {"Records": records})
        except Exception:
            self.attempts += 1
            retries = self.source.maximum_retry_attempts
            if retries < 0 or self.attempts <= retries:
                self.failed = (records, following)
                raise
        self.failed, self.attempts, self.iterator = None, 0, following
        return len(records)

    def as_event_record(self, record: dict[str, Any]) -> dict[str, Any]:
        """What Lambda adds to a GetRecords record: the stream ARN, and the time as a number."""
        changes = dict(record["dynamodb"])
        created = changes.get("ApproximateCreationDateTime")
        if isinstance(created, datetime):
            changes["ApproximateCreationDateTime"] = created.timestamp()
        return {**record, "dynamodb": changes, "eventSourceARN": self.source.stream_arn}
