"""The local stack's concurrency pieces: the API's environment pool, whole log lines from many
threads, and the emulator's fast answers, which must parse exactly as moto's own."""

from __future__ import annotations

import io
import json
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError
from moto import mock_aws

from tarefa.local import cli, emulator, environments
from tarefa.local.emulator import fast_dynamodb_results, fast_stream_records
from tarefa.local.environments import EnvironmentPool, NoEnvironmentError
from tarefa.local.provision import Function


# -- the environment pool ----------------------------------------------------------------------
def _function() -> Function:
    return Function("Fn", Path("."), "app.handler", 10, 128, {})


def _pool(size: int) -> EnvironmentPool:
    def load(function: Function) -> Callable[[dict[str, Any], Any], Any]:
        return lambda event, context: event  # a new closure each time: a new "module copy"

    return EnvironmentPool(_function(), size, load)


def test_each_environment_is_its_own_handler_and_a_busy_one_is_not_handed_out() -> None:
    pool = _pool(3)
    with pool.lease() as first, pool.lease() as second, pool.lease() as third:
        assert len({id(first.handler), id(second.handler), id(third.handler)}) == 3
        assert {first.number, second.number, third.number} == {1, 2, 3}
        assert pool.free == 0
    assert pool.free == 3


def test_a_request_that_finds_none_free_waits_and_gets_the_next_one_freed() -> None:
    pool = _pool(1)
    got: list[int] = []
    with pool.lease() as only:
        waiter = threading.Thread(target=lambda: got.append(_take(pool)))
        waiter.start()
        _until(lambda: pool.waiting == 1)
        assert not got  # still waiting while the only environment is busy
    waiter.join(10)
    assert got == [only.number]


def test_waiters_are_served_first_come_first_served() -> None:
    pool = _pool(1)
    order: list[str] = []

    def wait_then_note(name: str) -> None:
        _take(pool)
        order.append(name)

    with pool.lease():
        threads = []
        for queued, name in enumerate(("a", "b", "c"), start=1):
            thread = threading.Thread(target=wait_then_note, args=(name,))
            thread.start()
            threads.append(thread)
            _until(lambda queued=queued: pool.waiting == queued)  # type: ignore[misc]  # each before the next
    for thread in threads:
        thread.join(10)
    assert order == ["a", "b", "c"]


def test_no_environment_within_the_timeout_is_an_error_and_leaves_the_pool_whole() -> None:
    pool = _pool(1)
    with pool.lease(), pytest.raises(NoEnvironmentError), pool.lease(timeout=0.05):
        pass
    assert pool.waiting == 0 and pool.free == 1


def test_an_environment_whose_request_failed_goes_back_to_the_pool() -> None:
    pool = _pool(1)
    with pytest.raises(RuntimeError), pool.lease():
        raise RuntimeError("the handler raised")
    assert pool.free == 1


def test_a_pool_needs_an_environment() -> None:
    with pytest.raises(ValueError):
        _pool(0)


def _take(pool: EnvironmentPool) -> int:
    with pool.lease(timeout=10) as lease:
        return lease.number


