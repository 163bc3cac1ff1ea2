"""`make bench`: what a job costs on AWS, how long the functions take to start, how much time the
handlers add over their AWS calls, and what the local stack sustains. Reports; never fails.

Writes bench/results.json and prints a table.
"""

from __future__ import annotations

import io
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
PRICES = json.loads((ROOT / "bench" / "prices.json").read_text())["prices"]
JOBS = 1000
PAYLOAD = {"data": "x" * 1000}  # 1 KB
LAMBDA_LOG_LINES_BYTES = 260  # START, END and REPORT lines Lambda writes for every invocation
BARE_MESSAGE = json.dumps({"jobId": "00000000-0000-0000-0000-000000000000", "type": "system.echo"})

os.environ.update(
    {
        "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_REGION": "us-east-1",
        "POWERTOOLS_SERVICE_NAME": "tarefa",
    }
)
os.environ.pop("AWS_ENDPOINT_URL", None)


# ---------------------------------------------------------------------------------------- cost
def item_size(item: dict[str, Any]) -> int:
    """DynamoDB's item size: attribute names plus values (numbers ~1 byte per 2 digits)."""

    def value_size(value: dict[str, Any]) -> int:
        ((kind, v),) = value.items()
        if kind == "S":
            return len(v.encode())
        if kind == "N":
            return len(v.strip("-").replace(".", "")) // 2 + 1
        if kind in ("BOOL", "NULL"):
            return 1
        if kind == "M":
            return 3 + sum(len(k.encode()) + value_size(x) for k, x in v.items())
        if kind == "L":
            return 3 + sum(value_size(x) + 1 for x in v)
        return len(str(v))

    return sum(len(name.encode()) + value_size(value) for name, value in item.items())


class CostMeter:
    """Counts every AWS call by service and operation, and the capacity units they consume,
    from botocore's event hooks on the clients the application uses."""

    def __init__(self, index_keys: dict[str, list[str]]) -> None:
        self.lock = threading.RLock()  # a batch enqueue writes from a few threads
        self.local = threading.local()
        self.calls: Counter[str] = Counter()
        self.sqs_billed_requests = 0.0
        self.wru = 0.0
        self.rru = 0.0
        self.index_wru = 0.0
        self.index_keys = index_keys  # index name -> its key attributes
        self.items: dict[str, dict[str, Any]] = {}  # last item written, by jobId
        self.aws_cpu = 0.0
        self._started = 0.0

    def attach(self, client: Any) -> None:
        client.meta.events.register("before-parameter-build.*.*", self._before)
        client.meta.events.register("after-call.*.*", self._after)

    def _after(self, **_: Any) -> None:
        with self.lock:
            self.aws_cpu += time.process_time() - getattr(self.local, "started", self._started)

    def _before(self, model: Any, params: dict[str, Any], **_: Any) -> None:
        with self.lock:
            self.local.started = time.process_time()
            self._count(model, params)

    def _count(self, model: Any, params: dict[str, Any]) -> None:
        service = model.service_model.service_name
        operation = model.name
        self.calls[f"{service}.{operation}"] += 1
        if service == "sqs":
            body = params.get("MessageBody", "")
            entries = params.get("Entries", [])
            chunks = [e.get("MessageBody", "") for e in entries] or [body]
            self.sqs_billed_requests += max(1, math.ceil(sum(len(c.encode()) for c in chunks) / 65536))
        elif service == "dynamodb":
            self._dynamodb(operation, params)

    def _dynamodb(self, operation: str, params: dict[str, Any]) -> None:
        if operation == "PutItem":
            self._write(params["Item"])
        elif operation == "TransactWriteItems":
            for entry in params["TransactItems"]:
                if "Put" in entry:
                    self._write(entry["Put"]["Item"], factor=2.0)
                else:  # the stats table's counters and minute buckets, each about 1 KB
                    self.wru += 2.0
        elif operation == "DeleteItem":
            old = self.items.pop(params["Key"].get("jobId", {}).get("S", ""), None)
            self.wru += math.ceil(item_size(old) / 1024) if old else 1
            if old:
                self.index_wru += sum(1 for keys in self.index_keys.values() if all(k in old for k in keys))
        elif operation == "GetItem":
            old = self.items.get(params["Key"].get("jobId", {}).get("S", ""))
            size = item_size(old) if old else 1
            self.rru += math.ceil(size / 4096) * (1 if params.get("ConsistentRead") else 0.5)
        elif operation == "UpdateItem":
            self.wru += 1  # only the rate limiter's window item, kept under 1 KB by design
        elif operation in ("Query", "BatchGetItem"):
            self.rru += 1  # not on a job's path; counted for completeness

    def _write(self, item: dict[str, Any], factor: float = 1.0) -> None:
        key = item.get("jobId", {}).get("S")
        old = self.items.get(key) if key else None
        new_size = item_size(item)
        self.wru += factor * math.ceil(max(new_size, item_size(old) if old else 0) / 1024)
        for keys in self.index_keys.values():
            had = old is not None and all(k in old for k in keys)
            has = all(k in item for k in keys)
            if had and has:
                assert old is not None
                changed = any(old[k] != item[k] for k in keys)
                self.index_wru += 2 if changed else 0  # KEYS_ONLY: only key changes write
            elif had or has:
                self.index_wru += 1
        if key:
            self.items[key] = item


