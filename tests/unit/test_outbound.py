"""The outbound HTTP guard and classification, without a network: resolvers and pools are fakes."""

from __future__ import annotations

import io
import ipaddress
import logging
import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import pytest
import urllib3

from tarefa import outbound
from tarefa.errors import PermanentJobError, RetryableJobError
from tarefa.outbound import (
    BlockedAddressError,
    HttpResponse,
    InvalidUrlError,
    OutboundHttp,
    OutboundPermanentError,
    OutboundRetryableError,
    RedirectRefusedError,
    ResponseTooLargeError,
    TooManyRedirectsError,
    address_problem,
    parse_retry_after,
    status_error,
)

PUBLIC = "93.184.216.34"


def resolver(table: dict[str, list[str]]) -> Callable[[str, int], list[str]]:
    def resolve(host: str, port: int) -> list[str]:
        if host not in table:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return table[host]

    return resolve


# -- the address table --------------------------------------------------------------------------

ADDRESSES = [
    (PUBLIC, True),
    ("8.8.8.8", True),
    ("127.0.0.1", False),
    ("127.255.255.254", False),
    ("10.0.0.1", False),
    ("10.255.255.255", False),
    ("172.16.0.1", False),
    ("172.31.255.254", False),
    ("172.32.0.1", True),
    ("172.15.255.255", True),
    ("192.168.1.1", False),
    ("169.254.169.254", False),
    ("169.254.170.2", False),
    ("100.64.0.1", False),
    ("100.127.255.254", False),
    ("100.128.0.1", True),
    ("0.0.0.0", False),
    ("0.1.2.3", False),
    ("224.0.0.1", False),
    ("239.255.255.250", False),
    ("240.0.0.1", False),
    ("255.255.255.255", False),
    ("198.18.0.1", False),
    ("::1", False),
    ("::", False),
    ("fe80::1", False),
    ("fe80::1%eth0", False),
    ("fc00::1", False),
    ("fd12:3456::1", False),
    ("fd00:ec2::254", False),
    ("fec0::1", False),
    ("ff02::1", False),
    ("::ffff:127.0.0.1", False),
    ("::ffff:10.0.0.1", False),
    ("::ffff:169.254.169.254", False),
    ("::ffff:93.184.216.34", True),
    ("::127.0.0.1", False),  # IPv4-compatible
    ("2002:7f00:1::", False),  # 6to4 of 127.0.0.1
    ("2002:a00:1::1", False),  # 6to4 of 10.0.0.1
    ("64:ff9b::a00:1", False),  # NAT64 of 10.0.0.1
    ("64:ff9b::a9fe:a9fe", False),  # NAT64 of 169.254.169.254
    ("64:ff9b::5db8:d822", True),  # NAT64 of 93.184.216.34
    ("64:ff9b:1::1", False),  # local-use NAT64
    ("2001:db8::1", False),  # documentation
    ("2001:4860:4860::8888", True),
    ("2606:4700:4700::1111", True),
]


@pytest.mark.parametrize(("address", "public"), ADDRESSES)
def test_address_table(address: str, public: bool) -> None:
    problem = address_problem(ipaddress.ip_address(address))
    assert (problem is None) is public, problem


@pytest.mark.parametrize(("address", "public"), ADDRESSES)
def test_the_same_table_through_a_host_name(address: str, public: bool) -> None:
    client = OutboundHttp(resolver=resolver({"svc.example": [address]}))
    if public:
        assert client.vet("https://svc.example/") == [address]
    else:
        with pytest.raises(BlockedAddressError) as caught:
            client.vet("https://svc.example/")
        assert caught.value.code == "BLOCKED_ADDRESS"


