"""Configuration, read once from the environment the template gives each function.

A plain pydantic model over os.environ: pydantic-settings did the same job for ~90 ms more of
every cold start (bench/results.json).
"""

from __future__ import annotations

import json
import os
from functools import lru_cache
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from tarefa.ratelimit import OFF, Rate, RouteLimit


class Settings(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True, arbitrary_types_allowed=True)

    jobs_table: str = "tarefa-jobs"
    idempotency_table: str = "tarefa-idempotency"
    stats_table: str = "tarefa-stats"  # job counts and per-minute figures (GET /queues)
    webhooks_table: str = "tarefa-webhooks"  # subscriptions and their delivery log (tarefa.webhooks)
    # User schedules and bulk operations (tarefa.schedules, tarefa.bulk); the Scheduler group
    # and role user schedules use, and the queue ARNs their targets name (API only).
    schedules_table: str = "tarefa-schedules"
    schedule_group: str = ""
    scheduler_role_arn: str = ""
    high_queue_arn: str = ""
    medium_queue_arn: str = ""
    low_queue_arn: str = ""
    high_queue_url: str = ""
    medium_queue_url: str = ""
    low_queue_url: str = ""
    high_dlq_url: str = ""
    medium_dlq_url: str = ""
    low_dlq_url: str = ""
    # The worker's event source mappings (UUIDs), which pausing a queue disables (API only).
    high_event_source_mapping: str = ""
    medium_event_source_mapping: str = ""
    low_event_source_mapping: str = ""
    # Must equal the queues' redrive maxReceiveCount (the template passes the same parameter).
    max_receive_count: int = Field(30, ge=2)
    # The worker function's timeout: a lease older than this belongs to a dead invocation.
    worker_timeout_seconds: int = Field(120, ge=1)
    job_retention_seconds: int = Field(7 * 86_400, ge=60)
    stuck_after_seconds: int = Field(300, ge=1)
    tarefa_test_jobs: bool = False
    service_name: str = Field("tarefa", alias="powertools_service_name")
    # Cache, rate limits and sessions: "dynamodb" (CACHE_TABLE), "redis" (REDIS_URL) or "none".
    cache_backend: Literal["dynamodb", "redis", "none"] = "none"
    cache_table: str = ""
    cache_key_prefix: str = "tarefa:"
    redis_url: str = ""
    redis_cluster: bool = False
    redis_username: str = ""
    redis_password_secret_arn: str = ""  # a Secrets Manager secret with a "password" key
    cache_ttls: dict[str, int] = Field(default_factory=dict, alias="tarefa_cache_ttls")
    enqueue_rate_limit: Rate | None = Field(Rate(600, 60), alias="tarefa_enqueue_rate_limit")
    rate_limits: dict[str, RouteLimit] = Field(default_factory=dict, alias="tarefa_rate_limits")
    # The route limits count hits ahead in leases on the DynamoDB backend (tarefa.ratelimit):
    # up to 16 hits a write instead of one; off makes every hit exact (one write each).
    rate_limit_leases: bool = Field(True, alias="tarefa_rate_limit_leases")
    # Workload modules whose @job_type declarations the API and the worker load (comma-separated).
    job_modules: tuple[str, ...] = Field((), alias="tarefa_job_modules")
    # Outbound HTTP may reach these hosts, addresses or CIDRs although they are private or
    # loopback (the local stack's sandboxes); empty on AWS.
    http_allow: tuple[str, ...] = Field((), alias="tarefa_http_allow")
    # Secret names a job asks for (ctx.secret("name")) get this prefix; IAM allows only it.
    secrets_prefix: str = Field("", alias="tarefa_secrets_prefix")
    # The KMS key (ARN or id) whose data keys seal sensitive payload fields (tarefa.sensitive);
    # the template passes its ARN. Empty: a job type that declares sensitive fields stops the start.
    sensitive_key_id: str = Field("", alias="tarefa_sensitive_key_id")
    # Local stack only (--delay-speedup): job delays and retry backoff are divided by this.
    delay_speedup: float = Field(1.0, alias="tarefa_delay_speedup", ge=1)

    @field_validator("cache_ttls", "rate_limits", mode="before")
    @classmethod
    def _json(cls, value: Any) -> Any:
        if isinstance(value, str):
            return json.loads(value) if value.strip() else {}
        return value

    @field_validator("job_modules", "http_allow", mode="before")
    @classmethod
    def _comma_list(cls, value: Any) -> Any:
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    @field_validator("enqueue_rate_limit", mode="before")
    @classmethod
    def _rate(cls, value: Any) -> Any:
        if isinstance(value, str):
            return None if value.strip().lower() in OFF else Rate.parse(value)
        return value

    def route_limits(self) -> dict[str, RouteLimit]:
        """Limits by route key ("POST /jobs"); TAREFA_RATE_LIMITS wins over the enqueue limit."""
        limits = dict(self.rate_limits)
        if self.enqueue_rate_limit is not None:
            limits.setdefault("POST /jobs", RouteLimit(rate=self.enqueue_rate_limit))
        return limits

    @classmethod
    def from_environment(cls) -> Settings:
        """Variables are matched case-insensitively; unknown ones are ignored."""
        return cls.model_validate({name.lower(): value for name, value in os.environ.items()})


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings.from_environment()
