"""Who may call what, generated from the OpenAPI document so that a new route cannot be missed.

Requests go through `LocalStack.call_api`, the function `tarefa local` serves HTTP with: the
bearer token is checked by the local authorizer (RS256, issuer, audience, expiry, subject, as
API Gateway's JWT authorizer checks it) and what it lets in reaches the real handler as claims.

Every route the document does not declare public (`security: []`) x every kind of bad token
-> 401; every admin route x a user -> 403; another user's jobs -> 404 and never in a listing,
whatever the filters, the cursor, the idempotency key or the cache.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tarefa.local.app import HttpResult, LocalApp
from tarefa.local.auth import AUDIENCE, ISSUER, LocalAuthority
from tarefa.local.stack import LocalStack

# Bodies that pass validation, so that a refusal is about who asks, not what they send.
VALID_BODIES: dict[tuple[str, str], Any] = {
    ("POST", "/jobs"): {"type": "system.echo", "payload": {"n": 1}},
    ("POST", "/queues/{priority}/dead-letters/redrive"): {"all": True},
    ("POST", "/queues/{priority}/dead-letters/purge"): {"jobIds": ["00000000-0000-0000-0000-000000000000"]},
}


@dataclass
class Gateway:
    """The local stack's HTTP entry point over an in-process app, and tokens to call it with."""

    app: LocalApp
    authority: LocalAuthority
    stack: LocalStack

    def call(
        self,
        method: str,
        target: str,
        body: Any = None,
        authorization: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> HttpResult:
        sent = {"content-type": "application/json", **{k.lower(): v for k, v in (headers or {}).items()}}
        if authorization is not None:
            sent["authorization"] = authorization
        raw = b"" if body is None else json.dumps(body).encode()
        status, answer_headers, answer = self.stack.call_api(method, target, raw, sent, "127.0.0.1")
        text = answer if isinstance(answer, str) else answer.decode(errors="replace")
        is_json = answer_headers.get("content-type", "").startswith("application/json")
        return HttpResult(status, answer_headers, json.loads(text) if text and is_json else None, text)

    def bearer(self, user: str, admin: bool = False) -> str:
        return f"Bearer {self.authority.mint(user, admin)}"


@pytest.fixture
def gateway(app: LocalApp, tmp_path: Path) -> Gateway:
    authority = LocalAuthority(tmp_path)
    stack = LocalStack(state_dir=tmp_path)
    stack.app, stack.authority = app, authority  # not started: call_api uses the app's own environment
    return Gateway(app, authority, stack)


@dataclass
class Tally:
    """Every check made and every leak found; a test asserts there are no leaks."""

    checks: int = 0
    leaks: list[str] = field(default_factory=list)

    def expect(self, what: str, result: HttpResult, allowed: set[int]) -> None:
        self.checks += 1
        if result.status not in allowed:
            self.leaks.append(f"{what}: {result.status} (wanted {sorted(allowed)}) {result.text[:200]}")

    def assert_no_leaks(self, at_least: int) -> None:
        assert self.checks >= at_least, f"only {self.checks} checks ran"
        assert not self.leaks, f"{len(self.leaks)} of {self.checks} checks leaked:\n" + "\n".join(self.leaks)


# -- tokens ------------------------------------------------------------------------------------
def _segment(part: dict[str, Any] | bytes) -> str:
    data = part if isinstance(part, bytes) else json.dumps(part, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _claims(**overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    claims: dict[str, Any] = {"sub": "alice", "iss": ISSUER, "aud": AUDIENCE, "iat": now, "exp": now + 3600}
    claims.update(overrides)
    return {k: v for k, v in claims.items() if v is not None}


def bad_authorizations(authority: LocalAuthority) -> dict[str, str | None]:
    """Authorization headers the authorizer must refuse, by name; None sends no header."""
    key = authority.private_key
    other_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    valid = authority.mint("alice")
    header, payload, signature = valid.split(".")
    decoded = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    forged = _segment({**decoded, "sub": "root", "cognito:groups": ["admin"]})
    public_pem = authority.public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    hs_input = f"{_segment({'alg': 'HS256', 'typ': 'JWT'})}.{_segment(_claims())}"
    hs_signature = _segment(hmac.new(public_pem, hs_input.encode(), hashlib.sha256).digest())
    return {
        "no token": None,
        "empty header": "",
        "not bearer": f"Basic {valid}",
        "bearer without token": "Bearer ",
        "not a JWT": "Bearer not-a-jwt",
        "expired": f"Bearer {authority.mint('alice', ttl_seconds=-60)}",
        "wrong audience": f"Bearer {jwt.encode(_claims(aud='someone-else'), key, algorithm='RS256')}",
        "wrong issuer": f"Bearer {jwt.encode(_claims(iss='https://evil.example/'), key, algorithm='RS256')}",
        "no subject": f"Bearer {jwt.encode(_claims(sub=None), key, algorithm='RS256')}",
        "no expiry": f"Bearer {jwt.encode(_claims(exp=None), key, algorithm='RS256')}",
        "signed by another key": f"Bearer {jwt.encode(_claims(), other_key, algorithm='RS256')}",
        "claims changed after signing": f"Bearer {header}.{forged}.{signature}",
        "signature stripped": f"Bearer {header}.{payload}.",
        "alg none": f"Bearer {_segment({'alg': 'none', 'typ': 'JWT'})}.{_segment(_claims())}.",
        "HS256 with the public key as secret": f"Bearer {hs_input}.{hs_signature}",
    }


# -- the document ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Operation:
    method: str
    path: str
    public: bool
    admin: bool
    spec: dict[str, Any]

    def target(self, job_id: str = "00000000-0000-0000-0000-000000000000") -> str:
        return self.path.replace("{jobId}", job_id).replace("{priority}", "HIGH")

    @property
    def body(self) -> Any:
        if "requestBody" not in self.spec:
            return None
        return VALID_BODIES.get((self.method, self.path), {})


def operations(document: dict[str, Any]) -> list[Operation]:
    found = []
    for path, methods in document["paths"].items():
        for method, spec in methods.items():
            public = spec.get("security", document.get("security")) in ([], None)
            found.append(Operation(method.upper(), path, public, "admin" in spec.get("tags", []), spec))
    return found


@pytest.fixture
def document(gateway: Gateway) -> dict[str, Any]:
    answer = gateway.call("GET", "/openapi.json", authorization=gateway.bearer("alice"))
    assert answer.status == 200, answer.text
    spec: dict[str, Any] = answer.body
    return spec


@pytest.fixture
def alices_jobs(gateway: Gateway) -> dict[str, str]:
    """Alice's jobs in every state a client can see, by state."""
    alice = gateway.bearer("alice")

    def enqueue(body: dict[str, Any]) -> str:
        answer = gateway.call("POST", "/jobs", body, alice)
        assert answer.status == 202, answer.text
        return str(answer.body["jobId"])

    completed = enqueue({"type": "system.echo", "payload": {"n": 1}, "orderId": "order-A"})
    failed = enqueue(
        {"type": "system.fail", "payload": {"failTimes": 1, "permanent": True}, "orderId": "order-A"}
    )
    gateway.app.drain()
    pending = enqueue({"type": "system.echo", "delaySeconds": 3600, "orderId": "order-A"})
    cancelled = enqueue({"type": "system.echo", "delaySeconds": 3600})
    assert gateway.call("POST", f"/jobs/{cancelled}/cancel", {}, alice).status == 200
    jobs = {"COMPLETED": completed, "FAILED": failed, "PENDING": pending, "CANCELLED": cancelled}
    for status, job_id in jobs.items():
        assert gateway.call("GET", f"/jobs/{job_id}", authorization=alice).body["status"] == status
    return jobs


# -- the matrix --------------------------------------------------------------------------------
def test_the_document_declares_public_exactly_the_routes_the_template_leaves_open(
    gateway: Gateway, document: dict[str, Any]
) -> None:
    """The matrix trusts the document's `security`; the gateway trusts the template. They agree."""
    documented = {(op.method, op.path): op.public for op in operations(document)}
    deployed = {(r.method, r.path): not r.authorized for r in gateway.app.routes}
    assert documented == deployed
    public = {path for (_, path), is_public in documented.items() if is_public}
    assert {"/health", "/docs", "/dashboard"} <= public
    assert not public & {"/jobs", "/jobs/{jobId}", "/queues", "/openapi.json"}
    for op in operations(document):
        if op.public and "{" not in op.path and op.method == "GET":
            assert gateway.call("GET", op.path).status != 401, op.path


def test_every_authorized_route_refuses_every_bad_token(
    gateway: Gateway, document: dict[str, Any], alices_jobs: dict[str, str]
) -> None:
    tally = Tally()
    authorized = [op for op in operations(document) if not op.public]
    bad = bad_authorizations(gateway.authority)
    for op in authorized:
        for name, authorization in bad.items():
            answer = gateway.call(op.method, op.target(alices_jobs["FAILED"]), op.body, authorization)
            tally.expect(f"{op.method} {op.path} with {name}", answer, {401})
            if answer.status == 401:
                assert answer.headers.get("www-authenticate") == "Bearer"
    tally.assert_no_leaks(at_least=len(authorized) * len(bad))
    # Nothing any of those requests asked for happened.
    alice = gateway.bearer("alice")
    for status, job_id in alices_jobs.items():
        assert gateway.call("GET", f"/jobs/{job_id}", authorization=alice).body["status"] == status
    assert len(gateway.call("GET", "/jobs?limit=100", authorization=alice).body["items"]) == 4
    assert len(authorized) >= 15  # every route but /health, /docs, /dashboard (and any new public one)


def test_the_valid_token_of_each_kind_gets_past_the_authorizer(
    gateway: Gateway, document: dict[str, Any]
) -> None:
    """The refusals above are the tokens', not a broken authorizer's."""
    for op in operations(document):
        if op.public or op.method != "GET" or "{" in op.path:
            continue
        caller = gateway.bearer("root", admin=True) if op.admin else gateway.bearer("alice")
        assert gateway.call("GET", op.path, authorization=caller).status == 200, op.path


def test_every_admin_route_refuses_users(
    gateway: Gateway, document: dict[str, Any], alices_jobs: dict[str, str]
) -> None:
    tally = Tally()
    admin_routes = [op for op in operations(document) if op.admin]
    assert {op.path for op in admin_routes} >= {
        "/queues",
        "/queues/{priority}/dead-letters",
        "/queues/{priority}/dead-letters/redrive",
        "/queues/{priority}/dead-letters/purge",
        "/maintenance/cleanup",
        "/maintenance/recover",
    }
    users = {
        "alice": gateway.bearer("alice"),
        "bob": gateway.bearer("bob"),
        "a user in another group": f"Bearer {_token(gateway.authority, **{'cognito:groups': ['operators']})}",
        "a user in 'administrators'": f"Bearer {_token(gateway.authority, **{'cognito:groups': ['administrators']})}",
        "'admin' in a claim that is not the groups": f"Bearer {_token(gateway.authority, groups=['admin'], role='admin')}",
    }
    for op in admin_routes:
        for priority in ("HIGH", "MEDIUM", "LOW") if "{priority}" in op.path else ("HIGH",):
            target = op.target(alices_jobs["FAILED"]).replace("HIGH", priority)
            for name, authorization in users.items():
                answer = gateway.call(op.method, target, op.body, authorization)
                tally.expect(f"{op.method} {target} as {name}", answer, {403})
                if answer.status == 403:
                    assert answer.body["error"]["code"] == "FORBIDDEN", answer.body
    # The queues were neither paused nor purged, and the admin gets in.
    root = gateway.bearer("root", admin=True)
    overview = gateway.call("GET", "/queues", authorization=root)
    assert overview.status == 200
    assert [q["paused"] for q in overview.body["queues"]] == [False, False, False]
    tally.assert_no_leaks(at_least=len(admin_routes) * len(users))


def _token(authority: LocalAuthority, **claims: Any) -> str:
    """A valid token for mallory with these extra claims."""
    return jwt.encode(_claims(sub="mallory", **claims), authority.private_key, algorithm="RS256")


def test_another_users_jobs_are_invisible_on_every_job_route(
    gateway: Gateway, document: dict[str, Any], alices_jobs: dict[str, str]
) -> None:
    tally = Tally()
    alice, bob = gateway.bearer("alice"), gateway.bearer("bob")
    # The engine's job routes (a workload's own, like the guests' status poll by token, answer
    # in their own terms and are pinned by their own tests).
    job_routes = [op for op in operations(document) if "{jobId}" in op.path and op.path.startswith("/jobs/")]
    assert {(op.method, op.path) for op in job_routes} >= {
        ("GET", "/jobs/{jobId}"),
        ("POST", "/jobs/{jobId}/cancel"),
        ("POST", "/jobs/{jobId}/retry"),
    }
    # The cache holds Alice's finished jobs: her second read is a hit.
    for job_id in (alices_jobs["COMPLETED"], alices_jobs["CANCELLED"]):
        reads = [gateway.call("GET", f"/jobs/{job_id}", authorization=alice) for _ in range(2)]
        assert [r.headers.get("x-cache") for r in reads][-1] == "HIT"
    for op in job_routes:
        for status, job_id in alices_jobs.items():
            for attempt in (1, 2):  # twice: the second may be answered from the cache
                answer = gateway.call(op.method, op.target(job_id), op.body, bob)
                tally.expect(f"bob {op.method} {op.path} on alice's {status} job (#{attempt})", answer, {404})
                if answer.status == 404:
                    assert answer.body["error"]["code"] == "JOB_NOT_FOUND"
                    assert "x-cache" not in answer.headers and "alice" not in answer.text
    tally.assert_no_leaks(at_least=len(job_routes) * len(alices_jobs) * 2)
    # Bob's attempts changed nothing.
    for status, job_id in alices_jobs.items():
        assert gateway.call("GET", f"/jobs/{job_id}", authorization=alice).body["status"] == status


def _listings(cursor: str) -> Iterator[str]:
    yield "/jobs"
    yield "/jobs?limit=100"
    for status in ("PENDING", "PROCESSING", "COMPLETED", "FAILED", "CANCELLED", "RETRYING"):
        yield f"/jobs?status={status}&limit=100"
    yield "/jobs?type=system.echo&limit=100"
    yield "/jobs?type=system.fail"
    yield "/jobs?orderId=order-A"
    yield "/jobs?orderId=order-A&status=FAILED&type=system.fail"
    yield "/jobs?orderId=order-A&limit=1"
    yield f"/jobs?cursor={cursor}"  # Alice's own cursor, replayed by Bob
    yield f"/jobs?cursor={cursor}&orderId=order-A"


def test_another_users_jobs_never_appear_in_a_listing(gateway: Gateway, alices_jobs: dict[str, str]) -> None:
    tally = Tally()
    alice, bob = gateway.bearer("alice"), gateway.bearer("bob")
    page = gateway.call("GET", "/jobs?limit=1", authorization=alice).body
    assert page["nextCursor"], "Alice needs a cursor to replay"
    bobs = gateway.call("POST", "/jobs", {"type": "system.echo", "orderId": "order-A"}, bob).body["jobId"]
    secrets = set(alices_jobs.values())
    for target in _listings(page["nextCursor"]):
        answer = gateway.call("GET", target, authorization=bob)
        tally.checks += 1
        if answer.status == 200:
            seen = {item["jobId"] for item in answer.body["items"]}
            users = {item.get("userId") for item in answer.body["items"]} - {None, "bob"}
            if seen & secrets or users:
                tally.leaks.append(f"bob GET {target} listed {sorted(seen & secrets)} of users {users}")
            if "cursor" not in target and ("orderId=order-A" in target or target == "/jobs"):
                assert bobs in seen or "limit=1" in target or "status=FAILED" in target, target
        elif answer.status != 400:  # a cursor is bound to nothing secret; refusing it is fine too
            tally.leaks.append(f"bob GET {target}: {answer.status} {answer.text[:200]}")
    tally.assert_no_leaks(at_least=15)


def test_another_users_idempotency_key_creates_their_own_job(
    gateway: Gateway, alices_jobs: dict[str, str]
) -> None:
    tally = Tally()
    alice, bob = gateway.bearer("alice"), gateway.bearer("bob")
    body = {"type": "system.echo", "payload": {"n": 7}}
    first = gateway.call("POST", "/jobs", {**body, "idempotencyKey": "shared-key"}, alice)
    assert first.status == 202
    alices = first.body["jobId"]
    as_field = {**body, "idempotencyKey": "shared-key"}
    by_header = {"Idempotency-Key": "shared-key"}
    for attempt in ("field", "header", "field again", "header again"):
        use_header = attempt.startswith("header")
        answer = gateway.call(
            "POST", "/jobs", body if use_header else as_field, bob, by_header if use_header else None
        )
        tally.expect(f"bob reusing alice's idempotency key ({attempt})", answer, {200, 202})
        if answer.body and answer.body.get("jobId") in {alices, *alices_jobs.values()}:
            tally.leaks.append(f"bob's enqueue ({attempt}) returned alice's job {answer.body['jobId']}")
    bobs = {
        gateway.call("POST", "/jobs", as_field, bob).body["jobId"],
        gateway.call("POST", "/jobs", body, bob, by_header).body["jobId"],
    }
    assert len(bobs) == 1 and alices not in bobs  # Bob's key names Bob's job, once
    assert gateway.call("GET", f"/jobs/{bobs.pop()}", authorization=alice).status == 404
    replay = gateway.call("POST", "/jobs", as_field, alice)
    assert replay.status == 200 and replay.body["jobId"] == alices
    tally.assert_no_leaks(at_least=4)


def test_dead_letters_are_for_admins_only(gateway: Gateway, alices_jobs: dict[str, str]) -> None:
    """Users can neither browse, redrive nor purge any dead-letter queue (naming Alice's job or
    not, with a valid queue name or not): only an admin can."""
    tally = Tally()
    root, users = gateway.bearer("root", admin=True), [gateway.bearer("alice"), gateway.bearer("bob")]
    calls = [
        ("GET", "/queues/{p}/dead-letters", None),
        ("GET", "/queues/{p}/dead-letters?limit=100", None),
        ("POST", "/queues/{p}/dead-letters/redrive", {"all": True}),
        ("POST", "/queues/{p}/dead-letters/redrive", {"jobIds": [alices_jobs["FAILED"]]}),
        ("POST", "/queues/{p}/dead-letters/purge", {"jobIds": [alices_jobs["FAILED"]]}),
    ]
    for priority in ("HIGH", "MEDIUM", "LOW", "high", "NOPE"):
        for method, path, body in calls:
            for user in users:
                answer = gateway.call(method, path.replace("{p}", priority), body, user)
                tally.expect(f"user {method} {path} {priority}", answer, {403})
                if alices_jobs["FAILED"] in answer.text:
                    tally.leaks.append(f"user {method} {path} {priority} mentions alice's job")
    for priority in ("HIGH", "MEDIUM", "LOW"):
        assert gateway.call("GET", f"/queues/{priority}/dead-letters", authorization=root).status == 200
    assert (
        gateway.call("GET", f"/jobs/{alices_jobs['FAILED']}", authorization=users[0]).body["status"]
        == "FAILED"
    )
    tally.assert_no_leaks(at_least=5 * len(calls) * len(users))
