"""Regression tests: cron parsing, the local scheduler and HTTP server, and window error rates."""

from __future__ import annotations

import http.client
import json
import socket
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tarefa.local.provision import Function, ScheduleSource
from tarefa.local.schedules import cron_matches, parse_cron, parse_schedule, rate_seconds
from tarefa.local.stack import LocalStack, _ApiRequestHandler
from tarefa.stats import MinuteFigures, window

MONDAY_10_15 = datetime(2026, 11, 23, 10, 15, tzinfo=UTC)
SUNDAY_10_15 = datetime(2026, 11, 22, 10, 15, tzinfo=UTC)


# -- cron expressions ------------------------------------------------------------------------------
def test_cron_takes_day_and_month_names_in_ranges_lists_and_steps() -> None:
    assert cron_matches("cron(0/15 9-17 ? * MON-FRI *)", MONDAY_10_15)
    assert not cron_matches("cron(0/15 9-17 ? * MON-FRI *)", SUNDAY_10_15)
    assert cron_matches("cron(15 10 ? * SUN *)", SUNDAY_10_15)
    assert cron_matches("cron(15 10 ? * sun,Mon *)", MONDAY_10_15)  # names ignore case
    assert not cron_matches("cron(15 10 ? * TUE,WED *)", MONDAY_10_15)
    assert cron_matches("cron(15 10 23 NOV ? *)", MONDAY_10_15)
    assert cron_matches("cron(15 10 23 JAN-DEC/2 ? *)", MONDAY_10_15)  # JAN, MAR, ..., NOV
    assert not cron_matches("cron(15 10 23 FEB-DEC/2 ? *)", MONDAY_10_15)
    assert cron_matches("cron(15 10 ? * MON/3 *)", MONDAY_10_15)  # MON, THU
    assert cron_matches("cron(15 10 ? NOV,dec MON 2026-2027)", MONDAY_10_15)


@pytest.mark.parametrize(
    ("expression", "complaint"),
    [
        ("cron(*/0 * * * ? *)", "step"),
        ("cron(0 3 ? * FUNDAY *)", "FUNDAY"),
        ("cron(0 3 * FOO ? *)", "FOO"),
        ("cron(60 3 * * ? *)", "60"),
        ("cron(0 24 * * ? *)", "24"),
        ("cron(0 3 0 * ? *)", "0"),
        ("cron(0 3 ? * 8 *)", "8"),
        ("cron(0 3 * * ? 1969)", "1969"),
        ("cron(0 3 ? * FRI-MON *)", "FRI-MON"),
        ("cron(0 3 * * ? * *)", "6 fields"),
        ("cron(0 3 * * *)", "6 fields"),
        ("cron(0 3 * * * *)", "?"),  # day-of-month and day-of-week both given
        ("cron(0 3 ? * ? *)", "?"),
        ("cron(? 3 * * ? *)", "?"),
        ("cron(0 3 L * ? *)", "L"),
        ("cron(0 3 15W * ? *)", "W"),
        ("cron(0 3 ? * 2#1 *)", "#"),
        ("cron(0 3 ? * 6L *)", "L"),
        ("cron(0 3 1-/2 * ? *)", "1-/2"),
        ("cron(0 3 1,,2 * ? *)", "1,,2"),
        ("cron(0 3 1/2/3 * ? *)", "1/2/3"),
        ("every day", "not a schedule expression"),
        ("rate(0 minutes)", "rate"),
    ],
)
def test_invalid_or_unsupported_expressions_are_refused_with_a_clear_error(
    expression: str, complaint: str
) -> None:
    with pytest.raises(ValueError) as refused:
        parse_schedule(expression)
    message = str(refused.value)
    assert expression in message
    assert complaint in message


def test_unsupported_cron_features_say_so() -> None:
    with pytest.raises(ValueError, match="not supported"):
        parse_cron("cron(0 3 L * ? *)")
    with pytest.raises(ValueError, match=r"cron\(\*/0 \* \* \* \? \*\)"):
        cron_matches("cron(*/0 * * * ? *)", MONDAY_10_15)


