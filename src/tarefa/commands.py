"""The operator commands of `tarefa`: jobs, queues and dead letters, over the HTTP API.

Human-readable by default, `--json` for scripts. Exit codes are part of the contract (README):
0 done, 1 unexpected error, 2 bad usage, 3 not found, 4 conflict (wrong state), 5 rate limited,
6 unauthorized or forbidden, 7 invalid request, 8 API unavailable, 9 `enqueue --batch`: some
jobs were not enqueued, and for `enqueue --wait`:
10 the job FAILED, 11 it was CANCELLED, 12 it was still running at the timeout.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from tarefa import client as api

EXIT_ERROR, EXIT_USAGE = 1, 2
EXIT_BATCH_FAILED = 9  # enqueue --batch: some jobs were not enqueued (each line says why)
EXIT_JOB_FAILED, EXIT_JOB_CANCELLED, EXIT_WAIT_TIMEOUT = 10, 11, 12
EXIT_OF: dict[type[api.TarefaClientError], int] = {
    api.NotFoundError: 3,
    api.ConflictError: 4,
    api.RateLimitedError: 5,
    api.UnauthorizedError: 6,
    api.ForbiddenError: 6,
    api.InvalidRequestError: 7,
    api.UnavailableError: 8,
}
COMMANDS = (
    "enqueue",
    "status",
    "list",
    "cancel",
    "retry",
    "types",
    "queues",
    "pause",
    "resume",
    "dlq",
    "watch",
    "schedules",
    "bulk",
)


def add_commands(commands: Any) -> None:
    """Register the operator commands on the `tarefa` parser's subparsers."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--api-url", help="the API (default $TAREFA_API_URL, else the local stack)")
    common.add_argument("--token", help="bearer token (default $TAREFA_TOKEN; the local stack mints one)")
    common.add_argument("--json", action="store_true", help="machine-readable output")

    enqueue = commands.add_parser("enqueue", parents=[common], help="enqueue a job (or a file of them)")
    enqueue.add_argument("type", nargs="?", help="job type, e.g. system.echo (not with --batch)")
    enqueue.add_argument(
        "--batch",
        metavar="FILE",
        help="a JSON Lines file (- for stdin), one POST /jobs body per line, sent 100 a request",
    )
    enqueue.add_argument("--payload", default="null", help="the payload as JSON (default null)")
    enqueue.add_argument("--priority", choices=["HIGH", "MEDIUM", "LOW"], type=str.upper)
    enqueue.add_argument("--max-attempts", type=int)
    enqueue.add_argument("--delay", type=int, dest="delay_seconds", help="seconds before it may run")
    enqueue.add_argument("--idempotency-key")
    enqueue.add_argument("--order-id")
    enqueue.add_argument("--wait", action="store_true", help="wait until it finishes; exit code says how")
    enqueue.add_argument("--timeout", type=float, default=300, help="for --wait, in seconds (default 300)")

    status = commands.add_parser("status", parents=[common], help="show one job")
    status.add_argument("job_id")

    listing = commands.add_parser(
        "list", parents=[common], help="your jobs (all jobs for admins), newest first"
    )
    listing.add_argument("--status", type=str.upper)
    listing.add_argument("--type", dest="job_type")
    listing.add_argument("--order-id")
    listing.add_argument("--limit", type=int, default=20)
    listing.add_argument("--cursor")

    cancel = commands.add_parser("cancel", parents=[common], help="cancel a PENDING, RETRYING or FAILED job")
    cancel.add_argument("job_id")
    cancel.add_argument("--reason")

    retry = commands.add_parser("retry", parents=[common], help="run a FAILED job again")
    retry.add_argument("job_id")

    commands.add_parser("types", parents=[common], help="the job types the deployment runs")
    commands.add_parser("queues", parents=[common], help="queue depths and states (admin)")
    for name in ("pause", "resume"):
        command = commands.add_parser(name, parents=[common], help=f"{name} consumption of a queue (admin)")
        command.add_argument("priority", type=str.upper, choices=["HIGH", "MEDIUM", "LOW"])

    dlq = commands.add_parser("dlq", help="dead-letter queues (admin)")
    actions = dlq.add_subparsers(dest="dlq_command", required=True)
    dlq_list = actions.add_parser("list", parents=[common], help="what is in a DLQ")
    dlq_list.add_argument("priority", type=str.upper, choices=["HIGH", "MEDIUM", "LOW"])
    dlq_list.add_argument("--limit", type=int, default=20)
    for name, verb in (("redrive", "move back to the queue"), ("purge", "delete (their jobs end FAILED)")):
        action = actions.add_parser(name, parents=[common], help=f"{verb}: chosen jobs or --all")
        action.add_argument("priority", type=str.upper, choices=["HIGH", "MEDIUM", "LOW"])
        action.add_argument("--job-id", action="append", dest="job_ids", default=[], help="repeatable")
        if name == "redrive":
            action.add_argument("--all", action="store_true", help="every message in the DLQ")

    _add_schedule_and_bulk_commands(commands, common)

    watch = commands.add_parser("watch", parents=[common], help="live view of queues and recent jobs")
    watch.add_argument("--interval", type=float, default=2.0)
    watch.add_argument(
        "--count", type=int, default=0, help="refreshes before exiting (default: until Ctrl-C)"
    )


