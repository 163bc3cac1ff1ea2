"""`make bench-fairness`: what one tenant's burst does to another's jobs without fair queues.

Two users: "big" enqueues 2,000 jobs (`--big N`), then "small" enqueues 10 (`--small N`), through
the real API and worker handlers in process on moto (the local emulator), then the worker drains
the queue. A job's wait is its processingStartedAt - createdAt. The small user's p95 wait is the
figure; a run with the small user alone is the baseline. moto delivers a standard queue in the
order it was sent and knows nothing of fair queues, so this measures the unfair case only: what
the small user waits behind the burst. Every message carries its owner as MessageGroupId
(tarefa.flow), which on AWS turns the standard queues into fair queues.

On a deployment, `--api https://<api> --big-token <JWT of user A> --small-token <JWT of user B>`
measures the fair case the same way over HTTP (the jobs are system.echo; GET /jobs/{id} reads
each wait once the jobs finished). Expect the small user's p95 near the baseline, the burst's
jobs waiting instead: SQS serves the quiet tenant first once the noisy one holds a large share
of the messages in flight (README "Flow control").

Writes the key "fairness" of bench/results.json (other keys are kept). Reports; never fails.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import platform
import statistics
import sys
import time
import urllib.request
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results.json"
for part in ("layers/tarefa", "layers/workloads", "src", "examples", "."):
    if str(ROOT / part) not in sys.path:
        sys.path.insert(0, str(ROOT / part))


class _Discard(io.TextIOBase):
    """Where the functions' own stdout goes (their logs and metrics): nowhere."""

    def write(self, text: str) -> int:
        return len(text)


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return 0.0
    return ordered[min(len(ordered) - 1, max(0, round(share * len(ordered) + 0.5) - 1))]


def waits_of(jobs: list[dict[str, Any]]) -> list[float]:
    return [
        (
            datetime.fromisoformat(j["processingStartedAt"]) - datetime.fromisoformat(j["createdAt"])
        ).total_seconds()
        for j in jobs
        if j.get("processingStartedAt")
    ]


def figures(waits: list[float]) -> dict[str, float]:
    return {
        "p50_wait_s": round(statistics.median(waits), 3) if waits else 0.0,
        "p95_wait_s": round(percentile(waits, 0.95), 3),
        "max_wait_s": round(max(waits), 3) if waits else 0.0,
    }


# -- locally, on moto ------------------------------------------------------------------------------


def local_run(big: int, small: int) -> dict[str, Any]:
    """One burst on a fresh emulated stack: big's jobs, then small's; the waits of each."""
    import boto3
    from moto import mock_aws

    from tarefa import wiring
    from tarefa.local.app import LocalApp

    big_claims = {"sub": "tenant-big"}
    small_claims = {"sub": "tenant-small"}
    with mock_aws(), contextlib.redirect_stdout(_Discard()):
        os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
        # the burst is one user's 2,000 enqueues: the per-user enqueue limit (600/60) is off
        app = LocalApp(
            boto3.client("sqs"), boto3.client("dynamodb"), {"EnqueueRateLimit": "off"}, batching_window=0
        )
        ids: dict[str, list[str]] = {"big": [], "small": []}
        for who, claims, count in (("big", big_claims, big), ("small", small_claims, small)):
            for n in range(count):
                answer = app.api("POST", "/jobs", {"type": "system.echo", "payload": {"n": n}}, claims)
                assert answer.status == 202, answer.body
                ids[who].append(answer.body["jobId"])
        started = time.perf_counter()
        while app.drain():
            pass
        drained = time.perf_counter() - started
        jobs = {
            who: [
                app.api("GET", f"/jobs/{j}", claims=big_claims if who == "big" else small_claims).body
                for j in job_ids
            ]
            for who, job_ids in ids.items()
        }
    wiring.reset()
    done = sum(1 for js in jobs.values() for j in js if j["status"] == "COMPLETED")
    return {
        "big": figures(waits_of(jobs["big"])),
        "small": figures(waits_of(jobs["small"])),
        "completed": done,
        "drain_seconds": round(drained, 2),
        "jobs_per_second": round((big + small) / drained, 1) if drained else None,
    }


# -- on a deployment, over HTTP --------------------------------------------------------------------


def _http(api: str, method: str, path: str, token: str, body: Any = None) -> dict[str, Any]:
    request = urllib.request.Request(
        api.rstrip("/") + path,
        data=json.dumps(body).encode() if body is not None else None,
        method=method,
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        answer: dict[str, Any] = json.loads(response.read())
    return answer


def deployed_run(api: str, big_token: str, small_token: str, big: int, small: int) -> dict[str, Any]:
    ids: dict[str, list[str]] = {"big": [], "small": []}
    for who, token, count in (("big", big_token, big), ("small", small_token, small)):
        for n in range(count):
            job = _http(api, "POST", "/jobs", token, {"type": "system.echo", "payload": {"n": n}})
            ids[who].append(job["jobId"])
    deadline = time.monotonic() + 1800
    jobs: dict[str, list[dict[str, Any]]] = {}
    while time.monotonic() < deadline:
        jobs = {
            who: [
                _http(api, "GET", f"/jobs/{j}", big_token if who == "big" else small_token) for j in job_ids
            ]
            for who, job_ids in ids.items()
        }
        if all(j["status"] == "COMPLETED" for js in jobs.values() for j in js):
            break
        time.sleep(10)
    return {"big": figures(waits_of(jobs["big"])), "small": figures(waits_of(jobs["small"]))}


def merge_results(fairness: dict[str, Any], path: Path = RESULTS) -> None:
    results: dict[str, Any] = json.loads(path.read_text()) if path.exists() else {}
    results["fairness"] = fairness
    path.write_text(json.dumps(results, indent=2) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--big", type=int, default=2000)
    parser.add_argument("--small", type=int, default=10)
    parser.add_argument("--api", help="a deployment's API URL: measure the fair case there")
    parser.add_argument("--big-token")
    parser.add_argument("--small-token")
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args(argv)
    result: dict[str, Any] = {
        "date": datetime.now(UTC).date().isoformat(),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "scenario": f"user big enqueues {args.big} system.echo jobs, then user small enqueues {args.small}",
    }
    if args.api:
        if not (args.big_token and args.small_token):
            parser.error("--api needs --big-token and --small-token")
        result["where"] = "deployment (SQS fair queues: every message's group is its owner)"
        result["burst"] = deployed_run(args.api, args.big_token, args.small_token, args.big, args.small)
        result["alone"] = deployed_run(args.api, args.big_token, args.small_token, 0, args.small)
    else:
        result["where"] = "local emulator (moto): no fair-queue reordering, the unfair case"
        result["burst"] = local_run(args.big, args.small)
        result["alone"] = local_run(0, args.small)
    burst, alone = result["burst"]["small"]["p95_wait_s"], result["alone"]["small"]["p95_wait_s"]
    result["small_p95_wait_s"] = burst
    result["small_p95_wait_alone_s"] = alone
    result["small_p95_slowdown"] = round(burst / alone, 1) if alone else None
    print(json.dumps(result, indent=2))
    if not args.no_write:
        merge_results(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
