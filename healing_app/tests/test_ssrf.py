"""The SSRF guard: which addresses are refused, at save time and again at connect time.

Only 127.0.0.0/8 is ever connected to; every other address appears only to be refused, and the
`connections` fixture fails a test that tries to open a socket anywhere else.
"""

from __future__ import annotations

import ipaddress
import socket
import threading
import time

import httpx
import pytest

from healing_app import ssrf
from healing_app.tests.test_webhooks_receiver import Receiver, Reply

PUBLIC_V4 = "93.184.215.14"  # only ever classified or returned by a patched resolver, never connected to


@pytest.fixture
def receiver():
    with Receiver() as running:
        yield running


@pytest.fixture
def connections(monkeypatch):
    """Every address a socket is opened to; anything outside loopback fails the test before it is contacted."""
    opened: list[tuple[str, int]] = []
    real = socket.create_connection

    def create_connection(address, *args, **kwargs):
        host, port = address[0], address[1]
        opened.append((host, port))
        assert ipaddress.ip_address(host).is_loopback, f"test tried to connect to {host}"
        return real(address, *args, **kwargs)

    monkeypatch.setattr(socket, "create_connection", create_connection)
    return opened


def resolving_to(monkeypatch, *answers: list[str]):
    """Patch name resolution to give these answers, one list per lookup (the last repeats). Returns the call log."""
    calls: list[str] = []

    def resolve(host: str, port: int):
        calls.append(host)
        answer = answers[min(len(calls), len(answers)) - 1]
        return [ipaddress.ip_address(a) for a in answer]

    monkeypatch.setattr(ssrf, "resolve", resolve)
    return calls


# -- which addresses ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "address, reason",
    [
        ("127.0.0.1", "loopback"),
        ("127.8.9.10", "loopback"),
        ("10.0.0.1", "private"),
        ("172.16.5.4", "private"),
        ("192.168.1.1", "private"),
        ("100.64.0.1", "CGNAT"),
        ("169.254.169.254", "metadata"),
        ("169.254.10.10", "link-local"),
        ("0.0.0.0", "unspecified"),
        ("224.0.0.1", "multicast"),
        ("240.0.0.1", "reserved"),
        ("255.255.255.255", "reserved"),
        ("192.0.0.192", "metadata"),
        ("100.100.100.200", "metadata"),
        ("::1", "loopback"),
        ("::", "unspecified"),
        ("fe80::1", "link-local"),
        ("fc00::1", "private"),
        ("fd00:ec2::254", "metadata"),
        ("ff02::1", "multicast"),
        ("fec0::1", "reserved"),
        ("::ffff:127.0.0.1", "loopback"),
        ("::ffff:10.0.0.1", "private"),
        ("::ffff:169.254.169.254", "metadata"),
        ("::7f00:1", "loopback"),  # IPv4-compatible ::127.0.0.1
        ("64:ff9b::7f00:1", "loopback"),  # NAT64
        ("2002:7f00:1::", "loopback"),  # 6to4 around 127.0.0.1
        ("::1.2.3.4", "deprecated IPv4-compatible"),  # connected to as ::102:304, not 1.2.3.4
        ("192.0.0.8", "reserved"),  # the IPv4 dummy address, global to Python 3.11 only
    ],
)
def test_non_public_addresses_are_refused(address, reason):
    refusal = ssrf.address_refusal(ipaddress.ip_address(address), allow_private=False)
    assert refusal is not None and reason in refusal


@pytest.mark.parametrize("address", [PUBLIC_V4, "1.1.1.1", "2606:4700:4700::1111", "::ffff:93.184.215.14"])
def test_public_addresses_are_allowed(address):
    assert ssrf.address_refusal(ipaddress.ip_address(address), allow_private=False) is None


@pytest.mark.parametrize("address", ["127.0.0.1", "10.0.0.1", "192.168.1.1", "::1", "::ffff:127.0.0.1", "fc00::1"])
def test_allowing_private_addresses_lets_loopback_and_private_ranges_through(address):
    assert ssrf.address_refusal(ipaddress.ip_address(address), allow_private=True) is None


