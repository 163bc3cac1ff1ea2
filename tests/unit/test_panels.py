"""Workload panels on the dashboard (tarefa.panels): declared routes are plain and relative,
and what a workload declares reaches the page as inert JSON."""

from __future__ import annotations

import json
import re

import pytest

from tarefa import panels
from tarefa.dashboard import PAGE
from tarefa.panels import Panel


def test_a_panel_names_relative_plain_routes_holding_its_id() -> None:
    Panel("Events", "events", "eventId", "name", "events/{eventId}/metrics")
    for items, detail in (
        ("/events", "events/{eventId}/metrics"),  # absolute
        ("https://evil.example/x", "events/{eventId}/metrics"),
        ("events?limit=1", "events/{eventId}/metrics"),  # a query
        ("events", "events/metrics"),  # no {eventId}
        ("events", "../jobs/{eventId}"),
    ):
        with pytest.raises(ValueError):
            Panel("Events", items, "eventId", "name", detail)


def test_the_page_carries_the_declared_panels_as_inert_json(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(panels, "PANELS", {})
    assert panels.with_panels(PAGE) == PAGE  # no panel, the page as it is
    panels.declare_panel(Panel("Events</script><b>", "events", "eventId", "name", "events/{eventId}/metrics"))
    page = panels.with_panels(PAGE)
    config = re.search(r'<script id="panel-config" type="application/json">(.*?)</script>', page, re.S)
    assert config is not None
    assert "</script><b>" not in config.group(1)  # "<" escaped: the title cannot close the element
    assert json.loads(config.group(1))[0]["title"] == "Events</script><b>"
    assert page.index('id="workload-panels"') < page.index("</main>")
    assert page.rindex("panel-config") < page.index("</body>")
    assert "innerHTML" not in panels.SCRIPT  # other people's data: textContent only
