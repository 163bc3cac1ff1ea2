"""End to end: the `tarefa` CLI and the Python client against a running local stack."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tarefa.client import (
    ConflictError,
    NotFoundError,
    TarefaClient,
    UnauthorizedError,
    WaitTimeoutError,
)
from tarefa.local.process import TAREFA, free_port

from .conftest import RunningStack


def cli(stack: RunningStack, *args: str) -> subprocess.CompletedProcess[str]:
    """`tarefa` as an operator types it, next to a running local stack (its state dir)."""
    return subprocess.run(
        [str(TAREFA), "--state-dir", str(stack.state_dir), *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


# -- client --------------------------------------------------------------------------------------
def test_the_client_enqueues_waits_lists_cancels_and_retries(stack: RunningStack) -> None:
    client = TarefaClient(stack.api_url, stack.token("gina"))
    job = client.enqueue("system.echo", {"hello": "client"}, priority="HIGH", order_id="o-9")
    assert (job.status, job.priority, job.order_id) == ("PENDING", "HIGH", "o-9")
    done = client.wait(job.job_id, timeout=30)
    assert (done.status, done.result) == ("COMPLETED", {"hello": "client"})
    assert job.job_id in [j.job_id for j in client.list(order_id="o-9").items]
    later = client.enqueue("system.echo", delay_seconds=3600)
    assert client.cancel(later.job_id, "not needed").status == "CANCELLED"
    with pytest.raises(ConflictError) as conflict:
        client.cancel(later.job_id)
    assert conflict.value.status == 409 and conflict.value.code == "INVALID_STATE"
    failed = client.enqueue("system.fail", {"failTimes": 1, "permanent": True})
    assert client.wait(failed.job_id, timeout=30).status == "FAILED"
    assert client.retry(failed.job_id).status == "PENDING"


def test_the_client_reads_the_queue_overview_as_an_admin(stack: RunningStack) -> None:
    overview = TarefaClient(stack.api_url, stack.token("ops", "--admin")).overview()
    assert [q.priority for q in overview.queues] == ["HIGH", "MEDIUM", "LOW"]
    assert [w.minutes for w in overview.windows.values()] == [1, 5, 60]
    assert sum(q.jobs["COMPLETED"] for q in overview.queues) == overview.jobs["COMPLETED"]


def test_the_client_raises_what_the_caller_can_act_on(stack: RunningStack) -> None:
    client = TarefaClient(stack.api_url, stack.token("gina"))
    with pytest.raises(NotFoundError):
        client.get("no-such-job")
    with pytest.raises(UnauthorizedError):
        TarefaClient(stack.api_url, token="").get("anything")
    slow = client.enqueue("system.echo", delay_seconds=3600)
    with pytest.raises(WaitTimeoutError) as timeout:
        client.wait(slow.job_id, timeout=0.5)
    assert timeout.value.job.status == "PENDING"


def test_the_client_enqueues_many_in_batches_of_a_hundred_keeping_each_jobs_index(
    stack: RunningStack,
) -> None:
    client = TarefaClient(stack.api_url, stack.token("bulk-producer"))
    jobs: list[dict[str, Any]] = [{"type": "system.echo", "payload": {"n": n}} for n in range(120)]
    jobs[3] = {"type": "system.echo", "payload": {"n": 3}, "idempotencyKey": "batch-e2e"}
    jobs[105] = {"type": "no.such.type"}  # in the second request
    jobs[110] = {"type": "system.echo", "payload": {"n": 3}, "idempotencyKey": "batch-e2e"}
    items = client.enqueue_many(jobs)
    assert [item.index for item in items] == list(range(120))
    assert items[105].error is not None and items[105].error.code == "UNKNOWN_JOB_TYPE"
    assert items[110].job is not None and items[3].job is not None
    assert (items[110].job.job_id, items[110].created) == (items[3].job.job_id, False)
    made = [item for item in items if item.ok and item.created]
    assert len(made) == 118
    for item in made:
        assert item.job is not None
        done = client.wait(item.job.job_id, timeout=60)
        assert (done.status, done.result) == ("COMPLETED", jobs[item.index]["payload"])


# -- CLI -----------------------------------------------------------------------------------------
def test_cli_enqueue_batch_prints_a_line_per_job_and_fails_when_one_did(
    stack: RunningStack, tmp_path: Path
) -> None:
    lines = [
        json.dumps({"type": "system.echo", "payload": {"line": 1}}),
        "",
        json.dumps({"type": "system.echo", "payload": {"line": 3}, "maxAttempts": 99}),
        json.dumps({"type": "system.echo", "payload": {"line": 4}, "priority": "HIGH"}),
    ]
    path = tmp_path / "jobs.jsonl"
    path.write_text("\n".join(lines) + "\n")
    mixed = cli(stack, "enqueue", "--batch", str(path))
    assert mixed.returncode == 9, mixed.stderr
    first, bad, *fields, last = mixed.stdout.splitlines()
    assert first.startswith("1 ") and first.endswith(" created")
    assert bad.startswith("3 error VALIDATION_ERROR") and fields == [
        "  maxAttempts: Input should be less than or equal to 25"
    ]
    assert last.startswith("4 ") and last.endswith(" created")
    assert "1 of 3 jobs were not enqueued" in mixed.stderr
    job_id = last.split()[1]
    client = TarefaClient(stack.api_url, stack.token("ops", "--admin"))
    done = client.wait(job_id, timeout=30)
    assert (done.status, done.priority, done.result) == ("COMPLETED", "HIGH", {"line": 4})
    # From stdin, as JSON: every job enqueued, exit 0
    good = "\n".join(json.dumps({"type": "system.echo", "payload": n}) for n in range(3))
    piped = subprocess.run(
        [str(TAREFA), "--state-dir", str(stack.state_dir), "enqueue", "--batch", "-", "--json"],
        input=good,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert piped.returncode == 0, piped.stderr
    answers = [json.loads(line) for line in piped.stdout.splitlines()]
    assert [(a["line"], a["created"], a["job"]["payload"]) for a in answers] == [
        (1, True, 0),
        (2, True, 1),
        (3, True, 2),
    ]


def test_cli_enqueue_batch_refuses_a_bad_file_before_sending_anything(
    stack: RunningStack, tmp_path: Path
) -> None:
    path = tmp_path / "broken.jsonl"
    path.write_text('{"type": "system.echo"}\n{not json\n')
    broken = cli(stack, "enqueue", "--batch", str(path))
    assert broken.returncode == 2 and "line 2 is not JSON" in broken.stderr and broken.stdout == ""
    both = cli(stack, "enqueue", "system.echo", "--batch", str(path))
    assert both.returncode == 2 and "not with a job type" in both.stderr


def test_cli_enqueue_and_wait_exit_codes_say_how_the_job_ended(stack: RunningStack) -> None:
    done = cli(stack, "enqueue", "system.echo", "--payload", '{"a": 1}', "--wait", "--json")
    assert done.returncode == 0, done.stderr
    job = json.loads(done.stdout)
    assert (job["status"], job["result"]) == ("COMPLETED", {"a": 1})
    failed = cli(
        stack, "enqueue", "system.fail", "--payload", '{"failTimes": 1, "permanent": true}', "--wait"
    )
    assert failed.returncode == 10 and "FAILED" in failed.stdout
    waiting = cli(stack, "enqueue", "system.echo", "--delay", "3600", "--wait", "--timeout", "1")
    assert waiting.returncode == 12 and "still PENDING" in waiting.stdout


def test_cli_reads_jobs_and_its_errors_have_their_own_exit_codes(stack: RunningStack) -> None:
    enqueued = json.loads(cli(stack, "enqueue", "system.echo", "--json").stdout)
    status = cli(stack, "status", enqueued["jobId"], "--json")
    assert status.returncode == 0 and json.loads(status.stdout)["jobId"] == enqueued["jobId"]
    listing = cli(stack, "list", "--limit", "5", "--json")
    assert listing.returncode == 0 and len(json.loads(listing.stdout)["items"]) <= 5
    assert "JOB ID" in cli(stack, "list").stdout
    missing = cli(stack, "status", "no-such-job")
    assert missing.returncode == 3 and "JOB_NOT_FOUND" in missing.stderr
    assert cli(stack, "status", "x", "--token", "not-a-jwt").returncode == 6
    assert cli(stack, "enqueue", "system.echo", "--payload", "{nope").returncode == 2
    assert cli(stack, "enqueue", "nope.type").returncode == 7
    assert cli(stack, "list", "--api-url", f"http://127.0.0.1:{free_port()}").returncode == 8
    stack.wait_for_status(enqueued["jobId"], stack.token("cli"), "COMPLETED")
    assert cli(stack, "cancel", enqueued["jobId"]).returncode == 4


def test_cli_operates_queues_and_dead_letters(stack: RunningStack) -> None:
    queues = cli(stack, "queues", "--json")
    assert queues.returncode == 0
    listed = json.loads(queues.stdout)
    assert [q["priority"] for q in listed] == ["HIGH", "MEDIUM", "LOW"]
    assert all(set(q["windows"]) == {"1m", "5m", "60m"} and "COMPLETED" in q["jobs"] for q in listed)
    table = cli(stack, "queues").stdout
    assert "WAITING" in table and "COMPLETED" in table
    assert "All queues" in table and "P95 TIME" in table and "\n60m " in table
    paused = cli(stack, "pause", "low")
    assert paused.returncode == 0 and "paused" in paused.stdout
    resumed = cli(stack, "resume", "low")
    assert resumed.returncode == 0 and "running" in resumed.stdout

    dlq = stack.state["queues"]["LowDeadLetterQueue"]
    body = {"type": "system.echo", "jobId": "cli-dlq-1", "userId": "cli"}
    stack.sqs().send_message(QueueUrl=dlq, MessageBody=json.dumps(body))
    listed = cli(stack, "dlq", "list", "low", "--json")
    assert "cli-dlq-1" in [d["jobId"] for d in json.loads(listed.stdout)]
    redriven = cli(stack, "dlq", "redrive", "low", "--job-id", "cli-dlq-1")
    assert redriven.returncode == 0 and "1 moved back" in redriven.stdout
    assert "[" in redriven.stderr  # the progress bar
    missing = cli(stack, "dlq", "redrive", "low", "--job-id", "cli-dlq-missing", "--json")
    assert missing.returncode == 3 and json.loads(missing.stdout)["notFound"] == ["cli-dlq-missing"]
    assert cli(stack, "dlq", "redrive", "low").returncode == 2  # neither --job-id nor --all

    watched = cli(stack, "watch", "--count", "1")
    assert watched.returncode == 0 and "QUEUE" in watched.stdout and "Recent jobs" in watched.stdout
