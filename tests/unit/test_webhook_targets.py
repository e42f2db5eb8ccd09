"""Where a webhook may go: the URL check, the address classifier, the one resolution."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

import pytest

from anypod import webhook_targets as targets

REFUSED = {
    # IPv4
    "0.0.0.0": "unspecified",
    "0.1.2.3": "unspecified",
    "10.0.0.1": "private",
    "10.255.255.255": "private",
    "100.64.0.1": "CGNAT",
    "100.127.255.254": "CGNAT",
    "127.0.0.1": "loopback",
    "127.255.0.9": "loopback",
    "169.254.169.254": "link-local",  # cloud metadata
    "172.16.0.1": "private",
    "172.31.255.255": "private",
    "192.0.0.8": "reserved",
    "192.0.2.1": "documentation",
    "192.88.99.1": "reserved",
    "192.168.1.1": "private",
    "198.18.0.1": "benchmarking",
    "198.19.255.255": "benchmarking",
    "198.51.100.7": "documentation",
    "203.0.113.7": "documentation",
    "224.0.0.1": "multicast",
    "239.255.255.250": "multicast",
    "240.0.0.1": "reserved",
    "255.255.255.255": "reserved",
    # IPv6
    "::": "unspecified",
    "::1": "loopback",
    "::127.0.0.1": "reserved",  # IPv4-compatible (deprecated)
    "::8.8.8.8": "reserved",
    "100::1": "reserved",  # discard-only
    "fc00::1": "unique-local",
    "fd12:3456::1": "unique-local",
    "fe80::1": "link-local",
    "febf::1": "link-local",
    "fec0::1": "site-local",
    "ff02::1": "multicast",
    "ff0e::1": "multicast",
    "2001:db8::1": "documentation",
    "3fff::1": "documentation",
    "2001:2::1": "benchmarking",
    "2001:10::1": "ORCHID",
    "2001:20::1": "ORCHIDv2",
    "64:ff9b:1::1": "NAT64",
    "4000::1": "reserved",  # outside 2000::/3
    # IPv6 embeddings of refused IPv4 addresses
    "::ffff:127.0.0.1": "IPv4-mapped loopback",
    "::ffff:10.0.0.1": "IPv4-mapped private",
    "::ffff:169.254.169.254": "IPv4-mapped link-local",
    "::ffff:100.64.0.1": "IPv4-mapped shared address space (CGNAT)",
    "64:ff9b::7f00:1": "NAT64 loopback",
    "64:ff9b::a9fe:a9fe": "NAT64 link-local",
    "2002:7f00:1::1": "6to4 loopback",
    "2002:c0a8:101::": "6to4 private",
    "2002:a00:1::": "6to4 private",
    # Teredo: the client address is stored inverted; 2001:0:4136:e378 is a public server
    "2001:0:4136:e378:8000:63bf:80ff:fffe": "Teredo client loopback",  # client 127.0.0.1
    "2001:0:7f00:1::": "Teredo server loopback",
    "2001:0:4136:e378:8000:63bf:f5ff:fffe": "Teredo client private",  # client 10.0.0.1
}

ALLOWED = [
    "1.1.1.1",
    "8.8.8.8",
    "93.184.216.34",
    "100.63.255.255",  # just below CGNAT
    "100.128.0.0",  # just above
    "172.15.255.255",
    "172.32.0.0",
    "192.167.255.255",
    "198.17.255.255",
    "223.255.255.255",
    "2606:4700:4700::1111",
    "2a00:1450:4001:82b::200e",
    "::ffff:8.8.8.8",
    "64:ff9b::808:808",  # NAT64 of 8.8.8.8
    "2002:808:808::1",  # 6to4 of 8.8.8.8
    "2001:0:4136:e378:8000:63bf:f7f7:f7f7",  # Teredo client 8.8.8.8 via a public server
]


@pytest.mark.parametrize(("address", "why"), sorted(REFUSED.items()))
def test_refused_addresses_say_why(address: str, why: str) -> None:
    reason = targets.refusal(ipaddress.ip_address(address))
    assert reason is not None and why in reason, reason


@pytest.mark.parametrize("address", ALLOWED)
def test_public_addresses_are_allowed(address: str) -> None:
    assert targets.refusal(ipaddress.ip_address(address)) is None


def test_every_python_non_global_address_is_refused() -> None:
    """Cross-check against the standard library's own tables (which differ by version): what
    it calls non-global we refuse too (its 2001::/23 verdict covers Teredo as a whole)."""
    samples = [n.network_address for n in ipaddress.IPv4Network("0.0.0.0/0").subnets(8)]
    samples += [ipaddress.IPv4Address(a) for a in REFUSED if "." in a and ":" not in a]
    for ip in samples:
        if not ip.is_global or ip.is_multicast:
            assert targets.refusal(ip), ip


# --- URLs --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "http://hook.example/cb",
        "https://hook.example:8443/a/b?x=1&y=%20#frag",
        "http://hook.example./cb",
        "http://93.184.216.34/",
        "http://[2606:4700::1]:8080/",
        "http://bücher.example/",
        "http://my_service.internal/x",
        "HTTPS://HOOK.EXAMPLE/",
    ],
)
def test_usable_urls_pass(url: str) -> None:
    assert targets.check_url(url) == url


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("http://a.example/x\ny", "control"),
        ("http://a.example/\r\nX-Injected: 1", "control"),
        ("http://a.example/\x00", "NUL"),
        ("http://a.example/\x7f", "control"),
        ("http://a.example/\x85", "control"),  # C1
        ("http://a.example/\u202e", "control"),  # bidi override (format character)
        ("http://a.example/\u200b", "control"),  # zero width space
        ("http://a b.example/", "whitespace"),
        ("http://a.example/b c", "whitespace"),
        ("http://a.example/\u3000", "whitespace"),
        ("http://a.example/\u2028", "whitespace"),
        ("http://a.example\\@evil.example/", "backslash"),
        ("http://user@a.example/", "user info"),
        ("http://user:pw@a.example/", "user info"),
        ("http://a.example@evil.example/", "user info"),
        ("http://a.example%40evil.example/", "host name"),
        ("http:///x", "host"),
        ("http://:80/", "host"),
        ("http:/a.example/", "host"),
        ("http:a.example", "host"),
        ("ftp://a.example/", "http"),
        ("file:///etc/passwd", "http"),
        ("javascript:alert(1)", "http"),
        ("gopher://a.example:70/", "http"),
        ("//a.example/", "http"),
        ("http://a.example:0/", "port"),
        ("http://a.example:/", "port"),
        ("http://a.example:65536/", "port"),
        ("http://a.example:99999/", "port"),
        ("http://a.example:8x/", "port"),
        ("http://a.example:-1/", "port"),
        ("http://a.example:\u0661\u0662/", "port"),  # Arabic-Indic digits
        ("http://[::1", "IPv6"),
        ("http://[zz]/", "IPv6"),
        ("http://[fe80::1%25eth0]/", "zone"),
        ("http://a..b/", "host name"),
        ("http://-a.example/", "host name"),
        ("http://a-.example/", "host name"),
        ("http://" + "a" * 64 + ".example/", "host name"),
        ("http://" + "a." * 127 + "example/", "host name"),
        ("http://127.1/", "dotted-quad"),
        ("http://0x7f.1/", "dotted-quad"),
        ("http://2130706433/", "dotted-quad"),
        ("http://0177.0.0.1/", "IPv4"),
        ("http://a.example/" + "x" * 2048, "2048"),
    ],
)
def test_unusable_urls_are_refused_saying_why(url: str, says: str) -> None:
    with pytest.raises(ValueError, match=says):
        targets.check_url(url)


def test_parse_gives_the_ascii_host_and_port() -> None:
    target = targets.parse("https://Bücher.example/cb")
    assert (target.host, target.port, target.literal) == ("xn--bcher-kva.example", 443, None)
    assert targets.parse("http://[::1]:81/").literal == ipaddress.ip_address("::1")
    assert targets.parse("http://h.example/").port == 80


# --- resolution: once, checked, and what is connected to -----------------------------------------


class Resolver:
    """Answers from a script, one answer per call, and counts the calls."""

    def __init__(self, *answers: Sequence[str] | Exception) -> None:
        self.answers = list(answers)
        self.calls: list[tuple[str, int]] = []

    async def __call__(self, host: str, port: int) -> Sequence[str]:
        self.calls.append((host, port))
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer


async def test_a_name_resolving_to_any_refused_address_is_refused() -> None:
    resolver = Resolver(["93.184.216.34", "10.0.0.5"])
    target = targets.parse("http://mixed.example/")
    with pytest.raises(targets.Refused, match=r"10\.0\.0\.5, a private address"):
        await targets.resolve(target, resolver, allow_private=False)
    assert resolver.calls == [("mixed.example", 80)]


async def test_a_name_that_does_not_resolve_is_not_sent_to() -> None:
    target = targets.parse("https://nowhere.example/")
    with pytest.raises(targets.Unresolved):
        await targets.resolve(target, Resolver(OSError("NXDOMAIN")), allow_private=False)
    with pytest.raises(targets.Unresolved):
        await targets.resolve(target, Resolver([]), allow_private=False)
    with pytest.raises(targets.Unresolved):
        await targets.resolve(target, Resolver(["not-an-ip"]), allow_private=False)


async def test_ip_literals_are_not_resolved_and_private_ones_are_allowed_in_development() -> None:
    resolver = Resolver()
    loopback = targets.parse("http://127.0.0.1:9/")
    with pytest.raises(targets.Refused, match="loopback"):
        await targets.resolve(loopback, resolver, allow_private=False)
    found = await targets.resolve(loopback, resolver, allow_private=True)
    assert found == [ipaddress.ip_address("127.0.0.1")] and resolver.calls == []


async def test_the_system_resolver_resolves_localhost() -> None:
    found = await targets.system_resolver("localhost", 80)
    assert found and all(ipaddress.ip_address(a).is_loopback for a in found)


def test_the_request_goes_to_the_ip_and_names_the_host() -> None:
    target = targets.parse("https://hook.example:8443/cb?x=1#frag")
    request = targets.addressed(target, ipaddress.ip_address("2606:4700::1"))
    assert str(request.url) == "https://[2606:4700::1]:8443/cb?x=1"
    assert request.headers == {"Host": "hook.example:8443"}
    assert request.extensions == {"sni_hostname": "hook.example"}
    plain = targets.addressed(
        targets.parse("http://hook.example/"), ipaddress.ip_address("1.2.3.4")
    )
    assert str(plain.url) == "http://1.2.3.4/" and plain.headers == {"Host": "hook.example"}
    assert plain.extensions == {}
