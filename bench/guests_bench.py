"""`make bench-guests`: what a guest's registration (and a returning guest's login) costs on AWS.

On moto in this process, with the guests workload's real handlers behind the routes as API
Gateway passes them, each guest does what the registration page does: open the promoter's page,
check the phone, submit, poll until the job is done, and fetch the QR code; an organiser's
door scans each pass once. Counted the way bench/payments_bench.py counts a payment (its Meter:
every AWS request by kind, DynamoDB write and read units by table and index, Lambda invocations
and GB-seconds, log bytes), then $ per 1,000 registrations with the prices in bench/prices.json.

- bcrypt runs at the template's cost (GuestsBcryptRounds, 10): its time is in the worker's
  GB-seconds as this machine measures it; a 512 MB Lambda has about a third of a vCPU, so the
  worker's duration there is about 3 times this machine's (the table gives that figure too).
- A page polls until its job is done: the figures below count the one poll that finds it done;
  each poll that finds it still running adds `usd_per_extra_poll` (measured apart). The load run
  (`make load`) reports how many polls its guests needed.
- The guests burst a round at a time (all submit, then the worker drains full batches), as a
  crowd does; each round on a fresh stack (moto copies a table per transaction).

Writes bench/results.json under "guests" -> "cost", keeping every other key. Reports; never fails.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # bench.payments_bench

from bench.payments_bench import (
    RESULTS,
    ROOT,
    Clock,
    Meter,
    Tables,
    captured_stdout,
    let_sqs_timers_pass,
    machine,
    price,
    summarise,
)

REGISTRATIONS = 100
ROUND_SIZE = 50
BCRYPT_ROUNDS = "10"  # the template's GuestsBcryptRounds default
LAMBDA_CPU_FACTOR = 3.0  # a 512 MB Lambda's share of a vCPU against this machine's core
ORGANISER = {"sub": "bench-organiser"}
PASSWORD = "Bench-pass-123"  # noqa: S105 - a simulated guest's


def _environment() -> None:
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
    for path in (ROOT / "layers" / "tarefa", ROOT / "layers" / "workloads"):
        if str(path) not in sys.path:
            sys.path.insert(0, str(path))


def phone(n: int) -> str:
    return f"+35191{n:07d}"


def address(n: int) -> str:
    """Each guest's own address (a crowd on its phones' carriers), so no per-address limit binds."""
    return f"198.51.{100 + n // 250}.{n % 250 + 1}"


class Harness:
    """The guests workload on moto, as tests/integration/guests builds it, bcrypt at full cost."""

    def __init__(self, meter: Meter) -> None:
        import boto3
        from aws_lambda_powertools.utilities import parameters
        from guests import jobs as guest_jobs
        from guests.local import start_sandbox

        from tarefa import wiring
        from tarefa.local.app import LocalApp

        local = start_sandbox("http://127.0.0.1:9")
        parameters.clear_caches()  # type: ignore[no-untyped-call]
        guest_jobs.service.cache_clear()
        secrets = boto3.client("secretsmanager")
        for name, value in local.secrets.items():
            secrets.create_secret(Name="tarefa/dev/" + name, SecretString=value)
        self.app = LocalApp(
            boto3.client("sqs"),
            boto3.client("dynamodb"),
            parameters={"LogLevel": "INFO", **local.parameters},
            environment={"GUESTS_BCRYPT_ROUNDS": BCRYPT_ROUNDS},
            batching_window=0,
        )
        self.clock = Clock()
        wiring.container().clock = self.clock
        guest_jobs.service().now = self.clock
        meter.tables = Tables({v: k for k, v in self.app.stack.tables.items()})
        meter.queues = {url: name for name, url in self.app.stack.queue_urls.items()}
        meter.poller_clients = {id(self.app.sqs)}
        meter.emulator_clients = {id(self.app.lambda_), id(self.app.streams)}
        self.events = 0

    def close(self) -> None:
        from aws_lambda_powertools.utilities import parameters
        from guests import jobs as guest_jobs

        from tarefa import wiring

        parameters.clear_caches()  # type: ignore[no-untyped-call]
        guest_jobs.service.cache_clear()
        wiring.reset()

    def call(self, method: str, path: str, body: Any = None, *, ip: str = "", **headers: str) -> Any:
        claims = None if path.startswith("/public/") else ORGANISER
        answer = self.app.api(
            method, path, body, claims, headers=headers or None, source_ip=ip or "127.0.0.1"
        )
        if answer.status >= 300:
            raise RuntimeError(
                f"{method} {path.split('?', maxsplit=1)[0]} answered {answer.status}: {answer.body}"
            )
        return answer

    def event(self, capacity: int) -> dict[str, Any]:
        self.events += 1
        body = {
            "slug": f"festa-{self.events}",
            "name": "Festa",
            "startsAt": "2026-07-01T22:00:00+01:00",
            "capacity": capacity,
            "promoters": [{"slug": "miguel", "name": "Miguel", "team": "Equipa A"}],
        }
        event: dict[str, Any] = self.call("POST", "/events", body).body["event"]
        return event

    def drain(self) -> None:
        let_sqs_timers_pass()
        self.app.drain()

    def crowd(self, event: dict[str, Any], first: int, n: int, login: bool) -> list[dict[str, Any]]:
        """n guests at once: page, phone check, submit; the worker drains; each polls once (done)
        and fetches its QR code; the door scans each pass."""
        submitted = []
        for i in range(first, first + n):
            ip = address(i)
            self.call("GET", f"/public/events/miguel/{event['slug']}", ip=ip)
            self.call(
                "POST", "/public/guests/verify-phone", {"eventId": event["eventId"], "phone": phone(i)}, ip=ip
            )
            body: dict[str, Any] = {"eventId": event["eventId"], "phone": phone(i), "password": PASSWORD}
            if login:
                route = "/public/guests/login"
            else:
                route = "/public/guests/register"
                body.update(
                    promoterSlug="miguel", firstName="Maria", lastName="Silva", email="m@bench.example"
                )
            submitted.append((ip, self.call("POST", route, body, ip=ip).body))
        self.drain()
        results = []
        for ip, accepted in submitted:
            done = self.call(
                "GET",
                f"/public/guests/jobs/{accepted['jobId']}",
                ip=ip,
                **{"X-Status-Token": accepted["statusToken"]},
            ).body
            if done["status"] != "COMPLETED" or not done["result"]["success"]:
                raise RuntimeError(f"a guest's job ended {done['status']}: {done.get('result')}")
            result = done["result"]
            self.call(
                "GET",
                f"/public/guests/{result['guest']['guestId']}/qr",
                ip=ip,
                **{"X-Guest-Session": result["session"]["token"]},
            )
            results.append({"ip": ip, "accepted": accepted, "result": result})
        for found in results:
            self.call(
                "POST", f"/events/{event['eventId']}/check-in", {"token": found["result"]["pass"]["token"]}
            )
        return results


@contextmanager
def metered(meter: Meter) -> Iterator[None]:
    with meter.installed():
        meter.active = True
        try:
            yield
        finally:
            meter.active = False


def scenario(count: int, login: bool, round_size: int = ROUND_SIZE) -> dict[str, Any]:
    """`count` registrations (or logins of guests registered before, for another event)."""
    from moto import mock_aws

    meter = Meter()
    log_total = 0
    seconds = 0.0
    remaining, first = count, 0
    while remaining > 0:
        n = min(remaining, round_size)
        with mock_aws(), captured_stdout() as log_bytes:
            h = Harness(meter)
            try:
                h.crowd(h.event(capacity=10_000), 10_000_000 - 1, 1, login=False)  # warm-up, not measured
                known = h.event(capacity=10_000)
                if login:  # registered for an earlier event, not measured
                    h.crowd(known, first, n, login=False)
                target = h.event(capacity=10_000)
                logged = log_bytes()
                started = time.perf_counter()
                with metered(meter):
                    h.crowd(target, first, n, login=login)
                seconds += time.perf_counter() - started
                log_total += log_bytes() - logged
            finally:
                h.close()
        remaining -= n
        first += n
    summary = summarise(meter, count, log_total, unit="registration")
    total = summary["usd_per_million_registrations"]
    worker_gb_s = summary["lambda_gb_seconds_per_registration"].get("WorkerFunction", 0.0)
    slower = worker_gb_s * (LAMBDA_CPU_FACTOR - 1) * price("lambda_gb_second_arm64") * 1e6
    return {
        "count": count,
        "usd_per_1000": round(total / 1000, 4),
        "usd_per_1000_worker_at_lambda_cpu": round((total + slower) / 1000, 4),
        "seconds_measured": round(seconds, 2),
        **summary,
    }


def extra_poll() -> dict[str, Any]:
    """One poll of a job that is still PENDING: what each poll before the last adds."""
    from moto import mock_aws

    meter = Meter()
    with mock_aws(), captured_stdout() as log_bytes:
        h = Harness(meter)
        try:
            h.crowd(h.event(capacity=100), 10_000_000 - 2, 1, login=False)  # warm-up
            event = h.event(capacity=100)
            ip = address(7)
            accepted = h.call(
                "POST",
                "/public/guests/register",
                {
                    "eventId": event["eventId"],
                    "phone": phone(7),
                    "password": PASSWORD,
                    "firstName": "A",
                    "lastName": "B",
                },
                ip=ip,
            ).body
            polls = 20
            logged = log_bytes()
            with metered(meter):
                for _ in range(polls):
                    h.call(
                        "GET",
                        f"/public/guests/jobs/{accepted['jobId']}",
                        ip=ip,
                        **{"X-Status-Token": accepted["statusToken"]},
                    )
            logs = log_bytes() - logged
        finally:
            h.close()
    summary = summarise(meter, polls, logs, unit="registration")
    return {
        "usd_per_extra_poll": round(summary["usd_per_million_registrations"] / 1e6, 9),
        "usd_per_1000_extra_polls": round(summary["usd_per_million_registrations"] / 1000, 5),
        "aws_requests_per_poll": summary["aws_requests_per_registration"],
    }


def measure(count: int) -> dict[str, Any]:
    results: dict[str, Any] = {
        "measured": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "bcrypt_rounds": int(BCRYPT_ROUNDS),
        "lambda_cpu_factor_assumed": LAMBDA_CPU_FACTOR,
        "prices": "bench/prices.json",
    }
    runs: tuple[tuple[str, Callable[[], dict[str, Any]]], ...] = (
        ("registration", lambda: scenario(count, login=False)),
        ("login", lambda: scenario(count, login=True)),
        ("pending_poll", extra_poll),
    )
    for name, run in runs:
        try:
            results[name] = run()
        except Exception as exc:  # a report, never a failure
            traceback.print_exc()
            results[name] = {"error": f"{type(exc).__name__}: {exc}"}
    return results


def write(cost: dict[str, Any], path: Path = RESULTS) -> None:
    existing = json.loads(path.read_text()) if path.exists() else {}
    guests = existing.get("guests", {})
    guests["cost"] = cost
    existing["guests"] = guests
    path.write_text(json.dumps(existing, indent=2) + "\n")


def print_table(cost: dict[str, Any]) -> None:
    for name in ("registration", "login"):
        found = cost.get(name, {})
        if "error" in found:
            print(f"{name}: {found['error']}")
            continue
        print(
            f"{name}: ${found['usd_per_1000']} per 1,000 (${found['usd_per_1000_worker_at_lambda_cpu']} with the "
            f"worker at a Lambda's CPU); {found['aws_requests_per_registration_total']} AWS requests, "
            f"{found['api_gateway_requests_per_registration']} HTTP requests each"
        )
        for part, usd in found["usd_breakdown_per_million"].items():
            print(f"  {part:28} ${usd / 1000:.5f} per 1,000")
    poll = cost.get("pending_poll", {})
    if "usd_per_1000_extra_polls" in poll:
        print(f"each extra poll: ${poll['usd_per_1000_extra_polls']} per 1,000")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=REGISTRATIONS)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)
    _environment()
    cost = measure(args.count)
    print_table(cost)
    if not args.no_write:
        write(cost)
    return 0


if __name__ == "__main__":
    sys.exit(main())
