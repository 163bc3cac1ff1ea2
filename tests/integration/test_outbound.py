"""OutboundHttp against a real HTTP server on 127.0.0.1: pinning, redirects, caps, timeouts."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import socket
import ssl
import sys
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tarefa.outbound import (
    BlockedAddressError,
    OutboundHttp,
    OutboundPermanentError,
    OutboundRetryableError,
    RedirectRefusedError,
    ResponseTooLargeError,
    TooManyRedirectsError,
)

CAP = 4096
LOOPBACK = ["127.0.0.1"]


class Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.hits: list[str] = []
        self.release = threading.Event()  # set on teardown: slow handlers stop waiting

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    def url(self, path: str, host: str = "127.0.0.1", scheme: str = "http") -> str:
        return f"{scheme}://{host}:{self.port}{path}"


class Handler(BaseHTTPRequestHandler):
    server: Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        with contextlib.suppress(BrokenPipeError, ConnectionResetError, ssl.SSLError):
            self.route()  # those mean the client gave up first (cap, timeout): expected

    do_POST = do_GET
    do_PUT = do_GET

    def reply(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def json(self, status: int, data: Any, headers: dict[str, str] | None = None) -> None:
        self.reply(status, json.dumps(data).encode(), {"Content-Type": "application/json", **(headers or {})})

    def redirect(self, location: str, status: int = 302) -> None:
        self.reply(status, b"moved", {"Location": location})

    def route(self) -> None:
        self.server.hits.append(self.path)
        path = self.path.split("?")[0]
        port = self.server.port
        if path == "/json":
            self.json(200, {"hello": "world"})
        elif path == "/echo":
            length = int(self.headers.get("Content-Length") or 0)
            self.json(
                200,
                {
                    "method": self.command,
                    "path": self.path,
                    "host": self.headers["Host"],
                    "authorization": self.headers["Authorization"],
                    "body": self.rfile.read(length).decode(),
                },
            )
        elif path == "/limited":
            self.reply(429, b"slow down", {"Retry-After": "7"})
        elif path == "/unavailable":
            self.reply(503, b"down for maintenance")
        elif path == "/missing":
            self.json(404, {"error": "no such widget", "id": 42})
        elif path == "/redirect/relative":
            self.redirect("/json?from=relative")
        elif path == "/redirect/absolute":
            self.redirect(f"http://{self.headers['Host']}/echo", status=307)
        elif path == "/redirect/localhost":
            self.redirect(f"http://localhost:{port}/json")
        elif path == "/redirect/metadata":
            self.redirect("http://169.254.169.254/latest/meta-data/iam/security-credentials/")
        elif path == "/redirect/loop":
            self.redirect("/redirect/loop")
        elif path == "/big":
            self.reply(200, b"x" * (CAP + 1))
        elif path == "/big-undeclared":  # HTTP/1.0, no Content-Length: the body ends at close
            self.send_response(200)
            self.end_headers()
            for _ in range(CAP // 512 + 2):
                self.wfile.write(b"y" * 512)
        elif path == "/big-error":
            self.reply(500, b"e" * (CAP * 4))
        elif path == "/slow":
            self.server.release.wait(1.0)
            self.json(200, {"late": True})
        elif path == "/drip":  # one byte at a time: each read is quick, the whole is not
            self.send_response(200)
            self.send_header("Content-Length", "40")
            self.end_headers()
            for _ in range(40):
                if self.server.release.wait(0.05):
                    return
                self.wfile.write(b".")
                self.wfile.flush()
        else:
            self.reply(418, b"no route")


def serve(server: Server) -> Iterator[Server]:
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.release.set()
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture
def server() -> Iterator[Server]:
    yield from serve(Server())


def client(**kwargs: Any) -> OutboundHttp:
    kwargs.setdefault("allow", LOOPBACK)
    kwargs.setdefault("connect_timeout", 1.0)
    kwargs.setdefault("read_timeout", 2.0)
    kwargs.setdefault("max_response_bytes", CAP)
    return OutboundHttp(**kwargs)


def names(table: dict[str, list[str]], calls: list[str] | None = None) -> Callable[[str, int], list[str]]:
    def resolve(host: str, port: int) -> list[str]:
        if calls is not None:
            calls.append(host)
        if host not in table:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return table[host]

    return resolve


def test_loopback_is_refused_without_the_allow_list(server: Server) -> None:
    with pytest.raises(BlockedAddressError) as caught:
        OutboundHttp().get(server.url("/json"))
    assert caught.value.code == "BLOCKED_ADDRESS"
    with pytest.raises(BlockedAddressError):
        OutboundHttp(resolver=names({"svc.test": LOOPBACK})).get(f"http://svc.test:{server.port}/json")
    assert server.hits == []  # refused before connecting


def test_json_with_loopback_allow_listed(server: Server) -> None:
    r = client().get(server.url("/json"))
    assert r.status == 200 and r.json() == {"hello": "world"}
    assert r.headers["content-type"] == "application/json"
    assert r.url == server.url("/json")


def test_the_connection_is_pinned_to_the_vetted_address(server: Server) -> None:
    calls: list[str] = []
    http = client(resolver=names({"pinned.test": LOOPBACK}, calls))
    # pinned.test exists only in the fake resolver: the connection can only be made to its answer
    r = http.post(f"http://me:pw@pinned.test:{server.port}/echo?q=1", json={"n": 1})
    assert r.json() == {
        "method": "POST",
        "path": "/echo?q=1",
        "host": f"pinned.test:{server.port}",
        "authorization": "Basic bWU6cHc=",
        "body": '{"n":1}',
    }
    assert calls == ["pinned.test"]


@pytest.mark.skipif(sys.platform != "linux", reason="needs all of 127/8 on the loopback interface")
def test_a_refused_address_falls_back_to_the_next_vetted_one(server: Server) -> None:
    http = client(allow=["127.0.0.0/8"], resolver=names({"multi.test": ["127.0.0.2", "127.0.0.1"]}))
    assert http.get(f"http://multi.test:{server.port}/json").status == 200


def test_429_is_retryable_with_its_retry_after(server: Server) -> None:
    with pytest.raises(OutboundRetryableError) as caught:
        client().get(server.url("/limited"))
    assert (caught.value.status, caught.value.retry_after) == (429, 7.0)
    r = client().get(server.url("/limited"), raise_for_status=False)
    assert (r.status, r.headers["retry-after"], r.body) == (429, "7", b"slow down")


def test_503_is_retryable(server: Server) -> None:
    with pytest.raises(OutboundRetryableError) as caught:
        client().get(server.url("/unavailable"))
    assert caught.value.status == 503 and caught.value.retry_after is None
    assert caught.value.response is not None and caught.value.response.text == "down for maintenance"


def test_404_is_permanent_and_carries_the_error_body(server: Server) -> None:
    with pytest.raises(OutboundPermanentError) as caught:
        client().get(server.url("/missing?secret=1"))
    assert caught.value.code == "HTTP_404"
    assert caught.value.response.json() == {"error": "no such widget", "id": 42}
    assert "secret" not in str(caught.value)


def test_same_host_redirects_are_followed(server: Server) -> None:
    http = client()
    r = http.get(server.url("/redirect/relative"))
    assert r.json() == {"hello": "world"} and r.url == server.url("/json?from=relative")
    r = http.post(server.url("/redirect/absolute"), body=b"kept")  # 307: method and body kept
    assert r.json()["method"] == "POST" and r.json()["body"] == "kept"
    assert server.hits == ["/redirect/relative", "/json?from=relative", "/redirect/absolute", "/echo"]


def test_a_redirect_to_another_host_name_is_refused_even_at_the_same_address(server: Server) -> None:
    # localhost and 127.0.0.1 are the same socket here, and both are allow-listed: the redirect
    # is refused for naming another host, not by the address guard.
    http = client(allow=["127.0.0.1", "localhost"], resolver=names({"localhost": LOOPBACK}))
    assert http.get(f"http://localhost:{server.port}/json").status == 200  # localhost is reachable
    server.hits.clear()
    with pytest.raises(RedirectRefusedError) as caught:
        http.get(server.url("/redirect/localhost"))
    assert caught.value.code == "REDIRECT_REFUSED"
    assert server.hits == ["/redirect/localhost"]


def test_a_redirect_to_the_metadata_address_is_refused(server: Server) -> None:
    calls: list[str] = []
    http = client(allow=["127.0.0.1", "169.254.0.0/16"], resolver=names({}, calls))
    with pytest.raises(RedirectRefusedError):
        http.get(server.url("/redirect/metadata"))
    assert server.hits == ["/redirect/metadata"] and calls == []


def test_each_redirect_hop_is_vetted_again(server: Server) -> None:
    # A name that answers loopback (allow-listed), then rebinds to the metadata address.
    answers = iter([LOOPBACK, ["169.254.169.254"]])
    http = client(resolver=lambda host, port: next(answers))
    with pytest.raises(BlockedAddressError, match="metadata"):
        http.get(f"http://rebind.test:{server.port}/redirect/relative")
    assert server.hits == ["/redirect/relative"]


def test_redirect_loops_stop(server: Server) -> None:
    with pytest.raises(TooManyRedirectsError):
        client(max_redirects=3).get(server.url("/redirect/loop"))
    assert len(server.hits) == 4


@pytest.mark.parametrize("path", ["/big", "/big-undeclared"])
def test_a_body_past_the_cap_is_refused(server: Server, path: str) -> None:
    with pytest.raises(ResponseTooLargeError) as caught:
        client().get(server.url(path))
    assert caught.value.code == "RESPONSE_TOO_LARGE"
    assert len(client(max_response_bytes=CAP * 2).get(server.url(path)).body) > CAP


def test_a_large_error_page_is_truncated_and_still_retryable(server: Server) -> None:
    with pytest.raises(OutboundRetryableError) as caught:
        client().get(server.url("/big-error"))
    assert caught.value.response is not None
    assert len(caught.value.response.body) == CAP and caught.value.response.truncated


def test_a_read_timeout_is_retryable(server: Server) -> None:
    start = time.monotonic()
    with pytest.raises(OutboundRetryableError, match="timed out") as caught:
        client(read_timeout=0.3).get(server.url("/slow"))
    assert time.monotonic() - start < 0.9
    assert caught.value.status is None


def test_a_dripping_response_is_stopped_by_the_total_timeout(server: Server) -> None:
    start = time.monotonic()
    with pytest.raises(OutboundRetryableError, match="not complete"):
        client(read_timeout=1.0, total_timeout=0.3).get(server.url("/drip"))
    assert time.monotonic() - start < 1.5


def test_a_refused_connection_is_retryable() -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(OutboundRetryableError, match="cannot connect"):
        client().get(f"http://127.0.0.1:{port}/")


# -- TLS: the certificate is checked against the URL's host, not the pinned address -------------


def self_signed(directory: Path, host: str) -> tuple[Path, Path]:
    x509 = pytest.importorskip("cryptography.x509")
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(host)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_path, key_path


@pytest.fixture
def tls_server(tmp_path: Path) -> Iterator[tuple[Server, Path]]:
    cert, key = self_signed(tmp_path, "pinned.test")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    httpd = Server()
    httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
    for running in serve(httpd):
        yield running, cert


def test_tls_to_a_pinned_address_verifies_the_url_host(tls_server: tuple[Server, Path]) -> None:
    server, cert = tls_server
    table = {"pinned.test": LOOPBACK, "other.test": LOOPBACK}
    http = client(resolver=names(table), ca_certs=str(cert))
    r = http.get(server.url("/echo", host="pinned.test", scheme="https"))
    assert r.json()["host"] == f"pinned.test:{server.port}"
    # Same socket, but the certificate is not for other.test nor for the bare address.
    for host in ("other.test", "127.0.0.1"):
        with pytest.raises(OutboundRetryableError, match="TLS"):
            http.get(server.url("/echo", host=host, scheme="https"))
    # Without the test CA, the self-signed certificate is not trusted.
    with pytest.raises(OutboundRetryableError, match="TLS"):
        client(resolver=names(table)).get(server.url("/echo", host="pinned.test", scheme="https"))
    assert server.hits == ["/echo"]