URLS = [
    (f"http://{PUBLIC}/", True),
    (f"https://{PUBLIC}:8443/x?y=1", True),
    ("http://[2001:4860:4860::8888]/", True),
    ("http://127.0.0.1/", False),
    ("http://127.0.0.1./", False),
    ("http://localhost/", False),
    ("http://LOCALHOST./", False),
    ("http://10.1.2.3/", False),
    ("http://172.16.0.1/", False),
    ("http://172.31.0.1/", False),
    ("http://172.32.0.1/", True),
    ("http://192.168.0.1/", False),
    ("http://169.254.169.254/latest/meta-data/", False),
    ("http://100.64.0.1/", False),
    ("http://100.128.0.1/", True),
    ("http://0.0.0.0/", False),
    ("http://[::1]/", False),
    ("http://[::]/", False),
    ("http://[fe80::1]/", False),
    ("http://[fc00::1]/", False),
    ("http://[fd00:ec2::254]/", False),
    ("http://[::ffff:127.0.0.1]/", False),
    ("http://[::ffff:7f00:1]/", False),
    ("http://[::ffff:10.0.0.1]/", False),
    # Odd IPv4 literals (inet_aton would read them all as an address) are refused outright,
    # whichever address they stand for.
    ("http://2130706433/", False),  # decimal 127.0.0.1
    ("http://0177.0.0.1/", False),  # octal
    ("http://0x7f.1/", False),  # hex, short
    ("http://0x7f000001/", False),
    ("http://127.1/", False),  # short
    ("http://10.1/", False),
    ("http://1572395042/", False),  # decimal 93.184.216.34: public, still refused
    ("http://093.184.216.34/", False),  # a leading zero makes it octal to some parsers
    ("http://private.example/", False),
    ("http://mixed.example/", False),
    ("http://public.example/", True),
    ("http://public.example./", True),
    ("http://PUBLIC.Example/", True),
    ("http://user:secret@public.example/", True),
]

NAMES = {
    "private.example": ["10.0.0.7"],
    "mixed.example": [PUBLIC, "192.168.0.10"],
    "public.example": [PUBLIC, "2606:4700:4700::1111"],
    "localhost": ["127.0.0.1", "::1"],
}


@pytest.mark.parametrize(("url", "allowed"), URLS)
def test_url_table(url: str, allowed: bool) -> None:
    client = OutboundHttp(resolver=resolver(NAMES))
    if allowed:
        assert client.vet(url)
    else:
        with pytest.raises(BlockedAddressError):
            client.vet(url)


def test_a_name_with_one_private_answer_among_public_ones_is_refused() -> None:
    client = OutboundHttp(resolver=resolver({"mixed.example": [PUBLIC, PUBLIC, "::1"]}))
    with pytest.raises(BlockedAddressError, match=r"mixed\.example resolves to ::1: loopback"):
        client.vet("https://mixed.example/")


@dataclass
class AllowCase:
    allow: list[str]
    url: str
    answers: list[str]
    allowed: bool


ALLOW_CASES = [
    AllowCase(["internal.svc"], "http://internal.svc/", ["10.0.0.5"], True),
    AllowCase(["INTERNAL.svc."], "http://Internal.SVC/", ["10.0.0.5", "fd12::5"], True),
    AllowCase(["internal.svc"], "http://other.svc/", ["10.0.0.5"], False),
    AllowCase(["internal.svc"], "http://api.internal.svc/", ["10.0.0.5"], False),  # exact, no suffix
    AllowCase(["10.0.0.5"], "http://10.0.0.5/", [], True),
    AllowCase(["10.0.0.5"], "http://other.svc/", ["10.0.0.5"], True),
    AllowCase(["10.0.0.5"], "http://other.svc/", ["10.0.0.5", "10.0.0.6"], False),
    AllowCase(["10.0.0.0/8"], "http://other.svc/", ["10.0.0.5", "10.200.0.1"], True),
    AllowCase(["10.0.0.0/8"], "http://[::ffff:10.0.0.1]/", [], True),
    AllowCase(["10.0.0.0/8"], "http://other.svc/", ["172.16.0.1"], False),
    AllowCase(["::1"], "http://[::1]:8080/", [], True),
    AllowCase(["[::1]"], "http://[::1]:8080/", [], True),
    AllowCase(["127.0.0.1"], "http://[::1]/", [], False),
    AllowCase(["0.0.0.0/0"], "http://[::1]/", [], False),  # a v4 CIDR never covers v6
    AllowCase(["fd00::/8"], "http://[fd12::1]/", [], True),
    # The metadata addresses: never through a CIDR or a host name, only when listed exactly.
    AllowCase(["169.254.0.0/16"], "http://169.254.1.1/", [], True),
    AllowCase(["169.254.0.0/16"], "http://169.254.169.254/", [], False),
    AllowCase(["0.0.0.0/0"], "http://169.254.169.254/", [], False),
    AllowCase(["169.254.0.0/16"], "http://[::ffff:169.254.169.254]/", [], False),
    AllowCase(["fd00::/8"], "http://[fd00:ec2::254]/", [], False),
    AllowCase(["meta.svc"], "http://meta.svc/", ["169.254.169.254"], False),
    AllowCase(["169.254.169.254"], "http://169.254.169.254/", [], True),
    AllowCase(["169.254.169.254/32"], "http://169.254.169.254/", [], True),
    AllowCase(["fd00:ec2::254"], "http://[fd00:ec2::254]/", [], True),
    # Allow-listing does not rescue an odd IPv4 literal.
    AllowCase(["127.0.0.0/8"], "http://127.1/", [], False),
]


