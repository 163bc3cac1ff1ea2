"""The job payload, apart from the models: the API and the worker import it on every cold start
(to validate and run `notifications.email.send`), and it is all they need until a job runs."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class EmailJob(BaseModel):
    """The payload of `notifications.email.send`: which notification (the message itself stays
    in the notifications table, so no address or body is in a job, a queue or a dead letter)."""

    model_config = ConfigDict(populate_by_name=True, extra="forbid")

    notification_id: str = Field(alias="notificationId", min_length=1, max_length=64, pattern=r"^[0-9a-f-]+$")
