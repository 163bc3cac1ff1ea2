"""The workloads' provider sandboxes on `tarefa local`.

A workload package that has a `local` module with `start_sandbox(api_url)` gets it called
before the stack builds its functions: the sandbox listens on loopback, and tells the stack
which template parameters to set (its base URL in the outbound allow-list, where the provider
sends webhooks) and which secrets to create in the emulator (its credentials), so the real
adapter reaches it exactly as it would reach the provider. The engine imports no workload: the
modules come from TAREFA_JOB_MODULES as the template resolves it.
"""

from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass, field
from typing import Any, Protocol

from tarefa.local.template import Resolver, load_template


class Sandbox(Protocol):
    name: str
    parameters: dict[str, str]  # template parameter overrides
    secrets: dict[str, str]  # secret name (without the stage's prefix) -> SecretString

    @property
    def url(self) -> str: ...

    def stop(self) -> None: ...


@dataclass
class Sandboxes:
    running: list[Sandbox] = field(default_factory=list)

    def parameters(self, given: dict[str, str]) -> dict[str, str]:
        """The sandboxes' parameters under `given` (the user's win); allow-lists are merged."""
        merged: dict[str, str] = {}
        for sandbox in self.running:
            for name, value in sandbox.parameters.items():
                if name == "HttpAllow" and merged.get(name):
                    merged[name] = ",".join(dict.fromkeys([*merged[name].split(","), *value.split(",")]))
                else:
                    merged[name] = value
        if given.get("HttpAllow") and merged.get("HttpAllow"):
            given = {**given, "HttpAllow": f"{given['HttpAllow']},{merged['HttpAllow']}"}
        return {**merged, **given}

    def create_secrets(self, secretsmanager: Any, prefix: str) -> None:
        for sandbox in self.running:
            for name, value in sandbox.secrets.items():
                try:
                    secretsmanager.create_secret(Name=prefix + name, SecretString=value)
                except secretsmanager.exceptions.ResourceExistsException:
                    secretsmanager.put_secret_value(SecretId=prefix + name, SecretString=value)

    def stop(self) -> None:
        for sandbox in reversed(self.running):
            sandbox.stop()
        self.running.clear()


def job_modules(parameters: dict[str, str]) -> list[str]:
    """TAREFA_JOB_MODULES as the template gives it the functions, with these parameters."""
    template = load_template()
    variables = template.get("Globals", {}).get("Function", {}).get("Environment", {}).get("Variables", {})
    resolved = Resolver(template, dict(parameters)).resolve(variables.get("TAREFA_JOB_MODULES", ""))
    return [m.strip() for m in str(resolved).split(",") if m.strip()]


def start_sandboxes(modules: list[str], api_url: str) -> Sandboxes:
    started = Sandboxes()
    for package in dict.fromkeys(m.split(".")[0] for m in modules):
        if importlib.util.find_spec(package) is None:
            continue  # a start-up error later names the module that cannot be imported
        try:
            found = importlib.util.find_spec(f"{package}.local")
        except ModuleNotFoundError:
            found = None
        if found is None:
            continue
        start = getattr(importlib.import_module(f"{package}.local"), "start_sandbox", None)
        if start is None:
            continue
        try:
            started.running.append(start(api_url))
        except Exception:
            started.stop()
            raise
    return started
