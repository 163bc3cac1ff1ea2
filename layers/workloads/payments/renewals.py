"""The daily renewal run: one SUBSCRIPTION_RENEWAL job per subscription and period that falls
due within a day. Keyed by subscription and period, so however often it runs (a repeated
schedule delivery, an operator's manual run) a period gets one job; read from the sparse
RenewalsDue index, never a scan."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from aws_lambda_powertools import Logger

from payments.jobs import service
from payments.models import RenewalJob
from payments.service import RENEW_AHEAD
from tarefa import api

logger = Logger(child=True)


def enqueue_due(now: datetime | None = None) -> dict[str, Any]:
    moment = now or service().now()
    store = service().store
    enqueued = failed = 0
    for subscription_id, period in store.due_subscriptions(moment + RENEW_AHEAD):
        subscription = store.get_subscription(subscription_id)
        if subscription is None:
            continue
        try:
            api.enqueue(
                api.as_user(subscription.owner),
                "payments.subscription_renewal",
                RenewalJob(subscription_id=subscription_id, period=period).model_dump(by_alias=True),
                idempotency_key=f"renewal-{subscription_id}-{period}",
            )
            enqueued += 1
        except Exception:  # one subscription's trouble never stops the others; tomorrow's run retries
            failed += 1
            logger.exception("renewal not enqueued", extra={"subscription_id": subscription_id})
    logger.info("renewals enqueued", extra={"enqueued": enqueued, "failed": failed})
    return {"enqueued": enqueued, "failed": failed}
