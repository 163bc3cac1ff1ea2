"""End to end: the `tarefa` CLI and the Python client against a running local stack."""

from __future__ import annotations

import json
import subprocess

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


# -- CLI -----------------------------------------------------------------------------------------
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
