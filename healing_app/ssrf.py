"""The SSRF guard for outgoing webhooks.

A webhook URL is chosen by a user, so a request to it must never reach our own network: loopback, private
ranges, link-local (the cloud metadata service) and friends. Checking the URL when it is saved is not enough:
the name can resolve differently a second later (DNS rebinding). So the address is checked again at connect
time, inside the HTTP transport, and the socket is opened to exactly the address that was checked.
"""

from __future__ import annotations

import ipaddress
import re
import socket
import ssl
import time
import unicodedata
from dataclasses import dataclass
from functools import lru_cache

import httpcore
import httpx
from django.conf import settings

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

ALLOWED_SCHEMES = ("http", "https")
MAX_RESPONSE_BYTES = 16 * 1024

# Metadata services of the big clouds. Refused even when private addresses are allowed: a webhook never
# has a reason to talk to them, and they hand out credentials.
METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(a)
    for a in (
        "169.254.169.254",  # AWS, GCP, Azure, OpenStack, DigitalOcean
        "fd00:ec2::254",  # AWS over IPv6
        "100.100.100.200",  # Alibaba Cloud
        "192.0.0.192",  # Oracle Cloud
    )
)
_CGNAT = ipaddress.ip_network("100.64.0.0/10")
_IPV4_COMPATIBLE = ipaddress.ip_network("::/96")
# IETF protocol assignments (192.0.0.8, the "dummy" address, and friends): not globally reachable, though
# Python 3.11's is_global says otherwise.
_IETF_PROTOCOL_ASSIGNMENTS = ipaddress.ip_network("192.0.0.0/24")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


class UnsafeURL(ValueError):
    """The URL or one of the addresses its host resolves to must not be contacted."""


@dataclass(frozen=True)
class Reply:
    status_code: int
    body: bytes  # at most MAX_RESPONSE_BYTES; the rest is never read
    location: str  # a redirect's target, reported but not followed


def allow_private_default() -> bool:
    return bool(settings.WEBHOOKS_ALLOW_PRIVATE)


def address_refusal(ip: IPAddress, *, allow_private: bool) -> str | None:
    """Why `ip` must not be contacted, or None when it may be."""
    embedded = _embedded_ipv4(ip)
    if embedded is not None:
        # ::ffff:127.0.0.1 and friends reach the IPv4 address inside them, so that address is what counts.
        refusal = address_refusal(embedded, allow_private=allow_private)
        if refusal is None and ip in _IPV4_COMPATIBLE:
            # ::1.2.3.4 is connected to as the IPv6 address ::102:304, which nothing routes.
            return "a deprecated IPv4-compatible address"
        return refusal
    if ip in METADATA_ADDRESSES:
        return "a cloud metadata address"
    if ip.is_unspecified:
        return "an unspecified address"
    if ip.is_multicast:
        return "a multicast address"
    if ip.is_link_local:
        return "a link-local address"
    if ip.is_loopback:
        return None if allow_private else "a loopback address"
    if ip.is_reserved or (ip.version == 6 and ip.is_site_local) or ip in _IETF_PROTOCOL_ASSIGNMENTS:
        return "a reserved address"
    if allow_private:
        return None
    if ip in _CGNAT:
        return "a shared (CGNAT) address"
    if ip.is_private or not ip.is_global:
        return "a private address"
    return None


def _embedded_ipv4(ip: IPAddress) -> ipaddress.IPv4Address | None:
    if ip.version == 4:
        return None
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip in _IPV4_COMPATIBLE and int(ip) > 1:  # deprecated ::a.b.c.d form; :: and ::1 are themselves
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    if ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip.teredo is not None:
        return ip.teredo[1]
    return None


def parse_url(url: str) -> tuple[str, str, int]:
    """(scheme, host, port) of an http(s) URL, or UnsafeURL saying what is wrong. Uses the same parser as the sender."""
    return _address(_parsed(url))


def _address(parsed: httpx.URL) -> tuple[str, str, int]:
    host = parsed.raw_host.decode("ascii")
    return parsed.scheme, host, parsed.port or (443 if parsed.scheme == "https" else 80)


