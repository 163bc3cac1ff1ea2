"""`make bench-payments`: what a payment costs on AWS, and how many the local stack approves a minute.

1. An approved card payment (`POST /payments` with card token APRO, its `payments.process` job,
   the webhook the sandbox sends (`payment.created`, handed to `POST /webhooks/payments`) and its
   `payments.webhook` job, and the stats stream consumer), on moto in this process with the
   Mercado Pago sandbox on loopback: every AWS request by kind (operation, table, queue), the
   DynamoDB write and read units by table and index, Lambda invocations and GB-seconds, and $ per
   million payments. Measured as a burst (all payments submitted, then the queues drained: the
   worker gets full batches of 10, as under load) and one at a time (batches of 1: a trickle).
2. A PIX payment paid on the N-th poll (payer `paid-after-N@bench.example`, N = 1 and 3): the same
   figures per payment; time moves with a clock (and SQS's timers made to pass), never slept.
3. `tarefa local` as a subprocess with its payments sandbox: card payments POSTed by a few client
   threads for a minute, and how many reach APPROVED a minute (from each payment's updatedAt in
   the listing at the end), with the submit latency and the CPU the stack and its emulator used.
   Not run (and said so) when the stack does not take and approve a probe payment.

How each figure is counted:
- AWS requests: every call any boto3 client in the process makes (`BaseClient._make_api_call`),
  while a scenario is measured (not its set-up or the checks after it). The emulator's own calls
  (the event source mappings' state, DynamoDB Streams' GetRecords, which Lambda does not bill)
  are listed apart; an SQS receive by an event source mapping that found nothing is idle polling,
  a cost per queue and hour, not per payment, and is listed apart too.
- DynamoDB units from the items moto holds before and after each call: a write is the larger of
  the old and new item in 1 KB units (twice in a transaction); a global secondary index is
  written when the item enters, leaves or changes in it (its projection: KEYS_ONLY only on a key
  change, ALL on any change), a key change being a delete and a put; a strongly consistent read is
  4 KB units (an eventual one half), at least one unit even when nothing is found.
- Lambda: each invocation's wall time in this process (as bench/run.py: the emulator's calls are
  in it, so it is moto's latency, not DynamoDB's), rounded up to the millisecond, times the
  function's memory; the log bytes the handlers write plus Lambda's own lines. Where the time
  went is split out (moto's calls, the gateway, the handler's own). moto copies every table a
  TransactWriteItems touches, so its calls slow as the tables grow: payments are measured in
  bursts of ROUND_SIZE, each on a fresh stack, which keeps that share level.
- Secrets Manager: Powertools caches a secret for 5 minutes per execution environment, and in
  this process every function shares one cache, so the calls seen are meaningless. Counted
  instead: the invocations that look the secret up (each would read it in a fresh environment:
  the worst case), and, for the total, the amortised figure: every environment of a function that
  reads it does so once per 5 minutes, and at `AMORTISE_AT_PER_MINUTE` payments a minute a
  function needs the environments its measured busy time gives (Little's law, at least one).
- The gateway: its calls per payment are counted; the sandbox answers in a few milliseconds, a
  real Mercado Pago in hundreds, during which the worker's Lambda is billed: the table gives the
  $ per million payments that each 100 ms of gateway latency adds.

Writes bench/results.json under "payments", keeping every other key. Reports; never fails.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import io
import json
import math
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
import traceback
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results.json"
PRICES: dict[str, float] = {
    k: v["usd"] for k, v in json.loads((ROOT / "bench" / "prices.json").read_text())["prices"].items()
}
# Not (yet) in prices.json; a key of the same name there wins.
EXTRA_PRICES = {
    # https://aws.amazon.com/secrets-manager/pricing/: $0.05 per 10,000 API calls
    "secretsmanager_api_call": 0.05 / 10_000,
    # https://aws.amazon.com/kms/pricing/: $0.03 per 10,000 requests (symmetric keys)
    "kms_request": 0.03 / 10_000,
}
ACCOUNT, REGION = "123456789012", "us-east-1"  # moto's
LAMBDA_LOG_LINES_BYTES = 260  # START, END and REPORT lines Lambda writes for every invocation
SECRET_CACHE_SECONDS = 300  # Powertools' max_age, as tarefa.wiring asks for it
AMORTISE_AT_PER_MINUTE = 1_000  # the seed's sustained rate
CARD_PAYMENTS = 200
ROUND_SIZE = 50  # payments per burst, each burst on a fresh stack (see `measured`)
CARD_ONE_AT_A_TIME = 20
PIX_PAYMENTS = 40
PIX_POLLS = (1, 3)
LOCAL_SECONDS = 60.0
LOCAL_CLIENTS = (4,)  # client threads; `--clients 4,8` runs each in turn
BACKLOG_TIMEOUT_SECONDS = 120  # after the window, for the jobs still queued
PAYMENTS_PER_USER = 400  # under the enqueue limit (600 a minute per user) whatever the rate
WEBHOOK_SOURCE_IP = "203.0.113.7"


def price(name: str) -> float:
    return PRICES.get(name, EXTRA_PRICES.get(name, 0.0))


def machine() -> dict[str, Any]:
    model = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    nproc = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 0
    return {
        "nproc": nproc,
        "cpu": model,
        "arch": platform.machine(),
        "python": platform.python_version(),
    }


def percentile(values: list[float], share: float) -> float:
    """Nearest rank: with 200 samples, p95 is the 190th fastest."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), math.ceil(share * len(ordered))))
    return ordered[rank - 1]


# ------------------------------------------------------------------------------- DynamoDB sizes
def _number_size(text: str) -> int:
    digits = text.strip().lstrip("-+").lower().split("e")[0].replace(".", "").strip("0")
    return (max(len(digits), 1) + 1) // 2 + 1


def value_size(value: dict[str, Any]) -> int:
    """An attribute value's size as DynamoDB bills it."""
    ((kind, v),) = value.items()
    if kind == "S":
        return len(str(v).encode())
    if kind == "N":
        return _number_size(str(v))
    if kind == "B":
        return len(v) if isinstance(v, bytes | bytearray) else len(str(v).encode())
    if kind in ("BOOL", "NULL"):
        return 1
    if kind == "M":
        return 3 + sum(len(k.encode()) + value_size(x) + 1 for k, x in v.items())
    if kind == "L":
        return 3 + sum(value_size(x) + 1 for x in v)
    if kind == "SS":
        return sum(len(s.encode()) for s in v)
    if kind == "NS":
        return sum(_number_size(str(n)) for n in v)
    if kind == "BS":
        return sum(len(b) for b in v)
    return len(str(v).encode())


def item_size(item: dict[str, Any] | None) -> int:
    if not item:
        return 0
    return sum(len(name.encode()) + value_size(value) for name, value in item.items())


def write_units(size: int) -> int:
    return max(1, math.ceil(size / 1024))


def read_units(size: int, consistent: bool) -> float:
    return max(1, math.ceil(size / 4096)) * (1.0 if consistent else 0.5)


