"""Locust: the crowd at the door of seed 004. Each simulated guest does what the registration page
does, once: check its phone (`POST /public/guests/verify-phone`), then register (an unknown
phone) or log in (a known one), then poll `GET /public/guests/jobs/{jobId}` every POLL_SECONDS
until the job is done; then it stops. The load run (bench/guests_load.py) sets it up through
environment variables and reads what `test_stop` writes.

Every guest sends from a loopback address of its own (all of 127.0.0.0/8 is loopback on Linux;
the local stack reports the TCP peer as API Gateway reports `sourceIp`), so the per-address limit
applies exactly as it would to guests on their own phones; no header is trusted.
"""

from __future__ import annotations

import json
import os
import threading
import time
from typing import Any

from locust import HttpUser, events, task
from locust.exception import StopUser
from requests.adapters import HTTPAdapter

PLAN = json.loads(os.environ.get("GUESTS_LOAD_PLAN", "{}"))
POLL_SECONDS = float(PLAN.get("pollSeconds", 0.25))
FLOW_TIMEOUT = float(PLAN.get("flowTimeoutSeconds", 120))
_lock = threading.Lock()
samples: dict[str, list[float]] = {}
outcomes: dict[str, int] = {}
polls: list[int] = []
_run: dict[str, Any] = {"next": 0, "runner": None}


def _take() -> int:
    with _lock:
        n = int(_run["next"])
        _run["next"] = n + 1
    return n


def _record(name: str, ms: float) -> None:
    with _lock:
        samples.setdefault(name, []).append(ms)


def _outcome(name: str) -> None:
    with _lock:
        outcomes[name] = outcomes.get(name, 0) + 1
    if sum(outcomes.values()) >= int(PLAN.get("guests", 0)) and _run["runner"] is not None:
        _run["runner"].quit()  # every guest is done: the run ends itself


def _init(environment: Any, **_: Any) -> None:
    _run["runner"] = environment.runner


def _stop(environment: Any, **_: Any) -> None:
    target = os.environ.get("GUESTS_LOAD_OUT")
    if target:
        with _lock:
            found = {"samples_ms": samples, "outcomes": outcomes, "polls": polls}
        with open(target, "w") as out:
            json.dump(found, out)


events.init.add_listener(_init)
events.test_stop.add_listener(_stop)


class SourceAddressAdapter(HTTPAdapter):
    """Connections from one loopback address: the guest's phone."""

    def __init__(self, address: str) -> None:
        self.address = address
        super().__init__(pool_connections=1, pool_maxsize=1)

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        kwargs["source_address"] = (self.address, 0)
        super().init_poolmanager(*args, **kwargs)


class Guest(HttpUser):
    # Everyone arrives at once (the run spawns them all in a second); no think time but the polls.
    wait_time = staticmethod(lambda: 0.0)

    def on_start(self) -> None:
        self.n = _take()
        guests = PLAN["phones"]
        self.phone = guests[self.n % len(guests)]
        self.known = self.n % len(guests) < int(PLAN.get("known", 0))
        # 127.1.0.1, 127.1.0.2, ...: a distinct source address per guest
        address = f"127.{1 + self.n // 62500}.{(self.n // 250) % 250}.{self.n % 250 + 1}"
        adapter = SourceAddressAdapter(address)
        self.client.mount("http://", adapter)

    def _call(self, method: str, path: str, name: str, **kwargs: Any) -> Any:
        started = time.perf_counter()
        with self.client.request(
            method, path, name=name, catch_response=True, timeout=30, **kwargs
        ) as answer:
            _record(name, (time.perf_counter() - started) * 1000)
            if answer.status_code >= 400:
                answer.failure(f"{answer.status_code}")
            return answer

    @task
    def arrive(self) -> None:
        event_id = PLAN["eventId"]
        checked = self._call(
            "POST",
            "/public/guests/verify-phone",
            "verify-phone",
            json={"eventId": event_id, "phone": self.phone},
        )
        if checked.status_code != 200:
            _outcome(f"verify {checked.status_code}")
            raise StopUser
        known = bool(checked.json().get("known"))
        body: dict[str, Any] = {"eventId": event_id, "phone": self.phone, "password": PLAN["password"]}
        if known:
            name = "login"
        else:
            name = "register"
            body.update(promoterSlug=PLAN["promoter"], firstName="Convidado", lastName=f"N{self.n}")
        submitted_at = time.perf_counter()
        accepted = self._call("POST", f"/public/guests/{name}", name, json=body)
        if accepted.status_code != 202:
            _outcome(f"{name} {accepted.status_code}")
            raise StopUser
        job = accepted.json()
        headers = {"X-Status-Token": job["statusToken"]}
        count = 0
        while time.perf_counter() - submitted_at < FLOW_TIMEOUT:
            count += 1
            answer = self._call("GET", f"/public/guests/jobs/{job['jobId']}", "poll", headers=headers)
            if answer.status_code == 200:
                found = answer.json()
                if found["status"] in ("COMPLETED", "FAILED", "CANCELLED"):
                    _record("submit to pass", (time.perf_counter() - submitted_at) * 1000)
                    with _lock:
                        polls.append(count)
                    result = found.get("result") or {}
                    if (
                        found["status"] == "COMPLETED"
                        and result.get("success") is True
                        and result.get("pass")
                    ):
                        _outcome("admitted" if not known else "logged in")
                    else:
                        _outcome(f"{found['status']} {result.get('code', '')}".strip())
                    raise StopUser
            time.sleep(POLL_SECONDS)
        _outcome("timed out")
        raise StopUser