def test_schedules_parse_to_seconds_or_a_cron() -> None:
    assert parse_schedule("rate(5 minutes)") == 300
    assert rate_seconds("rate(1 hour)") == 3600
    daily = parse_schedule("cron(0 3 * * ? *)")
    assert not isinstance(daily, int)
    assert daily.matches(datetime(2026, 1, 5, 3, 0, tzinfo=UTC))
    assert not daily.matches(datetime(2026, 1, 5, 3, 1, tzinfo=UTC))


# -- the local scheduler -----------------------------------------------------------------------------
class _FakeApp:
    def __init__(self, functions: dict[str, Function]) -> None:
        self.stack = type("S", (), {"functions": functions})()

    def new_handler(self, function: Function) -> Any:
        return lambda event, context: event


def test_a_bad_schedule_logs_one_line_and_the_others_keep_running(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a function with a schedule that cannot work and two that can (one with day names)
    schedules = [
        ScheduleSource("Broken", "cron(*/0 * * * ? *)", {}),
        ScheduleSource("Unknown", "cron(0 3 ? * FUNDAY *)", {}),
        ScheduleSource("EveryDay", "cron(* * ? * SUN-SAT *)", {}),
        ScheduleSource("Often", "rate(1 minute)", {}),
    ]
    function = Function("Fn", tmp_path, "app.handler", 10, 128, {}, schedules=schedules)
    lines: list[str] = []
    stack = LocalStack(state_dir=tmp_path, schedule_speedup=600, log=lines.append)
    stack.app = _FakeApp({"Fn": function})  # type: ignore[assignment]
    fired: list[str] = []
    both = threading.Event()

    def fire(_function: Function, _handler: Any, schedule: ScheduleSource) -> None:
        fired.append(schedule.name)
        if {"EveryDay", "Often"} <= set(fired):
            both.set()

    monkeypatch.setattr(stack, "fire", fire)
    # When the scheduler runs
    thread = threading.Thread(target=stack._schedule, daemon=True)
    thread.start()
    try:
        # Then the good schedules fire and the bad ones are skipped, each with one line
        assert both.wait(10), f"fired {fired}; log {lines}"
        assert thread.is_alive()
    finally:
        stack.stopping.set()
        thread.join(5)
    assert not {"Broken", "Unknown"} & set(fired)
    broken = [line for line in lines if "Broken" in line]
    unknown = [line for line in lines if "Unknown" in line]
    assert len(broken) == 1 and "*/0" in broken[0], lines
    assert len(unknown) == 1 and "FUNDAY" in unknown[0], lines


# -- the local HTTP server ---------------------------------------------------------------------------
class _FakeLocal:
    def __init__(self) -> None:
        self.calls: list[str] = []
        self.lines: list[str] = []

    def call_api(
        self, method: str, target: str, body: bytes, headers: dict[str, str], source_ip: str
    ) -> tuple[int, dict[str, str], str]:
        self.calls.append(method)
        if method == "GET" and target == "/health":
            return 200, {"content-type": "application/json"}, '{"status":"ok"}'
        return 404, {"content-type": "application/json"}, '{"message":"Not Found"}'

    def log(self, line: str) -> None:
        self.lines.append(line)


@pytest.fixture
def server() -> Iterator[tuple[ThreadingHTTPServer, _FakeLocal]]:
    local = _FakeLocal()

    class Handler(_ApiRequestHandler):
        pass

    Handler.local = local  # type: ignore[assignment]
    api = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    api.daemon_threads = True
    threading.Thread(target=api.serve_forever, daemon=True).start()
    try:
        yield api, local
    finally:
        api.shutdown()
        api.server_close()


def _send(api: ThreadingHTTPServer, method: str, path: str) -> tuple[int, dict[str, str], bytes]:
    host, port = api.server_address[:2]
    connection = http.client.HTTPConnection(str(host), int(port), timeout=10)
    try:
        connection.request(method, path)
        response = connection.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        connection.close()


@pytest.mark.parametrize("method", ["TRACE", "OPTIONS", "CONNECT", "PROPFIND", "PATCH", "PUT", "DELETE"])
def test_every_method_goes_through_the_routes(
    server: tuple[ThreadingHTTPServer, _FakeLocal], method: str
) -> None:
    api, local = server
    status, headers, body = _send(api, method, "/health")
    assert (status, headers["content-type"], json.loads(body)) == (
        404,
        "application/json",
        {"message": "Not Found"},
    )
    assert local.calls == [method]


def test_head_is_routed_and_answered_without_a_body(server: tuple[ThreadingHTTPServer, _FakeLocal]) -> None:
    api, local = server
    status, headers, body = _send(api, "HEAD", "/health")
    assert (status, body, local.calls) == (404, b"", ["HEAD"])
    assert int(headers["content-length"]) == len(b'{"message":"Not Found"}')
    # And the connection stays usable: the next request on it is answered normally
    host, port = api.server_address[:2]
    connection = http.client.HTTPConnection(str(host), int(port), timeout=10)
    try:
        connection.request("HEAD", "/health")
        first = connection.getresponse()
        assert first.read() == b""
        connection.request("GET", "/health")
        second = connection.getresponse()
        assert (second.status, json.loads(second.read())) == (200, {"status": "ok"})
    finally:
        connection.close()


def test_a_malformed_request_is_answered_in_json(server: tuple[ThreadingHTTPServer, _FakeLocal]) -> None:
    api, _ = server
    host, port = api.server_address[:2]
    with socket.create_connection((str(host), int(port)), timeout=10) as raw:
        # A header line over the stdlib's 65,536-byte limit, and not a byte more (left unread,
        # more would make the server's close a reset)
        raw.sendall(b"GET /health HTTP/1.1\r\nX-Big: " + b"x" * (65_537 - len(b"X-Big: ")))
        answer = b""
        while chunk := raw.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 431")
    assert b"content-type: application/json" in head.lower()
    assert json.loads(body) == {"message": "Request Header Fields Too Large"}


@pytest.mark.parametrize("length", [b"-5", b"five", b"+5"])
def test_a_content_length_that_is_not_a_number_is_a_json_400(
    server: tuple[ThreadingHTTPServer, _FakeLocal], length: bytes
) -> None:
    api, local = server
    host, port = api.server_address[:2]
    with socket.create_connection((str(host), int(port)), timeout=10) as raw:
        raw.sendall(b"POST /jobs HTTP/1.1\r\nHost: x\r\nContent-Length: " + length + b"\r\n\r\n")
        answer = b""
        while chunk := raw.recv(65536):  # the server closes the connection after answering
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400")
    assert json.loads(body) == {"message": "Bad Request"}
    assert local.calls == []


# -- window figures ----------------------------------------------------------------------------------
T0 = datetime(2026, 11, 22, 10, 30, tzinfo=UTC)


def test_the_error_rate_agrees_with_the_rounded_counts_shown() -> None:
    # Given one failure in 10:29 and nothing since, read at 10:30:50: a sixth of it is in the window
    minutes = {T0 - timedelta(minutes=1): MinuteFigures(failed=1)}
    last = window(minutes, T0 + timedelta(seconds=50), 1)
    # Then the window shows no work, and no error rate either
    assert (last.completed, last.failed) == (0, 0)
    assert last.error_rate is None
    # And with counts that round, the rate is theirs: 2 failed of the 3 shown, not 2.4 of 3.8
    shown = window({T0: MinuteFigures(completed=1.4, failed=2.4)}, T0 + timedelta(seconds=30), 1)
    assert (shown.completed, shown.failed) == (1, 2)
    assert shown.error_rate == round(2 / 3, 4)
