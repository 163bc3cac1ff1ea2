"""The composition root: builds adapters and services once per process, lazily.

Handlers ask for what they need; nothing here runs at import time, so a function pays for
boto3 and its clients on first use only, and only for the clients it uses.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from functools import cached_property
from typing import TYPE_CHECKING, Any

from tarefa.job import Priority, utcnow
from tarefa.jobtypes import JobTypeRegistry, default_registry
from tarefa.settings import Settings, get_settings

if TYPE_CHECKING:
    from tarefa.adapters.dynamodb import DynamoJobStore
    from tarefa.adapters.sqs import SqsJobQueue
    from tarefa.jobs import JobService
    from tarefa.maintenance import Maintenance
    from tarefa.worker import Worker


def _client(service: str) -> Any:
    import boto3
    from botocore.config import Config

    # AWS_ENDPOINT_URL (set by the local stack and tests) is honoured by boto3 itself.
    config = Config(retries={"mode": "standard", "max_attempts": 3}, connect_timeout=2, read_timeout=10)
    return boto3.session.Session().client(service, config=config)  # type: ignore[call-overload]


class Container:
    def __init__(self, settings: Settings | None = None, registry: JobTypeRegistry | None = None) -> None:
        self.settings = settings or get_settings()
        self._registry = registry
        self.clock: Callable[[], datetime] = utcnow  # tests move time forward through this

    def now(self) -> datetime:
        return self.clock()

    @cached_property
    def registry(self) -> JobTypeRegistry:
        return self._registry or default_registry(self.settings.tarefa_test_jobs)

    @cached_property
    def store(self) -> DynamoJobStore:
        from tarefa.adapters.dynamodb import DynamoJobStore

        s = self.settings
        return DynamoJobStore(_client("dynamodb"), s.jobs_table, s.idempotency_table, s.job_retention_seconds)

    @cached_property
    def queue(self) -> SqsJobQueue:
        from tarefa.adapters.sqs import SqsJobQueue

        s = self.settings
        return SqsJobQueue(
            _client("sqs"),
            {
                Priority.HIGH: s.high_queue_url,
                Priority.MEDIUM: s.medium_queue_url,
                Priority.LOW: s.low_queue_url,
            },
            {Priority.HIGH: s.high_dlq_url, Priority.MEDIUM: s.medium_dlq_url, Priority.LOW: s.low_dlq_url},
        )

    @cached_property
    def jobs(self) -> JobService:
        from tarefa.jobs import JobService

        return JobService(self.store, self.queue, self.registry, now=self.now)

    @cached_property
    def worker(self) -> Worker:
        from tarefa.worker import Worker

        s = self.settings
        return Worker(
            self.store, self.queue, self.registry, s.max_receive_count, s.worker_timeout_seconds, now=self.now
        )

    @cached_property
    def maintenance(self) -> Maintenance:
        from tarefa.maintenance import Maintenance

        s = self.settings
        return Maintenance(
            self.store,
            self.queue,
            s.job_retention_seconds,
            s.stuck_after_seconds,
            s.worker_timeout_seconds,
            now=self.now,
        )


_container: Container | None = None


def container() -> Container:
    """The process-wide container (one per Lambda execution environment)."""
    global _container  # noqa: PLW0603
    if _container is None:
        _container = Container()
    return _container


def reset() -> None:
    """Forget the container, so the next call reads the environment again (tests, local stack)."""
    global _container  # noqa: PLW0603
    _container = None
    get_settings.cache_clear()
