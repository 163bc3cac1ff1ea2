"""The guests workload's small parts: keyed phone hashes, pass and status tokens (guests.keys),
bcrypt (guests.passwords, at its lowest cost), phone numbers (guests.phones), the QR code
(guests.qr) and the failed-login slots (guests.attempts) on the in-memory cache backend."""

from __future__ import annotations

import re
import sys

import pytest
from guests.attempts import FailedLogins, configured_rate
from guests.keys import GuestKeys, new_status_token, same_token, token_hash
from guests.passwords import Bcrypt, configured_rounds
from guests.phones import InvalidPhoneError, normalise
from guests.qr import render

from tarefa import Rate
from tarefa.breaker import GuardedBackend
from tarefa.ratelimit import RateLimiter

from ..fakes import EpochClock, MemoryCacheBackend
from .fakes import SECRET

KEYS = GuestKeys(SECRET)


# -- keys and tokens -------------------------------------------------------------------------------


def test_a_phone_key_is_stable_per_secret_and_shows_nothing_of_the_number() -> None:
    phone = "+351912345678"
    found = KEYS.phone_key(phone)
    assert re.fullmatch(r"[0-9a-f]{64}", found) and found == GuestKeys(SECRET).phone_key(phone)
    assert "912345678" not in found and found != KEYS.phone_key("+351912345679")
    assert found != GuestKeys("q" * 48).phone_key(phone)  # without the secret, no way back
    import hashlib

    assert found != hashlib.sha256(phone.encode()).hexdigest()  # not a plain, guessable hash
    with pytest.raises(ValueError, match="32"):
        GuestKeys("short")


def test_a_pass_is_bound_to_its_event_and_guest_and_any_change_breaks_it() -> None:
    token = KEYS.pass_token("event-1", "guest-1")
    assert token.startswith("guest-1.") and KEYS.pass_guest("event-1", token) == "guest-1"
    assert KEYS.pass_guest("event-1", f"  {token} ") == "guest-1"  # a scanner's whitespace
    assert KEYS.pass_guest("event-2", token) is None
    signature = token.split(".", 1)[1]
    assert KEYS.pass_guest("event-1", f"guest-2.{signature}") is None
    for n in range(len(signature)):  # every single change of the signature is refused
        changed = signature[:n] + ("A" if signature[n] != "A" else "B") + signature[n + 1 :]
        assert KEYS.pass_guest("event-1", f"guest-1.{changed}") is None
    for bad in ("", ".", "guest-1", "guest-1.", f".{signature}", "x" * 300):
        assert KEYS.pass_guest("event-1", bad) is None
    assert GuestKeys("q" * 48).pass_guest("event-1", token) is None


def test_status_tokens_are_random_and_only_their_hash_is_kept() -> None:
    token, hashed = new_status_token()
    other, _ = new_status_token()
    assert token != other and len(token) >= 43 and hashed == token_hash(token) and token not in hashed
    assert same_token(token, hashed)
    assert not same_token(other, hashed) and not same_token(None, hashed) and not same_token(token, None)
    assert (
        not same_token("", hashed)
        and not same_token(token + "x", hashed)
        and not same_token("x" * 300, hashed)
    )


# -- passwords -------------------------------------------------------------------------------------------


def test_bcrypt_hashes_checks_and_asks_for_a_rehash_below_its_cost(monkeypatch: pytest.MonkeyPatch) -> None:
    low = Bcrypt(rounds=4)
    hashed = low.hash("Sup3r-secret-pass")
    assert hashed.startswith("$2b$04$") and "Sup3r" not in hashed
    assert low.verify("Sup3r-secret-pass", hashed) and not low.verify("Sup3r-secret-pasS", hashed)
    assert not low.verify("Sup3r-secret-pass", None)  # an unknown phone: a decoy check, False
    assert not low.verify("x", "not-a-bcrypt-hash")
    assert not low.needs_rehash(hashed) and Bcrypt(rounds=5).needs_rehash(hashed)
    assert Bcrypt(rounds=5).verify("Sup3r-secret-pass", hashed)  # an older cost still checks
    monkeypatch.setenv("GUESTS_BCRYPT_ROUNDS", "12")
    assert configured_rounds() == 12
    monkeypatch.setenv("GUESTS_BCRYPT_ROUNDS", "3")
    with pytest.raises(ValueError, match=r"4\.\.16"):
        configured_rounds()
    monkeypatch.delenv("GUESTS_BCRYPT_ROUNDS")
    assert configured_rounds() == 10


def test_the_job_module_does_not_load_bcrypt_phonenumbers_or_segno() -> None:
    """The API imports guests.jobs on its cold start: none of the three may come with it."""
    import subprocess

    code = (
        "import sys, guests.jobs; "
        "print(sorted(m for m in ('bcrypt', 'phonenumbers', 'segno', 'guests.models', 'boto3') if m in sys.modules))"
    )
    found = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert found.stdout.strip() == "[]", found.stdout + found.stderr