@dataclass(frozen=True)
class Index:
    name: str
    keys: tuple[str, ...]
    projection: str  # ALL, KEYS_ONLY or INCLUDE
    attributes: frozenset[str]  # what it holds besides the keys (INCLUDE)


class Tables:
    """moto's tables, read directly (no request is made, so nothing is counted)."""

    def __init__(self, logical: dict[str, str]) -> None:
        self.logical = logical  # physical name -> the template's logical id

    def _table(self, name: str) -> Any:
        from moto.dynamodb.models import dynamodb_backends

        return dynamodb_backends[ACCOUNT][REGION].get_table(name)

    def key_of(self, name: str, item: dict[str, Any]) -> dict[str, Any]:
        table = self._table(name)
        keys = [table.hash_key_attr] + ([table.range_key_attr] if table.range_key_attr else [])
        return {k: item[k] for k in keys if k in item}

    def stored(self, name: str, key: dict[str, Any]) -> dict[str, Any] | None:
        from moto.dynamodb.models.dynamo_type import DynamoType

        table = self._table(name)
        if table.hash_key_attr not in key:
            return None
        hash_key = DynamoType(key[table.hash_key_attr])
        range_key = DynamoType(key[table.range_key_attr]) if table.range_key_attr else None
        found = table.get_item(hash_key, range_key)
        if found is None:
            return None
        return {k: v.to_regular_json() for k, v in found.attrs.items()}

    def indexes(self, name: str) -> list[Index]:
        table = self._table(name)
        table_keys = [table.hash_key_attr] + ([table.range_key_attr] if table.range_key_attr else [])
        found = []
        for index in getattr(table, "global_indexes", []) or []:
            projection = (index.projection or {}).get("ProjectionType", "ALL")
            found.append(
                Index(
                    index.name,
                    tuple(dict.fromkeys([*index.schema_key_attrs, *table_keys])),
                    projection,
                    frozenset((index.projection or {}).get("NonKeyAttributes", [])),
                )
            )
        return found


def projected(index: Index, item: dict[str, Any]) -> dict[str, Any]:
    if index.projection == "ALL":
        return item
    return {k: v for k, v in item.items() if k in index.keys or k in index.attributes}


def index_writes(index: Index, old: dict[str, Any] | None, new: dict[str, Any] | None) -> int:
    """Write units an item's change costs one global secondary index."""
    main_keys = index.keys[: len(index.keys)]
    had = old is not None and all(k in old for k in main_keys)
    has = new is not None and all(k in new for k in main_keys)
    if not had and not has:
        return 0
    if had and not has:
        assert old is not None
        return write_units(item_size(projected(index, old)))
    if has and not had:
        assert new is not None
        return write_units(item_size(projected(index, new)))
    assert old is not None and new is not None
    before, after = projected(index, old), projected(index, new)
    if any(old[k] != new[k] for k in main_keys):  # a key change: a delete and a put
        return write_units(item_size(before)) + write_units(item_size(after))
    if before == after:
        return 0
    return write_units(max(item_size(before), item_size(after)))


# ------------------------------------------------------------------------------------- metering
@dataclass
class Invocation:
    function: str
    source: str  # the route, the queue or "stream"
    memory_mb: int
    ms: float
    records: int
    secret_lookups: int
    aws_ms: float  # of `ms`, in AWS calls (the emulator's time: not AWS's latency)
    gateway_ms: float  # of `ms`, waiting for the gateway (the sandbox, on loopback)


