"""The AWS emulator (moto's server) for `tarefa local`, in a process of its own.

Why a process: the profile of a `POST /jobs` burst (docs/local-concurrency.md) put about two
thirds of the stack's CPU in moto answering the handlers' calls. In the stack's own process
that work held the same interpreter lock as the handlers, so the stack used one core of two and
every request waited its turn behind the emulator. As a child process the emulator has a core
(and a lock) of its own; it is still only reached over HTTP, as before.

The child lives as long as its parent: it exits when its standard input closes (the parent
stopped, or died), and it ignores Ctrl-C so that the parent stops the workers first.
"""

from __future__ import annotations

import base64
import calendar
import contextlib
import io
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import warnings
from collections.abc import Callable
from datetime import datetime
from typing import Any

READY = "emulator ready"
DYNAMODB_LOCK = threading.Lock()


class EmulatorError(Exception):
    pass


class EmulatorProcess:
    """Starts `python -m tarefa.local.emulator HOST PORT` and waits for it to answer."""

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self.process = subprocess.Popen(  # noqa: S603 - this module, with this interpreter
            [sys.executable, "-m", "tarefa.local.emulator", host, str(port)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    def wait_ready(self, timeout: float = 60) -> None:
        """Returns once the server listens; the parent does its own imports meanwhile."""
        lines: list[str] = []
        reader = threading.Thread(target=self._read_line, args=(lines,), daemon=True)
        reader.start()
        reader.join(timeout)
        if not lines or lines[0].strip() != READY:
            self.stop()
            code = self.process.returncode
            raise EmulatorError(
                f"the AWS emulator did not start on {self.host}:{self.port}"
                + (f" (exit code {code})" if code else "")
            )

    def _read_line(self, into: list[str]) -> None:
        assert self.process.stdout is not None
        into.append(self.process.stdout.readline())

    def stop(self, timeout: float = 5) -> None:
        if self.process.poll() is None:
            assert self.process.stdin is not None
            with contextlib.suppress(OSError):
                self.process.stdin.close()  # the child's cue to stop
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def _wire_json(value: object) -> object:
    """What moto's JSON serializer makes of the two non-JSON types in a stream record: a
    datetime (epoch seconds, milliseconds kept) and a binary attribute (base64)."""
    if isinstance(value, datetime):
        seconds = calendar.timegm(value.timetuple())
        return seconds + (value.microsecond // 1000) / 1000.0 if value.microsecond else seconds
    if isinstance(value, bytes | bytearray):
        return base64.b64encode(value).decode()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def fast_stream_records() -> Callable[[], None]:
    """Answer DynamoDB Streams' GetRecords with json.dumps instead of moto's model-driven
    serializer, which walked every attribute of every image: about 4 ms a record, 300 ms a
    batch, a quarter of the emulator's CPU in a burst (the stats function reads the jobs
    table's stream). moto's records are already in the wire format, datetimes aside.
    Returns the undo (for the parity test, tests/unit/test_local_concurrency.py)."""
    from moto.dynamodbstreams.responses import DynamoDBStreamsHandler

    original = DynamoDBStreamsHandler.get_records

    def get_records(self: DynamoDBStreamsHandler) -> str:
        arn = self._get_param("ShardIterator")
        limit = self._get_param("Limit")
        if limit is None:
            limit = 1000
        return json.dumps(self.backend.get_records(arn, limit), default=_wire_json)

    DynamoDBStreamsHandler.get_records = get_records  # type: ignore[assignment,method-assign]

    def undo() -> None:
        DynamoDBStreamsHandler.get_records = original  # type: ignore[method-assign]

    return undo


# DynamoDB operations answered by fast_dynamodb_results: those the engine calls on every job.
FAST_DYNAMODB_OPERATIONS = frozenset({"GetItem", "PutItem", "UpdateItem", "DeleteItem", "Query"})
JSON_CONTENT_TYPE = "application/x-amz-json-1.0"


def fast_dynamodb_results() -> Callable[[], None]:
    """Answer the job path's DynamoDB calls with json.dumps instead of moto's model-driven
    serializer: 2.3 ms for each GetItem and UpdateItem, a quarter of the emulator's CPU in a
    burst. moto's DynamoDB results are already wire-format dicts (DynamoResult); an error, or
    any other operation, still goes the serializer's way. Returns the undo."""
    from moto.core.responses import ActionResult
    from moto.dynamodb.responses import DynamoHandler, DynamoResult

    original = DynamoHandler.serialized

    def serialized(self: DynamoHandler, action_result: ActionResult) -> Any:
        result = action_result.result
        if (
            type(action_result) in (ActionResult, DynamoResult)
            and isinstance(result, dict)
            and self._get_action() in FAST_DYNAMODB_OPERATIONS
        ):
            headers = {"Content-Type": JSON_CONTENT_TYPE, **self.response_headers}
            return 200, headers, json.dumps(result, default=_wire_json)
        return original(self, action_result)

    DynamoHandler.serialized = serialized  # type: ignore[assignment,method-assign]

    def undo() -> None:
        DynamoHandler.serialized = original  # type: ignore[method-assign]

    return undo


def fast_retention_check() -> Callable[[], None]:
    """moto checks each message it hands out against the queue's retention period by building
    every attribute of the queue (three counts over all its messages) to read that one: 17 % of
    the emulator's CPU in a burst, for ReceiveMessage. This reads the attribute itself (the same
    value: get_queue_attributes reads it from the queue). Returns the undo."""
    from moto.core.utils import unix_time
    from moto.sqs.models import Message, SQSBackend

    original = SQSBackend.is_message_valid_based_on_retention_period

    def is_message_valid_based_on_retention_period(
        self: SQSBackend, queue_name: str, message: Message
    ) -> bool:
        retention_period: float = self.get_queue(queue_name).message_retention_period  # type: ignore[attr-defined]
        return retention_period + (message.sent_timestamp or 0) / 1000 > unix_time()

    SQSBackend.is_message_valid_based_on_retention_period = is_message_valid_based_on_retention_period  # type: ignore[method-assign]

    def undo() -> None:
        SQSBackend.is_message_valid_based_on_retention_period = original  # type: ignore[method-assign]

    return undo


def keep_alive_handler() -> type[Any]:
    """moto's request handler, answering on the same connection again. werkzeug's own closes
    every connection after one answer (it cannot tell where an unread body ends), so each of
    the handlers' calls paid a TCP connection and a new server thread, and then a 10 ms wait
    while werkzeug drained the socket. This one reads the whole body first and answers with a
    Content-Length, so nothing is left to drain; a chunked or 100-continue request (botocore
    sends neither to these services) goes werkzeug's way and closes."""
    from moto.moto_server.werkzeug_app import MotoRequestHandler

    class KeepAliveHandler(MotoRequestHandler):
        disable_nagle_algorithm = True  # headers and body are two writes: send each at once

        def run_wsgi(self) -> None:
            environ = self.environ = self.make_environ()
            expects = self.headers.get("Expect", "").lower().strip(" \t")
            if environ.get("wsgi.input_terminated") or expects == "100-continue":
                super().run_wsgi()
                return
            length = int(environ.get("CONTENT_LENGTH") or 0)
            environ["wsgi.input"] = io.BytesIO(self.rfile.read(length) if length else b"")
            started: list[Any] = []
            chunks: list[bytes] = []

            def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
                started[:] = [status, headers]
                return chunks.append

            try:
                # DynamoDB's calls one at a time: moto reads an item, checks the condition and
                # writes in Python, so two threads' conditional writes could both pass (a new
                # job recorded by the API and by the worker that took its message, both
                # "created"). On AWS a conditional write is atomic; here this lock makes it so.
                atomic = self.headers.get("X-Amz-Target", "").startswith("DynamoDB_")
                with DYNAMODB_LOCK if atomic else contextlib.nullcontext():
                    answer = self.server.app(environ, start_response)
                    try:
                        chunks.extend(answer)
                    finally:
                        if hasattr(answer, "close"):
                            answer.close()
            except Exception as exc:  # as werkzeug does: a 500, and the error on stderr
                self.server.log("error", f"Error on request: {type(exc).__name__}: {exc}")
                started[:] = ["500 INTERNAL SERVER ERROR", [("Content-Type", "text/plain")]]
                chunks[:] = [b"Internal Server Error"]
                self.close_connection = True
            body = b"".join(chunks)
            code, _, message = started[0].partition(" ")
            self.send_response(int(code), message)
            for name, value in started[1]:
                if name.lower() not in ("content-length", "connection", "transfer-encoding"):
                    self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

    return KeepAliveHandler


def serve(host: str, port: int) -> None:
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
    from werkzeug.serving import make_server

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent stops us, after its workers
    fast_stream_records()
    fast_dynamodb_results()
    fast_retention_check()
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one line per emulator call is noise
    warnings.filterwarnings("ignore")
    app = DomainDispatcherApplication(create_backend_app)
    server = make_server(host, port, app, threaded=True, request_handler=keep_alive_handler())
    threading.Thread(target=server.serve_forever, name="emulator", daemon=True).start()
    print(READY, flush=True)
    sys.stdin.read()  # until the parent closes it, or dies
    os._exit(0)  # the server's threads are daemons; nothing to flush


if __name__ == "__main__":
    serve(sys.argv[1], int(sys.argv[2]))
