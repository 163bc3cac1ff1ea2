"""Pause and resume consumption by disabling and enabling the worker's event source mappings.

Lambda stops polling a disabled mapping within seconds; messages stay in SQS, so producers and
the API's enqueue are unaffected. The mapping's own state is the only record of a pause.
"""

from __future__ import annotations

from typing import Any

from tarefa.job import Priority

STATES = {"Enabled": "running", "Disabled": "paused", "Enabling": "resuming", "Disabling": "pausing"}


class EventSourceConsumption:
    def __init__(self, client: Any, mappings: dict[Priority, str]) -> None:
        self.client = client
        self.mappings = mappings

    def pause(self, priority: Priority) -> None:
        self.client.update_event_source_mapping(UUID=self.mappings[priority], Enabled=False)

    def resume(self, priority: Priority) -> None:
        self.client.update_event_source_mapping(UUID=self.mappings[priority], Enabled=True)

    def state(self, priority: Priority) -> str:
        state = str(self.client.get_event_source_mapping(UUID=self.mappings[priority])["State"])
        return STATES.get(state, state.lower())