def _parsed(url: str) -> httpx.URL:
    if not isinstance(url, str) or not url.strip():
        raise UnsafeURL("a URL is required")
    url = url.strip()
    _check_brackets(url)
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError) as exc:
        raise UnsafeURL(f"not a valid URL: {exc}") from None
    if parsed.scheme not in ALLOWED_SCHEMES:
        raise UnsafeURL("only http:// and https:// URLs are allowed")
    host = parsed.raw_host.decode("ascii")
    if not host:
        raise UnsafeURL("the URL has no host")
    if not _is_literal(host):
        _check_host_name(host)
    # httpx takes any integer; the socket layer would wrap 99999 round to 34463, and 0 means "any port".
    if parsed.port is not None and not 1 <= parsed.port <= 65535:
        raise UnsafeURL(f"the port {parsed.port} is out of range (1 to 65535)")
    return parsed


def _check_characters(url: str) -> None:
    # httpx quietly percent-encodes a space in the path and puts one, encoded, in the host (which then "does not
    # resolve"), and names a control character by its raw self; say plainly what is wrong, and where.
    for position, char in enumerate(url):
        if char.isspace():
            raise UnsafeURL(
                f"a URL cannot contain spaces or line breaks (U+{ord(char):04X} at position {position}); "
                "write a space in the path or query as %20"
            )
        category = unicodedata.category(char)
        if category == "Cc":
            raise UnsafeURL(f"a URL cannot contain control characters (U+{ord(char):04X} at position {position})")
        if category == "Cf":
            # Zero-width and right-to-left marks make the URL shown in the dashboard differ from the one used.
            raise UnsafeURL(
                f"a URL cannot contain invisible formatting characters (U+{ord(char):04X} at position {position})"
            )


_AUTHORITY = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://([^/?#]*)")


def _check_brackets(url: str) -> None:
    # Unchecked, httpx reads "https://[::1/" as host "[" and port ":1" and complains about the port.
    match = _AUTHORITY.match(url)
    if match is None:
        return
    host_port = match.group(1).rpartition("@")[2]
    opening, closing = host_port.find("["), host_port.find("]")
    if (opening, closing) == (-1, -1):
        return
    if opening != 0 or closing == -1 or host_port.count("[") != 1 or host_port.count("]") != 1:
        raise UnsafeURL(
            "not a valid URL: the host has an unmatched square bracket; an IPv6 address is written in brackets, "
            "as in https://[2001:db8::1]:8443/"
        )


def _check_host_name(host: str) -> None:
    # Python's resolver raises UnicodeError (not gaierror) for these, so they must be caught before it is asked.
    labels = host.removesuffix(".").split(".")
    if len(host) > 253 or any(not 1 <= len(label) <= 63 for label in labels):
        shown = host if len(host) <= 80 else host[:80] + "…"
        raise UnsafeURL(
            f"the host {shown} is not a valid host name "
            "(each part between dots must be 1 to 63 characters, and the whole at most 253)"
        )