@dataclass
class Meter:
    """Every AWS request and Lambda invocation while `active`, with DynamoDB's capacity units."""

    tables: Tables = field(default_factory=lambda: Tables({}))
    queues: dict[str, str] = field(default_factory=dict)  # queue URL -> logical id
    poller_clients: set[int] = field(default_factory=set)  # the event source mappings' SQS client
    emulator_clients: set[int] = field(default_factory=set)  # the emulator's own (mappings, streams)
    active: bool = False
    calls: Counter[str] = field(default_factory=Counter)
    idle: Counter[str] = field(default_factory=Counter)  # empty receives by the mappings
    emulation: Counter[str] = field(default_factory=Counter)
    wru: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    index_wru: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    rru: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    sqs_billed: float = 0.0
    invocations: list[Invocation] = field(default_factory=list)
    gateway_calls: Counter[str] = field(default_factory=Counter)
    gateway_ms: list[float] = field(default_factory=list)
    failed_calls: Counter[str] = field(default_factory=Counter)
    _lookups: int = 0
    _aws_ms: float = 0.0
    _gateway_ms: float = 0.0
    _in_invocation: bool = False

    # -- hooks ---------------------------------------------------------------------------
    @contextlib.contextmanager
    def installed(self) -> Iterator[Meter]:
        import botocore.client
        from aws_lambda_powertools.utilities import parameters

        import tarefa.local.app as app_module
        import tarefa.local.runtime as runtime_module
        from tarefa.outbound import OutboundHttp

        meter = self
        make_api_call = getattr(botocore.client.BaseClient, "_make_api_call")  # noqa: B009 - private, untyped
        invoke = runtime_module.invoke
        get_secret = parameters.get_secret
        request = OutboundHttp.request

        def metered_call(client: Any, operation: str, params: dict[str, Any]) -> Any:
            if not meter.active:
                return make_api_call(client, operation, params)
            started = time.perf_counter()
            try:
                return meter.call(client, operation, params, lambda: make_api_call(client, operation, params))
            finally:
                if meter._in_invocation:
                    meter._aws_ms += (time.perf_counter() - started) * 1000

        def timed_invoke(function: Any, handler: Any, event: dict[str, Any]) -> Any:
            if not meter.active:
                return invoke(function, handler, event)
            meter._lookups, meter._aws_ms, meter._gateway_ms = 0, 0.0, 0.0
            meter._in_invocation = True
            started = time.perf_counter()
            try:
                return invoke(function, handler, event)
            finally:
                ms = (time.perf_counter() - started) * 1000
                meter._in_invocation = False
                meter.invocations.append(
                    Invocation(
                        function.logical_id,
                        _source_of(event, meter.queues),
                        function.memory_mb,
                        ms,
                        len(event.get("Records") or []),
                        meter._lookups,
                        meter._aws_ms,
                        meter._gateway_ms,
                    )
                )

        def counted_secret(*args: Any, **kwargs: Any) -> Any:
            meter._lookups += 1
            return get_secret(*args, **kwargs)

        def counted_request(http: Any, method: str, url: str, *args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return request(http, method, url, *args, **kwargs)
            finally:
                if meter.active:
                    purpose = (kwargs.get("headers") or {}).get("X-Tarefa-Read", "")
                    meter.gateway_calls[f"{method} {'poll' if purpose == 'poll' else ''}".strip()] += 1
                    took = (time.perf_counter() - started) * 1000
                    meter.gateway_ms.append(took)
                    meter._gateway_ms += took

        patches: list[tuple[Any, str, Any]] = [
            (botocore.client.BaseClient, "_make_api_call", metered_call),
            (runtime_module, "invoke", timed_invoke),
            (app_module, "invoke", timed_invoke),
            (parameters, "get_secret", counted_secret),
            (OutboundHttp, "request", counted_request),
        ]
        originals = [(target, name, getattr(target, name)) for target, name, _ in patches]
        for target, name, value in patches:
            setattr(target, name, value)
        try:
            yield self
        finally:
            self.active = False
            for target, name, value in originals:
                setattr(target, name, value)

    def call(self, client: Any, operation: str, params: dict[str, Any], send: Callable[[], Any]) -> Any:
        from botocore.exceptions import ClientError

        service = client.meta.service_model.service_name
        if id(client) in self.emulator_clients or service == "dynamodbstreams":
            self.emulation[f"{service} {operation}"] += 1
            return send()
        before = self._before(service, operation, params)
        try:
            result = send()
        except ClientError as exc:
            label = self._label(service, operation, params, None, id(client) in self.poller_clients)
            self.calls[label] += 1
            self.failed_calls[f"{label} ({exc.response.get('Error', {}).get('Code', '?')})"] += 1
            self._after(service, operation, params, before, None, failed=True)
            raise
        label = self._label(service, operation, params, result, id(client) in self.poller_clients)
        if label.startswith("sqs ReceiveMessage") and not result.get("Messages"):
            self.idle[label] += 1
        else:
            self.calls[label] += 1
            if service == "sqs":
                self._sqs_billing(params)
        self._after(service, operation, params, before, result, failed=False)
        return result

    # -- labels --------------------------------------------------------------------------
    def _table(self, name: str) -> str:
        return self.tables.logical.get(name, name)

    def _label(
        self, service: str, operation: str, params: dict[str, Any], result: Any, by_poller: bool
    ) -> str:
        if service == "dynamodb":
            names = _table_names(operation, params)
            where = "+".join(sorted({self._table(n) for n in names}))
            if operation in ("Query", "Scan") and params.get("IndexName"):
                where += f"/{params['IndexName']}"
            return f"dynamodb {operation} {where}".strip()
        if service == "sqs":
            url = params.get("QueueUrl", "")
            queue = self.queues.get(url, url.rsplit("/", 1)[-1])
            who = " (event source mapping)" if by_poller else ""
            return f"sqs {operation} {queue}{who}"
        return f"{service} {operation}"

    def _sqs_billing(self, params: dict[str, Any]) -> None:
        chunks = [e.get("MessageBody", "") for e in params.get("Entries", [])] or [
            params.get("MessageBody", "")
        ]
        self.sqs_billed += max(1, math.ceil(sum(len(str(c).encode()) for c in chunks) / 65_536))

    # -- DynamoDB units --------------------------------------------------------------------
    def _before(self, service: str, operation: str, params: dict[str, Any]) -> list[tuple[str, Any, Any]]:
        """(table, key, old item) of each item a write touches, read before it."""
        if service != "dynamodb":
            return []
        touched: list[tuple[str, Any, Any]] = []
        for table, key in _written_keys(self.tables, operation, params):
            touched.append((table, key, self.tables.stored(table, key)))
        return touched

    def _after(
        self,
        service: str,
        operation: str,
        params: dict[str, Any],
        before: list[tuple[str, Any, Any]],
        result: Any,
        failed: bool,
    ) -> None:
        if service != "dynamodb":
            return
        factor = 2.0 if operation.startswith("Transact") else 1.0
        if operation in ("PutItem", "UpdateItem", "DeleteItem", "TransactWriteItems", "BatchWriteItem"):
            sent = _sent_items(operation, params)
            for n, (table, key, old) in enumerate(before):
                new = None if failed else self.tables.stored(table, key)
                attempted = sent[n] if n < len(sent) else None
                size = max(item_size(old), item_size(new), item_size(attempted))
                logical = self._table(table)
                self.wru[logical] += factor * write_units(size)
                if failed:
                    continue
                for index in self.tables.indexes(table):
                    units = index_writes(index, old, new)
                    if units:
                        self.index_wru[f"{logical}/{index.name}"] += units
        elif operation == "GetItem":
            name = params["TableName"]
            size = item_size(self.tables.stored(name, params["Key"]))
            self.rru[self._table(name)] += read_units(size, bool(params.get("ConsistentRead")))
        elif operation in ("BatchGetItem", "TransactGetItems"):
            for name, key, consistent in _read_keys(operation, params):
                size = item_size(self.tables.stored(name, key))
                self.rru[self._table(name)] += factor * read_units(size, consistent)
        elif operation in ("Query", "Scan") and result is not None:
            items = result.get("Items", [])
            size = sum(item_size(i) for i in items)
            scanned, count = result.get("ScannedCount", len(items)), max(result.get("Count", len(items)), 1)
            if scanned > count and items:  # the filter's discarded items were read too
                size = size * scanned // count
            where = self._table(params["TableName"])
            if params.get("IndexName"):
                where += f"/{params['IndexName']}"
            self.rru[where] += read_units(size, bool(params.get("ConsistentRead")))


def _table_names(operation: str, params: dict[str, Any]) -> list[str]:
    if "TableName" in params:
        return [params["TableName"]]
    if operation in ("TransactWriteItems", "TransactGetItems"):
        return [next(iter(e.values()))["TableName"] for e in params.get("TransactItems", [])]
    if operation in ("BatchWriteItem", "BatchGetItem"):
        return list(params.get("RequestItems", {}))
    return []


def _written_keys(tables: Tables, operation: str, params: dict[str, Any]) -> list[tuple[str, Any]]:
    if operation == "PutItem":
        return [(params["TableName"], tables.key_of(params["TableName"], params["Item"]))]
    if operation in ("UpdateItem", "DeleteItem"):
        return [(params["TableName"], params["Key"])]
    if operation == "TransactWriteItems":
        keys = []
        for entry in params["TransactItems"]:
            ((kind, body),) = entry.items()
            key = tables.key_of(body["TableName"], body["Item"]) if kind == "Put" else body["Key"]
            keys.append((body["TableName"], key))
        return keys
    if operation == "BatchWriteItem":
        keys = []
        for name, requests in params["RequestItems"].items():
            for request in requests:
                if "PutRequest" in request:
                    keys.append((name, tables.key_of(name, request["PutRequest"]["Item"])))
                else:
                    keys.append((name, request["DeleteRequest"]["Key"]))
        return keys
    return []


def _sent_items(operation: str, params: dict[str, Any]) -> list[dict[str, Any] | None]:
    if operation == "PutItem":
        return [params["Item"]]
    if operation == "TransactWriteItems":
        return [e.get("Put", {}).get("Item") for e in params["TransactItems"]]
    if operation == "BatchWriteItem":
        return [r.get("PutRequest", {}).get("Item") for rs in params["RequestItems"].values() for r in rs]
    return []


def _read_keys(operation: str, params: dict[str, Any]) -> list[tuple[str, Any, bool]]:
    if operation == "TransactGetItems":
        return [(e["Get"]["TableName"], e["Get"]["Key"], True) for e in params["TransactItems"]]
    return [
        (name, key, bool(ask.get("ConsistentRead")))
        for name, ask in params["RequestItems"].items()
        for key in ask["Keys"]
    ]


def _source_of(event: dict[str, Any], queues: dict[str, str]) -> str:
    if "routeKey" in event:
        return str(event["routeKey"])
    records = event.get("Records") or [{}]
    arn = str(records[0].get("eventSourceARN", ""))
    if records[0].get("eventSource") == "aws:sqs":
        name = arn.rsplit(":", 1)[-1]
        return next((q for url, q in queues.items() if url.endswith("/" + name)), name)
    if "dynamodb" in records[0]:
        return "stream"
    return "schedule"


# --------------------------------------------------------------------------- webhook receiver
@dataclass
class Notification:
    path: str
    headers: dict[str, str]
    body: bytes


class Receiver:
    """Stands where API Gateway's webhook route would be: keeps what the sandbox sends, so the
    bench hands it to the API's handler when it chooses (as the integration tests do)."""

    def __init__(self) -> None:
        self.received: list[Notification] = []
        self.lock = threading.Lock()
        box = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                note = Notification(
                    self.path, {k.lower(): v for k, v in self.headers.items()}, self.rfile.read(length)
                )
                with box.lock:
                    box.received.append(note)
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}"

    def take(self, wanted: int, timeout: float = 30.0) -> list[Notification]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if len(self.received) >= wanted:
                    break
            time.sleep(0.01)
        with self.lock:
            taken, self.received[:] = list(self.received), []
        return taken

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class Clock:
    """The time the services see (as the integration tests' Clock): moved, never slept."""

    def __init__(self) -> None:
        self.offset = timedelta()

    def __call__(self) -> datetime:
        from tarefa.job import utcnow

        return utcnow() + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += timedelta(seconds=seconds)


