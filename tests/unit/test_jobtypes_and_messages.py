from __future__ import annotations

import pytest

from tarefa.context import JobContext
from tarefa.errors import PermanentJobError, RetryableJobError, UnknownJobTypeError
from tarefa.jobtypes import FailPayload, default_registry, fail
from tarefa.queue import PoisonMessageError, parse_message


def test_system_fail_is_registered_only_for_tests() -> None:
    assert default_registry(test_jobs=False).names() == ["system.echo", "webhook.delivery"]
    assert default_registry(test_jobs=True).names() == ["system.echo", "system.fail", "webhook.delivery"]
    with pytest.raises(UnknownJobTypeError):
        default_registry(test_jobs=False).get("system.fail")


def test_system_fail_fails_its_first_attempts_then_succeeds() -> None:
    payload = FailPayload.model_validate({"failTimes": 2})
    for attempt in (1, 2):
        with pytest.raises(RetryableJobError):
            fail(payload, JobContext("j", attempt, 3, None))
    assert fail(payload, JobContext("j", 3, 3, None)) == {"ok": True}


def test_system_fail_can_fail_permanently() -> None:
    with pytest.raises(PermanentJobError):
        fail(FailPayload.model_validate({"failTimes": 1, "permanent": True}), JobContext("j", 1, 3, None))


def test_message_parsing() -> None:
    message = parse_message('{"type": "system.echo", "payload": [1], "jobId": "a", "maxAttempts": 2}')
    assert (message.type, message.payload, message.job_id, message.max_attempts) == (
        "system.echo",
        [1],
        "a",
        2,
    )
    for bad in ("nope", "[]", '{"payload": 1}', '{"type": ""}', '{"type": "x", "maxAttempts": 99}'):
        with pytest.raises(PoisonMessageError):
            parse_message(bad)
