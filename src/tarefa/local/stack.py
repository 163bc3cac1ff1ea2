"""`tarefa local`: the whole application on loopback, with no Docker and no AWS account.

moto's server plays AWS (in a process of its own: tarefa/local/emulator.py); the template's
resources are created in it; the HTTP API, the SQS event source mappings and the schedules call
the real handlers the way Lambda would, the API in several execution environments per function
at once (tarefa/local/environments.py).
"""

from __future__ import annotations

import base64
import json
import logging
import os
import queue
import socket
import threading
import time
import warnings
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from tarefa import wiring
from tarefa.job import Job
from tarefa.local.app import LocalApp, redis_overrides
from tarefa.local.auth import LocalAuthority, TokenError
from tarefa.local.emulator import EmulatorProcess
from tarefa.local.environments import (
    DEFAULT_API_CONCURRENCY,
    EnvironmentPool,
    NoEnvironmentError,
    isolate_router_state,
)
from tarefa.local.provision import Function, ScheduleSource, SqsSource
from tarefa.local.runtime import Handler, StreamPoller, invoke, match_route, process_batch, receive
from tarefa.local.sandboxes import job_modules, start_sandboxes
from tarefa.local.schedules import Cron, UserScheduleRunner, parse_schedule

MAX_REQUEST_BYTES = 10 * 1024 * 1024  # API Gateway's own limit for HTTP APIs
# Connections the API's socket holds before accept(): with the standard library's 5, a crowd of
# 500 guests arriving at once had most connections reset (bench/local_burst.py). The kernel caps
# it at net.core.somaxconn.
LISTEN_BACKLOG = 1024
Log = Callable[[str], None]


class PortInUseError(Exception):
    pass


def ensure_free(host: str, port: int, flag: str) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            variable = flag.lstrip("-").replace("-", "_").upper()  # --api-port: make run API_PORT=
            raise PortInUseError(
                f"port {port} on {host} is already in use; choose another with {flag} "
                f"(make run {variable}=...)"
            ) from None


class TransitionLog:
    """Wraps the job store so every job write prints one line (id, type, status)."""

    def __init__(self, inner: Any, log: Log) -> None:
        self._inner = inner
        self._log = log

    def put(self, job: Job, expected_version: int | None) -> None:
        self._inner.put(job, expected_version)
        self._log(
            f"JOB  {job.job_id} {job.type} {job.status}"
            + (f" attempt {job.attempts}" if job.attempts else "")
        )

    def put_with_idempotency_key(self, job: Job, *args: Any, **kwargs: Any) -> None:
        """Whatever the store's own signature is (it gained a fingerprint): a wrapper that named
        its parameters made every keyed enqueue fail its record on the local stack."""
        self._inner.put_with_idempotency_key(job, *args, **kwargs)
        self._log(f"JOB  {job.job_id} {job.type} {job.status}")

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