def let_sqs_timers_pass() -> None:
    """moto keeps real time for message delays and visibility: make them all pass now."""
    from moto.backends import get_backend

    backend = get_backend("sqs")[ACCOUNT][REGION]
    for queue in backend.queues.values():
        for message in queue._messages:
            message.delay(0)
            message.change_visibility(0)


# ------------------------------------------------------------------------- the in-process stack
def _aws_environment() -> None:
    os.environ.update(
        {
            "AWS_ACCESS_KEY_ID": "bench",
            "AWS_SECRET_ACCESS_KEY": "bench",
            "AWS_DEFAULT_REGION": REGION,
            "AWS_REGION": REGION,
            "POWERTOOLS_SERVICE_NAME": "tarefa",
        }
    )
    os.environ.pop("AWS_ENDPOINT_URL", None)
    # The workload's package, as LocalApp would put it on the path (it does so only once built,
    # and the sandbox starts before). This file is not bench/payments.py on purpose: every
    # script in bench/ has bench/ first on its path, where a payments.py would hide the package.
    for path in (ROOT / "layers" / "tarefa", ROOT / "layers" / "workloads"):
        if str(path) not in sys.path:
            sys.path.insert(0, str(path))


class Harness:
    """The payments workload on moto with the sandbox, as tests/integration/payments builds it."""

    def __init__(self, meter: Meter) -> None:
        import boto3
        from aws_lambda_powertools.utilities import parameters
        from payments import jobs as payment_jobs
        from payments.local import start_sandbox

        from tarefa import wiring
        from tarefa.local.app import LocalApp

        self.receiver = Receiver()
        self.local = start_sandbox(self.receiver.url, port=0)
        parameters.clear_caches()  # type: ignore[no-untyped-call]
        payment_jobs.service.cache_clear()
        self.app = LocalApp(
            boto3.client("sqs"),
            boto3.client("dynamodb"),
            parameters={"LogLevel": "INFO", **self.local.parameters},
            batching_window=0,  # a partial batch goes at once (no real-time window to wait out)
        )
        prefix = os.environ.get("TAREFA_SECRETS_PREFIX", "")
        secrets = boto3.client("secretsmanager")
        for name, value in self.local.secrets.items():
            secrets.create_secret(Name=prefix + name, SecretString=value)
        self.clock = Clock()
        wiring.container().clock = self.clock
        payment_jobs.service().now = self.clock
        self.store = payment_jobs.service().store
        # The meter carries on from the last stack: the same names, new clients.
        self.meter = meter
        meter.tables = Tables({v: k for k, v in self.app.stack.tables.items()})
        meter.queues = {url: name for name, url in self.app.stack.queue_urls.items()}
        meter.poller_clients = {id(self.app.sqs)}
        meter.emulator_clients = {id(self.app.lambda_), id(self.app.streams)}
        self.orders = 0
        self.sent_webhooks = 0

    def close(self) -> None:
        from aws_lambda_powertools.utilities import parameters
        from payments import jobs as payment_jobs

        from tarefa import wiring

        self.local.stop()
        self.receiver.stop()
        parameters.clear_caches()  # type: ignore[no-untyped-call]
        payment_jobs.service.cache_clear()
        wiring.reset()

    def pay(self, method: str = "card", email: str = "ana@bench.example") -> str:
        self.orders += 1
        body: dict[str, Any] = {
            "orderId": f"order-{self.orders}",
            "amountCents": 12_345 if method == "card" else 5_000,
            "method": method,
            "payer": {"email": email},
        }
        if method == "card":
            body["cardToken"] = "APRO"
        claims = {"sub": f"bench-user-{self.orders // 50}"}  # under each one's enqueue limit
        answer = self.app.api("POST", "/payments", body, claims)
        if answer.status != 202:
            raise RuntimeError(f"POST /payments answered {answer.status}: {answer.body}")
        return str(answer.body["payment"]["paymentId"])

    def deliver_webhooks(self, wanted: int) -> int:
        """The sandbox's notifications (at least `wanted` of them), handed to the webhook route."""
        notes = self.receiver.take(wanted)
        for note in notes:
            headers = {k: v for k, v in note.headers.items() if k.startswith("x-") or k == "content-type"}
            answer = self.app.api("POST", note.path, note.body, headers=headers, source_ip=WEBHOOK_SOURCE_IP)
            if answer.status != 200:
                raise RuntimeError(f"the webhook route answered {answer.status}: {answer.body}")
        self.sent_webhooks += len(notes)
        return len(notes)

    def run(self, seconds: float = 0) -> None:
        """Let `seconds` pass (the clock and SQS's timers), then run what is due."""
        if seconds:
            self.clock.advance(seconds)
        let_sqs_timers_pass()
        self.app.drain()

    def statuses(self, payment_ids: list[str]) -> Counter[str]:
        found: Counter[str] = Counter()
        for payment_id in payment_ids:
            payment = self.store.get_payment(payment_id)
            found[str(payment.status) if payment else "MISSING"] += 1
        return found


