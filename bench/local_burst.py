"""`make bench-local`: how fast `tarefa local` takes a burst of enqueues over HTTP.

Starts the local stack as a subprocess (as the end-to-end tests do), then for 1, 4 and 16
concurrent clients sends a burst of `POST /jobs` (200 by default), each client on a keep-alive
connection of its own and with a user of its own (as separate guests would be), and reports
enqueue throughput and p50/p95 latency. Then a crowd: 500 guests at once, each opening a
connection and sending one request. Between bursts it waits for the workers to finish the
previous burst's jobs, so that each starts on an idle stack (the workers still run during a
burst, as they would).

Writes bench/results.json under "local_api" -> LABEL (`--label`, default "after"), keeping every
other key and label. `--stack-pythonpath DIR` runs the stack from another copy of the code (the
"before" figures came from the local stack's files as they were). Reports; never fails on a
slow machine.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results.json"
BODY = json.dumps({"type": "system.echo", "payload": {"guest": "x" * 200}}).encode()


def machine() -> dict[str, Any]:
    """What the figures were measured on: they mean little without it."""
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    nproc = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 0
    return {"nproc": nproc, "cpu": model, "python": platform.python_version()}


def percentile(values: list[float], share: float) -> float:
    """Nearest-rank percentile: with 200 samples, p95 is the 190th fastest."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(share * len(ordered) + 0.5)))
    return ordered[rank - 1]


class Client(threading.Thread):
    """One guest: a keep-alive connection of its own, taking requests until the burst is sent."""

    def __init__(self, host: str, port: int, token: str, take: Any) -> None:
        super().__init__(daemon=True)
        self.connection = http.client.HTTPConnection(host, port, timeout=60)
        self.headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        self.take = take
        self.latencies: list[float] = []
        self.statuses: list[int] = []
        self.failures: list[str] = []  # why a request got no answer (connection refused, reset...)

    def run(self) -> None:
        while self.take():
            started = time.perf_counter()
            try:
                self.connection.request("POST", "/jobs", BODY, self.headers)
                response = self.connection.getresponse()
                response.read()
                status = response.status
            except (OSError, http.client.HTTPException) as exc:
                self.connection.close()  # reconnects on the next request
                self.failures.append(type(exc).__name__)
                status = 0
            self.latencies.append((time.perf_counter() - started) * 1000)
            self.statuses.append(status)
        self.connection.close()


def burst(host: str, port: int, tokens: list[str], jobs: int) -> dict[str, Any]:
    """`jobs` requests shared by one client per token, all at once."""
    remaining = [jobs]
    lock = threading.Lock()

    def take() -> bool:
        with lock:
            if remaining[0] == 0:
                return False
            remaining[0] -= 1
            return True

    return _run([Client(host, port, token, take) for token in tokens])


def crowd(host: str, port: int, tokens: list[str]) -> dict[str, Any]:
    """One request per token, every client released at the same moment: guests arriving."""
    gate = threading.Barrier(len(tokens))

    def one_each() -> Callable[[], bool]:
        sent = [False]

        def take() -> bool:
            if sent[0]:
                return False
            gate.wait()
            sent[0] = True
            return True

        return take

    return _run([Client(host, port, token, one_each()) for token in tokens])


def _run(clients: list[Client]) -> dict[str, Any]:
    started = time.perf_counter()
    for client in clients:
        client.start()
    for client in clients:
        client.join()
    seconds = time.perf_counter() - started
    latencies = [ms for c in clients for ms in c.latencies]
    statuses = [s for c in clients for s in c.statuses]
    failures = Counter(f for c in clients for f in c.failures)
    return {
        "seconds": round(seconds, 2),
        "requests_per_second": round(statuses.count(202) / seconds, 1),  # accepted ones only
        "p50_ms": round(statistics.median(latencies), 1),
        "p95_ms": round(percentile(latencies, 0.95), 1),
        "max_ms": round(max(latencies), 1),
        "accepted": statuses.count(202),
        "errors": len(statuses) - statuses.count(202),
        "error_kinds": dict(Counter(str(s) for s in statuses if s not in (0, 202)) + failures),
    }


