"""Domain errors. The API maps them to status codes in one place (functions/api/app.py)."""

from __future__ import annotations

from typing import Any


class TarefaError(Exception):
    """Base of every error a caller can act on; `code` is stable, `message` is for humans."""

    code = "ERROR"

    def __init__(self, message: str, details: list[dict[str, Any]] | dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details


class Refusal(TarefaError):
    """A workload's refusal of a request (an invalid state, a taken name, a bad cursor): a
    subclass names its `code` and `status`, and every route answers it in the error shape."""

    code = "REFUSED"
    status = 409


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

    def __init__(self, job_id: str, current: str, wanted: str, message: str | None = None) -> None:
        super().__init__(message or f"Job {job_id} is {current} and cannot become {wanted}")
        self.current = current


class UnknownJobTypeError(TarefaError):
    code = "UNKNOWN_JOB_TYPE"

    def __init__(self, job_type: str, known: list[str] | None = None) -> None:
        message = f"Unknown job type {job_type!r}"
        if known:
            message += f"; known types: {', '.join(known)}"
        super().__init__(message, {"knownTypes": known or []})
        self.job_type = job_type


class IdempotencyKeyReusedError(TarefaError):
    code = "IDEMPOTENCY_KEY_REUSED"

    def __init__(self, job_id: str) -> None:
        super().__init__(
            f"This idempotency key was used for another request (job {job_id}) with a different "
            "body; use a new key for a new request"
        )
        self.job_id = job_id


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


class EncryptionUnavailableError(QueueUnavailableError):
    """503: the job's sensitive fields could not be sealed (KMS unavailable, or its key
    unusable); nothing was stored or sent. A QueueUnavailableError so the one status table
    (tarefa.api.STATUS_OF) answers it 503 with its own code."""

    code = "ENCRYPTION_UNAVAILABLE"


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
    """Raised by a job handler: this attempt failed, a later one may succeed.

    `retry_after` (seconds) replaces the policy's backoff for this attempt, e.g. a provider's
    Retry-After header; it is still capped by SQS's 12-hour visibility limit.
    """

    def __init__(self, message: str = "", retry_after: float | None = None) -> None:
        super().__init__(message)
        if retry_after is not None and retry_after < 0:
            raise ValueError("retry_after must be >= 0")
        self.retry_after = retry_after


class RetryLater(Exception):
    """Raised by a job handler: nothing failed, the job is just not done yet (a payment not yet
    paid). The attempt counts toward maxAttempts, but not as a failure: no traceback, no
    JobsRetried/JobsFailed figure; the job returns after `seconds`."""

    def __init__(self, seconds: float, reason: str = "") -> None:
        super().__init__(reason or f"not done yet; next look in {seconds:g} s")
        if seconds < 0:
            raise ValueError("seconds must be >= 0")
        self.seconds = seconds
        self.reason = reason


class PermanentJobError(Exception):
    """Raised by a job handler: no attempt will ever succeed; fail the job now.

    `code` becomes the job's errorDetails.code (default PERMANENT)."""

    def __init__(self, message: str = "", code: str = "PERMANENT") -> None:
        super().__init__(message)
        self.code = code