class LocalStack:
    def __init__(
        self,
        host: str = "127.0.0.1",
        api_port: int = 3000,
        aws_port: int = 4599,
        state_dir: Path = Path(".tarefa"),
        test_jobs: bool = True,
        schedule_speedup: float = 1.0,
        delay_speedup: float = 1.0,
        verbose: bool = False,
        log: Log = print,
        parameters: dict[str, str] | None = None,
        redis_url: str = "",
        api_concurrency: int = DEFAULT_API_CONCURRENCY,
        emulator_process: bool = True,
    ) -> None:
        """`parameters` override the template's (like `sam deploy --parameter-overrides`);
        with `redis_url` the cache, rate limits and sessions live there instead of DynamoDB.
        `api_concurrency`: execution environments per function behind the HTTP API, each
        serving one request at a time. `emulator_process=False` runs the emulator in this
        process, as before (one process to profile, slower)."""
        if api_concurrency < 1:
            raise ValueError("api_concurrency must be at least 1")
        self.host = host
        self.api_port = api_port
        self.aws_port = aws_port
        self.state_dir = state_dir
        self.test_jobs = test_jobs
        self.schedule_speedup = schedule_speedup
        self.delay_speedup = delay_speedup
        self.verbose = verbose
        self.parameters = dict(parameters or {})
        self.redis_url = redis_url
        self.api_concurrency = api_concurrency
        self.emulator_process = emulator_process
        self.api_pools: dict[str, EnvironmentPool] = {}  # by function; built by _start_api
        self._log = log
        self._log_lock = threading.Lock()
        self.stopping = threading.Event()
        self.threads: list[threading.Thread] = []
        self.function_locks: dict[str, threading.Lock] = {}
        self.refusal = threading.local()  # why this thread's last request's token was refused
        self.queued = threading.local()  # how long its last request waited for an environment

    @property
    def api_url(self) -> str:
        return f"http://{self.host}:{self.api_port}"

    @property
    def aws_url(self) -> str:
        return f"http://{self.host}:{self.aws_port}"

    def log(self, line: str) -> None:
        with self._log_lock:  # many threads log; one line must never split another
            self._log(f"{datetime.now(UTC):%H:%M:%S} {line}")

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> None:
        ensure_free(self.host, self.api_port, "--api-port")
        ensure_free(self.host, self.aws_port, "--aws-port")
        self.authority = LocalAuthority(self.state_dir)
        self._start_emulator()
        import boto3

        session = boto3.session.Session()
        clients = {name: session.client(name, endpoint_url=self.aws_url) for name in ("sqs", "dynamodb")}
        self._await_emulator()  # it started while this process imported boto3
        parameters = {
            "EnableTestJobs": "1" if self.test_jobs else "0",
            "LogLevel": "INFO" if self.verbose else "WARNING",
            **self.parameters,
        }
        environment: dict[str, str] = {}
        if self.redis_url:
            redis_parameters, environment = redis_overrides(self.redis_url)
            parameters.update(redis_parameters)
        if self.delay_speedup != 1:
            environment["TAREFA_DELAY_SPEEDUP"] = str(self.delay_speedup)
        # The workloads' provider sandboxes, before the functions: they set parameters (their
        # URLs in the outbound allow-list) and secrets (their credentials) the functions read.
        self.sandboxes = start_sandboxes(job_modules(parameters), self.api_url)
        parameters = self.sandboxes.parameters(parameters)
        self.app = LocalApp(clients["sqs"], clients["dynamodb"], parameters, environment)
        self.sandboxes.create_secrets(
            session.client("secretsmanager", endpoint_url=self.aws_url),
            os.environ.get("TAREFA_SECRETS_PREFIX", ""),
        )
        container = wiring.container()
        # Before any service is built (they all take the store from the container): log every write.
        container.__dict__["store"] = TransitionLog(container.store, self.log)
        self._start_api()
        for function, source in self.app.sqs_sources():
            self._spawn(f"poller-{source.queue_logical_id}", self._poll, function, source)
        for poller in self.app.stream_pollers:
            self._spawn(f"stream-{poller.function.logical_id}", self._follow, poller)
        self._spawn("scheduler", self._schedule)
        self._write_state()

    def _start_emulator(self) -> None:
        """Starts the emulator; `_await_emulator` waits until it answers."""
        warnings.filterwarnings("ignore", "No application metrics to publish")

        os.environ.setdefault("AWS_ACCESS_KEY_ID", "local")
        os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "local")
        os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
        os.environ["AWS_REGION"] = os.environ["AWS_DEFAULT_REGION"] = "us-east-1"
        os.environ["AWS_ENDPOINT_URL"] = self.aws_url
        if not self.verbose:
            os.environ["POWERTOOLS_METRICS_DISABLED"] = "true"
        self.emulator: EmulatorProcess | Any
        if self.emulator_process:
            self.emulator = EmulatorProcess(self.host, self.aws_port)
        else:
            from moto.server import ThreadedMotoServer

            logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one line per call is noise
            self.emulator = ThreadedMotoServer(ip_address=self.host, port=self.aws_port, verbose=False)
            self.emulator.start()

    def _await_emulator(self) -> None:
        if isinstance(self.emulator, EmulatorProcess):
            self.emulator.wait_ready()

    def _start_api(self) -> None:
        # Several execution environments per function, as Lambda runs them: a Powertools
        # resolver holds the event it serves, so each copy of the module serves one at a time,
        # and Powertools' per-process copy of that event becomes per thread.
        isolate_router_state()
        functions = {f.logical_id: f for f in self.app.route_functions.values()}
        self.api_pools = {
            logical_id: EnvironmentPool(function, self.api_concurrency, self.app.new_handler)
            for logical_id, function in functions.items()
        }
        stack = self

        class RequestHandler(_ApiRequestHandler):
            local = stack

        self.http = _ApiServer((self.host, self.api_port), RequestHandler)
        self.http.daemon_threads = True
        self._spawn("api", self.http.serve_forever)

    def _spawn(self, name: str, target: Callable[..., Any], *args: Any) -> None:
        thread = threading.Thread(target=target, args=args, name=name, daemon=True)
        thread.start()
        self.threads.append(thread)

    def _write_state(self) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        state = {
            "apiUrl": self.api_url,
            "awsEndpointUrl": self.aws_url,
            "region": "us-east-1",
            "queues": {k: v for k, v in self.app.stack.queue_urls.items()},
            "tables": dict(self.app.stack.tables),
            "sandboxes": {s.name: s.url for s in self.sandboxes.running},
        }
        (self.state_dir / "local.json").write_text(json.dumps(state, indent=2) + "\n")

    def summary(self) -> str:
        queues = "\n".join(f"  {name:<24} {url}" for name, url in self.app.stack.queue_urls.items())
        sandboxes = "".join(f"  {s.name:<24} {s.url}\n" for s in self.sandboxes.running)
        return (
            f"Tarefa local stack is up.\n"
            f"  API          {self.api_url}\n"
            f"  AWS endpoint {self.aws_url}  (region us-east-1, any credentials)\n"
            f"  Cache        {self._cache_description()}\n"
            f"Queues:\n{queues}\n"
            + (f"Sandboxes:\n{sandboxes}" if sandboxes else "")
            + f"Written to {self.state_dir / 'local.json'}. Mint a token: tarefa token --user alice\n"
            "Ctrl-C stops it."
        )

    def _cache_description(self) -> str:
        if self.redis_url:
            url = urlsplit(self.redis_url)
            return f"redis at {url.scheme}://{url.hostname}:{url.port or 6379}{url.path}"  # no password
        return f"dynamodb table {self.app.stack.tables.get('CacheTable', '(none)')} (set REDIS_URL for Redis)"

    def stop(self) -> None:
        """Also after a start that failed half-way (a broken job module)."""
        self.stopping.set()
        if hasattr(self, "http"):
            self.http.shutdown()
            self.http.server_close()
        for thread in self.threads:
            thread.join(timeout=5)
        if getattr(self, "emulator", None) is not None:
            self.emulator.stop()
        if hasattr(self, "sandboxes"):
            self.sandboxes.stop()

    # -- invocations -----------------------------------------------------------------------
    def call_api(
        self, method: str, target: str, body: bytes, headers: dict[str, str], source_ip: str
    ) -> tuple[int, dict[str, str], str | bytes]:
        path = target.split("?", 1)[0]
        found = match_route(self.app.routes, method, path)
        claims: dict[str, Any] | None = None
        self.refusal.reason = None
        self.queued.seconds = 0.0
        if found is not None and found[0].authorized:
            try:
                claims = self.authority.verify(headers.get("authorization"))
            except TokenError as exc:
                # API Gateway answers only {"message": "Unauthorized"}; the log line says why
                self.refusal.reason = str(exc)
        routed = self.app.route(method, target, body, claims, headers, source_ip)
        if not isinstance(routed, tuple):  # API Gateway's own answer: no route, no token
            return routed.status, routed.headers, routed.text
        function, event = routed
        pool = self.api_pools.get(function.logical_id)
        if pool is None:  # not started (tests drive call_api directly): the app's own environment
            response = self._invoke_locked(function, self.app.handlers[function.logical_id], event)
        else:
            try:
                with pool.lease() as lease:
                    self.queued.seconds = lease.waited_seconds
                    response = invoke(function, lease.handler, event)
            except NoEnvironmentError as exc:
                self.log(f"API  throttled: {exc}")
                return _gateway_answer(503, "Service Unavailable")
        text = response.get("body") or ""
        answer_headers = {k.lower(): v for k, v in (response.get("headers") or {}).items()}
        if response.get("isBase64Encoded"):  # API Gateway decodes a binary body (a PNG) for the client
            return response["statusCode"], answer_headers, base64.b64decode(text)
        return response["statusCode"], answer_headers, text

    def _invoke_locked(self, function: Function, handler: Handler, event: dict[str, Any]) -> Any:
        lock = self.function_locks.setdefault(function.logical_id, threading.Lock())
        with lock:
            return invoke(function, handler, event)

    # -- SQS event source mappings ---------------------------------------------------------
    def _poll(self, function: Function, source: SqsSource) -> None:
        """One event source mapping: at most MaximumConcurrency batches in flight, each in an
        execution environment (a module instance) of its own."""
        slots = threading.BoundedSemaphore(source.maximum_concurrency)
        environments: queue.SimpleQueue[Handler] = queue.SimpleQueue()
        for _ in range(source.maximum_concurrency):
            environments.put(self.app.new_handler(function))
        pool = ThreadPoolExecutor(
            max_workers=source.maximum_concurrency, thread_name_prefix=source.queue_logical_id
        )

        def run(messages: list[dict[str, Any]]) -> None:
            handler = environments.get()
            try:
                process_batch(self.app.sqs, function, handler, source, messages)
            except Exception as exc:  # the emulator went away while stopping
                if not self.stopping.is_set():
                    self.log(f"POLL {source.queue_logical_id} error: {exc}")
            finally:
                environments.put(handler)
                slots.release()

        while not self.stopping.is_set():
            if not slots.acquire(timeout=0.5):
                continue
            try:
                if not self.app.consuming(source):  # paused
                    slots.release()
                    self.stopping.wait(0.5)
                    continue
                messages = receive(self.app.sqs, source, wait_seconds=1)
                if messages and not self.app.consuming(source):  # paused during the long poll
                    self._give_back(source, messages)
                    messages = []
            except Exception as exc:
                slots.release()
                if not self.stopping.is_set():
                    self.log(f"POLL {source.queue_logical_id} error: {exc}")
                    time.sleep(1)
                continue
            if not messages:
                slots.release()
                continue
            pool.submit(run, messages)
        pool.shutdown(wait=True, cancel_futures=True)

    def _give_back(self, source: SqsSource, messages: list[dict[str, Any]]) -> None:
        """Return a batch received just as its queue was paused, untouched."""
        entries: Any = [
            {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"], "VisibilityTimeout": 0}
            for i, m in enumerate(messages)
        ]
        self.app.sqs.change_message_visibility_batch(QueueUrl=source.queue_url, Entries=entries)

    # -- DynamoDB stream event source mappings ---------------------------------------------
    def _follow(self, poller: StreamPoller) -> None:
        """Hand the function each new batch; between batches wait the batching window (at least
        0.2 s), as the mapping does."""
        handler = self.app.new_handler(poller.function)
        pause = max(0.2, poller.source.batching_window_seconds)
        while not self.stopping.is_set():
            try:
                if poller.deliver(handler) < poller.source.batch_size:
                    self.stopping.wait(pause)
            except Exception as exc:
                if not self.stopping.is_set():
                    self.log(f"STREAM {poller.function.logical_id} failed: {type(exc).__name__}: {exc}")
                    self.stopping.wait(1)

    # -- schedules -------------------------------------------------------------------------
    def _schedule(self) -> None:
        """Fire the template's schedules. Each expression is parsed first: one that cannot run
        here is logged once and left out, and the others run as usual."""
        plans: list[tuple[Function, ScheduleSource, float | None, Cron | None]] = []
        for function in self.app.stack.functions.values():
            for schedule in function.schedules:
                try:
                    parsed = parse_schedule(schedule.expression)
                except ValueError as exc:
                    self.log(f"CRON {schedule.name} disabled: {exc}")
                    continue
                if isinstance(parsed, Cron):
                    plans.append((function, schedule, None, parsed))
                else:
                    plans.append((function, schedule, parsed / self.schedule_speedup, None))
        handlers = {f.logical_id: self.app.new_handler(f) for f, _, _, _ in plans}
        started = time.monotonic()
        next_rate = {s.name: started + every for _, s, every, _ in plans if every is not None}
        last_cron_minute: dict[str, str] = {}
        users = self._user_schedules()
        next_user_tick = 0.0
        while not self.stopping.wait(0.2):
            now = datetime.now(UTC)
            if users is not None and time.monotonic() >= next_user_tick:
                next_user_tick = time.monotonic() + 0.5
                try:
                    for body in users.tick(now):
                        self.log(f"CRON user schedule fired -> {json.loads(body).get('jobId')}")
                except Exception as exc:
                    if not self.stopping.is_set():
                        self.log(f"CRON user schedules failed: {type(exc).__name__}: {exc}")
            for function, schedule, every, cron in plans:
                if every is not None:
                    if time.monotonic() < next_rate[schedule.name]:
                        continue
                    next_rate[schedule.name] += every
                else:
                    assert cron is not None
                    minute = now.strftime("%Y%m%d%H%M")
                    if last_cron_minute.get(schedule.name) == minute or not cron.matches(now):
                        continue
                    last_cron_minute[schedule.name] = minute
                self.fire(function, handlers[function.logical_id], schedule)

    def _user_schedules(self) -> UserScheduleRunner | None:
        """The schedules users create through the API (POST /schedules) live in the emulator's
        Scheduler group; this plays Scheduler for them (tarefa/local/schedules.py)."""
        group = os.environ.get("SCHEDULE_GROUP", "")
        if not group:
            return None
        import boto3

        scheduler = boto3.session.Session().client("scheduler", endpoint_url=self.aws_url)
        return UserScheduleRunner(scheduler, self.app.sqs, group, self.schedule_speedup)

    def fire(self, function: Function, handler: Handler, schedule: ScheduleSource) -> None:
        try:
            result = self._invoke_locked(function, handler, dict(schedule.input))
            self.log(f"CRON {schedule.name} ({schedule.expression}) -> {json.dumps(result)}")
        except Exception as exc:
            if not self.stopping.is_set():
                self.log(f"CRON {schedule.name} failed: {type(exc).__name__}: {exc}")


class _ApiServer(ThreadingHTTPServer):
    """One thread per connection, as before, with room for a crowd's connections to wait."""

    request_queue_size = LISTEN_BACKLOG


class _ApiRequestHandler(BaseHTTPRequestHandler):
    """The HTTP API's front door. Every method, GET or TRACE or one never heard of, takes the
    same way to the template's routes, so one with no route is API Gateway's JSON 404; what the
    standard library refuses itself (a request line or headers it cannot read) is JSON too."""

    local: LocalStack
    protocol_version = "HTTP/1.1"
    # The headers and the body go out in two writes; with Nagle's algorithm on, the body waits
    # for the client to acknowledge the headers, which a client on a keep-alive connection
    # delays by 40 ms: every request after a connection's first took 40 ms longer.
    disable_nagle_algorithm = True

    def __getattr__(self, name: str) -> Callable[[], None]:
        # BaseHTTPRequestHandler dispatches on do_<METHOD> and answers 501 when there is none.
        if name.startswith("do_"):
            return self._serve
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def _serve(self) -> None:
        started = time.perf_counter()
        length = self._content_length()
        text: str | bytes  # bytes only for a binary body (a PNG), written as is
        if length is None:
            status, headers, text = _gateway_answer(400, "Bad Request")
            self.close_connection = True
        elif length > MAX_REQUEST_BYTES:
            status, headers, text = _gateway_answer(413, "Request Entity Too Large")
            self.close_connection = True
        else:
            body = self.rfile.read(length) if length else b""
            request_headers = {k.lower(): v for k, v in self.headers.items()}
            try:
                status, headers, text = self.local.call_api(
                    self.command, self.path, body, request_headers, self.client_address[0]
                )
            except Exception as exc:
                self.local.log(f"API  internal error: {type(exc).__name__}: {exc}")
                status, headers, text = _gateway_answer(500, "Internal Server Error")
        self._answer(status, headers, text)
        elapsed = (time.perf_counter() - started) * 1000
        why = getattr(self.local.refusal, "reason", None) if status == 401 else None
        waited = getattr(getattr(self.local, "queued", None), "seconds", 0.0) * 1000
        self.local.log(
            f"API  {self.command} {self.path.split('?', 1)[0]} {status} {elapsed:.0f}ms"
            + (f" (token refused: {why})" if why else "")
            + (f" (waited {waited:.0f}ms for an environment)" if waited >= 1 else "")
        )

    def _content_length(self) -> int | None:
        """The body's length; None when Content-Length is not a non-negative number."""
        given = (self.headers.get("Content-Length") or "0").strip()
        return int(given) if given.isascii() and given.isdigit() else None

    def _answer(self, status: int, headers: dict[str, str], text: str | bytes) -> None:
        payload = text if isinstance(text, bytes) else text.encode()
        self.send_response(status)
        for name, value in headers.items():
            if name.lower() != "content-length":
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if self.command != "HEAD" and status >= 200 and status not in (204, 304):  # no body, ever
            self.wfile.write(payload)

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """The standard library's own refusals, as JSON instead of its HTML page."""
        status, headers, text = _gateway_answer(code, _phrase(code))
        self.local.log(f"API  refused: {code} {message or _phrase(code)}")
        headers["connection"] = "close"  # send_header then closes the connection after this
        self._answer(status, headers, text)

    def log_message(self, format: str, *args: Any) -> None:
        """Silenced: _serve logs one line per request itself."""


def _phrase(code: int) -> str:
    try:
        return HTTPStatus(code).phrase
    except ValueError:
        return "Error"


def _gateway_answer(status: int, message: str) -> tuple[int, dict[str, str], str]:
    """An answer API Gateway gives itself: `{"message": ...}`."""
    return status, {"content-type": "application/json"}, json.dumps({"message": message})
