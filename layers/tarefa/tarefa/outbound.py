"""Every outgoing HTTP request a job makes goes through here.

A job's URL often comes from a user (a webhook), so a plain HTTP client would let anyone reach
whatever the Lambda can reach: the VPC, localhost, the instance metadata service. This module
resolves the host first, refuses any answer that is not a public address (unless allow-listed),
and then connects to the vetted address itself, so a DNS answer that changes between the check
and the connection (rebinding) cannot slip past. Redirects are followed by hand, to the same host
only, each hop vetted again. Failures come back as the engine's job errors, so the retry policy
does the right thing: timeouts, resets, 429 and 5xx retry; other 4xx and refusals fail the job.

Nothing here logs a URL's path or query, a header value or a body: method, host and status only.
"""

from __future__ import annotations

import base64
import http.client
import ipaddress
import json as jsonlib
import re
import socket
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import unquote, urljoin, urlsplit

import urllib3
from aws_lambda_powertools import Logger

from tarefa.backoff import MAX_DELAY_SECONDS
from tarefa.errors import PermanentJobError, RetryableJobError

logger = Logger(child=True)

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
Resolver = Callable[[str, int], list[str]]
Timeout = float | tuple[float, float]

USER_AGENT = "tarefa-outbound/1"
METADATA_ADDRESSES: frozenset[IPAddress] = frozenset(
    {ipaddress.ip_address("169.254.169.254"), ipaddress.ip_address("fd00:ec2::254")}
)
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
_CHUNK = 65_536

# Checked explicitly, not only through ipaddress's is_private/is_global: those tables changed
# between Python releases, and 3.11's is_global calls multicast "global".
_BLOCKED_NETWORKS: tuple[tuple[IPNetwork, str], ...] = tuple(
    (ipaddress.ip_network(cidr), reason)
    for cidr, reason in (
        ("0.0.0.0/8", "unspecified / 'this network'"),
        ("10.0.0.0/8", "private (RFC 1918)"),
        ("100.64.0.0/10", "carrier-grade NAT (RFC 6598)"),
        ("127.0.0.0/8", "loopback"),
        ("169.254.0.0/16", "link-local"),
        ("172.16.0.0/12", "private (RFC 1918)"),
        ("192.0.0.0/24", "IETF protocol assignments"),
        ("192.168.0.0/16", "private (RFC 1918)"),
        ("198.18.0.0/15", "benchmarking"),
        ("224.0.0.0/4", "multicast"),
        ("240.0.0.0/4", "reserved"),
        ("::/128", "unspecified"),
        ("::1/128", "loopback"),
        ("::/96", "IPv4-compatible (deprecated)"),
        ("64:ff9b:1::/48", "local-use NAT64"),
        ("100::/64", "discard-only"),
        ("fc00::/7", "unique local (ULA)"),
        ("fe80::/10", "link-local"),
        ("fec0::/10", "site-local (deprecated)"),
        ("ff00::/8", "multicast"),
    )
)
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_NUMERIC_LABEL = re.compile(r"(0x[0-9a-f]*|[0-9]+)")
_HOST_NAME = re.compile(r"[a-z0-9_-]+(\.[a-z0-9_-]+)*")
_UNSAFE_PATH = re.compile(r"[\x00-\x20\x7f]")


# -- errors -------------------------------------------------------------------------------------


class OutboundRetryableError(RetryableJobError):
    """A later attempt may succeed: timeout, connection failure, DNS failure, 429 or 5xx."""

    def __init__(
        self,
        message: str,
        retry_after: float | None = None,
        status: int | None = None,
        response: HttpResponse | None = None,
    ) -> None:
        super().__init__(message, retry_after=retry_after)
        self.status = status
        self.response = response


class OutboundPermanentError(PermanentJobError):
    """The provider answered a 4xx other than 429 (code HTTP_<status>); `response` has its body."""

    def __init__(self, message: str, response: HttpResponse) -> None:
        super().__init__(message, code=f"HTTP_{response.status}")
        self.response = response
        self.status = response.status
        self.body = response.body