def _add_schedule_and_bulk_commands(commands: Any, common: argparse.ArgumentParser) -> None:
    schedules = commands.add_parser("schedules", help="recurring jobs (EventBridge Scheduler on AWS)")
    verbs = schedules.add_subparsers(dest="schedules_command", required=True)
    schedule_list = verbs.add_parser("list", parents=[common], help="your schedules (everyone's for admins)")
    schedule_list.add_argument("--limit", type=int, default=20)
    schedule_list.add_argument("--cursor")
    for name in ("get", "delete", "enable", "disable"):
        verb = verbs.add_parser(name, parents=[common], help=f"{name} a schedule")
        verb.add_argument("name")
    create = verbs.add_parser("create", parents=[common], help="a job of TYPE on cron(...) or rate(...)")
    create.add_argument("name")
    create.add_argument("type", help="job type, e.g. system.echo")
    create.add_argument("--payload", default="null", help="the payload as JSON (default null)")
    when = create.add_mutually_exclusive_group(required=True)
    when.add_argument("--cron", help="e.g. 'cron(0 3 * * ? *)' (6 fields, one of the day fields ?)")
    when.add_argument("--rate", help="e.g. 'rate(5 minutes)'")
    create.add_argument("--timezone", help="an IANA name (default UTC), e.g. America/Sao_Paulo")
    create.add_argument("--disabled", action="store_true", help="create it without firing")

    bulk = commands.add_parser("bulk", help="cancel or retry every job that matches a filter")
    bulk_verbs = bulk.add_subparsers(dest="bulk_command", required=True)
    for name in ("cancel", "retry"):
        verb = bulk_verbs.add_parser(
            name, parents=[common], help=f"{name} your matching jobs (all for admins)"
        )
        verb.add_argument("--status", type=str.upper)
        verb.add_argument("--type", dest="job_type")
        verb.add_argument("--created-after", help="ISO-8601 with a zone")
        verb.add_argument("--created-before", help="ISO-8601 with a zone")
        verb.add_argument("--dry-run", action="store_true", help="count only; change nothing")
    bulk_status = bulk_verbs.add_parser("status", parents=[common], help="a bulk operation's progress")
    bulk_status.add_argument("operation_id")


def run(args: argparse.Namespace, state_dir: Path, out: Any = None, err: Any = None) -> int:
    out, err = out or sys.stdout, err or sys.stderr
    try:
        client = api.TarefaClient(
            args.api_url or api.default_api_url(str(state_dir)), _token(args, state_dir)
        )
        handler: Callable[[api.TarefaClient, argparse.Namespace, Any, Any], int] = HANDLERS[args.command]
        return handler(client, args, out, err)
    except api.TarefaClientError as exc:
        if args.json:
            error: dict[str, Any] = {"status": exc.status, "code": exc.code, "message": exc.message}
            if exc.details:
                error["details"] = exc.details
            print(json.dumps({"error": error}), file=out)
        print(f"tarefa {args.command}: {exc}", file=err)
        for line in _detail_lines(exc.details):
            print(f"  {line}", file=err)
        if isinstance(exc, api.RateLimitedError):
            print(f"  retry in {exc.retry_after} s", file=err)
        return next((code for kind, code in EXIT_OF.items() if isinstance(exc, kind)), EXIT_ERROR)
    except ValueError as exc:
        print(f"tarefa {args.command}: {exc}", file=err)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130


