"""The OpenAPI document and the docs page, through the real API handler."""

from __future__ import annotations

from openapi_spec_validator import validate

from tarefa.local.app import LocalApp
from tarefa.openapi import routes

from .conftest import ALICE


def test_the_document_is_valid_openapi_and_describes_every_route_of_the_template(app: LocalApp) -> None:
    assert app.api("GET", "/openapi.json").status == 401  # like every route but /health and /docs
    result = app.api("GET", "/openapi.json", claims=ALICE)
    assert result.status == 200
    spec = result.body
    validate(spec)
    declared = {(r.method, r.path) for r in app.routes}  # every function's, the workloads' too
    documented = {(method.upper(), path) for path, ops in spec["paths"].items() for method in ops}
    engine = {(r.method, r.path) for r in app.api_function.routes}
    assert documented == declared
    assert engine == {(r.method, r.path) for r in routes()}  # the engine's own list is the API's
    workloads = declared - engine
    assert {("GET", "/demo/hello/{name}"), ("POST", "/demo/greetings")} <= workloads
    assert {("POST", "/payments"), ("POST", "/webhooks/payments")} <= workloads  # on by default
    webhook = spec["paths"]["/webhooks/payments"]["post"]
    assert webhook.get("security") == []  # public: the gateway's signature, not a JWT
    assert {
        ("POST", "/events"),
        ("PATCH", "/events/{eventId}"),
        ("POST", "/public/guests/register"),
    } <= workloads
    for path in ("/public/guests/verify-phone", "/public/guests/register", "/public/guests/login"):
        assert spec["paths"][path]["post"].get("security") == [], path  # guests have no JWT
    assert spec["paths"]["/events/{eventId}/check-in"]["post"]["security"] == [{"bearer": []}]
    for path, method in (
        ("/webhooks/whatsapp", "get"),
        ("/webhooks/whatsapp", "post"),
        ("/webhooks/evolution/{instance}", "post"),
    ):
        assert spec["paths"][path][method].get("security") == [], path  # the providers authenticate
    assert spec["paths"]["/sessions/{sessionId}/messages"]["post"]["security"] == [{"bearer": []}]


def test_the_schemas_are_the_models_the_handlers_validate_with(app: LocalApp) -> None:
    spec = app.api("GET", "/openapi.json", claims=ALICE).body
    enqueue = spec["components"]["schemas"]["EnqueueRequest"]
    assert {"type", "payload", "priority", "maxAttempts", "idempotencyKey"} <= set(enqueue["properties"])
    assert enqueue["properties"]["maxAttempts"]["anyOf"][0]["maximum"] == 25
    job = spec["components"]["schemas"]["Job"]["properties"]
    assert "jobId" in job and "version" not in job and "held" not in job  # internals stay internal
    post = spec["paths"]["/jobs"]["post"]
    assert set(post["responses"]) >= {"202", "422", "429"}
    assert spec["paths"]["/queues"]["get"]["tags"] == ["admin"]


def test_the_docs_page_needs_no_token_and_nothing_from_the_internet(app: LocalApp) -> None:
    page = app.api("GET", "/docs")
    assert page.status == 200 and page.headers["content-type"].startswith("text/html")
    assert "Tarefa API" in page.text and "openapi.json" in page.text
    assert "http://" not in page.text and "https://" not in page.text and "<script src" not in page.text
