"""End to end: an operator pauses a queue and redrives chosen dead letters, over HTTP only."""

from __future__ import annotations

import json
import time
from typing import Any

from .conftest import RunningStack


def test_a_paused_queue_holds_jobs_pending_until_it_is_resumed(stack: RunningStack) -> None:
    ops, alice = stack.token("ops", "--admin"), stack.token("alice")
    status, paused = stack.request("POST", "/queues/low/pause", token=ops)
    assert (status, paused["paused"]) == (200, True)
    try:
        status, job = stack.request("POST", "/jobs", {"type": "system.echo", "priority": "LOW"}, alice)
        assert status == 202  # producers are never paused
        # One event source mapping (LOW's) is disabled, and the job's message waits in the LOW
        # queue, visible: no poll holds it (one that took it as the pause landed hands it back)
        stack.wait_until(
            lambda: (
                list(stack.mapping_states().values()).count("Disabled") == 1
                and stack.visible_messages("LowQueue") >= 1
            ),
            "one mapping disabled with the message waiting in the LOW queue",
        )
        assert stack.request("GET", f"/jobs/{job['jobId']}", token=alice)[1]["status"] == "PENDING"
        _, overview = stack.request("GET", "/queues", token=ops)
        low = next(q for q in overview["queues"] if q["priority"] == "LOW")
        assert low["paused"] is True and low["waiting"] >= 1
    finally:
        status, resumed = stack.request("POST", "/queues/low/resume", token=ops)
    assert (status, resumed["state"]) == (200, "running")
    assert stack.wait_for_status(job["jobId"], alice, "COMPLETED")[-1] == "COMPLETED"


def test_an_operator_redrives_one_chosen_dead_letter(stack: RunningStack) -> None:
    ops = stack.token("ops", "--admin")
    dlq = stack.state["queues"]["MediumDeadLetterQueue"]
    for n in (1, 2):  # what SQS's redrive policy left after too many receives
        body = {"type": "system.echo", "payload": {"n": n}, "jobId": f"e2e-dlq-{n}", "userId": "dora"}
        stack.sqs().send_message(QueueUrl=dlq, MessageBody=json.dumps(body))
    status, listing = stack.request("GET", "/queues/medium/dead-letters?limit=50", token=ops)
    assert status == 200
    assert {"e2e-dlq-1", "e2e-dlq-2"} <= {i["jobId"] for i in listing["items"]}

    status, report = stack.request(
        "POST", "/queues/medium/dead-letters/redrive", {"jobIds": ["e2e-dlq-1"]}, ops
    )
    assert (status, report["jobIds"], report["complete"]) == (200, ["e2e-dlq-1"], True)
    assert stack.wait_for_status("e2e-dlq-1", ops, "COMPLETED")[-1] == "COMPLETED"
    _, listing = stack.request("GET", "/queues/medium/dead-letters?limit=50", token=ops)
    left = {i["jobId"] for i in listing["items"]}
    assert "e2e-dlq-2" in left and "e2e-dlq-1" not in left


def test_the_api_describes_itself(stack: RunningStack) -> None:
    import urllib.request

    status, spec = stack.request("GET", "/openapi.json", token=stack.token("alice"))
    assert status == 200 and spec["openapi"].startswith("3.1") and "/jobs" in spec["paths"]
    with urllib.request.urlopen(stack.api_url + "/docs", timeout=10) as page:
        assert page.status == 200 and "text/html" in page.headers["Content-Type"]
        assert b"Tarefa API" in page.read()


def test_queues_report_job_counts_and_the_last_minutes_figures(stack: RunningStack) -> None:
    ops, alice = stack.token("ops", "--admin"), stack.token("alice")

    def high() -> dict[str, Any]:
        _, overview = stack.request("GET", "/queues", token=ops)
        queue: dict[str, Any] = next(q for q in overview["queues"] if q["priority"] == "HIGH")
        return queue

    # Given the HIGH queue's counts before, and three HIGH jobs that complete
    before = high()["jobs"]["COMPLETED"]
    jobs = [
        stack.request("POST", "/jobs", {"type": "system.echo", "priority": "HIGH"}, alice)[1]["jobId"]
        for _ in range(3)
    ]
    for job_id in jobs:
        stack.wait_for_status(job_id, alice, "COMPLETED")
    # When an operator looks at the queues (the stream consumer folds changes in within seconds)
    deadline = time.monotonic() + 20
    while (found := high())["jobs"]["COMPLETED"] < before + 3 and time.monotonic() < deadline:
        time.sleep(0.1)
    # Then the three are counted, and the last minute says how they ran
    assert found["jobs"]["COMPLETED"] == before + 3
    last_minute = found["windows"]["1m"]
    assert last_minute["completed"] >= 3
    assert last_minute["processingRatePerMinute"] >= 3
    assert last_minute["p95ProcessingMs"] is not None and last_minute["avgQueueWaitMs"] is not None
    assert set(found["windows"]) == {"1m", "5m", "60m"}