def measure_cost(batch: int = 1) -> dict[str, Any]:
    """What JOBS `system.echo` jobs cost, enqueued one a request (POST /jobs) or `batch` a
    request (POST /jobs/batch), then run by the worker and counted by the stats consumer."""
    import boto3
    from moto import mock_aws

    from tarefa import wiring
    from tarefa.local.app import LocalApp
    from tarefa.local.runtime import invoke, sqs_event
    from tarefa.local.template import load_template

    table = load_template()["Resources"]["JobsTable"]["Properties"]
    index_keys = {
        i["IndexName"]: [k["AttributeName"] for k in i["KeySchema"]] for i in table["GlobalSecondaryIndexes"]
    }
    with mock_aws():
        app = LocalApp(boto3.client("sqs"), boto3.client("dynamodb"), {"LogLevel": "INFO"})
        container = wiring.container()
        meter = CostMeter(index_keys)
        # The store's client also carries the enqueue rate limiter's window items.
        for client in (container.store.client, container.queue.client, app.sqs):
            meter.attach(client)
        api, worker = app.api_function, app.stack.functions["WorkerFunction"]
        stats_poller = app.stream_pollers[0]
        durations: dict[str, list[float]] = {"api": [], "worker": [], "stats": []}
        log_file = tempfile.TemporaryFile()
        saved_stdout = os.dup(1)
        sys.stdout.flush()
        os.dup2(log_file.fileno(), 1)
        try:
            users = [{"sub": f"bench-user-{n}"} for n in range(JOBS // 100)]  # under each one's limit
            body = {"type": "system.echo", "payload": PAYLOAD}
            for n in range(0, JOBS, batch):
                started = time.perf_counter()
                if batch == 1:
                    result = app.api("POST", "/jobs", body, users[n % len(users)])
                else:
                    result = app.api(
                        "POST", "/jobs/batch", {"jobs": [body] * batch}, users[n // batch % len(users)]
                    )
                    assert all(item.get("created") for item in result.body["items"]), result.body
                durations["api"].append((time.perf_counter() - started) * 1000)
                assert result.status == 202, result.body
            handler = app.handlers["WorkerFunction"]
            for _function, source in app.sqs_sources():
                while True:
                    messages = app.sqs.receive_message(
                        QueueUrl=source.queue_url,
                        MaxNumberOfMessages=source.batch_size,
                        AttributeNames=["All"],
                    ).get("Messages", [])
                    if not messages:
                        break
                    started = time.perf_counter()
                    response = invoke(worker, handler, sqs_event(source, messages))
                    durations["worker"].append((time.perf_counter() - started) * 1000)
                    done = [
                        m
                        for m in messages
                        if m["MessageId"] not in {f["itemIdentifier"] for f in response["batchItemFailures"]}
                    ]
                    app.sqs.delete_message_batch(
                        QueueUrl=source.queue_url,
                        Entries=[
                            {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(done)
                        ],
                    )
            # The stream consumer, in the template's batches (GetRecords by Lambda is not billed;
            # the emulator's is slow, so only the invocation is timed).
            stats_handler = app.handlers[stats_poller.function.logical_id]
            iterator = stats_poller.iterator
            while True:
                page = app.streams.get_records(ShardIterator=iterator, Limit=stats_poller.source.batch_size)
                iterator = page["NextShardIterator"]
                if not page["Records"]:
                    break
                event = {"Records": [stats_poller.as_event_record(r) for r in page["Records"]]}
                started = time.perf_counter()
                invoke(stats_poller.function, stats_handler, event)
                durations["stats"].append((time.perf_counter() - started) * 1000)
        finally:
            sys.stdout.flush()
            os.dup2(saved_stdout, 1)
            os.close(saved_stdout)
        log_bytes = log_file.seek(0, io.SEEK_END)
        completed = sum(1 for item in meter.items.values() if item["status"]["S"] == "COMPLETED")
        wiring.reset()

    invocations = {name: len(ms) for name, ms in durations.items()}
    functions = {"api": api, "worker": worker, "stats": stats_poller.function}
    memory_gb = {name: f.memory_mb / 1024 for name, f in functions.items()}
    gb_seconds = {k: sum(math.ceil(ms) for ms in v) / 1000 * memory_gb[k] for k, v in durations.items()}
    lambda_log_bytes = log_bytes + LAMBDA_LOG_LINES_BYTES * sum(invocations.values())
    p = {k: v["usd"] for k, v in PRICES.items()}
    usd = {
        "api_gateway": invocations["api"] * p["api_gateway_http_request"],
        "lambda_requests": sum(invocations.values()) * p["lambda_request"],
        "lambda_duration": sum(gb_seconds.values()) * p["lambda_gb_second_arm64"],
        "sqs": meter.sqs_billed_requests * p["sqs_request"],
        "dynamodb_writes_table": meter.wru * p["dynamodb_write_request_unit"],
        "dynamodb_writes_indexes": meter.index_wru * p["dynamodb_write_request_unit"],
        "dynamodb_reads": meter.rru * p["dynamodb_read_request_unit"],
        "logs": lambda_log_bytes / 1e9 * p["cloudwatch_logs_gb_ingested"],
    }
    per_million = {k: v / JOBS * 1e6 for k, v in usd.items()}
    floor = (
        p["api_gateway_http_request"] / batch
        + p["lambda_request"] * (1 / batch + 0.1)  # the enqueue invocation and a tenth of a worker's
        + p["sqs_request"]
        * (1 / min(batch, 10) + 0.2)  # a send (a tenth of a batch), a tenth of a receive and a delete
        + 3 * p["dynamodb_write_request_unit"]
        + (per_million["lambda_duration"] / 1e6)  # the same durations: the floor has them too
    ) * 1e6
    total = sum(per_million.values())
    return {
        **({"batch_size": batch} if batch > 1 else {}),
        "jobs": JOBS,
        "completed": completed,
        "cost_per_million_jobs_usd": round(total, 3),
        "floor_per_million_jobs_usd": round(floor, 3),
        "cost_vs_floor": round(total / floor, 3),
        "cost_breakdown_per_million_usd": {k: round(v, 3) for k, v in per_million.items()},
        "aws_calls_per_job": {k: round(v / JOBS, 3) for k, v in sorted(meter.calls.items())},
        "aws_requests_per_job": round(sum(meter.calls.values()) / JOBS, 3),
        "dynamodb_wru_per_job": {"table": meter.wru / JOBS, "indexes": meter.index_wru / JOBS},
        "dynamodb_rru_per_job": meter.rru / JOBS,
        "sqs_billed_requests_per_job": meter.sqs_billed_requests / JOBS,
        "lambda_invocations_per_job": {k: v / JOBS for k, v in invocations.items()},
        "lambda_ms": {k: round(statistics.median(v), 2) for k, v in durations.items()},
        "lambda_memory_mb": {name: f.memory_mb for name, f in functions.items()},
        "log_bytes_per_job": round(lambda_log_bytes / JOBS, 1),
        "aws_cpu_seconds": meter.aws_cpu,
    }


# ---------------------------------------------------------------------------------- cold start
COLD_START = """
import os, sys, time
t0 = time.perf_counter()
{body}
print((time.perf_counter() - t0) * 1000)
"""

FIRST_INVOCATION = {
    "api": "c.jobs",
    "worker": "c.worker; c.queue",
    "maintenance": "c.maintenance",
    "stats": "c.stats",
}


def cold_start(runs: int = 7) -> dict[str, Any]:
    from tarefa.local.template import Resolver, load_template

    # The layers the template mounts: the engine's and the examples' (JobModules=demo).
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'layers' / 'tarefa'}{os.pathsep}{ROOT / 'examples'}"}
    template = load_template()
    resolver = Resolver(template)
    for logical in template["Resources"]:
        resolver.refs.setdefault(logical, f"local-{logical}")
    env.update(
        {
            k: str(v)
            for k, v in resolver.resolve(template["Globals"]["Function"]["Environment"]["Variables"]).items()
        }
    )

    def median_ms(body: str, cwd: Path, extra: dict[str, str] | None = None) -> float:
        samples = []
        for _ in range(runs):
            out = subprocess.run(
                [sys.executable, "-c", COLD_START.format(body=body)],
                cwd=cwd,
                env={**env, **(extra or {})},
                capture_output=True,
                text=True,
                check=True,
            )
            samples.append(float(out.stdout.strip().splitlines()[-1]))
        return statistics.median(samples)

    bare = median_ms("import boto3\ns = boto3.session.Session()\ns.client('dynamodb'); s.client('sqs')", ROOT)
    results: dict[str, Any] = {"bare_boto3_two_clients_ms": round(bare, 1)}
    for name, build in FIRST_INVOCATION.items():
        body = f"sys.path.insert(0, '.')\nimport app\nfrom tarefa.wiring import container\nc = container(); {build}"
        ms = median_ms(body, ROOT / "functions" / name)
        results[name] = {"import_ms": round(ms, 1), "ratio_vs_boto3": round(ms / bare, 2)}
    # What loading the template's JobModules costs the API's cold start (the workloads' job
    # modules, imported once to validate payloads): the same start with none.
    body = "sys.path.insert(0, '.')\nimport app\nfrom tarefa.wiring import container\nc = container(); c.jobs"
    bare_api = median_ms(body, ROOT / "functions" / "api", {"TAREFA_JOB_MODULES": ""})
    results["job_modules"] = {
        "modules": env.get("TAREFA_JOB_MODULES", ""),
        "api_without_modules_ms": round(bare_api, 1),
        "cost_ms": round(results["api"]["import_ms"] - bare_api, 1),
    }
    return results


# ------------------------------------------------------------------------------------ overhead
def overhead(samples: int = 300) -> dict[str, float]:
    import boto3
    from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
    from moto import mock_aws

    from tarefa import wiring
    from tarefa.job import Priority
    from tarefa.local.app import LocalApp
    from tarefa.local.runtime import LambdaContext, invoke, sqs_event

    with mock_aws():
        app = LocalApp(boto3.client("sqs"), boto3.client("dynamodb"), {"LogLevel": "ERROR"})
        container = wiring.container()
        body = {"type": "system.echo", "payload": PAYLOAD}
        claims = {"sub": "bench"}
        for _ in range(20):  # warm
            app.api("POST", "/jobs", body, claims)
        store, queue = container.store, container.queue
        job_item = next(iter(store.client.scan(TableName=store.table, Limit=1)["Items"]))
        handler_total = bare_total = 0.0
        for i in range(samples):  # interleaved, so both see the same table and queue sizes
            started = time.perf_counter()
            app.api("POST", "/jobs", body, claims)
            handler_total += time.perf_counter() - started
            started = time.perf_counter()
            store.client.put_item(TableName=store.table, Item={**job_item, "jobId": {"S": f"bare-{i}"}})
            queue.client.send_message(QueueUrl=queue.queue_urls[Priority.LOW], MessageBody=BARE_MESSAGE)
            bare_total += time.perf_counter() - started
        handler_ms = handler_total * 1000 / samples
        bare_ms = bare_total * 1000 / samples

        # Worker CPU per message, above a BatchProcessor whose record handler does nothing.
        worker = app.stack.functions["WorkerFunction"]
        handler = app.handlers["WorkerFunction"]
        medium = next(s for _, s in app.sqs_sources() if s.queue_logical_id == "MediumQueue")
        meter = CostMeter({})
        for client in (store.client, queue.client):
            meter.attach(client)
        messages_seen = 0
        cpu = 0.0
        batches = []
        while True:
            messages = app.sqs.receive_message(
                QueueUrl=medium.queue_url, MaxNumberOfMessages=10, AttributeNames=["All"]
            ).get("Messages", [])
            if not messages:
                break
            batches.append(sqs_event(medium, messages))
            app.sqs.delete_message_batch(
                QueueUrl=medium.queue_url,
                Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(messages)],
            )
        meter.aws_cpu = 0.0
        for event in batches:
            started_cpu = time.process_time()
            invoke(worker, handler, event)
            cpu += time.process_time() - started_cpu
            messages_seen += len(event["Records"])
        processor = BatchProcessor(event_type=EventType.SQS)
        noop_cpu = 0.0
        for event in batches:
            started_cpu = time.process_time()
            process_partial_response(
                event=event,
                record_handler=lambda record: None,
                processor=processor,
                context=LambdaContext("noop", 512, 60),  # type: ignore[arg-type]
            )
            noop_cpu += time.process_time() - started_cpu
        wiring.reset()
    worker_ms = (cpu - meter.aws_cpu - noop_cpu) * 1000 / max(1, messages_seen)
    return {
        "enqueue_handler_ms": round(handler_ms, 3),
        "enqueue_bare_aws_calls_ms": round(bare_ms, 3),
        "enqueue_overhead_ratio": round(handler_ms / bare_ms, 2),
        "worker_overhead_ms_per_message": round(worker_ms, 3),
        "worker_messages_measured": messages_seen,
    }


# ------------------------------------------------------------------------- local stack throughput
def local_throughput(jobs: int = 500) -> dict[str, float]:
    import boto3

    from tarefa.local.process import StackProcess

    stack = StackProcess(Path(tempfile.mkdtemp()))
    try:
        token = stack.token("bench", "--ttl", "3600")
        body = json.dumps({"type": "system.echo", "payload": PAYLOAD}).encode()
        started = time.perf_counter()
        for _ in range(jobs):
            request = urllib.request.Request(f"{stack.api_url}/jobs", data=body, method="POST")
            request.add_header("Authorization", f"Bearer {token}")
            request.add_header("Content-Type", "application/json")
            with urllib.request.urlopen(request, timeout=30) as response:
                assert response.status == 202
        enqueued = time.perf_counter() - started
        deadline = time.monotonic() + 300
        while stack.count("COMPLETED") < jobs and time.monotonic() < deadline:
            time.sleep(0.1)
        elapsed = time.perf_counter() - started
        completed = stack.count("COMPLETED")
        sqs = boto3.client("sqs", endpoint_url=stack.state["awsEndpointUrl"])
        queue_url = stack.state["queues"]["LowQueue"]
        started = time.perf_counter()
        for _ in range(50):
            sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["ApproximateNumberOfMessages"])
        emulator_ms = (time.perf_counter() - started) * 1000 / 50
    finally:
        stack.stop()
    return {
        "jobs": jobs,
        "completed": completed,
        "jobs_per_second": round(completed / elapsed, 1),
        "enqueue_requests_per_second": round(jobs / enqueued, 1),
        "emulator_ms_per_call": round(emulator_ms, 2),
    }


BATCH_SIZE = 100  # jobs per POST /jobs/batch in the "batch" figure


def measure_batch_cost() -> dict[str, Any]:
    """The "batch" figure: the same jobs, the same methodology, enqueued BATCH_SIZE a request."""
    started = time.perf_counter()
    figure = measure_cost(BATCH_SIZE)
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        **figure,
        "bench_seconds": round(time.perf_counter() - started, 1),
    }


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--only", choices=["batch"], help="measure only this figure (its key alone is rewritten)"
    )
    args = parser.parse_args(argv)
    path = ROOT / "bench" / "results.json"
    # Other runs (make chaos, make fuzz, make load) keep their own keys in the same file.
    kept = json.loads(path.read_text()) if path.exists() else {}
    if args.only == "batch":
        batch = measure_batch_cost()
        path.write_text(json.dumps({**kept, "batch": batch}, indent=2) + "\n")
        print_batch(batch)
        return 0
    started = time.perf_counter()
    results: dict[str, Any] = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
    }
    results["local_stack"] = local_throughput()
    results.update(measure_cost())
    results["batch"] = measure_batch_cost()
    results["cold_start"] = cold_start()
    results.update(overhead())
    results["bench_seconds"] = round(time.perf_counter() - started, 1)
    path.write_text(json.dumps({**kept, **results}, indent=2) + "\n")
    print_table(results)
    return 0


