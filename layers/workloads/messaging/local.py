"""The messaging workload on `tarefa local` and in the tests: the WhatsApp sandbox (both APIs)
on loopback, and what the stack must be told about it (template parameters, the secrets).

`tarefa local` finds this module by convention (`<workload package>.local.start_sandbox`); the
sandbox never ships to AWS.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from messaging.jobs import CLOUDAPI_SECRET, EVOLUTION_SECRET
from messaging.provider.sandbox import WhatsAppSandbox

SANDBOX_ACCESS_TOKEN = "EAAG-sandbox-access-token"  # noqa: S105 - the sandbox's, public
SANDBOX_APP_SECRET = "sandbox-app-secret"  # noqa: S105 - the sandbox's, public
SANDBOX_VERIFY_TOKEN = "sandbox-verify-token"  # noqa: S105 - the sandbox's, public
SANDBOX_API_KEY = "sandbox-evolution-api-key"  # the sandbox's, public
SANDBOX_WEBHOOK_SECRET = "sandbox-evolution-webhook-secret"  # noqa: S105 - the sandbox's, public


@dataclass
class LocalMessaging:
    sandbox: WhatsAppSandbox
    name: str = "messaging"  # the WhatsApp sandbox (Cloud API and Evolution API)
    parameters: dict[str, str] = field(default_factory=dict)
    secrets: dict[str, str] = field(default_factory=dict)

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
    delivered_after: float | None = 1.0,
    read_after: float | None = 1.0,
    hang_seconds: float = 12.0,
) -> LocalMessaging:
    """The sandbox, started; its webhooks go to the local API (`api_url`), authenticated as the
    real providers' are."""
    api = api_url.rstrip("/")
    sandbox = WhatsAppSandbox(
        access_token=SANDBOX_ACCESS_TOKEN,
        app_secret=SANDBOX_APP_SECRET,
        api_key=SANDBOX_API_KEY,
        webhook_url=f"{api}/webhooks/whatsapp",
        delivered_after=delivered_after,
        read_after=read_after,
        hang_seconds=hang_seconds,
    )
    try:
        base_url = sandbox.start(host, port)
    except OSError:  # the usual port is taken (another stack): any free one
        base_url = sandbox.start(host, 0)
    cloud = {
        "accessToken": SANDBOX_ACCESS_TOKEN,
        "appSecret": SANDBOX_APP_SECRET,
        "verifyToken": SANDBOX_VERIFY_TOKEN,
        "baseUrl": base_url,
    }
    evolution = {"apiKey": SANDBOX_API_KEY, "webhookSecret": SANDBOX_WEBHOOK_SECRET, "baseUrl": base_url}
    return LocalMessaging(
        sandbox,
        parameters={
            "HttpAllow": host,
            "WhatsAppApiUrl": base_url,
            "EvolutionApiUrl": base_url,
            "MessagingPublicUrl": api,
        },
        secrets={CLOUDAPI_SECRET: json.dumps(cloud), EVOLUTION_SECRET: json.dumps(evolution)},
    )
