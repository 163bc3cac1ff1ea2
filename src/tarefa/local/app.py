"""The whole application in one process: the template's resources in an AWS endpoint (moto,
in-process or as a server), and the real handlers invoked as Lambda would invoke them.

The local stack serves this over HTTP; integration tests and benchmarks drive it directly.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass, replace
from typing import Any

from tarefa import wiring
from tarefa.local.provision import Function, SqsSource, Stack, provision
from tarefa.local.runtime import (
    Handler,
    StreamPoller,
    deliver,
    http_event,
    invoke,
    load_handler,
    match_route,
)

# Tests only: every event source mapping's MaximumBatchingWindowInSeconds, in place of the
# template's, so that a test does not wait out each partial batch's window in real time.
BATCHING_WINDOW_VARIABLE = "TAREFA_LOCAL_BATCHING_WINDOW"


@dataclass(frozen=True)
class HttpResult:
    status: int
    headers: dict[str, str]
    body: Any
    text: str = ""


class EmulatorClients:
    """The emulator's clients: those given, and Lambda and IAM where AWS_ENDPOINT_URL (the local
    stack) or moto's mock (the tests) sends them."""

    def __init__(self, sqs: Any, dynamodb: Any) -> None:
        import boto3
        from botocore.config import Config

        self.sqs = sqs
        self.dynamodb = dynamodb
        session = boto3.session.Session(region_name=sqs.meta.region_name)
        self.lambda_ = session.client("lambda")
        self.iam = session.client("iam")
        self.kms = session.client("kms")  # the key that seals sensitive payload fields
        self.scheduler = session.client("scheduler")  # the user schedules' group (tarefa.schedules)
        self.sesv2 = session.client("sesv2")  # the template's SES identities (a sender)
        # botocore would send stream calls to an account-based endpoint the mock does not know.
        no_account_endpoint = Config(account_id_endpoint_mode="disabled")
        self.streams = session.client("dynamodbstreams", config=no_account_endpoint)