def wait_until_completed(stack: Any, wanted: int, timeout: float = 180) -> int:
    deadline = time.monotonic() + timeout
    while (done := stack.count(" system.echo COMPLETED")) < wanted and time.monotonic() < deadline:
        time.sleep(0.2)
    return int(done)


def drained(stack: Any, enqueued: int) -> float:
    """Seconds from the end of a burst until the workers completed every job enqueued so far:
    what the burst cost the jobs, not only the enqueues."""
    started = time.perf_counter()
    wait_until_completed(stack, enqueued)
    return round(time.perf_counter() - started, 2)


def run(jobs: int, levels: list[int], guests: int, stack_args: list[str]) -> dict[str, Any]:
    from tarefa.local.auth import LocalAuthority
    from tarefa.local.process import StackProcess

    state_dir = Path(tempfile.mkdtemp(prefix="tarefa-burst-"))
    stack = StackProcess(state_dir, *stack_args)
    try:
        authority = LocalAuthority(state_dir)  # the stack's own key: tokens without a subprocess each
        port = stack.api_port
        warm = burst("127.0.0.1", port, [authority.mint("warm-up")] * 4, 20)
        enqueued = warm["accepted"]
        figures: dict[str, Any] = {}
        for level in levels:
            wait_until_completed(stack, enqueued)
            tokens = [authority.mint(f"guest-{level}-{i}") for i in range(level)]
            figures[str(level)] = burst("127.0.0.1", port, tokens, jobs)
            enqueued += figures[str(level)]["accepted"]
            figures[str(level)]["completed_after_seconds"] = drained(stack, enqueued)
            print(f"  {level:>3} clients: {json.dumps(figures[str(level)])}", flush=True)
        crowded: dict[str, Any] | None = None
        if guests:
            wait_until_completed(stack, enqueued)
            crowded = crowd("127.0.0.1", port, [authority.mint(f"crowd-{i}") for i in range(guests)])
            enqueued += crowded["accepted"]
            crowded["completed_after_seconds"] = drained(stack, enqueued)
            print(f"  crowd of {guests}: {json.dumps(crowded)}", flush=True)
        completed = wait_until_completed(stack, enqueued)
    finally:
        stack.stop()
    result: dict[str, Any] = {"clients": figures, "enqueued": enqueued, "completed": completed}
    if crowded is not None:
        result["crowd"] = {"guests": guests, **crowded}
    return result


def merge_results(label: str, figures: dict[str, Any], path: Path = RESULTS) -> None:
    """Put `figures` under local_api -> label, keeping every other key and label."""
    results: dict[str, Any] = json.loads(path.read_text()) if path.exists() else {}
    local_api = results.get("local_api", {})
    local_api[label] = figures
    results["local_api"] = local_api
    path.write_text(json.dumps(results, indent=2) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n", 1)[0])
    parser.add_argument("--jobs", type=int, default=200, help="requests per burst (default 200)")
    parser.add_argument("--clients", default="1,4,16", help="concurrent clients per burst (default 1,4,16)")
    parser.add_argument(
        "--crowd", type=int, default=500, help="guests arriving at once (default 500; 0: none)"
    )
    parser.add_argument("--label", default="after", help="where in local_api to write (default after)")
    parser.add_argument("--no-write", action="store_true", help="print only; leave results.json alone")
    parser.add_argument("--stack-pythonpath", default="", help="run the stack with this PYTHONPATH first")
    parser.add_argument(
        "stack_args", nargs="*", help="passed to `tarefa local`, after --  (e.g. -- --api-concurrency 4)"
    )
    args = parser.parse_args(argv)
    levels = [int(n) for n in args.clients.split(",") if n]
    if args.stack_pythonpath:
        os.environ["PYTHONPATH"] = os.pathsep.join(
            filter(None, [args.stack_pythonpath, os.environ.get("PYTHONPATH")])
        )
    print(f"Burst of {args.jobs} POST /jobs, clients {levels}, tarefa local {' '.join(args.stack_args)}")
    figures = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d"),
        "machine": machine(),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        "jobs_per_burst": args.jobs,
        "stack_args": args.stack_args,
        **run(args.jobs, levels, args.crowd, args.stack_args),
    }
    if not args.no_write:
        merge_results(args.label, figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
