"""End to end: the enqueue rate limit and the job cache of a local stack, over HTTP only."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .conftest import RunningStack, start_stack


@pytest.fixture(scope="module")
def limited_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    """A stack of its own, started as a user would lower the limit: 3 enqueues a minute."""
    running = start_stack(
        tmp_path_factory.mktemp("limited"), "--parameter-overrides", "EnqueueRateLimit=3/60"
    )
    yield running
    running.stop()


def test_the_fourth_enqueue_in_a_minute_gets_429_with_the_rate_limit_headers(
    limited_stack: RunningStack,
) -> None:
    dora = limited_stack.token("dora")
    # Given Dora enqueues three jobs
    answers = [limited_stack.exchange("POST", "/jobs", {"type": "system.echo"}, dora) for _ in range(3)]
    assert [status for status, _, _ in answers] == [202, 202, 202]
    assert [headers["x-ratelimit-remaining"] for _, headers, _ in answers] == ["2", "1", "0"]
    # When she enqueues a fourth
    status, headers, body = limited_stack.exchange("POST", "/jobs", {"type": "system.echo"}, dora)
    # Then she is told to slow down, and when to come back
    assert status == 429
    assert body["error"]["code"] == "RATE_LIMITED"
    assert headers["x-ratelimit-limit"] == "3"
    assert headers["x-ratelimit-remaining"] == "0"
    assert 1 <= int(headers["retry-after"]) <= 61
    assert int(headers["x-ratelimit-reset"]) == int(headers["retry-after"])
    _, listing = limited_stack.request("GET", "/jobs", token=dora)
    assert len(listing["items"]) == 3  # the refused one was never enqueued


def test_a_finished_job_is_served_from_the_cache(limited_stack: RunningStack) -> None:
    eve = limited_stack.token("eve")
    status, job = limited_stack.request("POST", "/jobs", {"type": "system.echo", "payload": {"n": 1}}, eve)
    assert status == 202
    limited_stack.wait_for_status(job["jobId"], eve, "COMPLETED")
    reads = [limited_stack.exchange("GET", f"/jobs/{job['jobId']}", token=eve) for _ in range(2)]
    assert reads[-1][0] == 200 and reads[-1][1]["x-cache"] == "HIT"
    assert reads[-1][2]["status"] == "COMPLETED" and reads[-1][2]["result"] == {"n": 1}
    _, health = limited_stack.request("GET", "/health")
    assert health["cache"]["backend"] == "dynamodb" and health["cache"]["state"] == "ok"
    limited_stack.wait_for_line("Cache        dynamodb table tarefa-dev-cache")


def test_the_client_honours_retry_after_then_raises_rate_limited(limited_stack: RunningStack) -> None:
    from tarefa.client import RateLimitedError, TarefaClient

    slept: list[float] = []
    client = TarefaClient(limited_stack.api_url, limited_stack.token("frank"), sleep=slept.append)
    for _ in range(3):
        client.enqueue("system.echo")
    with pytest.raises(RateLimitedError) as limited:
        client.enqueue("system.echo")
    # It waited what the API asked, twice (the default), before giving up
    assert len(slept) == 2 and all(1 <= s <= 61 for s in slept)
    assert limited.value.status == 429 and 1 <= limited.value.retry_after <= 61
