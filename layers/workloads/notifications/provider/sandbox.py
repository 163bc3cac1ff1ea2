"""A Resend sandbox: a loopback HTTP server speaking Resend's e-mail API (`POST /emails`,
`GET /emails/{id}`), so the real adapter (`resend.py`) runs its HTTP path in tests and on
`tarefa local`. The behaviours are a contract; keep them exact.

Auth: `Authorization: Bearer <api_key>`; none is 401 `missing_api_key`, another 403
`invalid_api_key`. Body: `from`, `to` (a string or up to 50), `subject` required (422
`missing_required_field`), `text` or `html` (422 `validation_error` with neither).

`Idempotency-Key` (1-256 characters, else 400 `invalid_idempotency_key`), as Resend documents it:
the same key and body again within 24 h answers the first response and sends nothing; the same
key with another body is 409 `invalid_idempotent_request`. Faults count per key, so a retry with
the same key recovers and a new message sees its fault afresh.

Outcome = the first recipient's local part:
    bounce@...      422 `validation_error` (the message is refused; permanent)
    ratelimit@...   429 `rate_limit_exceeded` with `retry-after: 1`, twice; then accepted
    fail@...        500 `application_error`, twice; then accepted
    slow@...        the first call is accepted, then answered after `hang_seconds` (past the
                    client's read timeout); the retry with the same key gets that same id
    anything else   accepted: 200 `{"id": "<uuid>"}`

Rate limit: `rate` requests per second for the whole team (default 2, Resend's), over which
429 `rate_limit_exceeded` with `ratelimit-*` and `retry-after` headers; None turns it off.

What was accepted is in `sent` (the tests read it) and at `GET /emails/{id}`. Standard library
only; importing this module starts nothing; requests are logged (DEBUG) as method and status,
never an address or a body.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

logger = logging.getLogger(__name__)

FAULT_REPEATS = 2


@dataclass(frozen=True)
class SandboxEmail:
    id: str
    sender: str
    to: tuple[str, ...]
    subject: str
    text: str | None
    html: str | None
    idempotency_key: str | None
    created_at: str

    def resource(self) -> dict[str, Any]:
        return {
            "object": "email",
            "id": self.id,
            "from": self.sender,
            "to": list(self.to),
            "subject": self.subject,
            "text": self.text,
            "html": self.html,
            "created_at": self.created_at,
            "last_event": "delivered",
        }


@dataclass
class _Answer:
    status: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)


class ResendSandbox:
    def __init__(self, api_key: str, *, rate: int | None = 2, hang_seconds: float = 12.0) -> None:
        self.api_key = api_key
        self.rate = rate
        self.hang_seconds = hang_seconds
        self.sent: list[SandboxEmail] = []
        self.requests = 0  # every POST /emails that reached the sandbox
        self._replies: dict[str, tuple[str, _Answer]] = {}  # key -> (fingerprint, first answer)
        self._faults: dict[str, int] = {}
        self._hits: deque[float] = deque()
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle -------------------------------------------------------------------------
    def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Serve from a daemon thread; the base URL (use it as ResendApiUrl)."""
        sandbox = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                sandbox._handle(self, "POST")

            def do_GET(self) -> None:
                sandbox._handle(self, "GET")

            def log_message(self, format: str, *args: Any) -> None:
                pass

        server = ThreadingHTTPServer((host, port), Handler)
        server.daemon_threads = True
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="resend-sandbox", daemon=True
        )
        self._thread.start()
        return self.base_url

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    @property
    def base_url(self) -> str:
        assert self._server is not None, "the sandbox is not started"
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def sent_to(self, address: str) -> list[SandboxEmail]:
        with self._lock:
            return [e for e in self.sent if address in e.to]

    # -- requests --------------------------------------------------------------------------
    def _handle(self, request: BaseHTTPRequestHandler, method: str) -> None:
        length = int(request.headers.get("Content-Length") or 0)
        raw = request.rfile.read(length) if length else b""
        headers = {k.lower(): v for k, v in request.headers.items()}
        answer, hang = self._answer(method, request.path, headers, raw)
        if hang:
            time.sleep(self.hang_seconds)
        logger.debug("resend sandbox %s %s", method, answer.status)
        data = json.dumps(answer.body).encode()
        try:
            request.send_response(answer.status)
            request.send_header("Content-Type", "application/json")
            request.send_header("Content-Length", str(len(data)))
            for name, value in answer.headers.items():
                request.send_header(name, value)
            request.end_headers()
            request.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):  # the client gave up waiting (slow@)
            pass

    def _answer(self, method: str, path: str, headers: dict[str, str], raw: bytes) -> tuple[_Answer, bool]:
        auth = headers.get("authorization", "")
        if not auth.startswith("Bearer "):
            return _error(401, "missing_api_key", "Missing API key in the authorization header"), False
        if auth.removeprefix("Bearer ") != self.api_key:
            return _error(403, "invalid_api_key", "API key is invalid"), False
        route = path.split("?", 1)[0].rstrip("/")
        if method == "GET" and route.startswith("/emails/"):
            wanted = route.removeprefix("/emails/")
            with self._lock:
                found = next((e for e in self.sent if e.id == wanted), None)
            if found is None:
                return _error(404, "not_found", "Email not found"), False
            return _Answer(200, found.resource()), False
        if method != "POST" or route != "/emails":
            return _error(404, "not_found", "The requested endpoint does not exist"), False
        with self._lock:
            self.requests += 1
            limited = self._over_rate()
        if limited is not None:
            return limited, False
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            return _error(400, "validation_error", "Invalid JSON body"), False
        if not isinstance(body, dict):
            return _error(422, "validation_error", "The body must be an object"), False
        for name in ("from", "to", "subject"):
            if not body.get(name):
                return _error(422, "missing_required_field", f"Missing `{name}` field."), False
        to = body["to"] if isinstance(body["to"], list) else [body["to"]]
        if not all(isinstance(a, str) and "@" in a for a in to) or len(to) > 50:
            return _error(422, "validation_error", "Invalid `to` field."), False
        if not body.get("text") and not body.get("html"):
            return _error(422, "validation_error", "Missing `html` or `text` field."), False
        key = headers.get("idempotency-key")
        if key is not None and not 1 <= len(key) <= 256:
            return _error(400, "invalid_idempotency_key", "The key must be 1 to 256 characters"), False
        fingerprint = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()
        with self._lock:
            if key is not None and key in self._replies:
                seen, first = self._replies[key]
                if seen != fingerprint:
                    return _error(
                        409,
                        "invalid_idempotent_request",
                        "Same idempotency key used with a different request",
                    ), False
                return first, False
            behaviour = str(to[0]).split("@", 1)[0].lower()
            count_key = key or fingerprint
            if behaviour == "bounce":
                return _error(422, "validation_error", "The recipient's address is refused"), False
            if behaviour in ("ratelimit", "fail"):
                seen_faults = self._faults.get(count_key, 0)
                if seen_faults < FAULT_REPEATS:
                    self._faults[count_key] = seen_faults + 1
                    if behaviour == "fail":
                        return _error(500, "application_error", "An unexpected error occurred"), False
                    return _error(
                        429,
                        "rate_limit_exceeded",
                        "Too many requests",
                        {
                            "retry-after": "1",
                            "ratelimit-limit": str(self.rate or 2),
                            "ratelimit-remaining": "0",
                            "ratelimit-reset": "1",
                        },
                    ), False
            email = SandboxEmail(
                id=str(uuid.uuid4()),
                sender=str(body["from"]),
                to=tuple(str(a) for a in to),
                subject=str(body["subject"]),
                text=body.get("text"),
                html=body.get("html"),
                idempotency_key=key,
                created_at=datetime.now(UTC).isoformat(),
            )
            self.sent.append(email)
            answer = _Answer(200, {"id": email.id})
            if key is not None:
                self._replies[key] = (fingerprint, answer)
            hang = behaviour == "slow" and self._faults.get(count_key, 0) == 0
            if hang:
                self._faults[count_key] = 1
        return answer, hang

    def _over_rate(self) -> _Answer | None:
        if self.rate is None:
            return None
        now = time.monotonic()
        while self._hits and self._hits[0] <= now - 1.0:
            self._hits.popleft()
        if len(self._hits) >= self.rate:
            return _error(
                429,
                "rate_limit_exceeded",
                "Too many requests. You can only make 2 requests per second.",
                {
                    "retry-after": "1",
                    "ratelimit-limit": str(self.rate),
                    "ratelimit-remaining": "0",
                    "ratelimit-reset": "1",
                },
            )
        self._hits.append(now)
        return None


def _error(status: int, name: str, message: str, headers: dict[str, str] | None = None) -> _Answer:
    return _Answer(status, {"statusCode": status, "name": name, "message": message}, headers or {})