def _token(args: argparse.Namespace, state_dir: Path) -> str | None:
    """--token, $TAREFA_TOKEN, or, against the local stack, a fresh admin token of its key."""
    if args.token or os.environ.get("TAREFA_TOKEN"):
        return str(args.token or os.environ["TAREFA_TOKEN"])
    if args.api_url is None and not os.environ.get("TAREFA_API_URL") and (state_dir / "local.json").exists():
        from tarefa.local.auth import LocalAuthority

        return LocalAuthority(state_dir).mint("cli", admin=True, ttl_seconds=3600)
    return None


# -- handlers ------------------------------------------------------------------------------------
def _enqueue(client: api.TarefaClient, args: argparse.Namespace, out: Any, err: Any) -> int:
    if args.batch is not None:
        return _enqueue_batch(client, args, out, err)
    if args.type is None:
        raise ValueError("give a job type, or --batch FILE")
    try:
        payload = json.loads(args.payload)
    except ValueError as exc:
        raise ValueError(f"--payload is not JSON: {exc}") from None
    job = client.enqueue(
        args.type,
        payload,
        priority=args.priority,
        max_attempts=args.max_attempts,
        delay_seconds=args.delay_seconds,
        idempotency_key=args.idempotency_key,
        order_id=args.order_id,
    )
    if not args.wait:
        _show(out, args, job, f"Enqueued {job.job_id} ({job.status}, {job.priority})")
        return 0
    if not args.json:
        print(f"Enqueued {job.job_id}; waiting...", file=err)
    try:
        job = client.wait(job.job_id, timeout=args.timeout)
    except api.WaitTimeoutError as exc:
        _show(out, args, exc.job, f"{exc.job.job_id} is still {exc.job.status} after {args.timeout:g} s")
        return EXIT_WAIT_TIMEOUT
    _show(out, args, job, _describe(job))
    return {"COMPLETED": 0, "FAILED": EXIT_JOB_FAILED, "CANCELLED": EXIT_JOB_CANCELLED}[job.status]


def _enqueue_batch(client: api.TarefaClient, args: argparse.Namespace, out: Any, err: Any) -> int:
    """One line per job, in the file's order: its line number, then its job id and `created`
    (or `existing`: its idempotency key named one), or `error CODE: message`. Exit 0 when every
    job was enqueued, EXIT_BATCH_FAILED when any was not."""
    given = [
        flag
        for flag, value in (
            ("a job type", args.type),
            ("--payload", None if args.payload == "null" else args.payload),
            ("--priority", args.priority),
            ("--max-attempts", args.max_attempts),
            ("--delay", args.delay_seconds),
            ("--idempotency-key", args.idempotency_key),
            ("--order-id", args.order_id),
            ("--wait", args.wait or None),
        )
        if value is not None
    ]
    if given:
        raise ValueError(f"--batch takes every job from its file; not with {', '.join(given)}")
    lines, jobs = _read_jobs(args.batch)
    items = client.enqueue_many(jobs) if jobs else []
    for item in items:
        line = lines[item.index]
        if args.json:
            print(
                json.dumps({"line": line, **item.model_dump(mode="json", by_alias=True, exclude_none=True)}),
                file=out,
            )
        elif item.job is not None:
            print(f"{line} {item.job.job_id} {'created' if item.created else 'existing'}", file=out)
        elif item.error is not None:
            print(f"{line} error {item.error.code}: {item.error.message}", file=out)
            for detail in _detail_lines(item.error.details):
                print(f"  {detail}", file=out)
    failed = sum(1 for item in items if not item.ok)
    if failed:
        print(f"tarefa enqueue: {failed} of {len(items)} jobs were not enqueued", file=err)
        return EXIT_BATCH_FAILED
    return 0


def _read_jobs(source: str) -> tuple[list[int], list[dict[str, Any]]]:
    """The jobs of a JSON Lines file (or stdin), with their line numbers; blank lines skipped.
    A line that is not a JSON object is a usage error before anything is sent."""
    try:
        text = sys.stdin.read() if source == "-" else Path(source).read_text()
    except OSError as exc:
        raise ValueError(f"--batch: cannot read {source}: {exc.strerror}") from None
    lines: list[int] = []
    jobs: list[dict[str, Any]] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            job = json.loads(raw)
        except ValueError as exc:
            raise ValueError(f"--batch: line {number} is not JSON: {exc}") from None
        if not isinstance(job, dict):
            raise ValueError(f"--batch: line {number} is not a JSON object (one job per line)")
        lines.append(number)
        jobs.append(job)
    if not jobs:
        raise ValueError(f"--batch: {source} holds no jobs")
    return lines, jobs


