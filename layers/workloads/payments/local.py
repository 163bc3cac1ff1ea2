"""The payments workload on `tarefa local` and in the tests: its gateway sandbox on loopback,
and what the stack must be told about it (template parameters, the gateway's secret).

`tarefa local` finds this module by convention (`<workload package>.local.start_sandbox`) for
every workload package it loads; it never ships a sandbox to AWS (it only runs on loopback).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from payments.jobs import SECRET_NAME
from payments.provider.sandbox import MercadoPagoSandbox

SANDBOX_ACCESS_TOKEN = "TEST-sandbox-access-token"  # noqa: S105 - the sandbox's, public
SANDBOX_PORT = 4610  # the tour's; another free one when it is taken
SANDBOX_WEBHOOK_SECRET = "sandbox-webhook-secret"  # noqa: S105 - the sandbox's, public


@dataclass
class LocalPayments:
    sandbox: MercadoPagoSandbox
    name: str = "payments"  # the Mercado Pago sandbox
    parameters: dict[str, str] = field(default_factory=dict)  # template parameter overrides
    secrets: dict[str, str] = field(default_factory=dict)  # secret name (no stage prefix) -> value

    @property
    def url(self) -> str:
        return self.sandbox.base_url

    def stop(self) -> None:
        self.sandbox.stop()


def start_sandbox(
    api_url: str,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    hang_seconds: float = 12.0,
    contingency_seconds: float = 1.0,
) -> LocalPayments:
    """The sandbox, started; its payments' notifications go to the local API's webhook route,
    signed as Mercado Pago signs them."""
    notify = f"{api_url.rstrip('/')}/webhooks/payments"
    sandbox = MercadoPagoSandbox(
        access_token=SANDBOX_ACCESS_TOKEN,
        webhook_secret=SANDBOX_WEBHOOK_SECRET,
        webhook_url=notify,
        hang_seconds=hang_seconds,
        contingency_seconds=contingency_seconds,
    )
    try:
        base_url = sandbox.start(host, port)
    except OSError:  # the usual port is taken (another stack): any free one, as printed
        base_url = sandbox.start(host, 0)
    secret = {
        "accessToken": SANDBOX_ACCESS_TOKEN,
        "webhookSecret": SANDBOX_WEBHOOK_SECRET,
        "baseUrl": base_url,
    }
    return LocalPayments(
        sandbox,
        parameters={"HttpAllow": host, "PaymentsNotificationUrl": notify},
        secrets={SECRET_NAME: json.dumps(secret)},
    )