def resolve(host: str, port: int) -> list[IPAddress]:
    """Every address `host` resolves to, in the resolver's order. Raises socket.gaierror."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    addresses: list[IPAddress] = []
    for _family, _type, _proto, _canonname, sockaddr in infos:
        ip = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])
        if ip not in addresses:
            addresses.append(ip)
    return addresses


def checked_addresses(host: str, port: int, *, allow_private: bool) -> list[IPAddress]:
    """Resolve `host` and refuse it if ANY address is unsafe: a name with one bad address is a bad name."""
    addresses = resolve(host, port)
    if not addresses:
        raise socket.gaierror(f"{host} has no addresses")
    for ip in addresses:
        refusal = address_refusal(ip, allow_private=allow_private)
        if refusal is not None:
            shown = host if _is_literal(host) else f"{host} ({ip})"
            raise UnsafeURL(f"{shown} is {refusal}; webhooks may only go to public addresses")
    return addresses


def _is_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def check_url(url: str, *, allow_private: bool | None = None) -> None:
    """Refuse (UnsafeURL) a URL about to be saved: malformed, not http(s), holding credentials, or with a host
    that resolves to an address we must not contact."""
    allow = allow_private_default() if allow_private is None else allow_private
    # Characters and credentials are checked when a URL is saved, not when sending: the sender took such URLs
    # before these rules, and endpoints saved then keep working until someone edits them.
    if isinstance(url, str):
        _check_characters(url.strip())
    parsed = _parsed(url)
    if parsed.userinfo:
        raise UnsafeURL(
            "a webhook URL cannot contain a user name or password (the part before @): the URL is shown to "
            "everyone who can see the endpoint; have the receiver check the webhook-signature header instead"
        )
    _scheme, host, port = _address(parsed)
    try:
        checked_addresses(host, port, allow_private=allow)
    except socket.gaierror:
        raise UnsafeURL(f"the host {host} does not resolve") from None


class _DeadlineStream(httpcore.NetworkStream):
    """A connection whose every read and write ends by one deadline: httpx's timeouts are per operation,
    so a receiver that sends its headers one line every few seconds would otherwise hold a worker."""

    def __init__(self, stream: httpcore.NetworkStream, deadline: float):
        self._stream = stream
        self._deadline = deadline

    def _left(self, timeout: float | None, error: type[Exception]) -> float:
        left = self._deadline - time.monotonic()
        if left <= 0:
            raise error("the webhook's receiver took longer than the delivery timeout")
        return left if timeout is None else min(timeout, left)

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._stream.read(max_bytes, self._left(timeout, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._stream.write(buffer, self._left(timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        self._stream.close()

    def start_tls(self, ssl_context, server_hostname=None, timeout=None):
        tls = self._stream.start_tls(ssl_context, server_hostname, self._left(timeout, httpcore.ConnectTimeout))
        return _DeadlineStream(tls, self._deadline)

    def get_extra_info(self, info: str):
        return self._stream.get_extra_info(info)


class GuardedNetworkBackend(httpcore.SyncBackend):
    """Connects only to checked addresses, and to the very address that was checked (no second lookup).
    With a `deadline` (time.monotonic()), the whole exchange on a connection ends by it."""

    def __init__(self, *, allow_private: bool, deadline: float | None = None):
        self.allow_private = allow_private
        self.deadline = deadline

    def connect_tcp(self, host, port, timeout=None, local_address=None, socket_options=None):
        try:
            addresses = checked_addresses(host, port, allow_private=self.allow_private)
        except (socket.gaierror, UnicodeError) as exc:
            raise httpcore.ConnectError(f"cannot resolve {host}: {exc}") from exc
        error: Exception | None = None
        for ip in addresses:
            try:
                stream = super().connect_tcp(str(ip), port, timeout, local_address, socket_options)
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                error = exc
                continue
            return stream if self.deadline is None else _DeadlineStream(stream, self.deadline)
        assert error is not None
        raise error


@lru_cache(maxsize=1)
def _ssl_context() -> ssl.SSLContext:
    # Loading the CA bundle takes a fifth of a second; one context serves every connection of the process.
    return httpx.create_ssl_context(trust_env=False)


class GuardedTransport(httpx.HTTPTransport):
    def __init__(self, *, allow_private: bool, deadline: float | None = None):
        # No proxies from the environment: a proxy would make the connection to the real target for us, unchecked.
        super().__init__(verify=_ssl_context(), trust_env=False)
        # httpx offers no way to pass a network backend, so its connection pool is replaced by one that has ours.
        # TLS still verifies the certificate against the URL's host name, not the pinned address.
        self._pool = httpcore.ConnectionPool(
            ssl_context=_ssl_context(),
            network_backend=GuardedNetworkBackend(allow_private=allow_private, deadline=deadline),
            max_connections=1,
        )


def guarded_post(
    url: str,
    *,
    content: bytes,
    headers: dict[str, str],
    timeout: float,
    max_bytes: int = MAX_RESPONSE_BYTES,
    allow_private: bool | None = None,
) -> Reply:
    """POST once, without following redirects, reading at most `max_bytes` of the reply within `timeout` overall.

    Raises UnsafeURL (refused before connecting), httpx.TimeoutException or another httpx.HTTPError.
    """
    allow = allow_private_default() if allow_private is None else allow_private
    parse_url(url)
    deadline = time.monotonic() + timeout
    headers = {**headers, "accept-encoding": "identity"}
    client = httpx.Client(
        transport=GuardedTransport(allow_private=allow, deadline=deadline),
        follow_redirects=False,
        trust_env=False,
        timeout=httpx.Timeout(timeout),
    )
    with client, client.stream("POST", url, content=content, headers=headers) as response:
        body = bytearray()
        # httpx's timeouts are per network operation; the deadline stops a receiver that drips bytes slowly.
        for chunk in response.iter_bytes():
            body += chunk
            if len(body) >= max_bytes:
                break
            if time.monotonic() > deadline:
                raise httpx.ReadTimeout(f"the reply took longer than {timeout:g}s")
        return Reply(
            status_code=response.status_code,
            body=bytes(body[:max_bytes]),
            location=response.headers.get("location", "") if response.is_redirect else "",
        )