@pytest.mark.parametrize("address", ["169.254.169.254", "::ffff:169.254.169.254", "fd00:ec2::254", "0.0.0.0", "224.0.0.1"])
def test_metadata_unspecified_and_multicast_stay_refused_even_when_private_is_allowed(address):
    assert ssrf.address_refusal(ipaddress.ip_address(address), allow_private=True) is not None


# -- URLs, when saved -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/latest/meta-data/",
        "http://127.0.0.1/hook",
        "http://[::ffff:127.0.0.1]/hook",
        "http://10.0.0.1/hook",
        "http://localhost/hook",
        "http://2130706433/",  # 127.0.0.1 as one number
        "http://0x7f000001/",
        "http://127.1/",
        "http://[::1]:8080/",
    ],
)
def test_urls_reaching_non_public_addresses_are_refused(url, connections):
    with pytest.raises(ssrf.UnsafeURL, match="webhooks may only go to public addresses"):
        ssrf.check_url(url, allow_private=False)
    assert connections == []


@pytest.mark.parametrize(
    "url", ["file:///etc/passwd", "ftp://example.com/", "gopher://example.com/", "javascript:alert(1)", "http://", "", "example.com/hook"]
)
def test_urls_that_are_not_http_are_refused(url):
    with pytest.raises(ssrf.UnsafeURL):
        ssrf.check_url(url, allow_private=True)


def test_a_name_is_refused_when_any_of_its_addresses_is_not_public(monkeypatch):
    resolving_to(monkeypatch, [PUBLIC_V4, "127.0.0.1"])
    with pytest.raises(ssrf.UnsafeURL, match=r"hooks\.example\.test \(127\.0\.0\.1\) is a loopback address"):
        ssrf.check_url("https://hooks.example.test/in", allow_private=False)


def test_a_name_with_only_public_addresses_is_accepted(monkeypatch):
    resolving_to(monkeypatch, [PUBLIC_V4, "2606:4700:4700::1111"])
    ssrf.check_url("https://hooks.example.test/in", allow_private=False)


def test_a_name_that_does_not_resolve_is_refused(monkeypatch):
    def fail(host, port):
        raise socket.gaierror("Name or service not known")

    monkeypatch.setattr(ssrf, "resolve", fail)
    with pytest.raises(ssrf.UnsafeURL, match="does not resolve"):
        ssrf.check_url("https://nowhere.example.test/", allow_private=False)


def test_the_setting_decides_when_no_choice_is_passed(settings):
    settings.WEBHOOKS_ALLOW_PRIVATE = False
    with pytest.raises(ssrf.UnsafeURL):
        ssrf.check_url("http://127.0.0.1/")
    settings.WEBHOOKS_ALLOW_PRIVATE = True
    ssrf.check_url("http://127.0.0.1/")


# -- at connect time -----------------------------------------------------------------------------------


def post(url: str, *, allow_private: bool, timeout: float = 2.0, **kwargs) -> ssrf.Reply:
    return ssrf.guarded_post(url, content=b"{}", headers={}, timeout=timeout, allow_private=allow_private, **kwargs)


@pytest.mark.parametrize("host", ["127.0.0.1", "[::ffff:127.0.0.1]", "localhost"])
def test_sending_to_loopback_is_refused_before_connecting(receiver, connections, host):
    with pytest.raises(ssrf.UnsafeURL):
        post(receiver.url(host=host), allow_private=False)
    assert connections == []
    assert receiver.requests == []


@pytest.mark.parametrize("url", ["http://169.254.169.254/latest/meta-data/", "http://10.0.0.1/hook", "file:///etc/passwd"])
def test_sending_to_forbidden_urls_is_refused_before_connecting(connections, url):
    with pytest.raises(ssrf.UnsafeURL):
        post(url, allow_private=False)
    assert connections == []


