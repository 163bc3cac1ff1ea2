"""The built-in `webhook.delivery` job type's name, payload and handler: what every cold start
registers (tarefa.jobtypes), kept apart from tarefa.webhooks so that registering it costs one
small model, not the whole webhook service (which loads on the first delivery or route)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field

if TYPE_CHECKING:
    from tarefa.context import JobContext

DELIVERY_TYPE = "webhook.delivery"
DELIVERY_ALIAS = "webhook:delivery"  # seed 003's name


class DeliveryPayload(BaseModel):
    """The payload of a webhook.delivery job: never the secret (read from the subscription)."""

    model_config = ConfigDict(populate_by_name=True, extra="forbid")

    subscription_id: str = Field(alias="subscriptionId", min_length=1, max_length=64)
    delivery_id: str = Field(alias="deliveryId", min_length=1, max_length=64)
    event: str = Field(min_length=1, max_length=200)
    timestamp: str = Field(min_length=1, max_length=64)
    data: dict[str, Any]
    headers: dict[str, str] = Field(default_factory=dict)


def deliver(payload: DeliveryPayload, ctx: JobContext) -> dict[str, Any]:
    """webhook.delivery: one attempt of one delivery (tarefa.webhooks.WebhookService.deliver)."""
    return ctx.webhooks.deliver(payload, ctx)