def print_batch(r: dict[str, Any]) -> None:
    print(f"Tarefa batch enqueue ({r['batch_size']} jobs a request), {r['date']}, {r['machine']}")
    rows = [
        ("cost per million jobs (USD)", r["cost_per_million_jobs_usd"]),
        ("floor per million jobs (USD)", r["floor_per_million_jobs_usd"]),
        *((f"  {k}", v) for k, v in r["cost_breakdown_per_million_usd"].items()),
        ("AWS requests/job", r["aws_requests_per_job"]),
        *((f"calls/job {k}", v) for k, v in r["aws_calls_per_job"].items()),
        (
            "DynamoDB WRU/job table, indexes",
            f"{r['dynamodb_wru_per_job']['table']:.2f}, {r['dynamodb_wru_per_job']['indexes']:.2f}",
        ),
        ("completed", f"{r['completed']} of {r['jobs']}"),
    ]
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"{name:<{width}}  {value}")


def print_table(r: dict[str, Any]) -> None:
    rows = [
        ("cost per million jobs (USD)", r["cost_per_million_jobs_usd"]),
        ("floor per million jobs (USD)", r["floor_per_million_jobs_usd"]),
        ("cost / floor", r["cost_vs_floor"]),
        ("batch of 100: cost per million jobs (USD)", r["batch"]["cost_per_million_jobs_usd"]),
        ("batch of 100: AWS requests/job", r["batch"]["aws_requests_per_job"]),
        *((f"  {k}", v) for k, v in r["cost_breakdown_per_million_usd"].items()),
        *((f"calls/job {k}", v) for k, v in r["aws_calls_per_job"].items()),
        (
            "DynamoDB WRU/job table, indexes",
            f"{r['dynamodb_wru_per_job']['table']:.2f}, {r['dynamodb_wru_per_job']['indexes']:.2f}",
        ),
        ("log bytes/job", r["log_bytes_per_job"]),
        ("bare boto3 + 2 clients (ms)", r["cold_start"]["bare_boto3_two_clients_ms"]),
        *(
            (f"cold start {name} (ms, ratio)", f"{v['import_ms']}, {v['ratio_vs_boto3']}")
            for name, v in r["cold_start"].items()
            if isinstance(v, dict) and "import_ms" in v
        ),
        ("JobModules on the API cold start (ms)", r["cold_start"]["job_modules"]["cost_ms"]),
        ("enqueue overhead ratio", r["enqueue_overhead_ratio"]),
        ("worker overhead ms/message", r["worker_overhead_ms_per_message"]),
        ("local stack jobs/s", r["local_stack"]["jobs_per_second"]),
        ("emulator ms/call", r["local_stack"]["emulator_ms_per_call"]),
        ("bench took (s)", r["bench_seconds"]),
    ]
    width = max(len(name) for name, _ in rows)
    print(f"Tarefa benchmarks, {r['date']}, {r['machine']}")
    for name, value in rows:
        print(f"{name:<{width}}  {value}")


if __name__ == "__main__":
    sys.exit(main())
