"""Mercado Pago's webhook signature: a known-answer vector, tampering, freshness, and the SDK.

The known answer. Mercado Pago's webhook documentation shows the header
`x-signature: ts=1704908010,v1=618c85345248dd820d5fd456117c2ab2ef8eda45a0282ff693eac24131a5e839`
(https://www.mercadopago.com.br/developers/en/docs/your-integrations/notifications/webhooks) but
publishes neither the secret nor the x-request-id and data.id it was computed from, so it cannot be
verified. Its Orders notification example (`ts=1742505638683,v1=ced36ab6...`, data.id
`ORD01JQ4S4KY8HWQ6NA5PXB65B3D3`, x-request-id `2066ca19-...`) publishes no secret either.

So the vector is the official SDK's own: mercadopago/sdk-python,
`tests/test_webhook_signature_validator.py` (commit 1fa79b79032dc0428c4370019ac2fa378197fc87):
SECRET `your_secret_key_here`, REQUEST_ID `2066ca19-c6f1-498a-be75-1923005edd06`, DATA_ID_RAW
`ORD01JQ4S4KY8HWQ6NA5PXB65B3D3` (DATA_ID_LOWER its lowercase), TS `1742505638683`. That test
computes its hash at run time; the hex below is HMAC-SHA256 of the documented manifest
`id:ord01jq4s4ky8hwq6na5pxb65b3d3;request-id:2066ca19-c6f1-498a-be75-1923005edd06;ts:1742505638683;`
under that secret, written out here as a literal so a bug in our manifest cannot also fix the
expectation. Its TS is 13 digits, i.e. milliseconds: it also exercises that reading.
"""

from __future__ import annotations

import importlib
import time
from typing import Any

import pytest
from payments.provider.signature import (
    InvalidSignatureError,
    manifest,
    sign_notification,
    verify_signature,
)

SECRET = "your_secret_key_here"
REQUEST_ID = "2066ca19-c6f1-498a-be75-1923005edd06"
DATA_ID_RAW = "ORD01JQ4S4KY8HWQ6NA5PXB65B3D3"
TS = "1742505638683"
V1 = "633f91233312dd391ec75fa0bea539cfc2d6c4918873305b84a96cc1c58db71c"
HEADER = f"ts={TS},v1={V1}"
NOW = int(TS) / 1000  # the vector's own moment, in seconds

PAYMENT_ID = "123456789"
NOTIFY_TS = 1_767_225_600  # 2026-01-01T00:00:00Z, seconds as Mercado Pago sends them


def reason_of(**overrides: Any) -> str:
    args: dict[str, Any] = {
        "x_signature": HEADER,
        "x_request_id": REQUEST_ID,
        "data_id": DATA_ID_RAW,
        "secret": SECRET,
        "now": NOW,
    }
    args.update(overrides)
    with pytest.raises(InvalidSignatureError) as caught:
        verify_signature(
            args.pop("x_signature"), args.pop("x_request_id"), args.pop("data_id"), args.pop("secret"), **args
        )
    assert str(caught.value) == f"invalid webhook signature: {caught.value.reason}"
    return caught.value.reason


# -- the known answer ---------------------------------------------------------------------------


def test_manifest_follows_the_documented_template() -> None:
    assert manifest(DATA_ID_RAW, REQUEST_ID, TS) == (
        "id:ord01jq4s4ky8hwq6na5pxb65b3d3;request-id:2066ca19-c6f1-498a-be75-1923005edd06;ts:1742505638683;"
    )


def test_sdk_vector_verifies_at_its_own_time() -> None:
    verify_signature(HEADER, REQUEST_ID, DATA_ID_RAW, SECRET, now=NOW)
    verify_signature(HEADER, REQUEST_ID, DATA_ID_RAW.lower(), SECRET, now=NOW)


def test_sign_notification_reproduces_the_vector() -> None:
    assert sign_notification(DATA_ID_RAW, REQUEST_ID, SECRET, int(TS)) == HEADER


def test_header_parsing_tolerates_spaces_and_upper_case_hex() -> None:
    verify_signature(f" ts={TS} , v1={V1.upper()} ", REQUEST_ID, DATA_ID_RAW, SECRET, now=NOW)
    verify_signature(f"v1={V1},ts={TS}", REQUEST_ID, DATA_ID_RAW, SECRET, now=NOW)  # any order


# -- the manifest's rules -----------------------------------------------------------------------


def test_absent_pairs_are_omitted() -> None:
    assert manifest(None, REQUEST_ID, "1") == f"request-id:{REQUEST_ID};ts:1;"
    assert manifest(PAYMENT_ID, None, "1") == f"id:{PAYMENT_ID};ts:1;"
    assert manifest("  ", "", "1") == "ts:1;"


def test_only_alphanumeric_ids_are_lowercased() -> None:
    assert manifest("AbC123", None, "1") == "id:abc123;ts:1;"
    assert manifest("Ab-C", None, "1") == "id:Ab-C;ts:1;"


def test_absent_pairs_round_trip() -> None:
    for data_id, request_id in ((None, REQUEST_ID), (PAYMENT_ID, None), (None, None)):
        header = sign_notification(data_id or "", request_id or "", SECRET, NOTIFY_TS)
        verify_signature(header, request_id, data_id, SECRET, now=NOTIFY_TS)


# -- forgeries ----------------------------------------------------------------------------------