@contextlib.contextmanager
def captured_stdout() -> Iterator[Callable[[], int]]:
    """What the handlers print (their JSON logs), into a file: its size is the log bytes."""
    log_file = tempfile.TemporaryFile()
    saved = os.dup(1)
    sys.stdout.flush()
    os.dup2(log_file.fileno(), 1)
    try:
        yield lambda: log_file.seek(0, io.SEEK_END)
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


def warm_up(h: Harness) -> None:
    """One card payment and its webhook, not measured: each function's first invocation (its
    imports and clients) belongs to its cold start, spread over all it serves afterwards."""
    payment_id = h.pay()
    h.app.drain()
    h.deliver_webhooks(1)
    h.app.drain()
    h.statuses([payment_id])


@dataclass
class Window:
    """What a scenario's measured windows add up to, over its rounds."""

    ids: list[str] = field(default_factory=list)
    outcome: Counter[str] = field(default_factory=Counter)
    log_bytes: int = 0
    webhooks: int = 0
    late_webhooks: int = 0
    seconds: float = 0.0


def measured(meter: Meter, count: int, round_size: int, run: Callable[[Harness, int], list[str]]) -> Window:
    """`run(harness, n)` for `count` payments, `round_size` at a time, each round on a stack of
    its own (moto copies a whole table for every transaction, so a stack that keeps growing makes
    every call slower than the last: rounds keep the emulator's share of the durations level).
    Only `run` is measured, after a warm-up."""
    from moto import mock_aws

    window = Window()
    remaining = count
    while remaining > 0:
        n = min(remaining, round_size)
        remaining -= n
        with mock_aws(), captured_stdout() as log_bytes:
            h = Harness(meter)
            try:
                warm_up(h)
                logged, webhooks_before = log_bytes(), h.sent_webhooks
                with meter.installed():
                    meter.active = True
                    started = time.perf_counter()
                    ids = run(h, n)
                    window.seconds += time.perf_counter() - started
                    meter.active = False
                window.log_bytes += log_bytes() - logged
                window.webhooks += h.sent_webhooks - webhooks_before
                window.outcome.update(h.statuses(ids))
                window.late_webhooks += len(h.receiver.take(0, timeout=0.5))  # sent after the window
                window.ids += ids
            finally:
                h.close()
    return window


def card_scenario(count: int, one_at_a_time: bool, round_size: int = ROUND_SIZE) -> dict[str, Any]:
    def burst(h: Harness, n: int) -> list[str]:
        ids = [h.pay() for _ in range(n)]
        h.app.drain()
        h.deliver_webhooks(n)  # payment.created, the one the sandbox sends for an approved card
        h.app.drain()
        return ids

    def one_by_one(h: Harness, n: int) -> list[str]:
        ids = []
        for _ in range(n):
            ids.append(h.pay())
            h.app.drain()
            h.deliver_webhooks(1)
            h.app.drain()
        return ids

    meter = Meter()
    window = measured(
        meter, count, count if one_at_a_time else round_size, one_by_one if one_at_a_time else burst
    )
    figures = summarise(meter, count, window.log_bytes)
    rounds = math.ceil(count / round_size)
    figures.update(
        {
            "payments": count,
            "mode": "one at a time" if one_at_a_time else f"{rounds} bursts of {min(count, round_size)}",
            "outcome": dict(window.outcome),
            "webhooks_per_payment": round(window.webhooks / count, 3),
            "webhooks_after_the_window": window.late_webhooks,
            "bench_seconds": round(window.seconds, 1),
        }
    )
    return figures


def pix_scenario(count: int, polls: int, round_size: int = ROUND_SIZE) -> dict[str, Any]:
    from payments.service import PIX_FIRST_POLL_SECONDS, PIX_LADDER

    def burst(h: Harness, n: int) -> list[str]:
        ids = [h.pay("pix", f"paid-after-{polls}@bench.example") for _ in range(n)]
        h.app.drain()  # the charges created: each PENDING, its verification a minute away
        h.deliver_webhooks(n)  # payment.created
        h.app.drain()
        for wait in [PIX_FIRST_POLL_SECONDS, *PIX_LADDER][:polls]:  # past each wait and its jitter
            h.run(wait * 1.1 + 1)
        h.deliver_webhooks(n)  # payment.updated, sent when the poll found it paid
        h.app.drain()
        return ids

    meter = Meter()
    window = measured(meter, count, round_size, burst)
    figures = summarise(meter, count, window.log_bytes)
    polled = sum(v for k, v in meter.gateway_calls.items() if k.endswith("poll"))
    figures.update(
        {
            "payments": count,
            "polls_per_payment": round(polled / count, 3),
            "mode": f"{math.ceil(count / round_size)} bursts of {min(count, round_size)}",
            "outcome": dict(window.outcome),
            "webhooks_per_payment": round(window.webhooks / count, 3),
            "webhooks_after_the_window": window.late_webhooks,
            "bench_seconds": round(window.seconds, 1),
        }
    )
    return figures


