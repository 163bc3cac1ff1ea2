"""The two adapters against a fake transport (their requests and their error mapping), the
webhook authentication checks, and the inbound payloads parsed from the providers' documented
examples (payloads/: Meta's messages-webhook reference example of an inbound text; statuses in
the shape of Meta's status-webhook reference; an Evolution messages.upsert)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from messaging.provider import cloudapi, evolution
from messaging.provider.cloudapi import CloudApiProvider, reason_of
from messaging.provider.evolution import EvolutionProvider
from messaging.provider.port import (
    Outgoing,
    ProviderPermanentError,
    ProviderRetryableError,
    ProviderStatus,
    SessionRef,
)
from messaging.provider.signature import (
    InvalidSignatureError,
    hub_signature,
    instance_secret,
    verify_hub_signature,
    verify_instance_secret,
    verify_token_matches,
)

from tarefa.outbound import OutboundRetryableError

from .fakes import FakeHttp, graph_error, response

PAYLOADS = Path(__file__).parent / "payloads"
REF = SessionRef(session_id="s-1", phone_number_id="106540352242922", instance="s-1")
ANA = "+5511987654321"


def payload(name: str) -> Any:
    return json.loads((PAYLOADS / name).read_text())


def cloud(*answers: Any) -> tuple[CloudApiProvider, FakeHttp]:
    http = FakeHttp(*answers)
    return CloudApiProvider(http, "EAAG-token", "https://graph.facebook.com", "v21.0"), http


# -- Cloud API: requests -------------------------------------------------------------------------


def test_a_text_send_is_the_graph_apis_body_with_our_callback_data() -> None:
    provider, http = cloud(response(200, {"messaging_product": "whatsapp", "messages": [{"id": "wamid.A"}]}))
    sent = provider.send(REF, Outgoing(to=ANA, text="Olá", callback_data="tarefa:m:0"))
    assert sent.provider_message_id == "wamid.A"
    (request,) = http.requests
    assert request["method"] == "POST"
    assert request["url"] == "https://graph.facebook.com/v21.0/106540352242922/messages"
    assert request["headers"]["Authorization"] == "Bearer EAAG-token"
    assert request["json"] == {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": "5511987654321",
        "type": "text",
        "text": {"preview_url": False, "body": "Olá"},
        "biz_opaque_callback_data": "tarefa:m:0",
    }
    assert request["raise_for_status"] is False


def test_a_media_send_is_an_image_by_link_with_its_caption() -> None:
    provider, http = cloud(response(200, {"messages": [{"id": "wamid.B"}]}))
    provider.send(REF, Outgoing(to=ANA, media_url="https://example.com/a.png", media_caption="nota"))
    body = http.requests[0]["json"]
    assert body["type"] == "image" and body["image"] == {
        "link": "https://example.com/a.png",
        "caption": "nota",
    }


def test_opening_a_session_checks_the_phone_number_id() -> None:
    provider, http = cloud(
        response(200, {"id": "106540352242922", "display_phone_number": "+1 555-078-3881"})
    )
    state = provider.open_session(REF)
    assert state.state == "connected" and state.display_number == "+1 555-078-3881"
    assert http.requests[0]["method"] == "GET" and http.requests[0]["url"].endswith("/v21.0/106540352242922")
    provider, _ = cloud(response(200, {"id": "999"}))
    with pytest.raises(ProviderPermanentError):
        provider.open_session(REF)
    with pytest.raises(ProviderPermanentError):
        provider.open_session(SessionRef(session_id="s", phone_number_id="../me", instance="s"))


# -- Cloud API: error mapping --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "code", "retryable", "reason"),
    [
        (429, 130429, True, "rate_limited"),
        (400, 131056, True, "pair_rate_limited"),
        (400, 80007, True, "account_rate_limited"),
        (400, 4, True, "too_many_api_calls"),
        (400, 131048, True, "spam_rate_limited"),
        (400, 131026, False, "not_on_whatsapp"),
        (400, 131051, False, "unsupported_message_type"),
        (400, 100, False, "invalid_parameter"),
        (401, 190, False, "invalid_access_token"),
        (500, 2, True, "whatsapp_error_2"),
        (503, 131000, True, "whatsapp_error_131000"),
    ],
)
def test_metas_error_codes_decide_retryable_or_permanent(
    status: int, code: int, retryable: bool, reason: str
) -> None:
    provider, _ = cloud(graph_error(status, code))
    expected: type[ProviderRetryableError | ProviderPermanentError] = (
        ProviderRetryableError if retryable else ProviderPermanentError
    )
    with pytest.raises(expected) as raised:
        provider.send(REF, Outgoing(to=ANA, text="segredo"))
    error = raised.value
    assert isinstance(error, ProviderRetryableError | ProviderPermanentError)
    assert error.code == f"WHATSAPP_{code}" and error.provider_code == code and reason_of(code) == reason
    assert "segredo" not in str(error) and "5511987654321" not in str(error) and "EAAG" not in str(error)
    assert "/{version}/{phone-number-id}/messages" in str(error)
    if retryable:
        assert isinstance(error, ProviderRetryableError) and not error.ambiguous


def test_rate_limits_wait_for_retry_after_or_a_default() -> None:
    provider, _ = cloud(response(429, {"error": {"code": 130429}}, {"retry-after": "7"}))
    with pytest.raises(ProviderRetryableError) as raised:
        provider.send(REF, Outgoing(to=ANA, text="x"))
    assert raised.value.retry_after == 7
    provider, _ = cloud(graph_error(400, 131056))
    with pytest.raises(ProviderRetryableError) as raised:
        provider.send(REF, Outgoing(to=ANA, text="x"))
    assert raised.value.retry_after == cloudapi.RATE_LIMIT_DEFAULT_SECONDS


def test_5xx_without_a_code_and_a_timeout_are_retryable_and_a_timeout_is_ambiguous() -> None:
    provider, _ = cloud(response(502, b"<html>bad gateway</html>"))
    with pytest.raises(ProviderRetryableError) as raised:
        provider.send(REF, Outgoing(to=ANA, text="x"))
    assert raised.value.code == "HTTP_502" and not raised.value.ambiguous
    provider, _ = cloud(OutboundRetryableError("POST graph.facebook.com: read timed out"))
    with pytest.raises(ProviderRetryableError) as raised:
        provider.send(REF, Outgoing(to=ANA, text="x"))
    assert raised.value.ambiguous and raised.value.code == "PROVIDER_UNREACHABLE"
    provider, _ = cloud(response(404, b""))
    with pytest.raises(ProviderPermanentError) as permanent:
        provider.send(REF, Outgoing(to=ANA, text="x"))
    assert permanent.value.code == "HTTP_404"


def test_a_2xx_without_a_message_id_is_an_ambiguous_retry() -> None:
    provider, _ = cloud(response(200, {"messages": []}))
    with pytest.raises(ProviderRetryableError) as raised:
        provider.send(REF, Outgoing(to=ANA, text="x"))
    assert raised.value.ambiguous


def test_the_adapter_never_shows_its_token() -> None:
    provider, _ = cloud()
    assert "EAAG" not in repr(provider)
    with pytest.raises(ValueError, match="empty"):
        CloudApiProvider(FakeHttp(), "")


# -- Evolution API -------------------------------------------------------------------------------


def test_evolution_creates_the_instance_with_its_webhook_and_returns_the_qr_code() -> None:
    ref = SessionRef(
        session_id="s-1",
        phone_number_id="5511940000000",
        instance="s-1",
        webhook_url="https://api.example.com/webhooks/evolution/s-1",
        webhook_headers={"X-Tarefa-Instance-Secret": "abc"},
    )
    http = FakeHttp(
        response(201, {"instance": {"instanceName": "s-1"}, "hash": "T"}),
        response(200, {"instance": {"instanceName": "s-1", "state": "connecting"}}),
        response(
            200, {"pairingCode": "WZYEH1YY", "code": "2@x", "base64": "data:image/png;base64,AAA", "count": 1}
        ),
    )
    state = EvolutionProvider(http, "global-key", "https://evo.example.com/").open_session(ref)
    assert (
        state.state == "waiting"
        and state.qr == "data:image/png;base64,AAA"
        and state.pairing_code == "WZYEH1YY"
    )
    create, connection, connect = http.requests
    assert (
        create["url"] == "https://evo.example.com/instance/create"
        and create["headers"]["apikey"] == "global-key"
    )
    assert create["json"]["instanceName"] == "s-1" and create["json"]["webhook"]["headers"] == {
        "X-Tarefa-Instance-Secret": "abc"
    }
    assert set(create["json"]["webhook"]["events"]) == {
        "MESSAGES_UPSERT",
        "MESSAGES_UPDATE",
        "CONNECTION_UPDATE",
        "QRCODE_UPDATED",
    }
    assert connection["url"].endswith("/instance/connectionState/s-1") and connect["url"].endswith(
        "/instance/connect/s-1"
    )


def test_evolution_an_instance_that_exists_already_is_reused_and_open_is_connected() -> None:
    http = FakeHttp(response(403, {"status": 403}), response(200, {"instance": {"state": "open"}}))
    assert EvolutionProvider(http, "k", "https://evo").open_session(REF).state == "connected"


def test_evolution_send_and_its_errors() -> None:
    http = FakeHttp(response(201, {"key": {"id": "3EB0AA", "fromMe": True}}))
    sent = EvolutionProvider(http, "k", "https://evo").send(REF, Outgoing(to=ANA, text="oi"))
    assert sent.provider_message_id == "3EB0AA"
    assert http.requests[0]["json"] == {"number": "5511987654321", "text": "oi", "linkPreview": False}
    for status, kind in (
        (500, ProviderRetryableError),
        (429, ProviderRetryableError),
        (400, ProviderPermanentError),
        (401, ProviderPermanentError),
    ):
        with pytest.raises(kind):
            EvolutionProvider(FakeHttp(response(status, {})), "k", "https://evo").send(
                REF, Outgoing(to=ANA, text="oi")
            )


def test_evolution_logout_of_an_unknown_instance_is_closed_anyway() -> None:
    EvolutionProvider(FakeHttp(response(404, {})), "k", "https://evo").close_session(REF)


# -- webhook authentication -----------------------------------------------------------------------


def test_the_hub_signature_is_hmac_sha256_of_the_raw_body() -> None:
    body = (PAYLOADS / "inbound_text.json").read_bytes()
    header = hub_signature(body, "app-secret")
    verify_hub_signature(header, body, "app-secret")
    verify_hub_signature(header.upper().replace("SHA256=", "sha256="), body, "app-secret")  # hex case
    for bad_header, secret, raw in (
        (header, "other-secret", body),
        (header, "app-secret", body + b" "),
        (None, "app-secret", body),
        ("sha1=" + header[7:], "app-secret", body),
        ("sha256=", "app-secret", body),
        (header, "", body),
    ):
        with pytest.raises(InvalidSignatureError):
            verify_hub_signature(bad_header, raw, secret)


def test_the_verify_token_and_the_instance_secret() -> None:
    assert verify_token_matches("tok", "tok") and not verify_token_matches("tak", "tok")
    assert not verify_token_matches(None, "tok") and not verify_token_matches("", "")
    secret = instance_secret("master", "s-1")
    verify_instance_secret(secret, "master", "s-1")
    assert secret != instance_secret("master", "s-2") and "master" not in secret
    for given, master, instance in ((secret, "master", "s-2"), (None, "master", "s-1"), (secret, "", "s-1")):
        with pytest.raises(InvalidSignatureError):
            verify_instance_secret(given, master, instance)


# -- inbound payloads -----------------------------------------------------------------------------


def test_metas_documented_inbound_text_example_parses() -> None:
    inbound, statuses = cloudapi.parse_webhook(payload("inbound_text.json"))
    assert statuses == []
    (message,) = inbound
    assert message.provider_message_id == "wamid.HBgLMTY1MDM4Nzk0MzkVAgASGBQzQTRBNjU5OUFFRTAzODEwMTQ0RgA="
    assert message.sender == "+16505551234" and message.text == "Does it come in another color?"
    assert message.kind == "text" and message.timestamp == 1749416383
    assert message.profile_name == "Sheena Nelson" and message.address == "106540352242922"


def test_status_payloads_parse_with_their_callback_data_and_errors() -> None:
    _, (delivered,) = cloudapi.parse_webhook(payload("status_delivered.json"))
    assert delivered.status == ProviderStatus.DELIVERED and delivered.error_code is None
    assert delivered.callback_data == "tarefa:7f3c9d1e-0000-4000-8000-000000000001:0"
    assert delivered.address == "106540352242922" and delivered.timestamp == 1750263773
    _, (failed,) = cloudapi.parse_webhook(payload("status_failed.json"))
    assert failed.status == ProviderStatus.FAILED and failed.error_code == 131026
    assert failed.error_title == "Message undeliverable"


def test_strange_payloads_parse_to_nothing() -> None:
    bodies: tuple[Any, ...] = (
        None,
        [],
        {"object": "page"},
        {"object": "whatsapp_business_account", "entry": [None, {"changes": [1]}]},
    )
    for body in bodies:
        assert cloudapi.parse_webhook(body) == ([], [])
    odd = payload("inbound_text.json")
    odd["entry"][0]["changes"][0]["value"]["statuses"] = [{"id": "w", "status": "deleted"}]
    assert cloudapi.parse_webhook(odd)[1] == []


def test_an_evolution_messages_upsert_parses_and_its_own_sends_are_skipped() -> None:
    body = payload("evolution_messages_upsert.json")
    (message,), statuses, connections = evolution.parse_webhook(body)
    assert message.sender == "+5511987654321" and message.text == "Bom dia, o pedido chegou?"
    assert message.provider_message_id == "3EB0C431C26A1916E0A7" and message.address == "loja-centro"
    assert statuses == [] and connections == []
    body["data"]["key"]["fromMe"] = True
    assert evolution.parse_webhook(body)[0] == []
    update = {
        "event": "messages.update",
        "instance": "i",
        "data": {"keyId": "3EB0", "fromMe": True, "status": "READ"},
    }
    assert evolution.parse_webhook(update)[1][0].status == ProviderStatus.READ
    opened = {"event": "connection.update", "instance": "i", "data": {"instance": "i", "state": "open"}}
    assert evolution.parse_webhook(opened)[2][0].state == "open"
