"""The notifications workload on `tarefa local` and in the tests.

E-mail goes through Amazon SES by default, locally too: the emulator's SES (moto) keeps what was
sent (`GET <emulator>/moto-api/data.json`, `ses.Message`), and `EmailCreateIdentity=yes` makes
the stack verify the From address's domain in it, as an operator does once on AWS. The Resend
sandbox runs as well, so that `--parameter-overrides EmailProvider=resend` sends through the real
Resend adapter to it; its URL goes in the outbound allow-list and ResendApiUrl, its API key in
the emulator's secret `notifications/resend`.

`tarefa local` finds this module by convention (`<workload package>.local.start_sandbox`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from notifications.jobs import SECRET_NAME
from notifications.provider.sandbox import ResendSandbox

SANDBOX_API_KEY = "re_sandbox_key"  # the sandbox's, public
SANDBOX_PORT = 4620  # the tour's; another free one when it is taken


@dataclass
class LocalNotifications:
    sandbox: ResendSandbox
    name: str = "notifications"  # the Resend sandbox
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
    port: int = SANDBOX_PORT,
    *,
    rate: int | None = 2,
    hang_seconds: float = 12.0,
) -> LocalNotifications:
    """The Resend sandbox, started, and what the stack must set for both providers. `api_url`
    (the convention's argument) is unused: the sandbox sends no webhooks (no delivery events)."""
    sandbox = ResendSandbox(SANDBOX_API_KEY, rate=rate, hang_seconds=hang_seconds)
    try:
        base_url = sandbox.start(host, port)
    except OSError:  # the usual port is taken (another stack): any free one, as printed
        base_url = sandbox.start(host, 0)
    return LocalNotifications(
        sandbox,
        parameters={"HttpAllow": host, "ResendApiUrl": base_url, "EmailCreateIdentity": "yes"},
        secrets={SECRET_NAME: json.dumps({"apiKey": SANDBOX_API_KEY})},
    )
