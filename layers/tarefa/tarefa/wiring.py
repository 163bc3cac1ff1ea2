"""The composition root: builds adapters and services once per process, lazily.

Handlers ask for what they need; nothing here runs at import time, so a function pays for
boto3 and its clients on first use only, and only for the clients it uses.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from functools import cached_property
from typing import TYPE_CHECKING, Any

from tarefa.job import Priority, utcnow
from tarefa.jobtypes import JobTypeRegistry, default_registry
from tarefa.settings import Settings, get_settings

if TYPE_CHECKING:
    from tarefa.adapters.dynamodb import DynamoJobStore
    from tarefa.adapters.dynamodb_schedules import DynamoEngineStore
    from tarefa.adapters.sqs import SqsJobQueue
    from tarefa.breaker import GuardedBackend
    from tarefa.bulk import BulkService
    from tarefa.cache import Cache
    from tarefa.context import JobServices
    from tarefa.deadletters import DeadLetters
    from tarefa.flow import FlowControl
    from tarefa.jobs import JobService
    from tarefa.maintenance import Maintenance
    from tarefa.outbound import OutboundHttp
    from tarefa.queues import Queues
    from tarefa.ratelimit import RateLimiter
    from tarefa.schedules import ScheduleService
    from tarefa.sensitive import Codec, SensitiveFields
    from tarefa.sessions import SessionStore
    from tarefa.stats import JobStats
    from tarefa.webhooks import WebhookService
    from tarefa.worker import Worker


def _client(service: str) -> Any:
    import boto3
    from botocore.config import Config

    # AWS_ENDPOINT_URL (set by the local stack and tests) is honoured by boto3 itself.
    config = Config(retries={"mode": "standard", "max_attempts": 3}, connect_timeout=2, read_timeout=10)
    return boto3.session.Session().client(service, config=config)  # type: ignore[call-overload]


def _secret_password(secret_arn: str) -> Callable[[], str]:
    """Read on each new connection (cached 5 minutes), so a rotated password is picked up and
    an unreachable Secrets Manager is a cache outage, not a failed cold start."""

    def password() -> str:
        from aws_lambda_powertools.utilities import parameters

        secret: Any = parameters.get_secret(secret_arn, transform="json", max_age=300)
        return str(secret["password"])

    return password


class Container:
    def __init__(self, settings: Settings | None = None, registry: JobTypeRegistry | None = None) -> None:
        self.settings = settings or get_settings()
        self._registry = registry
        self.clock: Callable[[], datetime] = utcnow  # tests move time forward through this

    def now(self) -> datetime:
        return self.clock()

    @cached_property
    def registry(self) -> JobTypeRegistry:
        """The built-in types and those of TAREFA_JOB_MODULES, imported here once per cold
        start; a module that fails to import, or a type whose timeout is above the worker's,
        is a JobTypeError naming it (the functions import this at start-up)."""
        s = self.settings
        registry = self._registry or default_registry(
            s.tarefa_test_jobs, s.job_modules, seal_deliveries=bool(s.sensitive_key_id)
        )
        from tarefa.bulk import register_builtins  # system.bulk: the engine's, beside jobtypes.py's

        register_builtins(registry)
        registry.check_timeouts(s.worker_timeout_seconds)
        if not s.sensitive_key_id:
            registry.check_no_sensitive_fields("TAREFA_SENSITIVE_KEY_ID names no KMS key")
        return registry

    @cached_property
    def sensitive(self) -> SensitiveFields:
        """Seals and opens the sensitive payload fields; the KMS client, and `cryptography`,
        load the first time a sensitive value is sealed or opened."""
        from tarefa.sensitive import SensitiveFields

        s = self.settings
        if not s.sensitive_key_id:
            return SensitiveFields(None)

        def codec() -> Codec:
            from tarefa.adapters.kms import KmsKeyService
            from tarefa.sensitive import Codec

            return Codec(KmsKeyService(_client("kms"), s.sensitive_key_id, s.jobs_table))

        return SensitiveFields(codec)

    @cached_property
    def dynamodb(self) -> Any:
        """One client for the jobs and the cache tables: a second would cost cold-start time, and
        when DynamoDB is slow the job path is slow with it whatever the cache's timeouts."""
        return _client("dynamodb")

    @cached_property
    def store(self) -> DynamoJobStore:
        from tarefa.adapters.dynamodb import DynamoJobStore

        s = self.settings
        return DynamoJobStore(
            self.dynamodb, s.jobs_table, s.idempotency_table, s.job_retention_seconds, self._epoch
        )

    @cached_property
    def queue(self) -> SqsJobQueue:
        from tarefa.adapters.sqs import SqsJobQueue
        from tarefa.flow import message_group

        s = self.settings
        return SqsJobQueue(
            _client("sqs"),
            {
                Priority.HIGH: s.high_queue_url,
                Priority.MEDIUM: s.medium_queue_url,
                Priority.LOW: s.low_queue_url,
            },
            {Priority.HIGH: s.high_dlq_url, Priority.MEDIUM: s.medium_dlq_url, Priority.LOW: s.low_dlq_url},
            # every message's fair-queue group: its type's fairness_key, else its owner
            group_of=lambda body: message_group(body, lambda: self.registry),
        )

    @cached_property
    def flow(self) -> FlowControl:
        """Concurrency slots, unique keys and debounce bursts, in the idempotency table."""
        from tarefa.adapters.dynamodb_flow import DynamoFlowStore
        from tarefa.flow import FlowControl

        return FlowControl(DynamoFlowStore(self.dynamodb, self.settings.idempotency_table), now=self.now)

    @cached_property
    def jobs(self) -> JobService:
        from tarefa.jobs import JobService

        return JobService(
            self.store,
            self.queue,
            self.registry,
            now=self.now,
            cache=self.cache,
            retention=timedelta(seconds=self.settings.job_retention_seconds),
            delay_speedup=self.settings.delay_speedup,
            sensitive=self.sensitive,
            # Lazy: the webhook service is built on the first callbackUrl, never for other jobs.
            callback_allowed=lambda user_id, url: self.webhooks.subscription_exists(user_id, url),  # noqa: PLW0108
            on_end=self.job_ended,
            flow=self.flow,
        )

    def job_ended(self, job: Any) -> None:
        """A job ended: post its callback (the webhook service is built only for jobs that have one)."""
        if job.callback_url:
            self.webhooks.job_ended(job)

    @cached_property
    def webhooks(self) -> WebhookService:
        """Subscriptions, signed deliveries and job callbacks; secrets sealed with the sensitive
        fields' KMS key when the deployment has one."""
        from tarefa.adapters.dynamodb_webhooks import DynamoWebhookStore
        from tarefa.webhooks import (
            MAX_DATA_BYTES,
            SEALED_MAX_DATA_BYTES,
            EnvelopeSecrets,
            PlainSecrets,
            SecretBox,
            WebhookService,
        )

        sealed = self.sensitive.configured  # then a delivery's data is sealed too (tarefa.jobtypes)
        secrets: SecretBox = EnvelopeSecrets(lambda: self.sensitive.codec) if sealed else PlainSecrets()
        return WebhookService(
            DynamoWebhookStore(self.dynamodb, self.settings.webhooks_table),
            secrets,
            http=lambda: self.http,
            enqueue=lambda caller, request: self.jobs.enqueue(caller, request),  # noqa: PLW0108 (jobs is built lazily)
            now=self.now,
            max_data_bytes=SEALED_MAX_DATA_BYTES if sealed else MAX_DATA_BYTES,
        )

    @cached_property
    def engine_store(self) -> DynamoEngineStore:
        """User schedules' definitions and bulk operations' records (the schedules table)."""
        from tarefa.adapters.dynamodb_schedules import DynamoEngineStore

        return DynamoEngineStore(self.dynamodb, self.settings.schedules_table)

    @cached_property
    def schedules(self) -> ScheduleService:
        from tarefa.adapters.scheduler import EventBridgeScheduler
        from tarefa.schedules import ScheduleService

        s = self.settings
        queues = {
            Priority.HIGH: s.high_queue_arn,
            Priority.MEDIUM: s.medium_queue_arn,
            Priority.LOW: s.low_queue_arn,
        }
        scheduler = EventBridgeScheduler(_client("scheduler"), s.schedule_group, s.scheduler_role_arn, queues)
        return ScheduleService(self.engine_store, scheduler, self.registry, self.store, now=self.now)

    @cached_property
    def bulk(self) -> BulkService:
        from tarefa.bulk import BulkService

        return BulkService(self.store, self.engine_store, self.jobs, now=self.now)

    @cached_property
    def worker(self) -> Worker:
        from tarefa.worker import Worker

        s = self.settings
        return Worker(
            self.store,
            self.queue,
            self.registry,
            s.max_receive_count,
            s.worker_timeout_seconds,
            now=self.now,
            limiter=self.limiter,
            services=self.job_services,
            delay_speedup=s.delay_speedup,
            sensitive=self.sensitive,
            on_end=self.job_ended,
            flow=self.flow,
        )

    @cached_property
    def job_services(self) -> JobServices:
        """What every job's context offers; each service is built on first use."""
        from tarefa.context import JobServices

        return JobServices(
            cache=self.cache,
            limiter=self.limiter,
            secret=self.secret,
            http=lambda: self.http,
            steps=self.store,
            enqueue=self.jobs.enqueue_for,
            wake=self.jobs.run_now,
            webhooks=lambda: self.webhooks,
        )

    @cached_property
    def http(self) -> OutboundHttp:
        from tarefa.outbound import OutboundHttp

        return OutboundHttp(allow=self.settings.http_allow)

    def secret(self, name: str, transform: str | None = None) -> Any:
        """A Secrets Manager secret through Powertools Parameters (cached 5 minutes); names
        without an ARN get TAREFA_SECRETS_PREFIX (the stage's `tarefa/<stage>/`)."""
        from aws_lambda_powertools.utilities import parameters

        prefix = self.settings.secrets_prefix
        full = name if name.startswith(("arn:", prefix)) else prefix + name
        how: Any = transform
        return parameters.get_secret(full, transform=how, max_age=300)

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
            cache=self.cache,
            on_end=self.job_ended,
        )

    @cached_property
    def queues(self) -> Queues:
        from tarefa.adapters.eventsource import EventSourceConsumption
        from tarefa.queues import Queues

        s = self.settings
        mappings = {
            Priority.HIGH: s.high_event_source_mapping,
            Priority.MEDIUM: s.medium_event_source_mapping,
            Priority.LOW: s.low_event_source_mapping,
        }
        return Queues(self.queue, EventSourceConsumption(_client("lambda"), mappings), self.stats)

    @cached_property
    def stats(self) -> JobStats:
        from tarefa.adapters.dynamodb_stats import DynamoStatsStore
        from tarefa.stats import JobStats

        return JobStats(DynamoStatsStore(self.dynamodb, self.settings.stats_table), now=self.now)

    @cached_property
    def dead_letters(self) -> DeadLetters:
        from tarefa.deadletters import DeadLetters

        return DeadLetters(
            self.store,
            self.queue,
            now=self.now,
            lease_seconds=self.settings.worker_timeout_seconds,
            redact=self._redact_payload,
            on_end=self.job_ended,
        )

    def _redact_payload(self, job_type: str, payload: Any) -> Any:
        """A payload recorded from a message a producer sent straight to SQS (then dead-lettered),
        with its type's sensitive values redacted; the registry loads only when one is."""
        from tarefa.sensitive import redact

        return redact(self.registry.get(job_type), payload) if job_type in self.registry else payload

    # -- cache, rate limits, sessions (None when CACHE_BACKEND=none) ------------------------
    @cached_property
    def cache_backend(self) -> GuardedBackend | None:
        from tarefa.breaker import GuardedBackend

        s = self.settings
        if s.cache_backend == "redis":
            from tarefa.adapters.redis import RedisCacheBackend, connect

            arn = s.redis_password_secret_arn
            client = connect(
                s.redis_url, s.redis_username, _secret_password(arn) if arn else None, s.redis_cluster
            )
            return GuardedBackend(RedisCacheBackend(client))
        if s.cache_backend == "dynamodb":
            from tarefa.adapters.dynamodb_cache import DynamoCacheBackend

            return GuardedBackend(DynamoCacheBackend(self.dynamodb, s.cache_table, self._epoch))
        return None

    def _epoch(self) -> float:
        return self.now().timestamp()

    @cached_property
    def cache(self) -> Cache | None:
        from tarefa.cache import Cache, TtlTable

        backend = self.cache_backend
        if backend is None:
            return None
        return Cache(backend, TtlTable(self.settings.cache_ttls), self.settings.cache_key_prefix, self._epoch)

    @cached_property
    def limiter(self) -> RateLimiter | None:
        from tarefa.ratelimit import RateLimiter

        backend = self.cache_backend
        if backend is None:
            return None
        # Leases only where a hit is a billed write (tarefa.ratelimit); TAREFA_RATE_LIMIT_LEASES=0: exact
        leases = backend.name == "dynamodb" and self.settings.rate_limit_leases
        return RateLimiter(backend, self.settings.cache_key_prefix, self._epoch, leases=leases)

    @cached_property
    def sessions(self) -> SessionStore | None:
        from tarefa.cache import TtlTable
        from tarefa.sessions import SessionStore

        backend = self.cache_backend
        if backend is None:
            return None
        ttl = TtlTable(self.settings.cache_ttls)["session"]
        return SessionStore(backend, ttl, self.settings.cache_key_prefix, self._epoch)


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