class BlockedAddressError(PermanentJobError):
    """The guard refused the destination: not a public address and not allow-listed."""

    def __init__(self, message: str) -> None:
        super().__init__(message, code="BLOCKED_ADDRESS")


class InvalidUrlError(PermanentJobError):
    """Not an http(s) URL with a usable host, port and path."""

    def __init__(self, message: str) -> None:
        super().__init__(message, code="INVALID_URL")


class RedirectRefusedError(PermanentJobError):
    """A redirect left the host (or downgraded https to http, or changed port)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, code="REDIRECT_REFUSED")


class TooManyRedirectsError(PermanentJobError):
    """More same-host redirects than max_redirects (a loop, most likely)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, code="TOO_MANY_REDIRECTS")


class ResponseTooLargeError(PermanentJobError):
    """A 1xx-3xx body passed max_response_bytes."""

    def __init__(self, message: str) -> None:
        super().__init__(message, code="RESPONSE_TOO_LARGE")


# -- response -----------------------------------------------------------------------------------


@dataclass(frozen=True, repr=False)
class HttpResponse:
    """A whole response. `headers` has lower-case keys; `url` is the final URL after redirects.

    `truncated` is only ever true for an error status (>= 400) whose body passed the size cap:
    a huge 503 page must still be retried, not fail the job as too large."""

    status: int
    headers: dict[str, str]
    body: bytes
    url: str
    truncated: bool = False

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 400

    @property
    def text(self) -> str:
        """The body decoded with the Content-Type charset (UTF-8 if none or unknown)."""
        match = re.search(r"charset=\"?([\w.:-]+)", self.headers.get("content-type", ""), re.IGNORECASE)
        charset = match.group(1) if match else "utf-8"
        try:
            return self.body.decode(charset, errors="replace")
        except LookupError:
            return self.body.decode("utf-8", errors="replace")

    def json(self) -> Any:
        return jsonlib.loads(self.body)

    def __repr__(self) -> str:  # never the URL's path/query, headers or body
        return f"HttpResponse(status={self.status}, host={_host_of(self.url)!r}, bytes={len(self.body)})"


# -- classification -----------------------------------------------------------------------------


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or HTTP-date), within [0, 43200].

    None when absent or unreadable: the retry policy's own backoff applies then."""
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(min(int(value), MAX_DELAY_SECONDS))
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    seconds = (when - (now or datetime.now(UTC))).total_seconds()
    return float(min(max(seconds, 0.0), MAX_DELAY_SECONDS))


def status_error(response: HttpResponse, method: str = "") -> PermanentJobError | RetryableJobError | None:
    """The job error a final response stands for: None (1xx-3xx), retryable (429, 5xx), permanent."""
    status = response.status
    what = f"{method} {_host_of(response.url)}".strip()
    if status < 400:
        return None
    if status == 429 or status >= 500:
        return OutboundRetryableError(
            f"{what} answered {status}",
            retry_after=parse_retry_after(response.headers.get("retry-after")),
            status=status,
            response=response,
        )
    return OutboundPermanentError(f"{what} answered {status}", response)


# -- the guard ----------------------------------------------------------------------------------


