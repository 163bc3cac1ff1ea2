"""Configuration, read once from the environment the template gives each function.

A plain pydantic model over os.environ: pydantic-settings did the same job for ~90 ms more of
every cold start (bench/results.json).
"""

from __future__ import annotations

import os
from functools import lru_cache

from pydantic import BaseModel, ConfigDict, Field


class Settings(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)

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
    service_name: str = Field("tarefa", alias="powertools_service_name")

    @classmethod
    def from_environment(cls) -> Settings:
        """Variables are matched case-insensitively; unknown ones are ignored."""
        return cls.model_validate({name.lower(): value for name, value in os.environ.items()})


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings.from_environment()
