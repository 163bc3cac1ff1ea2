"""A workload outside the engine, loaded through JobModules, runs on the real handlers against
moto: cache, secrets, outbound HTTP (a loopback server the allow-list admits), progress, and a
side effect that happens once across a retried attempt."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import boto3
import pytest
from moto import mock_aws

from tarefa import wiring
from tarefa.jobtypes import JobTypeError
from tarefa.local.app import LocalApp

from .conftest import ALICE, Clock, enqueue, job_of, let_sqs_timers_pass
from .workload_tools import jobs as tools

MODULES = "demo,tests.integration.workload_tools"


class Provider(BaseHTTPRequestHandler):
    seen: list[str] = []

    def do_GET(self) -> None:
        Provider.seen.append(self.headers.get("Authorization", ""))
        body = json.dumps({"provider": "ok"}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        return None


@pytest.fixture
def provider() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Provider)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/status"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def plugged() -> Iterator[tuple[LocalApp, Clock]]:
    with mock_aws():
        app = LocalApp(
            boto3.client("sqs"),
            boto3.client("dynamodb"),
            # only the modules named here (the product's workloads off)
            {
                "JobModules": MODULES,
                "HttpAllow": "127.0.0.1",
                "PaymentsWorkload": "off",
                "GuestsWorkload": "off",
                "MessagingWorkload": "off",
            },
        )
        clock = Clock()
        wiring.container().clock = clock
        yield app, clock
    wiring.reset()


def test_a_workload_handler_uses_every_service_and_its_side_effect_happens_once(
    plugged: tuple[LocalApp, Clock], provider: str
) -> None:
    app, clock = plugged
    boto3.client("secretsmanager").create_secret(
        Name="tarefa/dev/tools-token", SecretString=json.dumps({"token": "s3cr3t"})
    )
    tools.SIDE_EFFECTS.clear()
    job = enqueue(app, {"type": "tools.everything", "payload": {"url": provider, "secret": "tools-token"}})
    # The first attempt charges, then fails before the job records anything
    app.drain()
    first = job_of(app, job["jobId"])
    assert first["status"] == "RETRYING" and first["attempts"] == 1
    assert first["progress"]["percent"] == 50 and first["progress"]["message"] == "provider answered"
    # The second attempt reuses the recorded charge
    clock.advance(10)
    let_sqs_timers_pass()
    app.drain()
    done = job_of(app, job["jobId"])
    assert done["status"] == "COMPLETED", done
    assert done["result"]["answer"] == {"provider": "ok"}
    assert done["result"]["cachedFromAttempt"] == {"attempt": 1}
    assert done["progress"]["percent"] == 100
    assert len(tools.SIDE_EFFECTS) == 1 and done["result"]["charged"]["key"] == tools.SIDE_EFFECTS[0]
    assert Provider.seen[-2:] == ["Bearer s3cr3t", "Bearer s3cr3t"]


def test_without_the_allow_list_the_loopback_provider_is_refused(provider: str) -> None:
    with mock_aws():
        app = LocalApp(boto3.client("sqs"), boto3.client("dynamodb"), {"JobModules": MODULES})
        boto3.client("secretsmanager").create_secret(
            Name="tarefa/dev/tools-token", SecretString='{"token": "t"}'
        )
        job = enqueue(
            app, {"type": "tools.everything", "payload": {"url": provider, "secret": "tools-token"}}
        )
        app.drain()
        failed = job_of(app, job["jobId"])
    wiring.reset()
    assert failed["status"] == "FAILED"
    assert failed["errorDetails"]["code"] == "BLOCKED_ADDRESS"


def test_the_demo_workload_runs_and_its_alias_is_listed(plugged: tuple[LocalApp, Clock]) -> None:
    app, _ = plugged
    job = enqueue(app, {"type": "DEMO_GREET", "payload": {"name": "Ana", "language": "pt", "steps": 2}})
    assert job["type"] == "demo.greet" and job["priority"] == "LOW"
    app.drain()
    done = job_of(app, job["jobId"])
    assert done["status"] == "COMPLETED"
    assert done["result"]["greeting"] == "Olá, Ana!" and done["progress"] == {
        "percent": 100,
        "message": "greeted",
        "updatedAt": done["progress"]["updatedAt"],
    }
    listed = app.api("GET", "/job-types", claims=ALICE)
    assert listed.status == 200
    by_name = {t["name"]: t for t in listed.body["items"]}
    assert set(by_name) == {
        "demo.greet",
        "system.echo",
        "system.fail",
        "tools.everything",
        "system.bulk",
        "webhook.delivery",
    }
    greet = by_name["demo.greet"]
    assert greet["aliases"] == ["DEMO_GREET"] and greet["priority"] == "LOW"
    assert greet["maxAttempts"] == 4 and greet["timeoutSeconds"] == 30
    assert greet["payloadSchema"]["required"] == ["name"]
    assert greet["sensitive"] == []  # none of its fields is sealed (tarefa.sensitive)
    assert set(greet) == {
        "name",
        "aliases",
        "priority",
        "maxAttempts",
        "timeoutSeconds",
        "sensitive",
        "flowControl",
        "payloadSchema",
    }
    assert greet["flowControl"] == {"fairness": "owner"}  # no flow control but the fair-queue group


def test_an_unknown_type_lists_the_known_ones(plugged: tuple[LocalApp, Clock]) -> None:
    app, _ = plugged
    refused = app.api("POST", "/jobs", {"type": "demo.nope"}, ALICE)
    assert refused.status == 400 and refused.body["error"]["code"] == "UNKNOWN_JOB_TYPE"
    assert "demo.greet" in refused.body["error"]["details"]["knownTypes"]


def test_the_openapi_document_lists_the_job_types(plugged: tuple[LocalApp, Clock]) -> None:
    app, _ = plugged
    document = app.api("GET", "/openapi.json", claims=ALICE).body
    names = document["components"]["schemas"]["EnqueueRequest"]["properties"]["type"]["enum"]
    assert {"demo.greet", "DEMO_GREET", "system.echo"} <= set(names)
    assert document["paths"]["/job-types"]["get"]["security"] == [{"bearer": []}]
    assert document["paths"]["/health"]["get"]["security"] == []


def test_a_payload_that_does_not_match_the_workload_model_is_422(plugged: tuple[LocalApp, Clock]) -> None:
    app, _ = plugged
    refused = app.api("POST", "/jobs", {"type": "demo.greet", "payload": {"name": ""}}, ALICE)
    assert refused.status == 422
    assert refused.body["error"]["details"][0]["field"] == "payload.name"


def test_a_broken_module_fails_the_start_naming_it() -> None:
    with mock_aws(), pytest.raises(JobTypeError, match="cannot import 'no_such_workload'"):
        LocalApp(boto3.client("sqs"), boto3.client("dynamodb"), {"JobModules": "demo,no_such_workload"})
    wiring.reset()


def test_a_workload_that_is_off_loads_nothing_and_serves_nothing() -> None:
    """PaymentsWorkload=off, GuestsWorkload=off: no job type, route, function or table of
    theirs; on (the default), all of them; each turned off alone leaves the other whole."""
    with mock_aws():
        off = LocalApp(
            boto3.client("sqs"),
            boto3.client("dynamodb"),
            {"PaymentsWorkload": "off", "GuestsWorkload": "off", "MessagingWorkload": "off"},
        )
        names = wiring.container().registry.names()
        assert not any(name.startswith(("payments.", "guests.", "messaging.")) for name in names)
        assert off.api("POST", "/sessions", {}, ALICE).status == 404
        assert off.api("POST", "/webhooks/whatsapp", {}).status == 404
        assert "MessagingFunction" not in off.stack.functions and "MessagingTable" not in off.stack.tables
        assert off.api("POST", "/payments", {}, ALICE).status == 404
        assert off.api("POST", "/events", {}, ALICE).status == 404
        assert off.api("POST", "/public/guests/verify-phone", {}).status == 404
        assert not any(f.startswith(("Payments", "Guests")) for f in off.stack.functions)
        assert {"PaymentsTable", "GuestsTable"}.isdisjoint(off.stack.tables)
    wiring.reset()
    with mock_aws():
        on = LocalApp(boto3.client("sqs"), boto3.client("dynamodb"))
        assert {"payments.process", "guests.register", "guests.login"} <= set(
            wiring.container().registry.names()
        )
        assert on.api("POST", "/payments", {}, ALICE).status == 422
        assert on.api("POST", "/events", {}, ALICE).status == 422
        assert {"PaymentsFunction", "PaymentsRenewalsFunction", "GuestsFunction"} <= set(on.stack.functions)
        assert {"PaymentsTable", "GuestsTable"} <= set(on.stack.tables)
        assert {"messaging.message.send", "messaging.session.init"} <= set(
            wiring.container().registry.names()
        )
        assert on.api("POST", "/sessions", {}, ALICE).status == 422
        assert "MessagingFunction" in on.stack.functions and "MessagingTable" in on.stack.tables
    wiring.reset()
    for payments, guests in (("on", "off"), ("off", "on")):
        with mock_aws():
            one = LocalApp(
                boto3.client("sqs"),
                boto3.client("dynamodb"),
                {"PaymentsWorkload": payments, "GuestsWorkload": guests},
            )
            names = wiring.container().registry.names()
            assert ("payments.process" in names) == (payments == "on")
            assert ("guests.register" in names) == (guests == "on")
            assert ("GuestsFunction" in one.stack.functions) == (guests == "on")
            assert ("GuestsTable" in one.stack.tables) == (guests == "on")
            assert ("PaymentsTable" in one.stack.tables) == (payments == "on")
        wiring.reset()
