from __future__ import annotations

import pytest
from pydantic import ValidationError

from tarefa.settings import Settings


def test_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JOBS_TABLE", "jobs-prod")
    monkeypatch.setenv("MAX_RECEIVE_COUNT", "40")
    monkeypatch.setenv("TAREFA_TEST_JOBS", "1")
    monkeypatch.setenv("POWERTOOLS_SERVICE_NAME", "payments")
    settings = Settings.from_environment()
    assert settings.jobs_table == "jobs-prod"
    assert settings.max_receive_count == 40
    assert settings.tarefa_test_jobs is True
    assert settings.service_name == "payments"


def test_bad_values_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAX_RECEIVE_COUNT", "lots")
    with pytest.raises(ValidationError):
        Settings.from_environment()