def summarise(meter: Meter, count: int, log_bytes: int, unit: str = "payment") -> dict[str, Any]:
    """The meter's figures per `unit` (a payment; bench/guests_bench.py: a registration)."""
    per = 1 / count
    invocations: Counter[str] = Counter(i.function for i in meter.invocations)
    by_source: dict[str, list[Invocation]] = defaultdict(list)
    for inv in meter.invocations:
        by_source[f"{inv.function} {inv.source}"].append(inv)
    gb_seconds: dict[str, float] = defaultdict(float)
    busy_ms: dict[str, float] = defaultdict(float)
    memory_gb = {i.function: i.memory_mb / 1024 for i in meter.invocations}
    for inv in meter.invocations:
        gb_seconds[inv.function] += math.ceil(inv.ms) / 1000 * memory_gb[inv.function]
        busy_ms[inv.function] += inv.ms
    http_requests = sum(1 for i in meter.invocations if " /" in i.source)
    # Secrets Manager: the lookups, and what they cost amortised over a warm environment's cache.
    uncached = sum(1 for i in meter.invocations if i.secret_lookups)
    readers = {i.function for i in meter.invocations if i.secret_lookups}
    rate = AMORTISE_AT_PER_MINUTE / 60
    environments = {f: max(1, math.ceil(rate * busy_ms[f] * per / 1000)) for f in sorted(readers)}
    amortised = sum(environments.values()) / SECRET_CACHE_SECONDS / rate  # reads per payment
    kms = sum(v for k, v in meter.calls.items() if k.startswith("kms "))
    log_total = log_bytes + LAMBDA_LOG_LINES_BYTES * len(meter.invocations)
    usd = {
        "api_gateway": http_requests * price("api_gateway_http_request"),
        "lambda_requests": len(meter.invocations) * price("lambda_request"),
        "lambda_duration": sum(gb_seconds.values()) * price("lambda_gb_second_arm64"),
        "sqs": meter.sqs_billed * price("sqs_request"),
        "dynamodb_writes_tables": sum(meter.wru.values()) * price("dynamodb_write_request_unit"),
        "dynamodb_writes_indexes": sum(meter.index_wru.values()) * price("dynamodb_write_request_unit"),
        "dynamodb_reads": sum(meter.rru.values()) * price("dynamodb_read_request_unit"),
        "secrets_manager_amortised": amortised * count * price("secretsmanager_api_call"),
        "kms": kms * price("kms_request"),
        "logs": log_total / 1e9 * price("cloudwatch_logs_gb_ingested"),
    }
    per_million = {k: round(v * per * 1e6, 3) for k, v in usd.items()}
    worker_gateway_calls = sum(meter.gateway_calls.values()) * per
    worker_gb = memory_gb.get("WorkerFunction", 0.5)
    gateway_100ms = worker_gateway_calls * 0.1 * worker_gb * price("lambda_gb_second_arm64") * 1e6
    secrets_uncached_usd = uncached * per * price("secretsmanager_api_call") * 1e6
    return {
        f"usd_per_million_{unit}s": round(sum(per_million.values()), 2),
        "usd_breakdown_per_million": per_million,
        f"aws_requests_per_{unit}": {
            **{k: round(v * per, 3) for k, v in sorted(meter.calls.items())},
            "secretsmanager GetSecretValue (amortised)": round(amortised, 6),
        },
        f"aws_requests_per_{unit}_total": round(sum(meter.calls.values()) * per + amortised, 2),
        "failed_requests": dict(meter.failed_calls),
        f"idle_receives_per_{unit}": {k: round(v * per, 3) for k, v in sorted(meter.idle.items())},
        "emulator_calls_not_billed": dict(sorted(meter.emulation.items())),
        f"sqs_billed_requests_per_{unit}": round(meter.sqs_billed * per, 3),
        f"dynamodb_wru_per_{unit}": {k: round(v * per, 3) for k, v in sorted(meter.wru.items())},
        f"dynamodb_index_wru_per_{unit}": {k: round(v * per, 3) for k, v in sorted(meter.index_wru.items())},
        f"dynamodb_rru_per_{unit}": {k: round(v * per, 3) for k, v in sorted(meter.rru.items())},
        f"lambda_invocations_per_{unit}": {k: round(v * per, 3) for k, v in sorted(invocations.items())},
        "lambda_invocations_by_source": {
            k: {
                f"per_{unit}": round(len(v) * per, 3),
                "records_per_batch": round(statistics.mean(i.records for i in v), 2)
                if v[0].records
                else None,
                "median_ms": round(statistics.median(i.ms for i in v), 2),
            }
            for k, v in sorted(by_source.items())
        },
        f"lambda_gb_seconds_per_{unit}": {k: round(v * per, 5) for k, v in sorted(gb_seconds.items())},
        f"lambda_ms_per_{unit}": split_ms(meter.invocations, per),
        f"api_gateway_requests_per_{unit}": round(http_requests * per, 3),
        "secrets_manager": {
            f"lookups_per_{unit}_uncached": round(uncached * per, 3),
            "uncached_usd_per_million": round(secrets_uncached_usd, 3),
            f"amortised_reads_per_{unit}": round(amortised, 6),
            f"amortised_at_{unit}s_per_minute": AMORTISE_AT_PER_MINUTE,
            "environments_assumed": environments,
            "how": "each environment of a function that reads the secret reads it once per "
            f"{SECRET_CACHE_SECONDS} s; environments = ceil(rate x the function's measured busy "
            f"seconds per {unit}), at least 1. Uncached: every invocation that looks it up reads it.",
        },
        f"gateway_calls_per_{unit}": {k: round(v * per, 3) for k, v in sorted(meter.gateway_calls.items())},
        "gateway_sandbox_median_ms": round(statistics.median(meter.gateway_ms), 2)
        if meter.gateway_ms
        else None,
        f"gateway_sandbox_ms_per_{unit}": round(sum(meter.gateway_ms) * per, 2),
        "usd_per_million_per_100ms_gateway_latency": round(gateway_100ms, 3),
        f"log_bytes_per_{unit}": round(log_total * per, 1),
    }


def split_ms(invocations: list[Invocation], per: float) -> dict[str, dict[str, float]]:
    """Where each function's billed time went, per payment: the emulator's AWS calls (moto in
    this process: not DynamoDB's or SQS's latency), the gateway (the sandbox on loopback: not
    Mercado Pago's), and the rest (the handler's own work)."""
    split: dict[str, dict[str, float]] = {}
    for inv in invocations:
        row = split.setdefault(inv.function, {"total": 0.0, "aws_calls": 0.0, "gateway": 0.0, "handler": 0.0})
        row["total"] += inv.ms * per
        row["aws_calls"] += inv.aws_ms * per
        row["gateway"] += inv.gateway_ms * per
        row["handler"] += (inv.ms - inv.aws_ms - inv.gateway_ms) * per
    return {f: {k: round(v, 2) for k, v in row.items()} for f, row in sorted(split.items())}


# ----------------------------------------------------------------------- the local stack, live
class Client(threading.Thread):
    """One shop: a keep-alive connection of its own, POSTing card payments until told to stop."""

    def __init__(self, name: str, port: int, mint: Callable[[str], str], until: float) -> None:
        super().__init__(daemon=True)
        self.name_ = name
        self.port = port
        self.mint = mint
        self.until = until
        self.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        self.latencies: list[float] = []
        self.statuses: Counter[int] = Counter()
        self.users: dict[str, str] = {}  # user -> token
        self.accepted: list[str] = []

    def run(self) -> None:
        sent = 0
        while time.monotonic() < self.until:
            user = f"bench-{self.name_}-{sent // PAYMENTS_PER_USER}"
            token = self.users.get(user) or self.users.setdefault(user, self.mint(user))
            body = json.dumps(
                {
                    "orderId": f"live-{uuid.uuid4()}",
                    "amountCents": 12_345,
                    "method": "card",
                    "cardToken": "APRO",
                    "payer": {"email": "shop@bench.example"},
                }
            ).encode()
            headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
            started = time.perf_counter()
            try:
                self.connection.request("POST", "/payments", body, headers)
                response = self.connection.getresponse()
                answer = response.read()
                status = response.status
            except (OSError, http.client.HTTPException):
                self.connection.close()
                status = 0
            self.latencies.append((time.perf_counter() - started) * 1000)
            self.statuses[status] += 1
            sent += 1
            if status == 202:
                self.accepted.append(json.loads(answer)["payment"]["paymentId"])
        self.connection.close()


def _get(port: int, path: str, token: str) -> tuple[int, Any]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        connection.request("GET", path, headers={"Authorization": f"Bearer {token}"})
        response = connection.getresponse()
        text = response.read()
        return response.status, (json.loads(text) if text else None)
    finally:
        connection.close()


def _listed(port: int, token: str) -> list[dict[str, Any]]:
    """A user's payments, every page."""
    found: list[dict[str, Any]] = []
    cursor = None
    while True:
        path = "/payments?limit=100" + (f"&cursor={cursor}" if cursor else "")
        status, body = _get(port, path, token)
        if status != 200:
            raise RuntimeError(f"GET /payments answered {status}: {body}")
        found += body["items"]
        cursor = body.get("cursor")
        if not cursor:
            return found


