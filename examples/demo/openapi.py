"""The demo workload's routes in the API's OpenAPI document (read when the document is built)."""

from __future__ import annotations

from demo.routes import GreetingAccepted, GreetingRequest, Hello
from tarefa.openapi import RouteDoc

ROUTES = [
    RouteDoc("GET", "/demo/hello/{name}", "Say hello (public: no token; 30 a minute per address)", 200, Hello, errors=(422, 429), public=True, tag="demo"),
    RouteDoc("POST", "/demo/greetings", "Greet someone, as a demo.greet job for the caller", 202, GreetingAccepted, GreetingRequest, errors=(401, 422, 429, 503), tag="demo"),
]  # fmt: skip
