"""Configuration, read once from the environment the template gives each function."""

from __future__ import annotations

from functools import lru_cache

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(case_sensitive=False, extra="ignore")

    jobs_table: str = "tarefa-jobs"
    idempotency_table: str = "tarefa-idempotency"
    high_queue_url: str = ""
    medium_queue_url: str = ""
    low_queue_url: str = ""
    high_dlq_url: str = ""
    medium_dlq_url: str = ""
    low_dlq_url: str = ""
    # Must equal the queues' redrive maxReceiveCount (the template passes the same parameter).
    max_receive_count: int = Field(30, ge=2)
    # The worker function's timeout: a lease older than this belongs to a dead invocation.
    worker_timeout_seconds: int = Field(120, ge=1)
    job_retention_seconds: int = Field(7 * 86_400, ge=60)
    stuck_after_seconds: int = Field(300, ge=1)
    tarefa_test_jobs: bool = False
    service_name: str = Field("tarefa", alias="POWERTOOLS_SERVICE_NAME")


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