# -- phone numbers ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("typed", "e164"),
    [
        ("+351935886310", "+351935886310"),
        ("935886310", "+351935886310"),  # the default region, PT
        ("935 886 310", "+351935886310"),
        ("+351 93 588 63 10", "+351935886310"),
        ("00351935886310", "+351935886310"),
        ("+55 11 98765-4321", "+5511987654321"),
    ],
)
def test_a_phone_becomes_e164(typed: str, e164: str) -> None:
    assert normalise(typed) == e164


def test_a_default_region_of_its_own(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GUESTS_DEFAULT_REGION", "br")
    assert normalise("11 98765-4321") == "+5511987654321"


@pytest.mark.parametrize("typed", ["12", "not a phone", "+35191234567", "+351999999999", "+"])
def test_what_is_not_a_valid_number_is_refused(typed: str) -> None:
    with pytest.raises(InvalidPhoneError):
        normalise(typed)


# -- the QR code ------------------------------------------------------------------------------------


def test_the_qr_code_is_an_svg_or_a_png_of_the_token() -> None:
    import io

    import segno

    token = KEYS.pass_token("event-1", "36e58734-c101-56a2-9df1-e441c23dab9c")
    kind, svg = render(token)
    assert kind == "image/svg+xml" and isinstance(svg, str)
    assert svg.startswith("<svg") and "<?xml" not in svg and "Entry pass" in svg
    kind, png = render(token, "png")
    assert kind == "image/png" and isinstance(png, bytes) and png[:8] == b"\x89PNG\r\n\x1a\n"
    expected = io.BytesIO()
    segno.make_qr(token, error="m").save(expected, kind="png", scale=8, border=4)
    assert png == expected.getvalue()
    assert render(token + "x", "png")[1] != png
    assert segno.make_qr(token, error="m").designator.endswith("M")  # 15 % of it may be damaged


# -- failed logins ----------------------------------------------------------------------------------------


def limiter(clock: EpochClock, backend: MemoryCacheBackend | None = None) -> RateLimiter:
    return RateLimiter(GuardedBackend(backend or MemoryCacheBackend(clock)), "tarefa:test:", clock)


def test_five_failures_in_a_minute_block_the_phone_until_the_oldest_is_a_minute_old() -> None:
    clock = EpochClock(1_000_000.0)
    failures = FailedLogins(limiter(clock), Rate(5, 60))
    for _ in range(4):
        failures.record("phone-a")
        clock.advance(10)
    assert failures.retry_after("phone-a") == 0
    failures.record("phone-a")  # the fifth, 40 s after the first
    assert failures.retry_after("phone-a") == 20
    assert failures.retry_after("phone-b") == 0  # other phones are not touched
    clock.advance(20)
    assert failures.retry_after("phone-a") == 0  # the first left the window: one slot is free
    failures.record("phone-a")
    assert failures.retry_after("phone-a") == 10  # now the one of second 10 is the oldest


def test_failures_at_the_same_moment_each_take_a_slot() -> None:
    import threading

    clock = EpochClock(1_000_000.0)
    backend = MemoryCacheBackend(clock)
    failures = FailedLogins(limiter(clock, backend), Rate(5, 60))
    threads = [threading.Thread(target=failures.record, args=("phone-a",)) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    slots = [k for k in backend.items if ":fails:guests-login:phone-a:" in k]
    assert len(slots) == 5 and failures.retry_after("phone-a") == 60
    assert not any("+351" in k for k in backend.items)


def test_no_backend_or_a_backend_down_lets_logins_through() -> None:
    clock = EpochClock(1_000_000.0)
    assert FailedLogins(None, Rate(5, 60)).retry_after("phone-a") == 0
    FailedLogins(None, Rate(5, 60)).record("phone-a")  # nothing to count in, and no error
    backend = MemoryCacheBackend(clock)
    failures = FailedLogins(limiter(clock, backend), Rate(1, 60))
    failures.record("phone-a")
    assert failures.retry_after("phone-a") == 60
    backend.down = True
    assert failures.retry_after("phone-a") == 0
    failures.record("phone-a")  # logged, not raised


def test_the_failure_limit_is_a_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GUESTS_LOGIN_FAILURE_LIMIT", "3/30")
    assert configured_rate() == Rate(3, 30)
    monkeypatch.setenv("GUESTS_LOGIN_FAILURE_LIMIT", "off")
    assert configured_rate() is None
    assert FailedLogins.configured(None).rate is None
    monkeypatch.delenv("GUESTS_LOGIN_FAILURE_LIMIT")
    assert configured_rate() == Rate(5, 60)
