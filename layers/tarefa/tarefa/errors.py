"""Domain errors. The API maps them to status codes in one place (functions/api/app.py)."""

from __future__ import annotations

from typing import Any


class TarefaError(Exception):
    """Base of every error a caller can act on; `code` is stable, `message` is for humans."""

    code = "ERROR"

    def __init__(self, message: str, details: list[dict[str, Any]] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details


class JobNotFoundError(TarefaError):
    code = "JOB_NOT_FOUND"

    def __init__(self, job_id: str) -> None:
        super().__init__(f"Job {job_id} was not found")


class QueueNotFoundError(TarefaError):
    code = "QUEUE_NOT_FOUND"

    def __init__(self, name: str) -> None:
        super().__init__(f"There is no queue {name!r}; the queues are HIGH, MEDIUM and LOW")


class InvalidTransitionError(TarefaError):
    code = "INVALID_STATE"

    def __init__(self, job_id: str, current: str, wanted: str) -> None:
        super().__init__(f"Job {job_id} is {current} and cannot become {wanted}")
        self.current = current


class UnknownJobTypeError(TarefaError):
    code = "UNKNOWN_JOB_TYPE"

    def __init__(self, job_type: str) -> None:
        super().__init__(f"Unknown job type {job_type!r}")


class ValidationFailedError(TarefaError):
    code = "VALIDATION_ERROR"


class MalformedRequestError(TarefaError):
    code = "MALFORMED_REQUEST"


class PayloadTooLargeError(TarefaError):
    code = "PAYLOAD_TOO_LARGE"


class UnauthorizedError(TarefaError):
    code = "UNAUTHORIZED"


class ForbiddenError(TarefaError):
    code = "FORBIDDEN"


class QueueUnavailableError(TarefaError):
    code = "QUEUE_UNAVAILABLE"


class RateLimitedError(TarefaError):
    code = "RATE_LIMITED"


class RateLimiterUnavailableError(TarefaError):
    """The route is configured to fail closed and the limiter's backend is down."""

    code = "RATE_LIMITER_UNAVAILABLE"


class SessionsUnavailableError(TarefaError):
    code = "SESSIONS_UNAVAILABLE"


class ConflictError(Exception):
    """Storage: the conditional write lost (someone else changed the record first)."""


class RetryableJobError(Exception):
    """Raised by a job handler: this attempt failed, a later one may succeed."""


class PermanentJobError(Exception):
    """Raised by a job handler: no attempt will ever succeed; fail the job now."""
