"""Tarefa: a serverless job queue for AWS. This is the public face for job authors:

    from tarefa import job_type, JobContext, JobPolicy, RetryableJobError, PermanentJobError

Everything else in the package is the engine's own and may change. The names load lazily, so
importing an engine module (or this package) costs nothing until a name is used.
"""

from __future__ import annotations

from pkgutil import extend_path
from typing import TYPE_CHECKING, Any

# The dev tooling (tarefa.local, tarefa.client, tarefa.commands) lives in another directory
# (src/tarefa) that never ships in a Lambda layer; on a developer's machine both are on sys.path.
__path__ = extend_path(__path__, __name__)

if TYPE_CHECKING:
    from tarefa.backoff import DEFAULT_LADDER
    from tarefa.cache import cache_family
    from tarefa.context import JobContext
    from tarefa.errors import PermanentJobError, Refusal, RetryableJobError, RetryLater
    from tarefa.job import Priority
    from tarefa.jobtypes import JobPolicy, job_type
    from tarefa.ratelimit import Rate

__all__ = [
    "DEFAULT_LADDER",
    "JobContext",
    "JobPolicy",
    "PermanentJobError",
    "Priority",
    "Rate",
    "Refusal",
    "RetryLater",
    "RetryableJobError",
    "cache_family",
    "job_type",
]

_HOME = {
    "DEFAULT_LADDER": "tarefa.backoff",
    "cache_family": "tarefa.cache",
    "JobContext": "tarefa.context",
    "PermanentJobError": "tarefa.errors",
    "Refusal": "tarefa.errors",
    "RetryLater": "tarefa.errors",
    "RetryableJobError": "tarefa.errors",
    "Priority": "tarefa.job",
    "JobPolicy": "tarefa.jobtypes",
    "job_type": "tarefa.jobtypes",
    "Rate": "tarefa.ratelimit",
}


def __getattr__(name: str) -> Any:
    if name not in _HOME:
        raise AttributeError(f"module 'tarefa' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(_HOME[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