def _status(client: api.TarefaClient, args: argparse.Namespace, out: Any, err: Any) -> int:
    job = client.get(args.job_id)
    _show(out, args, job, _describe(job))
    return 0


def _list(client: api.TarefaClient, args: argparse.Namespace, out: Any, err: Any) -> int:
    page = client.list(args.status, args.job_type, args.order_id, args.limit, args.cursor)
    if args.json:
        print(page.model_dump_json(by_alias=True), file=out)
        return 0
    print(_jobs_table(page.items), file=out)
    if page.next_cursor:
        print(f"more: --cursor {page.next_cursor}", file=out)
    return 0


def _cancel(client: api.TarefaClient, args: argparse.Namespace, out: Any, err: Any) -> int:
    job = client.cancel(args.job_id, args.reason)
    _show(out, args, job, f"{job.job_id} CANCELLED")
    return 0


def _retry(client: api.TarefaClient, args: argparse.Namespace, out: Any, err: Any) -> int:
    job = client.retry(args.job_id)
    _show(out, args, job, f"{job.job_id} back to {job.status}")
    return 0


def _types(client: api.TarefaClient, args: argparse.Namespace, out: Any, err: Any) -> int:
    types = client.job_types()
    if args.json:
        print(json.dumps([t.model_dump(mode="json", by_alias=True) for t in types]), file=out)
        return 0
    rows = [
        [
            t.name,
            ", ".join(t.aliases) or "-",
            t.priority,
            str(t.max_attempts),
            f"{t.timeout_seconds} s",
            ", ".join(
                f"{name} (sensitive)" if name in t.sensitive else name
                for name in t.payload_schema.get("properties", {})
            )
            or "(any JSON)",
        ]
        for t in types
    ]
    print(_table(["TYPE", "ALIASES", "PRIORITY", "ATTEMPTS", "TIMEOUT", "PAYLOAD FIELDS"], rows), file=out)
    return 0


def _queues(client: api.TarefaClient, args: argparse.Namespace, out: Any, err: Any) -> int:
    overview = client.overview()
    if args.json:
        print(json.dumps([q.model_dump(mode="json", by_alias=True) for q in overview.queues]), file=out)
    else:
        print(_overview_text(overview), file=out)
    return 0


def _pause_or_resume(client: api.TarefaClient, args: argparse.Namespace, out: Any, err: Any) -> int:
    queue = client.pause(args.priority) if args.command == "pause" else client.resume(args.priority)
    _show(out, args, queue, f"{queue.priority} ({queue.name}) is {queue.state}")
    return 0


def _dlq(client: api.TarefaClient, args: argparse.Namespace, out: Any, err: Any) -> int:
    if args.dlq_command == "list":
        letters = client.dead_letters(args.priority, args.limit)
        if args.json:
            print(json.dumps([d.model_dump(mode="json", by_alias=True) for d in letters]), file=out)
        else:
            rows = [
                [
                    d.job_id,
                    d.type or "?",
                    str(d.receive_count),
                    f"{d.failed_at:%Y-%m-%d %H:%M:%S}",
                    (d.last_error or "")[:60],
                ]
                for d in letters
            ]
            print(_table(["JOB ID", "TYPE", "RECEIVES", "FAILED AT (UTC)", "LAST ERROR"], rows), file=out)
        return 0
    every = getattr(args, "all", False)
    if bool(args.job_ids) == every:
        raise ValueError("give --job-id (repeatable) or --all")
    total: dict[str, list[Any]] = {"jobIds": [], "notFound": [], "skipped": []}
    while True:
        if args.dlq_command == "redrive":
            report = client.redrive(args.priority, None if every else args.job_ids, all=every)
        else:
            report = client.purge(args.priority, args.job_ids)
        total["jobIds"] += report.job_ids
        total["skipped"] += report.skipped
        total["notFound"] = report.not_found
        if not args.json:
            _progress(err, len(total["jobIds"]), None if every else len(args.job_ids), report.complete)
        if report.complete:
            break
    verb = "moved back" if args.dlq_command == "redrive" else "purged"
    if args.json:
        print(json.dumps(total), file=out)
    else:
        print(f"{len(total['jobIds'])} {verb}", file=out)
        for job_id in total["notFound"]:
            print(f"not in the DLQ: {job_id}", file=out)
        for skipped in total["skipped"]:
            print(f"skipped {skipped['jobId']}: {skipped['reason']}", file=out)
    return 3 if total["notFound"] else 0