def _until(condition: Callable[[], bool], timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition never held"
        time.sleep(0.005)


def test_two_resolvers_serving_at_once_each_read_their_own_event() -> None:
    # Given two copies of a function (a resolver each) sharing a workload's router, as the
    # module copies of one function do, with Powertools' request state made per thread
    from aws_lambda_powertools.event_handler import APIGatewayHttpResolver
    from aws_lambda_powertools.event_handler.router import APIGatewayHttpRouter

    environments.isolate_router_state()
    environments.isolate_router_state()  # idempotent
    router = APIGatewayHttpRouter()  # type: ignore[no-untyped-call]
    inside = threading.Barrier(2, timeout=10)

    def subject() -> str:
        return str(router.current_event.request_context.authorizer.jwt_claim["sub"])

    @router.get("/me")
    def me() -> dict[str, Any]:
        before = subject()
        inside.wait()  # both requests are being served now
        return {"before": before, "after": subject()}

    copies = []
    for _ in range(2):
        app = APIGatewayHttpResolver()
        app.include_router(router)
        copies.append(app)
    answers: dict[str, Any] = {}

    def serve(app: APIGatewayHttpResolver, user: str) -> None:
        answers[user] = app.resolve(_http_event("/me", user), None)  # type: ignore[arg-type]

    # When each serves another user's request at the same time
    threads = [
        threading.Thread(target=serve, args=(app, user))
        for app, user in zip(copies, ("ana", "bia"), strict=True)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    # Then each read its own user's claims, before and after the other's request arrived
    for user in ("ana", "bia"):
        assert answers[user]["statusCode"] == 200
        assert json.loads(answers[user]["body"]) == {"before": user, "after": user}


def _http_event(path: str, user: str) -> dict[str, Any]:
    from tarefa.local.runtime import http_event

    return http_event("GET", path, f"GET {path}", {}, "", {}, b"", "127.0.0.1", {"sub": user})


# -- the command line ---------------------------------------------------------------------------
def test_the_cli_default_is_the_pools() -> None:
    assert cli.DEFAULT_API_CONCURRENCY == environments.DEFAULT_API_CONCURRENCY


def test_api_concurrency_below_one_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["local", "--api-concurrency", "0"]) == 2
    assert "--api-concurrency must be at least 1" in capsys.readouterr().err


def test_lines_written_by_many_threads_stay_whole() -> None:
    sink = io.StringIO()
    writer = cli.LineAtomicWriter(sink)

    def speak(name: str) -> None:
        for i in range(200):
            print(name, "says", i, file=writer)  # print writes the text and "\n" apart

    threads = [threading.Thread(target=speak, args=(n,)) for n in ("ana", "bia", "caio", "duda")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    lines = sink.getvalue().splitlines()
    assert len(lines) == 800
    assert all(len(line.split()) == 3 and line.split()[1] == "says" for line in lines)


# -- the emulator's fast answers ------------------------------------------------------------------
ITEM = {
    "pk": {"S": "job#1"},
    "sk": {"N": "1"},
    "number": {"N": "1.5"},
    "map": {"M": {"list": {"L": [{"S": "olá ✓"}, {"NULL": True}, {"BOOL": False}]}}},
    "blob": {"B": b"\x00\x01bytes"},
    "strings": {"SS": ["p", "q"]},
    "numbers": {"NS": ["1", "2"]},
    "blobs": {"BS": [b"z"]},
    "owner": {"S": "alice"},
}


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Any, str]]:
    for name, value in {"AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "x"}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    with mock_aws():
        dynamodb = boto3.client("dynamodb", region_name="us-east-1")
        table = dynamodb.create_table(
            TableName="t",
            KeySchema=[
                {"AttributeName": "pk", "KeyType": "HASH"},
                {"AttributeName": "sk", "KeyType": "RANGE"},
            ],
            AttributeDefinitions=[
                {"AttributeName": "pk", "AttributeType": "S"},
                {"AttributeName": "sk", "AttributeType": "N"},
                {"AttributeName": "owner", "AttributeType": "S"},
            ],
            GlobalSecondaryIndexes=[
                {
                    "IndexName": "byOwner",
                    "KeySchema": [{"AttributeName": "owner", "KeyType": "HASH"}],
                    "Projection": {"ProjectionType": "ALL"},
                }
            ],
            BillingMode="PAY_PER_REQUEST",
            StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"},
        )
        yield dynamodb, table["TableDescription"]["LatestStreamArn"]


def _answers(dynamodb: Any) -> list[Any]:
    """The job path's calls, each answer as botocore parses it (errors by code and body)."""
    key = {"pk": {"S": "job#1"}, "sk": {"N": "1"}}
    calls: list[Callable[[], Any]] = [
        lambda: dynamodb.put_item(TableName="t", Item=ITEM, ReturnConsumedCapacity="TOTAL"),
        lambda: dynamodb.put_item(TableName="t", Item={**ITEM, "number": {"N": "2"}}, ReturnValues="ALL_OLD"),
        lambda: dynamodb.get_item(TableName="t", Key=key, ConsistentRead=True),
        lambda: dynamodb.get_item(TableName="t", Key={"pk": {"S": "none"}, "sk": {"N": "0"}}),
        lambda: dynamodb.get_item(
            TableName="t",
            Key=key,
            ProjectionExpression="#m.#l[0]",
            ExpressionAttributeNames={"#m": "map", "#l": "list"},
        ),
        lambda: dynamodb.update_item(
            TableName="t",
            Key=key,
            UpdateExpression="ADD #n :one SET attempts = :one",
            ExpressionAttributeNames={"#n": "number"},
            ExpressionAttributeValues={":one": {"N": "1"}},
            ReturnValues="ALL_NEW",
            ReturnConsumedCapacity="INDEXES",
        ),
        lambda: dynamodb.update_item(
            TableName="t",
            Key=key,
            UpdateExpression="SET attempts = :two",
            ExpressionAttributeValues={":two": {"N": "2"}},
            ReturnValues="UPDATED_OLD",
        ),
        lambda: dynamodb.update_item(
            TableName="t",
            Key=key,
            UpdateExpression="SET attempts = :three",
            ConditionExpression="attempts = :nine",
            ExpressionAttributeValues={":three": {"N": "3"}, ":nine": {"N": "9"}},
            ReturnValuesOnConditionCheckFailure="ALL_OLD",
        ),
        lambda: dynamodb.put_item(TableName="t", Item={**ITEM, "sk": {"N": "2"}}),
        lambda: dynamodb.query(
            TableName="t",
            KeyConditionExpression="pk = :pk",
            ExpressionAttributeValues={":pk": {"S": "job#1"}},
            Limit=1,
            ScanIndexForward=False,
        ),
        lambda: dynamodb.query(
            TableName="t",
            IndexName="byOwner",
            KeyConditionExpression="#o = :o",
            ExpressionAttributeNames={"#o": "owner"},
            ExpressionAttributeValues={":o": {"S": "alice"}},
            Select="COUNT",
        ),
        lambda: dynamodb.delete_item(TableName="t", Key=key, ReturnValues="ALL_OLD"),
        lambda: dynamodb.delete_item(TableName="t", Key={"pk": {"S": "job#1"}, "sk": {"N": "2"}}),
    ]
    answers = []
    for call in calls:
        try:
            answer = call()
            answer.pop("ResponseMetadata")
            answers.append(answer)
        except ClientError as exc:
            answers.append({"error": exc.response["Error"], "item": exc.response.get("Item")})
    return answers


def _truncate(dynamodb: Any) -> None:
    for item in dynamodb.scan(TableName="t")["Items"]:
        dynamodb.delete_item(TableName="t", Key={"pk": item["pk"], "sk": item["sk"]})


@pytest.fixture
def converted(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """The values the fast answers converted (blobs): proof that they, not moto's, answered."""
    seen: list[object] = []
    original = emulator._wire_json

    def counting(value: object) -> object:
        seen.append(value)
        return original(value)

    monkeypatch.setattr(emulator, "_wire_json", counting)
    return seen


def test_dynamodb_fast_answers_parse_as_moto_s_own(aws: tuple[Any, str], converted: list[object]) -> None:
    dynamodb, _ = aws
    expected = _answers(dynamodb)
    _truncate(dynamodb)
    assert not converted
    undo = fast_dynamodb_results()
    try:
        fast = _answers(dynamodb)
    finally:
        undo()
    assert fast == expected
    assert converted  # the fast path answered
    assert any("error" in answer for answer in expected)  # the error path was exercised too


def test_stream_fast_records_parse_as_moto_s_own(aws: tuple[Any, str], converted: list[object]) -> None:
    dynamodb, stream_arn = aws
    _answers(dynamodb)  # inserts, modifications and removals, every attribute type
    streams = boto3.client(
        "dynamodbstreams", region_name="us-east-1", config=Config(account_id_endpoint_mode="disabled")
    )
    shard = streams.describe_stream(StreamArn=stream_arn)["StreamDescription"]["Shards"][0]["ShardId"]

    def records() -> Any:
        iterator = streams.get_shard_iterator(
            StreamArn=stream_arn, ShardId=shard, ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        page = streams.get_records(ShardIterator=iterator, Limit=1000)
        following = streams.get_records(ShardIterator=page["NextShardIterator"])  # the iterator works
        return page["Records"], following["Records"]

    expected = records()
    assert not converted
    undo = fast_stream_records()
    try:
        fast = records()
    finally:
        undo()
    assert fast == expected
    assert converted  # the fast path answered (datetimes and blobs)
    assert {r["eventName"] for r in expected[0]} == {"INSERT", "MODIFY", "REMOVE"}


def test_the_fast_retention_check_drops_what_moto_s_own_drops(monkeypatch: pytest.MonkeyPatch) -> None:
    from moto.sqs.models import sqs_backends

    for name, value in {"AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "x"}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)

    def received(fast: bool) -> list[str]:
        with mock_aws():
            sqs = boto3.client("sqs", region_name="us-east-1")
            url = sqs.create_queue(QueueName="q", Attributes={"MessageRetentionPeriod": "60"})["QueueUrl"]
            for body in ("fresh", "stale"):
                sqs.send_message(QueueUrl=url, MessageBody=body)
            queue = sqs_backends["123456789012"]["us-east-1"].get_queue("q")
            stale = next(m for m in queue._messages if m.body == "stale")
            stale.sent_timestamp = int(time.time() * 1000) - 61_000  # type: ignore[assignment]  # past retention
            undo = emulator.fast_retention_check() if fast else (lambda: None)
            try:
                messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", [])
            finally:
                undo()
            return sorted(m["Body"] for m in messages)

    assert received(fast=True) == received(fast=False) == ["fresh"]