@pytest.mark.parametrize("case", ALLOW_CASES, ids=lambda c: f"{c.allow}-{c.url}")
def test_allow_list(case: AllowCase) -> None:
    host = (urlsplit(case.url).hostname or "").removesuffix(".")
    client = OutboundHttp(allow=case.allow, resolver=resolver({host: case.answers}))
    if case.allowed:
        assert client.vet(case.url)
    else:
        with pytest.raises(BlockedAddressError):
            client.vet(case.url)


def test_allow_must_be_a_sequence_of_entries() -> None:
    with pytest.raises(TypeError):
        OutboundHttp(allow="127.0.0.1")
    for junk in ("internal.svc:8080", "http://internal.svc/", "10.0.0.0/33", ""):
        with pytest.raises(ValueError):
            OutboundHttp(allow=[junk])
    assert OutboundHttp(allow=["Bücher.example"]).allow.hosts == {"xn--bcher-kva.example"}


@pytest.mark.parametrize(
    "url",
    [
        "ftp://example.com/",
        "file:///etc/passwd",
        "gopher://example.com/",
        "example.com/path",
        "http:///path",
        "http://example.com:99999/",
        "http://example.com:port/",
        "http://exa mple.com/",
        "http://example.com/a b",
        "http://example.com/a\r\nX-Injected: 1",
        "http://[not-an-ip]/",
        "http://example..com/",
    ],
)
def test_unusable_urls_are_permanent_errors(url: str) -> None:
    with pytest.raises(InvalidUrlError) as caught:
        OutboundHttp(resolver=resolver({})).vet(url)
    assert caught.value.code == "INVALID_URL"
    assert isinstance(caught.value, PermanentJobError)


def test_dns_failures_are_retryable() -> None:
    client = OutboundHttp(resolver=resolver({"empty.example": []}))
    for url in ("http://nowhere.example/", "http://empty.example/"):
        with pytest.raises(OutboundRetryableError) as caught:
            client.vet(url)
        assert isinstance(caught.value, RetryableJobError)
        assert caught.value.status is None


def test_a_resolver_answer_that_is_not_an_address_is_refused() -> None:
    with pytest.raises(BlockedAddressError):
        OutboundHttp(resolver=resolver({"odd.example": ["not-an-ip"]})).vet("http://odd.example/")


def test_international_names_are_resolved_in_idna_form() -> None:
    seen: list[str] = []

    def resolve(host: str, port: int) -> list[str]:
        seen.append(host)
        return [PUBLIC]

    OutboundHttp(resolver=resolve).vet("https://bücher.example/")
    assert seen == ["xn--bcher-kva.example"]


# -- Retry-After and statuses ---------------------------------------------------------------------

NOW = datetime(2026, 5, 9, 12, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        ("7", 7.0),
        (" 120 ", 120.0),
        ("0", 0.0),
        ("999999", 43_200.0),
        ("Sat, 09 May 2026 12:00:30 GMT", 30.0),
        ("Saturday, 09-May-26 12:01:00 GMT", 60.0),  # RFC 850 form
        ("Sat May  9 12:00:05 2026", 5.0),  # asctime form
        ("Sat, 09 May 2026 11:00:00 GMT", 0.0),  # in the past
        ("Sun, 09 May 2027 12:00:00 GMT", 43_200.0),
        ("-5", None),
        ("1.5", None),
        ("soon", None),
        ("", None),
        (None, None),
    ],
)
def test_retry_after(header: str | None, seconds: float | None) -> None:
    assert parse_retry_after(header, now=NOW) == seconds


