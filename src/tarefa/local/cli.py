"""The `tarefa` command: `tarefa local` runs the local stack, `tarefa token` mints a token, and
the operator commands (enqueue, status, list, cancel, retry, queues, pause, resume, dlq, watch)
talk to the local stack or any deployment (tarefa/commands.py)."""

from __future__ import annotations

import argparse
import io
import os
import signal
import sys
import threading
import time
from pathlib import Path
from types import FrameType
from typing import Any, TextIO

DEFAULT_AWS_PORT = 4599
DEFAULT_API_CONCURRENCY = 4  # tarefa.local.environments.DEFAULT_API_CONCURRENCY, without its imports


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tarefa", description="Tarefa developer tools.")
    parser.add_argument(
        "--state-dir",
        type=Path,
        default=Path(os.environ.get("TAREFA_STATE_DIR", ".tarefa")),
        help="where the signing key and local.json live (default .tarefa, or $TAREFA_STATE_DIR)",
    )
    commands = parser.add_subparsers(dest="command", required=True)

    local = commands.add_parser("local", help="run the whole application on loopback")
    local.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    local.add_argument("--api-port", type=int, default=3000, help="HTTP API port (default 3000)")
    local.add_argument(
        "--aws-port",
        type=int,
        default=DEFAULT_AWS_PORT,
        help=f"AWS emulator port (default {DEFAULT_AWS_PORT})",
    )
    local.add_argument("--no-test-jobs", action="store_true", help="do not register system.fail")
    local.add_argument(
        "--schedule-speedup",
        type=float,
        default=1.0,
        help="divide every rate() schedule's period by this (e.g. 60 turns minutes into seconds)",
    )
    local.add_argument(
        "--delay-speedup",
        type=float,
        default=1.0,
        help="divide job delays and retry backoff by this (e.g. 60: a 28-minute ladder in 28 s)",
    )
    local.add_argument("--verbose", action="store_true", help="show the functions' own JSON logs and metrics")
    local.add_argument(
        "--api-concurrency",
        type=int,
        default=DEFAULT_API_CONCURRENCY,
        metavar="N",
        help="execution environments per function behind the HTTP API, each serving one request "
        f"at a time; more requests wait for one (default {DEFAULT_API_CONCURRENCY})",
    )
    local.add_argument(
        "--parameter-overrides",
        nargs="+",
        default=[],
        metavar="KEY=VALUE",
        help="template parameters, as for sam deploy (e.g. EnqueueRateLimit=3/60)",
    )
    local.add_argument(
        "--redis-url",
        default=os.environ.get("REDIS_URL", ""),
        help="keep the cache, rate limits and sessions in this Redis (default $REDIS_URL; "
        "unset: the template's DynamoDB cache table)",
    )

    token = commands.add_parser("token", help="print a bearer token the local stack accepts")
    token.add_argument("--user", required=True, help="the token's subject (the user id)")
    token.add_argument("--admin", action="store_true", help="member of the admin group")
    token.add_argument("--ttl", type=int, default=3600, help="seconds until it expires (default 3600)")

    from tarefa.commands import COMMANDS, add_commands, run

    add_commands(commands)
    args = parser.parse_args(argv)
    if args.command == "token":
        return _token(args)
    if args.command in COMMANDS:
        return run(args, args.state_dir)
    return _local(args)


def _token(args: argparse.Namespace) -> int:
    from tarefa.local.auth import LocalAuthority

    if args.ttl < 1:
        print("tarefa token: --ttl must be at least 1 second", file=sys.stderr)
        return 2
    print(LocalAuthority(args.state_dir).mint(args.user, admin=args.admin, ttl_seconds=args.ttl))
    return 0


def _local(args: argparse.Namespace) -> int:
    from tarefa.jobtypes import JobTypeError
    from tarefa.local.emulator import EmulatorError
    from tarefa.local.provision import check_parameters
    from tarefa.local.stack import LocalStack, PortInUseError
    from tarefa.local.template import load_template

    parameters: dict[str, str] = {}
    for override in args.parameter_overrides:
        key, equals, value = override.partition("=")
        if not equals or not key:
            print(f"tarefa local: --parameter-overrides takes KEY=VALUE, got {override!r}", file=sys.stderr)
            return 2
        parameters[key] = value
    try:
        check_parameters(load_template(), parameters)
    except ValueError as exc:
        print(f"tarefa local: {exc}", file=sys.stderr)
        return 2
    if args.delay_speedup < 1 or args.schedule_speedup <= 0:
        print("tarefa local: --delay-speedup must be >= 1 and --schedule-speedup > 0", file=sys.stderr)
        return 2
    if args.api_concurrency < 1:
        print("tarefa local: --api-concurrency must be at least 1", file=sys.stderr)
        return 2
    # Many threads print (the stack's log, the functions' own logs with --verbose, Powertools'
    # metrics): each line goes out whole, never split by another thread's.
    sys.stdout = LineAtomicWriter(sys.stdout)
    started = time.perf_counter()
    stack = LocalStack(
        host=args.host,
        api_port=args.api_port,
        aws_port=args.aws_port,
        state_dir=args.state_dir,
        test_jobs=not args.no_test_jobs,
        schedule_speedup=args.schedule_speedup,
        delay_speedup=args.delay_speedup,
        verbose=args.verbose,
        log=lambda line: print(line, flush=True),
        parameters=parameters,
        redis_url=args.redis_url,
        api_concurrency=args.api_concurrency,
        emulator_process=os.environ.get("TAREFA_LOCAL_EMULATOR", "process") != "thread",
    )
    # Handlers go in before anything starts: a Ctrl-C that arrives while the stack starts, or
    # just after "Ready", must still stop it cleanly rather than escape as KeyboardInterrupt.
    done = threading.Event()

    def stop(signum: int, frame: FrameType | None) -> None:
        done.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print("Starting the local stack...", flush=True)
    try:
        stack.start()
    except PortInUseError as exc:
        print(f"tarefa local: {exc}", file=sys.stderr)
        return 2
    except (JobTypeError, EmulatorError) as exc:  # a broken JobModules entry; no emulator
        print(f"tarefa local: {exc}", file=sys.stderr)
        stack.stop()
        return 2
    print(stack.summary(), flush=True)
    print(f"Ready in {time.perf_counter() - started:.1f} s.", flush=True)

    done.wait()
    print("Stopping...", flush=True)
    stack.stop()
    print("Stopped.", flush=True)
    return 0


class LineAtomicWriter(io.TextIOBase):
    """Standard output for many threads: each thread's text is held until its line ends, then
    the whole line is written at once (print() writes the text and the newline separately,
    and another thread's line can land between them)."""

    def __init__(self, inner: TextIO) -> None:
        self._inner = inner
        self._pending = threading.local()
        self._lock = threading.Lock()

    def write(self, text: str) -> int:
        pending: str = getattr(self._pending, "text", "") + text
        complete, newline, rest = pending.rpartition("\n")
        self._pending.text = rest
        if newline:
            with self._lock:
                self._inner.write(complete + newline)
                self._inner.flush()
        return len(text)

    def flush(self) -> None:
        pending: str = getattr(self._pending, "text", "")
        self._pending.text = ""
        with self._lock:
            if pending:
                self._inner.write(pending)
            self._inner.flush()

    def isatty(self) -> bool:
        return self._inner.isatty()

    def fileno(self) -> int:
        return self._inner.fileno()

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return self._inner.encoding

    def __getattr__(self, name: str) -> Any:  # buffer, errors, ...: the real stream's
        return getattr(self._inner, name)


if __name__ == "__main__":
    sys.exit(main())
