"""The guests workload on `tarefa local` and in the tests: no provider to stand in for, only its
keys' secret, which the template generates on AWS and the stack creates in the emulator.

`tarefa local` finds this module by convention (`<workload package>.local.start_sandbox`) for
every workload package it loads.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field

from guests.keys import SECRET_NAME


@dataclass
class LocalGuests:
    name: str = "guests"
    parameters: dict[str, str] = field(default_factory=dict)  # template parameter overrides
    secrets: dict[str, str] = field(default_factory=dict)  # secret name (no stage prefix) -> value

    @property
    def url(self) -> str:
        return "(no sandbox: keys only)"

    def stop(self) -> None:
        pass


def start_sandbox(api_url: str, host: str = "127.0.0.1", port: int = 0) -> LocalGuests:
    """A fresh keys secret for this stack (the local stack keeps nothing between runs)."""
    return LocalGuests(secrets={SECRET_NAME: secrets.token_urlsafe(48)})