def _stamp(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def _cpu_seconds(pid: int) -> float:
    """User and system CPU seconds of a process so far (Linux; 0 elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return 0.0


def _children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(stat.parent.name))
    return found


def local_window(stack: Any, mint: Callable[[str], str], seconds: float, clients: int) -> dict[str, Any]:
    """`clients` threads POSTing card payments for `seconds`; then the backlog, then the listing."""
    processes = {"stack": stack.process.pid}
    for pid in _children(stack.process.pid):
        with contextlib.suppress(OSError):
            command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            processes["emulator" if "emulator" in command else f"child {pid}"] = pid
    cpu_before = {name: _cpu_seconds(pid) for name, pid in processes.items()}
    done_line = "payments.process COMPLETED"  # the stack logs one for each job that completes
    done_before = stack.count(done_line)
    window_start = time.time()
    until = time.monotonic() + seconds
    threads = [Client(f"{clients}-{n}", stack.api_port, mint, until) for n in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    window_end = time.time()
    cpu = {
        name: (_cpu_seconds(pid) - cpu_before[name]) / (window_end - window_start)
        for name, pid in processes.items()
    }
    accepted = sum(len(t.accepted) for t in threads)
    deadline = time.monotonic() + BACKLOG_TIMEOUT_SECONDS
    while stack.count(done_line) - done_before < accepted and time.monotonic() < deadline:
        time.sleep(0.5)
    drained_at = time.time()
    approved_at: list[float] = []
    statuses: Counter[str] = Counter()
    for thread in threads:
        for token in thread.users.values():
            for payment in _listed(stack.api_port, token):
                statuses[payment["status"]] += 1
                if payment["status"] == "APPROVED":
                    approved_at.append(_stamp(payment["updatedAt"]))
    latencies = [ms for t in threads for ms in t.latencies]
    codes: Counter[int] = Counter()
    for thread in threads:
        codes.update(thread.statuses)
    in_window = sum(1 for at in approved_at if window_start <= at <= window_end)
    buckets = [0] * max(1, math.ceil((window_end - window_start) / 10))
    for at in approved_at:
        if window_start <= at < window_end:
            buckets[int((at - window_start) // 10)] += 1
    minutes = (window_end - window_start) / 60
    last = max(approved_at) if approved_at else window_end
    return {
        "clients": clients,
        "seconds": round(window_end - window_start, 1),
        "submitted": sum(codes.values()),
        "accepted": accepted,
        "answers": {str(k): v for k, v in sorted(codes.items())},
        "submitted_per_minute": round(accepted / minutes, 1),
        "approved_within_the_window": in_window,
        "approved_per_minute_within_the_window": round(in_window / minutes, 1),
        "approved_total": len(approved_at),
        "statuses_at_the_end": dict(statuses),
        "approved_per_minute_first_submit_to_last_approval": round(
            len(approved_at) / max((last - window_start) / 60, 1e-9), 1
        ),
        "approved_per_10_seconds": buckets,
        "backlog_drained_seconds_after_the_window": round(max(0.0, last - window_end), 1),
        "waited_for_backlog_seconds": round(drained_at - window_end, 1),
        "submit_p50_ms": round(statistics.median(latencies), 1) if latencies else None,
        "submit_p95_ms": round(percentile(latencies, 0.95), 1) if latencies else None,
        "submit_max_ms": round(max(latencies), 1) if latencies else None,
        # CPU seconds a second during the window: the stack (one interpreter: at most ~1 with
        # the GIL) and its children (the emulator); the clients run in this process.
        "cpu_per_second": {name: round(v, 2) for name, v in cpu.items()},
    }


def local_stack(seconds: float = LOCAL_SECONDS, levels: tuple[int, ...] = LOCAL_CLIENTS) -> dict[str, Any]:
    """Card payments against `tarefa local` and its sandbox, for `seconds` at each number of
    client threads in `levels`, each on a fresh stack (the emulator slows as its tables grow)."""
    figures: dict[str, Any] = {"run": False, "seed_target_per_minute": 1_000, "levels": {}}
    for clients in levels:
        level = local_level(seconds, clients)
        for key in ("sandboxes", "note"):
            if key in level:
                figures[key] = level.pop(key)
        if not level.get("run"):
            figures["why"] = level.get("why")
            break
        figures["run"] = True
        figures["levels"][str(clients)] = level
        print(f"  {clients} clients: {json.dumps(level)}", file=sys.stderr, flush=True)
    return figures


def local_level(seconds: float, clients: int) -> dict[str, Any]:
    from tarefa.local.auth import LocalAuthority
    from tarefa.local.process import StackProcess

    state_dir = Path(tempfile.mkdtemp(prefix="tarefa-bench-payments-"))
    started_stack = time.perf_counter()
    stack = StackProcess(state_dir)
    figures: dict[str, Any] = {"run": False}
    try:
        figures["stack_ready_seconds"] = round(time.perf_counter() - started_stack, 1)
        figures["sandboxes"] = sandboxes = stack.state.get("sandboxes") or {}
        if not sandboxes:
            figures["note"] = "local.json names no sandbox; tried POST /payments anyway"
        authority = LocalAuthority(state_dir)  # the stack's own key (`tarefa token` without a start-up)
        lock = threading.Lock()

        def mint(user: str) -> str:
            with lock:
                return authority.mint(user, ttl_seconds=3600)

        # Does it serve payments? One, to APPROVED, before anything is timed (and warm).
        probe_token = mint("bench-probe")
        status, body = _post_payment(stack.api_port, probe_token)
        if status != 202:
            figures["why"] = f"POST /payments answered {status}: {body}"
            return figures
        probe_id = body["payment"]["paymentId"]
        deadline = time.monotonic() + 30
        state = ""
        while time.monotonic() < deadline:
            _, got = _get(stack.api_port, f"/payments/{probe_id}", probe_token)
            state = got["payment"]["status"] if got else ""
            if state not in ("PENDING", "PROCESSING"):
                break
            time.sleep(0.2)
        if state != "APPROVED":
            figures["why"] = f"a probe payment ended {state or 'unread'} (is the sandbox started?)"
            return figures
        figures.update(local_window(stack, mint, seconds, clients))
        figures["run"] = True
    finally:
        try:
            stack.stop()
        except Exception:  # a stack that would not stop is reported, not raised
            traceback.print_exc()
    return figures


def _post_payment(port: int, token: str) -> tuple[int, Any]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    body = json.dumps(
        {
            "orderId": f"probe-{uuid.uuid4()}",
            "amountCents": 100,
            "method": "card",
            "cardToken": "APRO",
            "payer": {"email": "probe@bench.example"},
        }
    ).encode()
    try:
        connection.request(
            "POST",
            "/payments",
            body,
            {"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        )
        response = connection.getresponse()
        text = response.read()
        try:
            return response.status, json.loads(text)
        except ValueError:
            return response.status, text.decode(errors="replace")
    except (OSError, http.client.HTTPException) as exc:
        return 0, str(exc)
    finally:
        connection.close()


# --------------------------------------------------------------------------------------- main
def _reported(name: str, measure: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """A part's figures, or why it has none: the bench reports, it does not fail."""
    print(f"payments bench: {name} ...", file=sys.stderr, flush=True)
    started = time.perf_counter()
    load_before = _load()
    try:
        figures = measure()
    except Exception as exc:  # the bench reports, it does not fail
        traceback.print_exc()
        figures = {"run": False, "why": f"{type(exc).__name__}: {exc}"}
    took = time.perf_counter() - started
    # The machine may be shared: what else ran shows in the load (1-minute average).
    figures["load_average_1min"] = {"before": load_before, "after": _load()}
    figures["part_seconds"] = round(took, 1)
    print(f"payments bench: {name} took {took:.0f} s", file=sys.stderr, flush=True)
    return figures


def _load() -> float | None:
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return None


def measure(
    parts: list[str], card: int, pix: int, seconds: float, levels: tuple[int, ...] = LOCAL_CLIENTS
) -> dict[str, Any]:
    _aws_environment()
    started = time.perf_counter()
    results: dict[str, Any] = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d"),
        "machine": machine(),
        "prices": "bench/prices.json; Secrets Manager and KMS from EXTRA_PRICES here unless it has them",
    }
    if "card" in parts:
        results["card_approved"] = _reported("card, burst", lambda: card_scenario(card, one_at_a_time=False))
        results["card_approved_one_at_a_time"] = _reported(
            "card, one at a time", lambda: card_scenario(max(1, card // 10), one_at_a_time=True)
        )
    if "pix" in parts:
        for polls in PIX_POLLS:
            results[f"pix_paid_after_{polls}_polls"] = _reported(
                f"pix, {polls} polls",
                lambda polls=polls: pix_scenario(pix, polls),  # type: ignore[misc]
            )
    if "local" in parts:
        results["local_stack"] = _reported("local stack", lambda: local_stack(seconds, levels))
    results["bench_seconds"] = round(time.perf_counter() - started, 1)
    return results


def write(results: dict[str, Any], path: Path = RESULTS) -> None:
    """Under "payments", keeping every other key (and the parts of "payments" not run now)."""
    kept: dict[str, Any] = json.loads(path.read_text()) if path.exists() else {}
    previous = kept.get("payments") if isinstance(kept.get("payments"), dict) else {}
    kept["payments"] = {**(previous or {}), **results}
    path.write_text(json.dumps(kept, indent=2) + "\n")


def print_table(r: dict[str, Any]) -> None:
    m = r["machine"]
    print(f"Payments benchmarks, {r['date']}, {m['nproc']} cores ({m['cpu']}), Python {m['python']}")
    scenarios = [(k, v) for k, v in r.items() if isinstance(v, dict) and "usd_per_million_payments" in v]
    for key, s in scenarios:
        print(f"\n{key} ({s['mode']}, {s['payments']} payments; {dict(s['outcome'])})")
        rows: list[tuple[str, Any]] = [
            ("$ per million payments", s["usd_per_million_payments"]),
            *((f"  {k}", v) for k, v in s["usd_breakdown_per_million"].items()),
            ("AWS requests per payment", s["aws_requests_per_payment_total"]),
            *((f"  {k}", v) for k, v in s["aws_requests_per_payment"].items()),
            *((f"  idle: {k}", v) for k, v in s["idle_receives_per_payment"].items()),
            ("SQS billed requests per payment", s["sqs_billed_requests_per_payment"]),
            *((f"WRU {k}", v) for k, v in s["dynamodb_wru_per_payment"].items()),
            *((f"WRU index {k}", v) for k, v in s["dynamodb_index_wru_per_payment"].items()),
            *((f"RRU {k}", v) for k, v in s["dynamodb_rru_per_payment"].items()),
            *((f"invocations {k}", v) for k, v in s["lambda_invocations_per_payment"].items()),
            *((f"GB-s {k}", v) for k, v in s["lambda_gb_seconds_per_payment"].items()),
            *(
                (
                    f"ms {k} (AWS calls, gateway, handler)",
                    f"{v['total']} ({v['aws_calls']}, {v['gateway']}, {v['handler']})",
                )
                for k, v in s["lambda_ms_per_payment"].items()
            ),
            (
                "secret lookups/payment uncached, amortised",
                f"{s['secrets_manager']['lookups_per_payment_uncached']}, "
                f"{s['secrets_manager']['amortised_reads_per_payment']}",
            ),
            ("gateway calls per payment", sum(s["gateway_calls_per_payment"].values())),
            ("$/M per 100 ms of gateway latency", s["usd_per_million_per_100ms_gateway_latency"]),
        ]
        if "polls_per_payment" in s:
            rows.insert(0, ("polls per payment", s["polls_per_payment"]))
        width = max(len(name) for name, _ in rows)
        for name, value in rows:
            print(f"  {name:<{width}}  {value}")
    local = r.get("local_stack")
    if isinstance(local, dict):
        print("\nlocal stack (tarefa local + its sandbox), card payments (APRO)")
        if not local.get("run"):
            print(f"  not run: {local.get('why')}")
        for clients, level in (local.get("levels") or {}).items():
            print(f"  {clients} clients, {level['seconds']} s:")
            for name in (
                "accepted",
                "submitted_per_minute",
                "approved_per_minute_within_the_window",
                "approved_per_minute_first_submit_to_last_approval",
                "approved_per_10_seconds",
                "backlog_drained_seconds_after_the_window",
                "submit_p50_ms",
                "submit_p95_ms",
                "answers",
                "cpu_per_second",
            ):
                print(f"    {name:<52}  {level[name]}")
    for key, v in r.items():
        if isinstance(v, dict) and v.get("run") is False and key != "local_stack":
            print(f"\n{key}: not run: {v.get('why')}")
    print(f"\nbench took {r['bench_seconds']} s")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n", 1)[0])
    parser.add_argument("--parts", default="card,pix,local", help="of card,pix,local (default all)")
    parser.add_argument("--card", type=int, default=CARD_PAYMENTS, help="card payments in the burst")
    parser.add_argument("--pix", type=int, default=PIX_PAYMENTS, help="PIX payments per number of polls")
    parser.add_argument("--seconds", type=float, default=LOCAL_SECONDS, help="the local stack's window")
    parser.add_argument(
        "--clients",
        default=",".join(map(str, LOCAL_CLIENTS)),
        help="client threads on the local stack, e.g. 4 or 4,8 (each level for --seconds)",
    )
    parser.add_argument("--no-write", action="store_true", help="print only; leave results.json alone")
    args = parser.parse_args(argv)
    parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    levels = tuple(int(n) for n in str(args.clients).split(",") if n.strip())
    results = measure(parts, args.card, args.pix, args.seconds, levels)
    if not args.no_write:
        write(results)
    try:
        print_table(results)
    except Exception:  # the figures are written already
        traceback.print_exc()
    return 0


if __name__ == "__main__":
    sys.exit(main())