class LocalApp:
    def __init__(
        self,
        sqs: Any,
        dynamodb: Any,
        parameters: dict[str, str] | None = None,
        environment: dict[str, str] | None = None,
        batching_window: int | None = None,
    ) -> None:
        """`parameters` override the template's; `environment` overrides what the template
        gives the functions (e.g. REDIS_URL for a local Redis instead of ElastiCache).
        `batching_window` (default $TAREFA_LOCAL_BATCHING_WINDOW, else the template's) is for
        tests: the seconds every event source mapping waits to fill a partial batch."""
        self.sqs = sqs
        clients = EmulatorClients(sqs, dynamodb)
        self.lambda_ = clients.lambda_
        self.streams = clients.streams
        self.stack: Stack = provision(clients, {"EnableTestJobs": "1", **(parameters or {})})
        window = _batching_window_override() if batching_window is None else batching_window
        if window is not None:
            for function in self.stack.functions.values():
                function.sqs = [replace(s, batching_window_seconds=window) for s in function.sqs]
                function.streams = [replace(s, batching_window_seconds=window) for s in function.streams]
        # The functions share the template's Globals environment; one process, one environ.
        for function in self.stack.functions.values():
            function.environment.update(environment or {})
            os.environ.update(function.environment)
            for layer in function.layers:  # Lambda puts a layer's python/ on the path
                if str(layer) not in sys.path:
                    sys.path.append(str(layer))
        wiring.reset()
        self.handlers: dict[str, Handler] = {
            logical_id: load_handler(function) for logical_id, function in self.stack.functions.items()
        }
        self.api_function = self.stack.function_with_routes()
        self.route_functions = self.stack.routes()
        self.routes = list(self.route_functions)
        self.stream_pollers = [
            StreamPoller(self.streams, f, source)
            for f in self.stack.functions.values()
            for source in f.streams
        ]

    # -- HTTP ------------------------------------------------------------------------------
    def api(
        self,
        method: str,
        path: str,
        body: bytes | str | Any = b"",
        claims: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        source_ip: str = "127.0.0.1",
    ) -> HttpResult:
        """One request as API Gateway would pass it, once the JWT authorizer let `claims` in,
        served by the app's own execution environment of the route's function."""
        routed = self.route(method, path, body, claims, headers, source_ip)
        if isinstance(routed, HttpResult):
            return routed
        function, event = routed
        return http_result(invoke(function, self.handlers[function.logical_id], event))

    def route(
        self,
        method: str,
        path: str,
        body: bytes | str | Any = b"",
        claims: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        source_ip: str = "127.0.0.1",
    ) -> HttpResult | tuple[Function, dict[str, Any]]:
        """The function a request goes to and its event, or API Gateway's own answer (no route,
        no token): apart from `api`, so that a caller can pick the execution environment."""
        path, _, query = path.partition("?")
        found = match_route(self.routes, method, path)
        if found is None:
            return _gateway_error(404, "Not Found")
        route, parameters = found
        if route.authorized and claims is None:
            return _gateway_error(401, "Unauthorized")
        if not isinstance(body, bytes | str):
            body = json.dumps(body)
        raw = body.encode() if isinstance(body, str) else body
        event = http_event(
            method,
            path,
            f"{route.method} {route.path}",
            parameters,
            query,
            {"content-type": "application/json", **(headers or {})},
            raw,
            source_ip,
            claims if route.authorized else None,
        )
        return self.route_functions[route], event

    def new_handler(self, function: Function) -> Handler:
        """A fresh copy of a function's module: one per concurrent execution environment."""
        return load_handler(function)

    # -- SQS event sources -----------------------------------------------------------------
    def sqs_sources(self) -> list[tuple[Function, SqsSource]]:
        return [(f, s) for f in self.stack.functions.values() for s in f.sqs]

    def consuming(self, source: SqsSource) -> bool:
        """False while the queue is paused: its mapping is disabled, as on AWS."""
        return bool(self.lambda_.get_event_source_mapping(UUID=source.mapping_id)["State"] == "Enabled")

    def poll(self, function: Function, source: SqsSource, wait_seconds: int = 0) -> int:
        if not self.consuming(source):
            return 0
        return deliver(self.sqs, function, self.handlers[function.logical_id], source, wait_seconds)

    def drain(self, max_rounds: int = 100) -> int:
        """Poll every queue until a whole round finds nothing visible, then hand the stream
        consumers what the jobs table recorded meanwhile. Returns the messages delivered."""
        delivered = 0
        for _ in range(max_rounds):
            this_round = sum(self.poll(f, s) for f, s in self.sqs_sources())
            if this_round == 0:
                break
            delivered += this_round
        self.pump_streams()
        return delivered

    # -- DynamoDB stream event sources -----------------------------------------------------
    def pump_streams(self) -> int:
        """Deliver every stream's new records; how many there were."""
        delivered = 0
        for poller in self.stream_pollers:
            while count := poller.deliver(self.handlers[poller.function.logical_id]):
                delivered += count
        return delivered

    # -- schedules -------------------------------------------------------------------------
    def fire(self, schedule_name: str) -> Any:
        for function in self.stack.functions.values():
            for schedule in function.schedules:
                if schedule.name == schedule_name:
                    return invoke(function, self.handlers[function.logical_id], dict(schedule.input))
        raise KeyError(f"no schedule named {schedule_name}")


def http_result(response: dict[str, Any]) -> HttpResult:
    """A function's payload 2.0 response as the client gets it."""
    text = response.get("body") or ""
    headers = {k.lower(): v for k, v in (response.get("headers") or {}).items()}
    is_json = headers.get("content-type", "application/json").startswith("application/json")
    return HttpResult(response["statusCode"], headers, json.loads(text) if text and is_json else None, text)


def redis_overrides(url: str) -> tuple[dict[str, str], dict[str, str]]:
    """Template parameters and function environment for a plain Redis at `url` in place of
    ElastiCache (no cluster mode, no Secrets Manager: credentials, if any, are in the URL)."""
    environment = {
        "REDIS_URL": url,
        "REDIS_CLUSTER": "false",
        "REDIS_USERNAME": "",
        "REDIS_PASSWORD_SECRET_ARN": "",
    }
    return {"CacheBackend": "redis"}, environment


def _batching_window_override() -> int | None:
    given = os.environ.get(BATCHING_WINDOW_VARIABLE, "").strip()
    if not given:
        return None
    if not given.isdigit():
        raise ValueError(f"{BATCHING_WINDOW_VARIABLE} must be a whole number of seconds, got {given!r}")
    return int(given)


def _gateway_error(status: int, message: str) -> HttpResult:
    """What API Gateway itself answers before any function runs."""
    body = {"message": message}
    headers = {"content-type": "application/json"}
    if status == 401:
        headers["www-authenticate"] = "Bearer"
    return HttpResult(status, headers, body, json.dumps(body))
