"""`make bench-flow`: what each flow-control option adds per job when it is on (0 when off),
and what a user schedule's firing and a bulk operation cost per job.

On moto in this process, with the real handlers (the API's POST /jobs, the worker, the stats
consumer), N echo jobs of a test type (bench/flow_jobs.py, loaded as a user's module) are run
with the option on, and N of the same type with it off; counted the way bench/payments_bench.py
counts (its Meter: every AWS request by kind, DynamoDB write and read units by table and index,
SQS billed requests, Lambda invocations and GB-seconds, log bytes), priced with
bench/prices.json. The figure is on minus off, per job.

- concurrency: `concurrency=4` on a key per job (no job waits: the cost of a run, take + free).
- unique_key: a key per job (no hit: the lock's write); a repeated enqueue while active (a hit)
  is measured apart, against the repeat of a plain enqueue with an Idempotency-Key.
- debounce: a key per job (a burst of one: each runs), and bursts of 10 on one key (one runs,
  nine end CANCELLED), per job enqueued; against plain jobs with the same clock moves.
- fairness: every message carries a MessageGroupId whatever the policy (the owner's, or the
  `fairness_key`'s): no request is added; SQS fair queues bill the group at +$0.10 per
  million requests (the issue's figure), applied here to the SQS requests of a job that carry
  or deliver a grouped message (its sends, receives, deletes and visibility changes).
- user schedules: a firing is Scheduler sending the schedule's Input to the queue (its
  SendMessage, counted) and the worker recording the job on first sight; against a job made by
  POST /jobs. Scheduler's own invocation is priced apart ($1.00 per million).
- bulk operations: a bulk retry (and a bulk cancel) over N jobs, the operation's own requests
  (its POST, its system.bulk job: counting, pages, each job acted on), per job acted on; the
  retried jobs' own runs are not part of it. The ByStatus index every job writes whatever is
  run (its entry while PENDING, RETRYING or FAILED) is reported from the plain jobs.

Writes bench/results.json under "flow", keeping every other key ("fairness" included).
Reports; never fails.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import traceback
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # bench.payments_bench, bench.flow_jobs

from bench.payments_bench import (
    RESULTS,
    Clock,
    Meter,
    Tables,
    _aws_environment,
    captured_stdout,
    let_sqs_timers_pass,
    machine,
    price,
    summarise,
)

JOBS = 100
JOBS_PER_USER = 200  # under the enqueue limit (600 a minute per user)
MODULES = "bench.flow_jobs"
# Not in prices.json (a key of the same name there wins)
EXTRA = {
    # the figure for SQS fair queues: a MessageGroupId on a standard queue
    "sqs_fair_queue_request": 0.10 / 1_000_000,
    # https://aws.amazon.com/eventbridge/pricing/ (Scheduler): $1.00 per million invocations
    "scheduler_invocation": 1.00 / 1_000_000,
}


def extra_price(name: str) -> float:
    return price(name) or EXTRA[name]


class Harness:
    """The engine on moto with bench/flow_jobs.py loaded, as tests/integration builds it."""

    def __init__(self, meter: Meter) -> None:
        import boto3

        from tarefa import wiring
        from tarefa.local.app import LocalApp

        self.app = LocalApp(
            boto3.client("sqs"),
            boto3.client("dynamodb"),
            parameters={"LogLevel": "INFO", "JobModules": MODULES},
            batching_window=0,
        )
        self.clock = Clock()
        wiring.container().clock = self.clock
        meter.tables = Tables({v: k for k, v in self.app.stack.tables.items()})
        meter.queues = {url: name for name, url in self.app.stack.queue_urls.items()}
        meter.poller_clients = {id(self.app.sqs)}
        meter.emulator_clients = {id(self.app.lambda_), id(self.app.streams)}
        self.sent = 0

    def close(self) -> None:
        from tarefa import wiring

        wiring.reset()

    def claims(self) -> dict[str, str]:
        return {"sub": f"bench-user-{self.sent // JOBS_PER_USER}"}

    def enqueue(self, type_name: str, key: str, n: int = 0, expect: int = 202, **headers: str) -> str:
        body = {"type": type_name, "payload": {"key": key, "n": n}}
        answer = self.app.api("POST", "/jobs", body, self.claims(), headers=headers or None)
        self.sent += 1
        if answer.status != expect:
            raise RuntimeError(f"POST /jobs ({type_name}) answered {answer.status}: {answer.body}")
        return str(answer.body["jobId"])

    def run(self, seconds: float = 0) -> None:
        if seconds:
            self.clock.advance(seconds)
        let_sqs_timers_pass()
        self.app.drain()

    def statuses(self, job_ids: list[str]) -> Counter[str]:
        from tarefa import wiring

        store = wiring.container().store
        found: Counter[str] = Counter()
        for job_id in job_ids:
            job = store.get(job_id)
            found[str(job.status) if job else "MISSING"] += 1
        return found


@contextmanager
def metered(meter: Meter) -> Iterator[None]:
    with meter.installed():
        meter.active = True
        try:
            yield
        finally:
            meter.active = False


def measure_run(
    run: Callable[[Harness], list[str]],
    per: int,
    prepare: Callable[[Harness], Any] | None = None,
) -> tuple[dict[str, Any], Counter[str], Meter]:
    """`run` on a fresh stack after a warm-up job (each function's first invocation belongs to
    its cold start), measured; the figures per `per`."""
    from moto import mock_aws

    meter = Meter()
    with mock_aws(), captured_stdout() as log_bytes:
        h = Harness(meter)
        try:
            h.enqueue("bench.plain", "warm-up")
            h.run()
            if prepare is not None:
                prepare(h)
            logged = log_bytes()
            with metered(meter):
                ids = run(h)
            logs = log_bytes() - logged
            outcome = h.statuses(ids)
        finally:
            h.close()
    return summarise(meter, per, logs, unit="job"), outcome, meter


def totals(summary: dict[str, Any]) -> dict[str, float]:
    return {
        "requests": summary["aws_requests_per_job_total"],
        "wru": round(
            sum(summary["dynamodb_wru_per_job"].values())
            + sum(summary["dynamodb_index_wru_per_job"].values()),
            3,
        ),
        "rru": round(sum(summary["dynamodb_rru_per_job"].values()), 3),
        "sqs_billed": summary["sqs_billed_requests_per_job"],
        "usd_per_million": summary["usd_per_million_jobs"],
        # what the requests are billed, without Lambda's duration and the logs (moto's latency
        # in this process is not DynamoDB's or SQS's: a difference there is this machine's noise)
        "usd_per_million_requests": round(
            sum(v for k, v in summary["usd_breakdown_per_million"].items() if k not in _TIME_BILLED), 3
        ),
    }


def difference(on: dict[str, Any], off: dict[str, Any]) -> dict[str, Any]:
    """On minus off, per job: the totals and the requests by kind that moved."""
    a, b = totals(on), totals(off)
    kinds_on, kinds_off = on["aws_requests_per_job"], off["aws_requests_per_job"]
    moved = {
        k: round(kinds_on.get(k, 0.0) - kinds_off.get(k, 0.0), 3)
        for k in sorted(set(kinds_on) | set(kinds_off))
        if "amortised" not in k and abs(kinds_on.get(k, 0.0) - kinds_off.get(k, 0.0)) >= 0.005
    }
    return {
        "extra_requests_per_job": round(a["requests"] - b["requests"], 3),
        "extra_wru_per_job": round(a["wru"] - b["wru"], 3),
        "extra_rru_per_job": round(a["rru"] - b["rru"], 3),
        "extra_usd_per_million_jobs": round(a["usd_per_million"] - b["usd_per_million"], 3),
        "extra_usd_per_million_jobs_requests_only": round(
            a["usd_per_million_requests"] - b["usd_per_million_requests"], 3
        ),
        "requests_that_moved_per_job": moved,
        "on": a,
        "off": b,
    }


# ------------------------------------------------------------------------------------ scenarios
def plain(n: int, type_name: str = "bench.plain") -> Callable[[Harness], list[str]]:
    def run(h: Harness) -> list[str]:
        ids = [h.enqueue(type_name, f"k{i}", i) for i in range(n)]
        h.run()
        return ids

    return run


def overlapping(n: int, type_name: str) -> Callable[[Harness], list[str]]:
    """n jobs on one key, each handler starting another worker invocation while it runs (two
    deep): with concurrency=1 the jobs offered meanwhile wait for the slot."""

    def run(h: Harness) -> list[str]:
        from bench import flow_jobs
        from tarefa.local.runtime import deliver

        worker = h.app.stack.functions["WorkerFunction"]
        source = next(s for s in worker.sqs if s.queue_logical_id == "MediumQueue")
        copies = [h.app.new_handler(worker) for _ in range(2)]
        depth = [0]

        def nested() -> None:
            if depth[0] >= len(copies):
                return
            depth[0] += 1
            try:
                deliver(h.app.sqs, worker, copies[depth[0] - 1], source)
            finally:
                depth[0] -= 1

        ids = [h.enqueue(type_name, "one-key", i) for i in range(n)]
        flow_jobs.DURING.append(nested)
        try:
            for _ in range(200):
                h.run(2)
                if h.statuses(ids)["COMPLETED"] == n:
                    break
        finally:
            flow_jobs.DURING.clear()
        return ids

    return run


def debounced_bursts(n: int, size: int) -> Callable[[Harness], list[str]]:
    def run(h: Harness) -> list[str]:
        ids = [h.enqueue("bench.debounce", f"burst-{i // size}", i) for i in range(n)]
        for _ in range(4):  # the period (5 s), then each earlier job's look a second after it
            h.run(6)
        return ids

    return run


def plain_waited(n: int) -> Callable[[Harness], list[str]]:
    """The control of a debounced run: the same enqueues and clock moves, nothing debounced."""

    def run(h: Harness) -> list[str]:
        ids = [h.enqueue("bench.plain", f"k{i}", i) for i in range(n)]
        for _ in range(4):
            h.run(6)
        return ids

    return run


def repeats(n: int, type_name: str) -> tuple[Callable[[Harness], Any], Callable[[Harness], list[str]]]:
    """n jobs enqueued (not measured, not run: held an hour), then each enqueued again (measured):
    a unique key's hit, or (bench.plain) an Idempotency-Key's repeat."""
    firsts: list[str] = []

    def body(i: int) -> dict[str, Any]:
        return {"type": type_name, "payload": {"key": f"k{i}", "n": i}, "delaySeconds": 3600}

    def call(h: Harness, i: int) -> Any:
        headers = {"Idempotency-Key": f"repeat-{i}"} if type_name == "bench.plain" else None
        return h.app.api("POST", "/jobs", body(i), {"sub": "bench-repeats"}, headers=headers)

    def prepare(h: Harness) -> None:
        for i in range(n):
            answer = call(h, i)
            if answer.status != 202:
                raise RuntimeError(f"POST /jobs answered {answer.status}: {answer.body}")
            firsts.append(answer.body["jobId"])

    def run(h: Harness) -> list[str]:
        for i in range(n):
            answer = call(h, i)
            if answer.status != 200 or answer.body["jobId"] != firsts[i]:
                raise RuntimeError(f"the repeat answered {answer.status}: {answer.body}")
        return list(firsts)

    return prepare, run


def firings(n: int) -> tuple[Callable[[Harness], Any], Callable[[Harness], list[str]]]:
    """A schedule (made unmeasured) fired n times: Scheduler's SendMessage of its Input with the
    firing's time, as the local scheduler sends it, then the worker."""
    state: dict[str, Any] = {}

    def prepare(h: Harness) -> None:
        import boto3

        from tarefa import wiring
        from tarefa.schedules import schedule_key

        answer = h.app.api(
            "POST",
            "/schedules",
            {"name": "every", "type": "bench.plain", "payload": {"key": "s"}, "rate": "rate(1 minute)"},
            {"sub": "bench-scheduler"},
        )
        if answer.status != 201:
            raise RuntimeError(f"POST /schedules answered {answer.status}: {answer.body}")
        group = wiring.container().settings.schedule_group
        found = boto3.client("scheduler").get_schedule(
            Name=schedule_key("bench-scheduler", "every"), GroupName=group
        )
        arn = found["Target"]["Arn"]
        state["input"] = found["Target"]["Input"]
        state["url"] = next(
            url for url in h.app.stack.queue_urls.values() if url.endswith("/" + arn.rsplit(":", 1)[-1])
        )
        state["sqs"] = boto3.client("sqs")

    def run(h: Harness) -> list[str]:
        from tarefa.schedules import SCHEDULED_TIME

        start = 1_900_000_000  # firing times a minute apart, one job each
        ids = []
        for i in range(n):
            at = datetime.fromtimestamp(start + 60 * i, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            body = state["input"].replace(SCHEDULED_TIME, at)
            state["sqs"].send_message(QueueUrl=state["url"], MessageBody=body)
            ids.append(json.loads(body)["jobId"])
        h.run()
        return ids

    return prepare, run


def bulk(n: int, action: str) -> tuple[Callable[[Harness], Any], Callable[[Harness], list[str]]]:
    """n jobs made FAILED (retry) or held PENDING (cancel), unmeasured; then the operation, and
    only its own job (system.bulk, on the LOW queue) is run: the retried jobs wait in theirs."""
    ids: list[str] = []
    owner = {"sub": "bench-bulk"}

    def prepare(h: Harness) -> None:
        for i in range(n):
            if action == "retry":
                body: dict[str, Any] = {"type": "bench.fails", "payload": {"key": f"k{i}"}}
            else:
                body = {"type": "bench.plain", "payload": {"key": f"k{i}"}, "delaySeconds": 3600}
            answer = h.app.api("POST", "/jobs", body, owner)
            if answer.status != 202:
                raise RuntimeError(f"POST /jobs answered {answer.status}: {answer.body}")
            ids.append(answer.body["jobId"])
        h.run()

    def run(h: Harness) -> list[str]:
        kind = "bench.fails" if action == "retry" else "bench.plain"
        answer = h.app.api("POST", f"/jobs/bulk/{action}", {"type": kind}, owner)
        if answer.status != 202:
            raise RuntimeError(f"POST /jobs/bulk/{action} answered {answer.status}: {answer.body}")
        worker = h.app.stack.functions["WorkerFunction"]
        low = next(s for s in worker.sqs if s.queue_logical_id == "LowQueue")
        for _ in range(200):
            let_sqs_timers_pass()
            if not h.app.poll(worker, low):
                status = h.app.api("GET", f"/jobs/bulk/{answer.body['operationId']}", claims=owner).body
                if status.get("status") in ("COMPLETED", "FAILED", "CANCELLED"):
                    break
                h.clock.advance(5)
        return list(ids)

    return prepare, run


# --------------------------------------------------------------------------------------- measure
def measure(n: int) -> dict[str, Any]:
    started = time.perf_counter()
    results: dict[str, Any] = {
        "date": datetime.now(UTC).date().isoformat(),
        "measured": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "jobs_per_scenario": n,
        "prices": "bench/prices.json, and: " + json.dumps(EXTRA),
        "method": "on minus off per job, real handlers on moto (bench/flow_bench.py docstring)",
    }
    features: dict[str, Any] = {}
    outcomes: dict[str, Any] = {}

    def attempt(name: str, work: Callable[[], dict[str, Any]]) -> None:
        try:
            features[name] = work()
        except Exception as exc:  # a report, never a failure
            traceback.print_exc()
            features[name] = {"error": f"{type(exc).__name__}: {exc}"}

    off, outcome, off_meter = measure_run(plain(n), n)
    outcomes["off"] = dict(outcome)
    results["off_per_job"] = {**totals(off), "aws_requests": off["aws_requests_per_job"]}
    results["bystatus_index_wru_per_job"] = off["dynamodb_index_wru_per_job"].get("JobsTable/ByStatus", 0.0)

    def option(type_name: str) -> dict[str, Any]:
        on, outcome, _ = measure_run(plain(n, type_name), n)
        outcomes[type_name] = dict(outcome)
        return difference(on, off)

    attempt("concurrency", lambda: option("bench.concurrency"))

    def contended() -> dict[str, Any]:
        count = max(10, n // 2)
        on, outcome, meter = measure_run(overlapping(count, "bench.concurrency_one"), count)
        outcomes["bench.concurrency_one overlapping"] = dict(outcome)
        control, _, _ = measure_run(overlapping(count, "bench.plain"), count)
        found = difference(on, control)
        waits = sum(v for k, v in meter.calls.items() if k.startswith("sqs ChangeMessageVisibility"))
        found["waits_per_job"] = round(waits / count, 3)
        if waits:
            found["extra_requests_per_wait"] = round((found["extra_requests_per_job"] - 2) * count / waits, 3)
            found["extra_wru_per_wait"] = round((found["extra_wru_per_job"] - 2) * count / waits, 3)
        found["note"] = (
            f"{count} jobs on one key, concurrency=1, each handler starting another invocation "
            "(two deep): the jobs offered meanwhile wait; per wait: the failed take, the message's "
            "visibility change, its redelivery and the job's read"
        )
        return found

    attempt("concurrency_contended", contended)
    attempt("unique_key", lambda: option("bench.unique"))

    def unique_hit() -> dict[str, Any]:
        prepare, run = repeats(n, "bench.unique")
        on, _, _ = measure_run(run, n, prepare)
        prepare, run = repeats(n, "bench.plain")
        control, _, _ = measure_run(run, n, prepare)
        found = difference(on, control)
        found["against"] = "a repeated POST /jobs with the same Idempotency-Key (also a 200)"
        return found

    attempt("unique_key_hit", unique_hit)

    def debounce_alone() -> dict[str, Any]:
        on, outcome, _ = measure_run(debounced_bursts(n, 1), n)
        outcomes["bench.debounce"] = dict(outcome)
        control, _, _ = measure_run(plain_waited(n), n)
        found = difference(on, control)
        found["note"] = "a key per job: every job is its burst's last and runs, after the period"
        return found

    attempt("debounce", debounce_alone)

    def bursts() -> dict[str, Any]:
        on, outcome, _ = measure_run(debounced_bursts(n, 10), n)
        outcomes["bench.debounce bursts of 10"] = dict(outcome)
        control, _, _ = measure_run(plain_waited(n), n)
        found = difference(on, control)
        found["note"] = (
            "per job enqueued; 1 in 10 runs, 9 end CANCELLED (DEBOUNCED): cheaper than running all"
        )
        return found

    attempt("debounce_bursts_of_10", bursts)

    def fairness() -> dict[str, Any]:
        on, outcome, meter = measure_run(plain(n, "bench.fair"), n)
        outcomes["bench.fair"] = dict(outcome)
        found = difference(on, off)
        grouped = sum(
            v for k, v in meter.calls.items() if k.startswith("sqs ") and k.split()[1] in _GROUPED_SQS
        )
        grouped_off = sum(
            v for k, v in off_meter.calls.items() if k.startswith("sqs ") and k.split()[1] in _GROUPED_SQS
        )
        per_job = grouped / n
        found["sqs_requests_with_a_group_per_job"] = round(per_job, 3)
        charge = round(per_job * extra_price("sqs_fair_queue_request") * 1e6, 3)
        found["fair_queue_usd_per_million_jobs"] = charge
        found["extra_usd_per_million_jobs_requests_only"] = round(
            found["extra_usd_per_million_jobs_requests_only"] + charge, 3
        )
        found["note"] = (
            "every message carries a MessageGroupId with or without fairness_key (the owner's by "
            "default): fairness_key adds no request; the fair-queue charge applies to every job, "
            f"{round(grouped_off / n, 3)} grouped SQS requests per plain job"
        )
        return found

    attempt("fairness", fairness)

    def schedule_firing() -> dict[str, Any]:
        prepare, run = firings(n)
        on, outcome, _ = measure_run(run, n, prepare)
        outcomes["schedule firings"] = dict(outcome)
        found = difference(on, off)
        scheduler = extra_price("scheduler_invocation") * 1e6
        found["scheduler_invocation_usd_per_million"] = scheduler
        found["usd_per_million_firings"] = round(on["usd_per_million_jobs"] + scheduler, 3)
        found["extra_usd_per_million_jobs"] = round(found["extra_usd_per_million_jobs"] + scheduler, 3)
        found["extra_usd_per_million_jobs_requests_only"] = round(
            found["extra_usd_per_million_jobs_requests_only"] + scheduler, 3
        )
        found["against"] = (
            "a job made by POST /jobs (the firing has no API request; Scheduler's invocation is added)"
        )
        return found

    attempt("schedule_firing", schedule_firing)

    def bulk_operation(action: str) -> dict[str, Any]:
        prepare, run = bulk(n, action)
        summary, outcome, _ = measure_run(run, n, prepare)
        outcomes[f"bulk {action}"] = dict(outcome)
        figures = totals(summary)
        return {
            "extra_requests_per_job": figures["requests"],
            "extra_wru_per_job": figures["wru"],
            "extra_rru_per_job": figures["rru"],
            "extra_usd_per_million_jobs": figures["usd_per_million"],
            "extra_usd_per_million_jobs_requests_only": figures["usd_per_million_requests"],
            "requests_per_job_acted_on": summary["aws_requests_per_job"],
            "per": "job acted on (the operation's own requests: none when no operation runs)",
        }

    attempt("bulk_retry", lambda: bulk_operation("retry"))
    attempt("bulk_cancel", lambda: bulk_operation("cancel"))
    results["features"] = features
    results["outcomes"] = outcomes
    results["bench_seconds"] = round(time.perf_counter() - started, 1)
    return results


_TIME_BILLED = {"lambda_duration", "logs"}
_GROUPED_SQS = {
    "SendMessage",
    "SendMessageBatch",
    "ReceiveMessage",
    "DeleteMessage",
    "DeleteMessageBatch",
    "ChangeMessageVisibility",
    "ChangeMessageVisibilityBatch",
}


def write(flow: dict[str, Any], path: Path = RESULTS) -> None:
    existing = json.loads(path.read_text()) if path.exists() else {}
    existing["flow"] = flow
    path.write_text(json.dumps(existing, indent=2) + "\n")


def print_table(flow: dict[str, Any]) -> None:
    print(f"flow control, {flow['jobs_per_scenario']} jobs a scenario, {flow['bench_seconds']} s")
    print(
        f"  {'feature':24} {'requests/job':>13} {'WRU/job':>9} {'RRU/job':>9} {'$/M (requests)':>15} "
        f"{'$/M (all)':>10}"
    )
    for name, found in flow["features"].items():
        if "error" in found:
            print(f"  {name:24} {found['error']}")
            continue
        print(
            f"  {name:24} {found['extra_requests_per_job']:>13} {found['extra_wru_per_job']:>9} "
            f"{found['extra_rru_per_job']:>9} {found['extra_usd_per_million_jobs_requests_only']:>15} "
            f"{found['extra_usd_per_million_jobs']:>10}"
        )
    print(f"  the ByStatus index (bulk operations), on every job: {flow['bystatus_index_wru_per_job']} WRU")
    print(f"  outcomes: {json.dumps(flow['outcomes'])}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--jobs", type=int, default=JOBS, help="jobs per scenario")
    parser.add_argument("--no-write", action="store_true", help="print only; leave results.json alone")
    args = parser.parse_args(argv)
    _aws_environment()
    flow = measure(args.jobs)
    if not args.no_write:
        write(flow)
    try:
        print_table(flow)
    except Exception:
        traceback.print_exc()
    return 0


if __name__ == "__main__":
    sys.exit(main())