def _plain(address: IPAddress) -> IPAddress:
    """Without an IPv6 scope id, and IPv4-mapped IPv6 (::ffff:a.b.c.d) as the IPv4 it maps."""
    if isinstance(address, ipaddress.IPv6Address):
        if address.scope_id is not None:
            address = ipaddress.IPv6Address(int(address))
        if address.ipv4_mapped is not None:
            return address.ipv4_mapped
    return address


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address a 6to4 (2002::/16) or NAT64 (64:ff9b::/96) address leads to."""
    if address.sixtofour is not None:
        return address.sixtofour
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def address_problem(address: IPAddress) -> str | None:
    """Why the guard refuses `address`, or None if it is a public unicast address."""
    address = _plain(address)
    if address in METADATA_ADDRESSES:
        return "cloud metadata address"
    if isinstance(address, ipaddress.IPv6Address):
        embedded = _embedded_ipv4(address)
        if embedded is not None:  # the verdict is the embedded address's (DNS64 answers are fine)
            problem = address_problem(embedded)
            return f"embeds {embedded}, {problem}" if problem else None
    for network, reason in _BLOCKED_NETWORKS:
        if network.version == address.version and address in network:
            return reason
    if address.is_loopback:
        return "loopback"
    if address.is_unspecified:
        return "unspecified"
    if address.is_link_local:
        return "link-local"
    if address.is_multicast:
        return "multicast"
    if address.is_reserved:
        return "reserved"
    if not address.is_global:
        return "not globally routable"
    return None


@dataclass(frozen=True)
class _AllowList:
    hosts: frozenset[str]
    exact: frozenset[IPAddress]
    networks: tuple[IPNetwork, ...]

    @classmethod
    def parse(cls, entries: Sequence[str]) -> _AllowList:
        hosts: set[str] = set()
        exact: set[IPAddress] = set()
        networks: list[IPNetwork] = []
        for entry in entries:
            text = entry.strip().strip("[]").lower()
            try:
                network = ipaddress.ip_network(text, strict=False)
            except ValueError:
                host = text.removesuffix(".")
                if not host.isascii():
                    host = host.encode("idna").decode("ascii")
                if not _HOST_NAME.fullmatch(host):
                    raise ValueError(
                        f"allow entry {entry!r} is not a host name, IP address or CIDR"
                    ) from None
                hosts.add(host)
                continue
            if network.prefixlen == network.max_prefixlen:
                exact.add(_plain(network.network_address))
            else:
                networks.append(network)
        return cls(frozenset(hosts), frozenset(exact), tuple(networks))

    def permits(self, host: str, address: IPAddress) -> bool:
        """Listed IP wins; metadata needs its exact IP; then a listed host name or CIDR."""
        if address in self.exact:
            return True
        if address in METADATA_ADDRESSES:
            return False
        if host in self.hosts:
            return True
        return any(net.version == address.version and address in net for net in self.networks)


@dataclass(frozen=True)
class _Target:
    """One parsed URL: what to resolve, where to connect, what to ask for."""

    url: str
    scheme: str
    host: str  # lower-case, IDNA, no brackets, no trailing dot
    port: int
    path: str  # path and query, never empty
    literal: IPAddress | None
    authorization: str | None  # Basic credentials from the URL's userinfo

    @property
    def host_header(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        default = 443 if self.scheme == "https" else 80
        return host if self.port == default else f"{host}:{self.port}"


def _host_of(url: str) -> str:
    try:
        return urlsplit(url).hostname or "?"
    except ValueError:
        return "?"


def _parse(url: str) -> _Target:
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise InvalidUrlError("the URL cannot be parsed") from None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise InvalidUrlError(f"only http and https URLs may be requested, not {scheme or 'none'!r}")
    host = unquote(parts.hostname or "")
    if not host:
        raise InvalidUrlError("the URL has no host")
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    if _UNSAFE_PATH.search(path):
        raise InvalidUrlError("the URL's path has spaces or control characters; percent-encode them")
    literal: IPAddress | None = None
    if ":" in host:
        try:
            literal = ipaddress.IPv6Address(host)
        except ValueError:
            raise InvalidUrlError(f"{host!r} is not an IPv6 address") from None
    else:
        if not host.isascii():
            try:
                host = host.encode("idna").decode("ascii")
            except UnicodeError:
                raise InvalidUrlError("the URL's host is not a valid internationalised name") from None
        host = host.lower().removesuffix(".")
        if not _HOST_NAME.fullmatch(host):
            raise InvalidUrlError("the URL's host has characters a host name cannot have")
        if _NUMERIC_LABEL.fullmatch(host.rsplit(".", 1)[-1]):
            literal = _ipv4_literal(host)
    authorization = None
    if parts.username is not None or parts.password is not None:
        credentials = f"{unquote(parts.username or '')}:{unquote(parts.password or '')}"
        authorization = "Basic " + base64.b64encode(credentials.encode()).decode("ascii")
    return _Target(
        url=url,
        scheme=scheme,
        host=host,
        port=port or (443 if scheme == "https" else 80),
        path=path,
        literal=literal,
        authorization=authorization,
    )


def _ipv4_literal(host: str) -> ipaddress.IPv4Address:
    """A dotted-quad IPv4 host; decimal, octal, hex and short forms (127.1) are refused outright."""
    try:
        return ipaddress.IPv4Address(host)
    except ValueError:
        pass
    try:
        meaning = f" (it means {socket.inet_ntoa(socket.inet_aton(host))})"
    except OSError:
        meaning = ""
    raise BlockedAddressError(
        f"{host!r} is a non-canonical IPv4 literal{meaning}; write the address as a.b.c.d"
    )


def _default_resolver(host: str, port: int) -> list[str]:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


# -- the client ---------------------------------------------------------------------------------


class OutboundHttp:
    """An HTTP client for job handlers: SSRF guard, IP pinning, size cap, job-error mapping.

    `allow` lists host names, IPs or CIDRs that may be reached although not public (an internal
    service). A host name entry matches the URL's host exactly. The metadata addresses are only
    reachable when their exact IP is listed, never through a CIDR or a host name."""

    def __init__(
        self,
        allow: Sequence[str] = (),
        connect_timeout: float = 3.0,
        read_timeout: float = 10.0,
        max_response_bytes: int = 1_048_576,
        max_redirects: int = 3,
        resolver: Resolver | None = None,
        *,
        total_timeout: float = 60.0,
        ca_certs: str | None = None,
    ) -> None:
        if isinstance(allow, str):
            raise TypeError("allow is a sequence of entries, not one string")
        self.allow = _AllowList.parse(allow)
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.max_response_bytes = max_response_bytes
        self.max_redirects = max_redirects
        self.total_timeout = total_timeout
        self.ca_certs = ca_certs
        self._resolve = resolver or _default_resolver

    def get(self, url: str, **kwargs: Any) -> HttpResponse:
        return self.request("GET", url, **kwargs)

    def post(self, url: str, **kwargs: Any) -> HttpResponse:
        return self.request("POST", url, **kwargs)

    def request(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        json: Any = None,
        body: bytes | str | None = None,
        timeout: Timeout | None = None,
        raise_for_status: bool = True,
        follow_redirects: bool = True,
    ) -> HttpResponse:
        """Send one request, following same-host redirects.

        `timeout` is seconds for both connect and each read, or (connect, read). With
        `raise_for_status=False` any status is returned; transport failures, guard refusals and
        the size cap still raise. With `follow_redirects=False` a 3xx is returned as is."""
        method = method.upper()
        if json is not None and body is not None:
            raise ValueError("pass json or body, not both")
        send_headers = {k: v for k, v in (headers or {}).items() if k.lower() != "host"}
        names = {k.lower() for k in send_headers}
        payload: bytes | None = body.encode() if isinstance(body, str) else body
        if json is not None:
            payload = jsonlib.dumps(json, separators=(",", ":")).encode()
            if "content-type" not in names:
                send_headers["Content-Type"] = "application/json"
        if "user-agent" not in names:
            send_headers["User-Agent"] = USER_AGENT
        connect, read = (
            (self.connect_timeout, self.read_timeout)
            if timeout is None
            else (timeout if isinstance(timeout, tuple) else (timeout, timeout))
        )
        deadline = time.monotonic() + self.total_timeout
        target = _parse(url)
        hops = 0
        while True:
            response = self._hop(
                method, target, send_headers, payload, connect, read, deadline, follow_redirects
            )
            location = response.headers.get("location")
            if not (follow_redirects and response.status in REDIRECT_STATUSES and location):
                break
            if hops >= self.max_redirects:
                raise TooManyRedirectsError(
                    f"{method} {target.host}: more than {self.max_redirects} redirects"
                )
            hops += 1
            target = self._redirect_target(method, target, urljoin(target.url, location))
            if (response.status == 303 and method != "HEAD") or (
                response.status in (301, 302) and method == "POST"
            ):
                method, payload = "GET", None
                send_headers = {
                    k: v
                    for k, v in send_headers.items()
                    if k.lower() not in ("content-type", "content-length")
                }
        logger.info(
            "Outbound HTTP request", extra={"method": method, "host": target.host, "status": response.status}
        )
        if raise_for_status:
            error = status_error(response, method)
            if error is not None:
                raise error
        return response

    def _redirect_target(self, method: str, current: _Target, url: str) -> _Target:
        try:
            nxt = _parse(url)
        except PermanentJobError:
            raise RedirectRefusedError(f"{method} {current.host}: redirected to an unusable URL") from None
        same_port = nxt.port == current.port
        upgrade = current.scheme == "http" and nxt.scheme == "https" and (same_port or nxt.port == 443)
        if nxt.host != current.host or not (upgrade or (nxt.scheme == current.scheme and same_port)):
            raise RedirectRefusedError(
                f"{method} {current.host}: redirect to {nxt.scheme}://{nxt.host}:{nxt.port} refused;"
                " only redirects to the same host and port (or an http to https upgrade) are followed"
            )
        return nxt

    def vet(self, url: str) -> list[str]:
        """The addresses `url` may be reached at; raises BlockedAddressError (or DNS/URL errors)."""
        return self._vet(_parse(url))

    def _vet(self, target: _Target) -> list[str]:
        if target.literal is not None:
            answers = [str(target.literal)]
        else:
            try:
                answers = self._resolve(target.host, target.port)
            except (OSError, UnicodeError) as exc:
                logger.warning("Outbound DNS lookup failed", extra={"host": target.host})
                raise OutboundRetryableError(f"cannot resolve {target.host}: {exc}") from None
            if not answers:
                raise OutboundRetryableError(f"cannot resolve {target.host}: no addresses")
        vetted: list[str] = []
        for answer in dict.fromkeys(answers):
            try:
                address = ipaddress.ip_address(answer)
            except ValueError:
                raise BlockedAddressError(
                    f"{target.host} resolved to {answer!r}, not an IP address"
                ) from None
            plain = _plain(address)
            if not self.allow.permits(target.host, plain):
                problem = address_problem(plain)
                if problem is not None:
                    logger.warning(
                        "Outbound HTTP request refused",
                        extra={"host": target.host, "address": str(plain), "reason": problem},
                    )
                    where = target.host if target.host == str(plain) else f"{target.host} resolves to {plain}"
                    raise BlockedAddressError(f"{where}: {problem}; not allowed as a destination")
            vetted.append(answer)
        return vetted

    def _hop(
        self,
        method: str,
        target: _Target,
        headers: dict[str, str],
        payload: bytes | None,
        connect: float,
        read: float,
        deadline: float,
        follow_redirects: bool,
    ) -> HttpResponse:
        """One request to one vetted, pinned address (the next one if a connection fails)."""
        addresses = self._vet(target)
        headers = {**headers, "Host": target.host_header}
        if target.authorization and not any(k.lower() == "authorization" for k in headers):
            headers["Authorization"] = target.authorization
        failure: BaseException | None = None
        for address in addresses:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            timeout = urllib3.Timeout(connect=min(connect, remaining), read=min(read, remaining))
            pool = self._pool(target, address, timeout)
            raw: urllib3.BaseHTTPResponse | None = None
            try:
                raw = pool.urlopen(
                    method,
                    target.path,
                    body=payload,
                    headers=headers,
                    retries=False,
                    redirect=False,
                    assert_same_host=False,
                    preload_content=False,
                    decode_content=True,
                )
                return self._finish(method, target, raw, deadline, follow_redirects)
            except urllib3.exceptions.ConnectTimeoutError as exc:  # includes NewConnectionError
                failure = exc  # nothing was sent: the next vetted address may answer
            except (urllib3.exceptions.HTTPError, http.client.HTTPException, OSError) as exc:
                raise self._transport_error(method, target, exc) from exc
            finally:
                if raw is not None:
                    raw.close()
                pool.close()
        if failure is None:
            raise OutboundRetryableError(f"{method} {target.host}: timed out")
        raise self._transport_error(method, target, failure) from failure

    def _pool(self, target: _Target, address: str, timeout: urllib3.Timeout) -> urllib3.HTTPConnectionPool:
        """A pool whose connections go to `address`; TLS still checks the certificate and sends
        SNI for the URL's host (server_hostname), and the Host header names it too."""
        if target.scheme == "https":
            return urllib3.HTTPSConnectionPool(
                address,
                target.port,
                timeout=timeout,
                maxsize=1,
                retries=False,
                cert_reqs="CERT_REQUIRED",
                ca_certs=self.ca_certs,
                server_hostname=target.host,
            )
        return urllib3.HTTPConnectionPool(address, target.port, timeout=timeout, maxsize=1, retries=False)

    def _finish(
        self,
        method: str,
        target: _Target,
        raw: urllib3.BaseHTTPResponse,
        deadline: float,
        follow_redirects: bool,
    ) -> HttpResponse:
        headers = {k.lower(): v for k, v in raw.headers.itermerged()}
        if follow_redirects and raw.status in REDIRECT_STATUSES and "location" in headers:
            return HttpResponse(raw.status, headers, b"", target.url)  # body unread: not needed
        cap = self.max_response_bytes
        truncate = raw.status >= 400
        length = headers.get("content-length", "")
        if not truncate and length.isdigit() and int(length) > cap:
            raise self._too_large(method, target)
        chunks: list[bytes] = []
        size = 0
        # read1 returns what one recv gives, so the deadline also stops a server that drips bytes;
        # urllib3 1.26 (an older runtime's copy) has no read1 and blocks for whole chunks.
        read: Callable[[int], bytes] = getattr(raw, "read1", raw.read)
        while chunk := read(_CHUNK):
            size += len(chunk)
            if size > cap:
                if not truncate:
                    raise self._too_large(method, target)
                chunks.append(chunk[: len(chunk) - (size - cap)])
                return HttpResponse(raw.status, headers, b"".join(chunks), target.url, truncated=True)
            chunks.append(chunk)
            if time.monotonic() > deadline:
                raise OutboundRetryableError(
                    f"{method} {target.host}: response not complete within {self.total_timeout:g} s"
                )
        return HttpResponse(raw.status, headers, b"".join(chunks), target.url)

    def _too_large(self, method: str, target: _Target) -> ResponseTooLargeError:
        logger.warning("Outbound HTTP response too large", extra={"method": method, "host": target.host})
        return ResponseTooLargeError(
            f"{method} {target.host}: response body larger than {self.max_response_bytes} bytes"
        )

    @staticmethod
    def _transport_error(method: str, target: _Target, exc: BaseException) -> OutboundRetryableError:
        what = "timed out" if isinstance(exc, (urllib3.exceptions.TimeoutError, TimeoutError)) else "failed"
        if isinstance(exc, urllib3.exceptions.SSLError):
            what = "failed: TLS error"
        elif isinstance(exc, urllib3.exceptions.NewConnectionError):
            what = "failed: cannot connect"
        logger.warning(
            "Outbound HTTP request failed",
            extra={"method": method, "host": target.host, "error": type(exc).__name__},
        )
        return OutboundRetryableError(f"{method} {target.host}: {what}")
