"""The notifications workload's HTTP routes, served by a function of their own
(functions/notifications) behind the same API, with the engine's error shape, limits and outage
answers (`tarefa.api`). Both need a JWT; a user sees only their own notifications (another's is
a 404, as if it did not exist); admins see all.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.router import APIGatewayHttpRouter

from notifications.jobs import service
from notifications.models import EmailRequest, Notification, NotificationStatus
from notifications.payloads import EmailJob
from tarefa import api

router = APIGatewayHttpRouter()  # type: ignore[no-untyped-call]  # Powertools leaves __init__ untyped
JOB_TYPE = "notifications.email.send"
# A job that ended without its handler recording the outcome (cancelled, or the worker died on
# every attempt): the notification reads FAILED with the job's code.
ENDED = ("FAILED", "CANCELLED")


@router.post("/notifications/email")
def send_email() -> Response[str]:
    who = api.caller(router.current_event)
    request = api.parse_body(router.current_event, EmailRequest)
    notifications = service()
    # A repeated request (the same idempotencyKey and message) gets the same answer: 202, the
    # same notification and job, as it is now.
    notification, _ = notifications.submit(who.user_id, request)
    body: dict[str, Any] = {}
    if notification.status == NotificationStatus.QUEUED:
        # Keyed by the notification: a repeated request (or one whose enqueue failed before it
        # answered) gets the same job, never a second.
        enqueued = api.enqueue(
            who,
            JOB_TYPE,
            EmailJob(notification_id=notification.notification_id).model_dump(by_alias=True),
            idempotency_key=f"notification-{notification.notification_id}",
        )
        notification = notifications.note_job(notification, enqueued.job.job_id)
    body["notification"] = _view(notification)
    body["jobId"] = notification.job_id
    return api.json_response(202, body)


@router.get("/notifications/<notification_id>")
def get_notification(notification_id: str) -> Response[str]:
    who = api.caller(router.current_event)
    notification = service().visible(notification_id, who.user_id, who.is_admin)
    return api.json_response(200, {"notification": _view(notification)})


def _view(notification: Notification) -> dict[str, Any]:
    view = notification.public()
    if notification.status == NotificationStatus.QUEUED and notification.job_id:
        job = api.read_job(notification.job_id)
        if job is not None and str(job.status) in ENDED:
            code = (job.error_details or {}).get("code")
            view["status"] = str(NotificationStatus.FAILED)
            view["reason"] = f"JOB_{job.status}" + (f": {code}" if code else "")
    return view