def response(status: int, headers: dict[str, str] | None = None, body: bytes = b"") -> HttpResponse:
    return HttpResponse(status, headers or {}, body, "https://api.example/v1/things?token=secret")


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (200, None),
        (204, None),
        (302, None),
        (304, None),
        (400, "permanent"),
        (401, "permanent"),
        (404, "permanent"),
        (409, "permanent"),
        (422, "permanent"),
        (429, "retryable"),
        (500, "retryable"),
        (502, "retryable"),
        (503, "retryable"),
    ],
)
def test_status_classification(status: int, kind: str | None) -> None:
    error = status_error(response(status, {"retry-after": "7"}, b'{"error":"x"}'), "POST")
    if kind is None:
        assert error is None
    elif kind == "retryable":
        assert isinstance(error, OutboundRetryableError)
        assert isinstance(error, RetryableJobError)
        assert error.status == status
        assert error.retry_after == 7.0
        assert error.response is not None and error.response.json() == {"error": "x"}
    else:
        assert isinstance(error, OutboundPermanentError)
        assert isinstance(error, PermanentJobError)
        assert error.code == f"HTTP_{status}"
        assert error.status == status
        assert error.body == b'{"error":"x"}'
    if error is not None:
        assert str(error) == f"POST api.example answered {status}"  # no path, no query


def test_a_retryable_status_without_retry_after_leaves_the_delay_to_the_policy() -> None:
    error = status_error(response(503))
    assert isinstance(error, OutboundRetryableError) and error.retry_after is None


def test_response_helpers() -> None:
    r = HttpResponse(200, {"content-type": "text/plain; charset=ISO-8859-1"}, "café".encode("latin-1"), "u")
    assert r.text == "café"
    assert r.ok
    assert HttpResponse(200, {"content-type": "text/plain; charset=nope"}, b"ok", "u").text == "ok"
    assert HttpResponse(200, {}, b'{"a": [1]}', "u").json() == {"a": [1]}
    assert not HttpResponse(404, {}, b"", "u").ok
    text = repr(response(200, {"authorization": "Bearer x"}, b"body-secret"))
    assert text == "HttpResponse(status=200, host='api.example', bytes=11)"
    with pytest.raises(AttributeError):
        r.status = 500  # type: ignore[misc]


# -- requests through a fake pool: pinning, redirects, caps -------------------------------------


@dataclass
class Sent:
    address: str
    port: int
    scheme: str
    method: str
    path: str
    headers: dict[str, str]
    body: bytes | None
    server_hostname: str | None


@dataclass
class Reply:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""


class FakePool:
    def __init__(self, client: FakeClient, scheme: str, address: str, port: int, sni: str | None) -> None:
        self.client, self.scheme, self.address, self.port, self.sni = client, scheme, address, port, sni

    def urlopen(self, method: str, url: str, body: bytes | None, headers: dict[str, str], **kw: Any) -> Any:
        assert kw["retries"] is False and kw["redirect"] is False and kw["preload_content"] is False
        sent = Sent(self.address, self.port, self.scheme, method, url, headers, body, self.sni)
        self.client.sent.append(sent)
        reply = self.client.route(sent)
        if isinstance(reply, Exception):
            raise reply
        return urllib3.HTTPResponse(
            body=io.BytesIO(reply.body), headers=reply.headers, status=reply.status, preload_content=False
        )

    def close(self) -> None:
        self.client.closed += 1