def _watch(client: api.TarefaClient, args: argparse.Namespace, out: Any, err: Any) -> int:
    shown = 0
    while True:
        overview, jobs = client.overview(), client.list(limit=10).items
        if args.json:
            print(json.dumps({"queues": [q.model_dump(mode="json", by_alias=True) for q in overview.queues],
                              "jobs": [j.model_dump(mode="json", by_alias=True) for j in jobs]}), file=out)  # fmt: skip
        else:
            if out.isatty():
                out.write("\x1b[2J\x1b[H")  # clear the screen
            print(f"Tarefa at {client.api_url}  {time.strftime('%H:%M:%S')}\n", file=out)
            print(_overview_text(overview) + "\n\nRecent jobs\n" + _jobs_table(jobs), file=out, flush=True)
        shown += 1
        if args.count and shown >= args.count:
            return 0
        time.sleep(args.interval)


def _schedules(client: api.TarefaClient, args: argparse.Namespace, out: Any, err: Any) -> int:
    verb = args.schedules_command
    if verb == "list":
        page = client.schedules(args.limit, args.cursor)
        if args.json:
            print(json.dumps(page), file=out)
            return 0
        rows = [("NAME", "TYPE", "WHEN", "ENABLED", "NEXT RUN", "LAST RUN")]
        for s in page["items"]:
            name = f"{s['owner']}/{s['name']}" if "owner" in s else s["name"]
            when = s.get("cron") or s.get("rate") or ""
            rows.append(
                (
                    name,
                    s["type"],
                    when,
                    "yes" if s["enabled"] else "no",
                    s["nextRunAt"] or "-",
                    s["lastRunAt"] or "-",
                )
            )
        widths = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]))]
        for row in rows:
            print("  ".join(str(v).ljust(w) for v, w in zip(row, widths, strict=True)).rstrip(), file=out)
        if page.get("nextCursor"):
            print(f"more: --cursor {page['nextCursor']}", file=out)
        return 0
    if verb == "create":
        try:
            payload = json.loads(args.payload)
        except ValueError as exc:
            raise ValueError(f"--payload is not JSON: {exc}") from None
        found = client.create_schedule(
            args.name,
            args.type,
            payload,
            cron=args.cron,
            rate=args.rate,
            timezone=args.timezone,
            enabled=not args.disabled,
        )
    elif verb == "delete":
        client.delete_schedule(args.name)
        print(json.dumps({"deleted": args.name}) if args.json else f"Deleted schedule {args.name}", file=out)
        return 0
    elif verb in ("enable", "disable"):
        found = client.update_schedule(args.name, enabled=verb == "enable")
    else:
        found = client.schedule(args.name)
    if args.json:
        print(json.dumps(found), file=out)
    else:
        when = found.get("cron") or found.get("rate")
        state = "enabled" if found["enabled"] else "disabled"
        print(f"{found['name']}: {found['type']} on {when} ({found['timezone']}), {state}", file=out)
        print(f"  next run {found['nextRunAt'] or '-'}, last run {found['lastRunAt'] or '-'}", file=out)
    return 0


def _bulk(client: api.TarefaClient, args: argparse.Namespace, out: Any, err: Any) -> int:
    if args.bulk_command == "status":
        found = client.bulk_operation(args.operation_id)
        summary = (
            f"{found['operationId']} {found['action']} {found['status']}: {found['processed']} done, "
            f"{found['failed']} refused, of {found['matched']}"
        )
    else:
        found = client.bulk(
            args.bulk_command,
            args.status,
            args.job_type,
            args.created_after,
            args.created_before,
            args.dry_run,
        )
        summary = (
            f"{found['matched']} jobs would be {'cancelled' if args.bulk_command == 'cancel' else 'retried'}"
            if args.dry_run
            else f"Started {found['operationId']}: tarefa bulk status {found['operationId']}"
        )
    print(json.dumps(found) if args.json else summary, file=out)
    return 0