def test_tampered_data_id_is_refused() -> None:
    assert reason_of(data_id="ORD01JQ4S4KY8HWQ6NA5PXB65B3D4") == "mismatch"
    assert reason_of(data_id=None) == "mismatch"


def test_tampered_request_id_is_refused() -> None:
    assert reason_of(x_request_id="2066ca19-c6f1-498a-be75-1923005edd07") == "mismatch"


def test_tampered_v1_is_refused() -> None:
    flipped = V1[:-1] + ("0" if V1[-1] != "0" else "1")
    assert reason_of(x_signature=f"ts={TS},v1={flipped}") == "mismatch"


def test_tampered_ts_is_refused() -> None:
    assert reason_of(x_signature=f"ts={int(TS) + 1},v1={V1}") == "mismatch"


def test_wrong_secret_is_refused() -> None:
    assert reason_of(secret="not_the_secret") == "mismatch"


def test_empty_secret_is_a_configuration_error() -> None:
    with pytest.raises(ValueError):
        verify_signature(HEADER, REQUEST_ID, DATA_ID_RAW, "", now=NOW)
    with pytest.raises(ValueError):
        sign_notification(PAYMENT_ID, REQUEST_ID, "", NOTIFY_TS)


@pytest.mark.parametrize("header", [None, "", "   "])
def test_missing_header_is_refused(header: str | None) -> None:
    assert reason_of(x_signature=header) == "missing"


@pytest.mark.parametrize(
    "header",
    [
        "garbage",
        f"v1={V1}",  # no ts
        f"ts={TS}",  # no v1
        f"ts=,v1={V1}",
        f"ts=abc,v1={V1}",
        f"ts=-1,v1={V1}",
        f"ts={TS},v1=zz",
        f"ts={TS},v1={V1[:-2]}",  # too short
        f"ts={TS},v1={V1},ts=1",  # a second ts
        f"ts={TS};v1={V1}",
        f"ts=١٢٣,v1={V1}",  # non-ASCII digits
    ],
)
def test_malformed_header_is_refused(header: str) -> None:
    assert reason_of(x_signature=header) == "malformed"


# -- freshness ----------------------------------------------------------------------------------


def signed_at(ts: int) -> str:
    return sign_notification(PAYMENT_ID, REQUEST_ID, SECRET, ts)


def test_replay_older_than_tolerance_is_refused() -> None:
    header = signed_at(NOTIFY_TS)
    assert (
        reason_of(x_signature=header, data_id=PAYMENT_ID, now=NOTIFY_TS + 301, tolerance_seconds=300)
        == "expired"
    )


def test_within_tolerance_is_accepted() -> None:
    header = signed_at(NOTIFY_TS)
    verify_signature(header, REQUEST_ID, PAYMENT_ID, SECRET, now=NOTIFY_TS + 299)
    verify_signature(header, REQUEST_ID, PAYMENT_ID, SECRET, now=NOTIFY_TS + 300)  # the edge is in


def test_timestamp_in_the_future_is_refused() -> None:
    header = signed_at(NOTIFY_TS + 301)
    assert reason_of(x_signature=header, data_id=PAYMENT_ID, now=NOTIFY_TS) == "future"
    verify_signature(signed_at(NOTIFY_TS + 299), REQUEST_ID, PAYMENT_ID, SECRET, now=NOTIFY_TS)


def test_millisecond_timestamps_are_judged_as_milliseconds() -> None:
    assert reason_of(now=NOW + 301) == "expired"
    assert reason_of(now=NOW - 301) == "future"
    verify_signature(HEADER, REQUEST_ID, DATA_ID_RAW, SECRET, now=NOW + 299)


def test_the_vector_is_stale_today() -> None:
    assert reason_of(now=time.time()) == "expired"


def test_a_forgery_is_a_mismatch_even_when_stale() -> None:
    assert reason_of(secret="not_the_secret", now=NOW + 10_000) == "mismatch"


# -- the official SDK agrees --------------------------------------------------------------------


def sdk_validator() -> Any:
    module = pytest.importorskip("mercadopago.webhook")  # tests only: never in the Lambda layer
    return module.WebhookSignatureValidator


def test_official_sdk_accepts_what_we_sign() -> None:
    validator = sdk_validator()
    header = sign_notification(PAYMENT_ID, REQUEST_ID, SECRET, NOTIFY_TS)
    validator.validate(
        header,
        REQUEST_ID,
        PAYMENT_ID,
        SECRET,
        tolerance_seconds=300,
        now=lambda: NOTIFY_TS * 1000,  # the SDK's clock is in milliseconds
    )


def test_official_sdk_accepts_the_vector() -> None:
    # The SDK uses data.id as given, so it is handed the lowercase form the documentation signs.
    sdk_validator().validate(HEADER, REQUEST_ID, DATA_ID_RAW.lower(), SECRET)


def test_official_sdk_rejects_what_we_reject() -> None:
    validator = sdk_validator()
    errors = importlib.import_module("mercadopago.webhook").InvalidWebhookSignatureError
    header = sign_notification(PAYMENT_ID, REQUEST_ID, SECRET, NOTIFY_TS)
    with pytest.raises(errors):
        validator.validate(header, REQUEST_ID, "987654321", SECRET)
    assert reason_of(x_signature=header, data_id="987654321", now=NOTIFY_TS) == "mismatch"