class FakeClient(OutboundHttp):
    """Records what would go on the wire instead of opening sockets."""

    def __init__(self, route: Callable[[Sent], Reply | Exception], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.route = route
        self.sent: list[Sent] = []
        self.closed = 0

    def _pool(self, target: Any, address: str, timeout: urllib3.Timeout) -> Any:
        sni = target.host if target.scheme == "https" else None
        return FakePool(self, target.scheme, address, target.port, sni)


def ok(sent: Sent) -> Reply:
    return Reply(200, {"Content-Type": "application/json", "X-Thing": "a"}, b'{"ok":true}')


def test_the_connection_goes_to_the_vetted_address_and_names_the_host() -> None:
    calls: list[str] = []
    answers = iter([[PUBLIC], ["127.0.0.1"]])  # a rebinding resolver: the 2nd answer is loopback

    def rebinding(host: str, port: int) -> list[str]:
        calls.append(host)
        return next(answers)

    client = FakeClient(ok, resolver=rebinding)
    r = client.get("https://api.example/v1?q=1", headers={"Host": "evil.example", "X-Key": "k"})
    assert r.status == 200 and r.json() == {"ok": True} and r.headers["x-thing"] == "a"
    assert r.url == "https://api.example/v1?q=1"
    assert calls == ["api.example"]  # resolved once; nothing resolves it again before connecting
    [sent] = client.sent
    assert (sent.address, sent.port, sent.scheme, sent.path) == (PUBLIC, 443, "https", "/v1?q=1")
    assert sent.server_hostname == "api.example"
    assert sent.headers["Host"] == "api.example"  # the caller's Host header is dropped
    assert "host" not in sent.headers and sent.headers["X-Key"] == "k"
    assert client.closed == 1


def test_host_header_keeps_a_non_default_port_and_brackets_ipv6() -> None:
    client = FakeClient(ok, resolver=resolver({}))
    client.get("http://[2001:4860:4860::8888]:8080/")
    assert client.sent[0].headers["Host"] == "[2001:4860:4860::8888]:8080"
    assert client.sent[0].address == "2001:4860:4860::8888"


def test_a_failed_connection_moves_on_to_the_next_vetted_address() -> None:
    def route(sent: Sent) -> Reply | Exception:
        if sent.address == "2606:4700:4700::1111":
            return urllib3.exceptions.NewConnectionError(None, "Network is unreachable")  # type: ignore[arg-type]
        return ok(sent)

    client = FakeClient(route, resolver=resolver({"api.example": ["2606:4700:4700::1111", PUBLIC]}))
    assert client.get("http://api.example/").status == 200
    assert [s.address for s in client.sent] == ["2606:4700:4700::1111", PUBLIC]


@pytest.mark.parametrize(
    ("failure", "message"),
    [
        (urllib3.exceptions.ReadTimeoutError(None, "/", "Read timed out."), "timed out"),  # type: ignore[arg-type]
        (urllib3.exceptions.ConnectTimeoutError(None, "timed out"), "timed out"),
        (urllib3.exceptions.NewConnectionError(None, "refused"), "cannot connect"),  # type: ignore[arg-type]
        (urllib3.exceptions.ProtocolError("Connection aborted.", ConnectionResetError()), "failed"),
        (urllib3.exceptions.SSLError("certificate verify failed"), "TLS error"),
        (ConnectionResetError(104, "reset"), "failed"),
    ],
)
def test_transport_failures_are_retryable(failure: Exception, message: str) -> None:
    client = FakeClient(lambda sent: failure, resolver=resolver({"api.example": [PUBLIC]}))
    with pytest.raises(OutboundRetryableError, match=message) as caught:
        client.get("https://api.example/secret-path?token=t")
    assert caught.value.status is None
    assert "secret" not in str(caught.value) and "token" not in str(caught.value)


def test_statuses_raise_unless_asked_not_to() -> None:
    client = FakeClient(
        lambda sent: Reply(404, {}, b'{"error":"gone"}'), resolver=resolver({"a.example": [PUBLIC]})
    )
    with pytest.raises(OutboundPermanentError) as caught:
        client.get("http://a.example/")
    assert caught.value.code == "HTTP_404" and caught.value.response.json() == {"error": "gone"}
    assert client.get("http://a.example/", raise_for_status=False).status == 404


def test_json_and_body() -> None:
    client = FakeClient(ok, resolver=resolver({"a.example": [PUBLIC]}))
    client.post("http://a.example/", json={"b": [1, "é"]})
    client.post("http://a.example/", body="plain", headers={"content-type": "text/plain", "User-Agent": "me"})
    first, second = client.sent
    assert first.body == b'{"b":[1,"\\u00e9"]}' and first.headers["Content-Type"] == "application/json"
    assert first.headers["User-Agent"] == outbound.USER_AGENT
    assert second.body == b"plain" and second.headers["content-type"] == "text/plain"
    assert "Content-Type" not in second.headers and second.headers["User-Agent"] == "me"
    with pytest.raises(ValueError):
        client.post("http://a.example/", json={}, body=b"")


def test_userinfo_becomes_basic_auth_unless_the_caller_sets_authorization() -> None:
    client = FakeClient(ok, resolver=resolver({"a.example": [PUBLIC]}))
    client.get("http://us%40er:p%3Ass@a.example/")
    client.get("http://user:pass@a.example/", headers={"authorization": "Bearer t"})
    assert client.sent[0].headers["Authorization"] == "Basic dXNAZXI6cDpzcw=="  # us@er:p:ss
    assert "Authorization" not in client.sent[1].headers
    assert client.sent[1].headers["authorization"] == "Bearer t"


def redirecting(locations: dict[str, tuple[int, str]]) -> Callable[[Sent], Reply]:
    def route(sent: Sent) -> Reply:
        key = f"{sent.scheme}://{sent.headers['Host']}{sent.path}"
        if key in locations:
            status, location = locations[key]
            return Reply(status, {"Location": location}, b"moved")
        return ok(sent)

    return route


def test_same_host_redirects_are_followed_and_each_hop_is_vetted() -> None:
    calls: list[str] = []

    def resolve(host: str, port: int) -> list[str]:
        calls.append(host)
        return [PUBLIC]

    route = redirecting(
        {
            "http://a.example/one": (301, "/two?x=1"),
            "http://a.example/two?x=1": (307, "https://a.example/three"),
            "https://a.example/three": (308, "four"),
        }
    )
    client = FakeClient(route, resolver=resolve)
    r = client.post("http://a.example/one", json={"k": 1})
    assert r.status == 200 and r.url == "https://a.example/four"
    assert [(s.method, s.scheme, s.path) for s in client.sent] == [
        ("POST", "http", "/one"),
        ("GET", "http", "/two?x=1"),  # 301 after POST turns into GET, without the body
        ("GET", "https", "/three"),
        ("GET", "https", "/four"),
    ]
    assert client.sent[1].body is None and "Content-Type" not in client.sent[1].headers
    assert calls == ["a.example"] * 4


def test_307_keeps_the_method_and_body_and_303_turns_into_get() -> None:
    route = redirecting({"http://a.example/a": (307, "/b"), "http://a.example/b": (303, "/c")})
    client = FakeClient(route, resolver=resolver({"a.example": [PUBLIC]}))
    client.request("PUT", "http://a.example/a", body=b"data")
    assert [(s.method, s.body) for s in client.sent] == [("PUT", b"data"), ("PUT", b"data"), ("GET", None)]


def test_a_rebinding_name_is_caught_on_the_redirect_hop() -> None:
    answers = iter([[PUBLIC], ["169.254.169.254"]])
    client = FakeClient(
        redirecting({"http://a.example/": (302, "/next")}), resolver=lambda h, p: next(answers)
    )
    with pytest.raises(BlockedAddressError, match="metadata"):
        client.get("http://a.example/")
    assert len(client.sent) == 1


@pytest.mark.parametrize(
    "location",
    [
        "http://b.example/",
        "//b.example/x",
        "http://sub.a.example/",
        "http://a.example:8080/",  # another port is another service
        "https://a.example:8443/",  # an upgrade goes to 443 or keeps the port
        "http://169.254.169.254/latest/meta-data/",
        "http://127.1/",
        "ftp://a.example/",
    ],
)
def test_redirects_off_the_host_are_refused(location: str) -> None:
    client = FakeClient(
        redirecting({"http://a.example/": (302, location)}), resolver=resolver({"a.example": [PUBLIC]})
    )
    with pytest.raises(RedirectRefusedError) as caught:
        client.get("http://a.example/", raise_for_status=False)
    assert caught.value.code == "REDIRECT_REFUSED" and len(client.sent) == 1


def test_https_is_never_downgraded_by_a_redirect() -> None:
    client = FakeClient(
        redirecting({"https://a.example/": (302, "http://a.example/")}),
        resolver=resolver({"a.example": [PUBLIC]}),
    )
    with pytest.raises(RedirectRefusedError):
        client.get("https://a.example/")


def test_redirects_are_counted() -> None:
    route = redirecting({f"http://a.example/{n}": (302, f"/{n + 1}") for n in range(10)})
    client = FakeClient(route, max_redirects=3, resolver=resolver({"a.example": [PUBLIC]}))
    with pytest.raises(TooManyRedirectsError) as caught:
        client.get("http://a.example/0")
    assert caught.value.code == "TOO_MANY_REDIRECTS" and len(client.sent) == 4
    client.sent.clear()
    assert client.get("http://a.example/7").url == "http://a.example/10"
    client.sent.clear()
    r = client.get("http://a.example/0", follow_redirects=False)
    assert (r.status, r.headers["location"], r.body) == (302, "/1", b"moved")


def test_a_body_past_the_cap_is_refused() -> None:
    big = Reply(200, {}, b"x" * 101)
    client = FakeClient(lambda sent: big, max_response_bytes=100, resolver=resolver({"a.example": [PUBLIC]}))
    with pytest.raises(ResponseTooLargeError) as caught:
        client.get("http://a.example/")
    assert caught.value.code == "RESPONSE_TOO_LARGE"
    with pytest.raises(ResponseTooLargeError):
        client.get("http://a.example/", raise_for_status=False)
    exact = FakeClient(
        lambda sent: Reply(200, {}, b"x" * 100), max_response_bytes=100, resolver=client._resolve
    )
    assert len(exact.get("http://a.example/").body) == 100


def test_a_declared_length_past_the_cap_is_refused_before_reading() -> None:
    reply = Reply(200, {"Content-Length": "5000000"}, b"short")
    client = FakeClient(
        lambda sent: reply, max_response_bytes=100, resolver=resolver({"a.example": [PUBLIC]})
    )
    with pytest.raises(ResponseTooLargeError):
        client.get("http://a.example/")


def test_an_error_body_past_the_cap_is_truncated_so_the_status_still_decides() -> None:
    client = FakeClient(
        lambda sent: Reply(503, {"Retry-After": "9"}, b"e" * 500),
        max_response_bytes=100,
        resolver=resolver({"a.example": [PUBLIC]}),
    )
    with pytest.raises(OutboundRetryableError) as caught:
        client.get("http://a.example/")
    assert caught.value.retry_after == 9.0
    assert caught.value.response is not None
    assert caught.value.response.body == b"e" * 100 and caught.value.response.truncated


class Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def records() -> Iterator[list[logging.LogRecord]]:
    handler = Records()
    log = logging.getLogger(outbound.logger.name)
    log.addHandler(handler)
    level = log.level
    log.setLevel(logging.DEBUG)
    yield handler.records
    log.setLevel(level)
    log.removeHandler(handler)


def test_logs_name_method_host_and_status_only(records: list[logging.LogRecord]) -> None:
    def route(sent: Sent) -> Reply:
        return Reply(500 if sent.path.startswith("/fail") else 200, {"Set-Cookie": "s=SECRET4"}, b"SECRET5")

    client = FakeClient(route, resolver=resolver({"a.example": [PUBLIC], "b.example": ["10.0.0.1"]}))
    headers = {"Authorization": "Bearer SECRET2"}
    client.post("https://me:SECRET0@a.example/hook?token=SECRET1", headers=headers, json={"card": "SECRET3"})
    with pytest.raises(OutboundRetryableError):
        client.post("https://a.example/fail?token=SECRET1", headers=headers, body=b"SECRET3")
    with pytest.raises(BlockedAddressError):
        client.get("https://b.example/x?token=SECRET1", headers=headers)
    failing = FakeClient(
        lambda sent: urllib3.exceptions.ReadTimeoutError(None, sent.path, "Read timed out."),  # type: ignore[arg-type]
        resolver=client._resolve,
    )
    with pytest.raises(OutboundRetryableError):
        failing.get("https://a.example/slow?token=SECRET1", headers=headers)
    assert len(records) == 4
    for record in records:
        logged = record.getMessage() + repr(record.__dict__)
        assert "SECRET" not in logged and "/hook" not in logged and "token" not in logged
    assert [getattr(r, "status", None) for r in records] == [200, 500, None, None]
    assert {getattr(r, "host", None) for r in records} == {"a.example", "b.example"}