HANDLERS: dict[str, Callable[[api.TarefaClient, argparse.Namespace, Any, Any], int]] = {
    "enqueue": _enqueue,
    "status": _status,
    "types": _types,
    "list": _list,
    "cancel": _cancel,
    "retry": _retry,
    "queues": _queues,
    "pause": _pause_or_resume,
    "resume": _pause_or_resume,
    "dlq": _dlq,
    "watch": _watch,
    "schedules": _schedules,
    "bulk": _bulk,
}


# -- output --------------------------------------------------------------------------------------
def _detail_lines(details: Any) -> list[str]:
    """An error's details as a person reads them: one line per invalid field (422), or what
    the API lists (the known job types of a 400 UNKNOWN_JOB_TYPE)."""
    if isinstance(details, list):
        return [
            f"{d.get('field') or '(body)'}: {d.get('message', '')}" if isinstance(d, dict) else str(d)
            for d in details
        ]
    if isinstance(details, dict):
        return [
            f"{key}: {', '.join(map(str, value)) if isinstance(value, list) else value}"
            for key, value in details.items()
        ]
    return []


def _show(out: Any, args: argparse.Namespace, model: BaseModel, text: str) -> None:
    print(model.model_dump_json(by_alias=True) if args.json else text, file=out)


def _describe(job: api.Job) -> str:
    lines = [
        f"{job.job_id}  {job.type}  {job.status}",
        f"  priority {job.priority}, attempts {job.attempts}/{job.max_attempts}, updated {job.updated_at:%Y-%m-%d %H:%M:%S} UTC",
    ]
    if job.progress is not None:
        note = f" ({job.progress.message})" if job.progress.message else ""
        lines.append(f"  progress: {job.progress.percent}%{note}")
    if job.error:
        lines.append(f"  error: {job.error}")
    if job.result is not None:
        lines.append(f"  result: {json.dumps(job.result, ensure_ascii=False)[:200]}")
    return "\n".join(lines)


def _jobs_table(jobs: Sequence[api.Job]) -> str:
    rows = [
        [j.job_id, j.type, j.status, j.priority, f"{j.attempts}/{j.max_attempts}", f"{j.updated_at:%H:%M:%S}"]
        for j in jobs
    ]
    return _table(["JOB ID", "TYPE", "STATUS", "PRIORITY", "ATTEMPTS", "UPDATED"], rows)


def _overview_text(overview: api.Overview) -> str:
    queues = [
        [q.priority, str(q.waiting), str(q.in_flight), str(q.delayed), str(q.dead_letter),
         *(str(q.jobs.get(s, 0)) for s in ("PENDING", "PROCESSING", "COMPLETED", "FAILED")),
         f"{q.windows['5m'].processing_rate_per_minute:g}", q.state, q.name]
        for q in overview.queues
    ]  # fmt: skip
    windows = [
        [name, str(w.completed), str(w.failed), str(w.retried), f"{w.processing_rate_per_minute:g}",
         _ms(w.avg_processing_ms), _ms(w.p95_processing_ms), _ms(w.avg_queue_wait_ms),
         "-" if w.error_rate is None else f"{w.error_rate:.1%}"]
        for name, w in overview.windows.items()
    ]  # fmt: skip
    return (
        _table(["QUEUE", "WAITING", "IN FLIGHT", "DELAYED", "DLQ", "PENDING", "PROCESSING", "COMPLETED",
                "FAILED", "JOBS/MIN (5m)", "STATE", "NAME"], queues)
        + "\n\nAll queues\n"
        + _table(["WINDOW", "COMPLETED", "FAILED", "RETRIED", "JOBS/MIN", "AVG TIME", "P95 TIME", "AVG WAIT",
                  "ERROR RATE"], windows)
    )  # fmt: skip


def _ms(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.1f} ms" if value < 1000 else f"{value / 1000:.2f} s"


def _table(header: list[str], rows: list[list[str]]) -> str:
    if not rows:
        return "(none)"
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    return "\n".join(
        "  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in [header, *rows]
    )


def _progress(err: Any, done: int, total: int | None, complete: bool) -> None:
    if total:
        filled = int(30 * done / total)
        bar = "#" * filled + "-" * (30 - filled)
        err.write(f"\r[{bar}] {done}/{total}")
    else:
        err.write(f"\r{done} moved{'' if complete else '...'}")
    if complete:
        err.write("\n")
    err.flush()
