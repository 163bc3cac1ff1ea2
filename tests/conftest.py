"""Shared test set-up: no test ever talks to real AWS."""

from __future__ import annotations

import os

import pytest

os.environ.update(
    {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_REGION": "us-east-1",
        "POWERTOOLS_METRICS_NAMESPACE": "Tarefa",
        "POWERTOOLS_SERVICE_NAME": "tarefa",
        "POWERTOOLS_DEV": "false",
    }
)
os.environ.pop("AWS_ENDPOINT_URL", None)
os.environ.pop("AWS_PROFILE", None)


@pytest.fixture(autouse=True)
def _no_stray_metrics() -> None:
    """Powertools keeps metrics in a process-wide buffer; start each test with it empty."""
    from aws_lambda_powertools import Metrics

    Metrics().clear_metrics()