def test_dns_rebinding_fails_because_the_address_is_checked_again_at_connect_time(monkeypatch, receiver, connections):
    lookups = resolving_to(monkeypatch, [PUBLIC_V4], ["127.0.0.1"])
    url = f"http://rebind.example.test:{receiver.port}/hook"
    ssrf.check_url(url, allow_private=False)  # when saved, the name pointed at a public address
    with pytest.raises(ssrf.UnsafeURL, match="loopback"):
        post(url, allow_private=False)  # when sending, it points at loopback
    assert lookups == ["rebind.example.test", "rebind.example.test"]
    assert connections == []
    assert receiver.requests == []


def test_the_connection_goes_to_the_checked_address_without_a_second_lookup(monkeypatch, receiver, connections):
    lookups = resolving_to(monkeypatch, ["127.0.0.1"], [PUBLIC_V4])  # a second lookup would get a different answer
    reply = post(f"http://pinned.example.test:{receiver.port}/hook", allow_private=True)
    assert reply.status_code == 200
    assert lookups == ["pinned.example.test"]
    assert connections == [("127.0.0.1", receiver.port)]
    assert receiver.requests[0].headers["host"] == f"pinned.example.test:{receiver.port}"


def test_redirects_are_reported_and_not_followed(receiver, connections):
    receiver.reply(Reply(status=302, headers={"location": receiver.url("/landing")}))
    reply = post(receiver.url(), allow_private=True)
    assert (reply.status_code, reply.location) == (302, receiver.url("/landing"))
    assert receiver.paths() == ["/hook"]


def test_redirects_to_metadata_are_not_followed(receiver, connections):
    receiver.reply(Reply(status=307, headers={"location": "http://169.254.169.254/latest/meta-data/"}))
    reply = post(receiver.url(), allow_private=True)
    assert reply.status_code == 307
    assert connections == [("127.0.0.1", receiver.port)]


def test_only_the_first_bytes_of_a_large_reply_are_read(receiver):
    receiver.reply(Reply(body=b"x" * (1024 * 1024)))
    reply = post(receiver.url(), allow_private=True)
    assert len(reply.body) == ssrf.MAX_RESPONSE_BYTES


def test_a_receiver_that_does_not_answer_times_out(receiver):
    receiver.reply(Reply(delay=2.0))
    with pytest.raises(httpx.TimeoutException):
        post(receiver.url(), allow_private=True, timeout=0.3)


def test_a_receiver_that_drips_its_reply_hits_the_overall_deadline(receiver):
    receiver.reply(Reply(body=b"y" * 100, drip=0.05))  # every read is quick; the whole reply takes 5 s
    with pytest.raises(httpx.TimeoutException):
        post(receiver.url(), allow_private=True, timeout=0.5)


def test_a_receiver_that_drips_its_headers_hits_the_overall_deadline():
    """httpx times each read; a status line and then one header line every 0.2 s never trips that."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    stop = threading.Event()

    def drip():
        connection, _ = server.accept()
        with connection:
            connection.recv(65536)
            connection.sendall(b"HTTP/1.1 200 OK\r\n")
            for number in range(100):
                if stop.wait(0.2):
                    return
                connection.sendall(f"X-Drip-{number}: 1\r\n".encode())

    thread = threading.Thread(target=drip, daemon=True)
    thread.start()
    started = time.monotonic()
    try:
        with pytest.raises(httpx.TimeoutException):
            post(f"http://127.0.0.1:{server.getsockname()[1]}/hook", allow_private=True, timeout=1.0)
        assert time.monotonic() - started < 2.0
    finally:
        stop.set()
        thread.join(timeout=5)
        server.close()


def test_proxies_from_the_environment_are_ignored(monkeypatch, receiver, connections):
    for name in ("HTTP_PROXY", "http_proxy", "ALL_PROXY"):
        monkeypatch.setenv(name, "http://10.0.0.1:3128")
    assert post(receiver.url(), allow_private=True).status_code == 200
    assert connections == [("127.0.0.1", receiver.port)]
