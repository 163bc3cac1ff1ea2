from __future__ import annotations

from aws_lambda_powertools import Logger

# Every function creates the parent logger the core's child loggers attach to; so do unit tests.
PARENT_LOGGER = Logger(service="tarefa")
