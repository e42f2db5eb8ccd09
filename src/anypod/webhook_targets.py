"""Where a webhook may go: the URL check run at submit, the address classifier, and the one
resolution whose checked address the delivery then connects to.

A submitted URL is checked in full before the job is accepted (:func:`check_url`): http(s)
only, no user info, a real host name or IP literal, a port in range, no whitespace, control,
format or backslash characters. At delivery the name is resolved once (:func:`resolve`, with a
resolver that tests inject), every address is classified (:func:`refusal`), and the request is
sent to the checked IP with the name kept as ``Host`` and TLS server name (:func:`addressed`):
a second lookup that could answer differently (DNS rebinding) never happens. Private,
loopback, link-local, reserved, multicast, CGNAT, documentation and IPv6 embeddings of such
IPv4 addresses are refused unless private targets are allowed (development mode).
"""

from __future__ import annotations

import asyncio
import dataclasses
import ipaddress
import re
import socket
import ssl
import unicodedata
from collections.abc import Awaitable, Callable, Sequence
from urllib.parse import SplitResult, urlsplit

import httpx

MAX_URL_LENGTH = 2048
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], Awaitable[Sequence[str]]]
"""``(host, port) -> IP address strings``; :func:`system_resolver` unless a test injects one."""


class Refused(Exception):
    """The target may never be sent to (a refused address): give up at once, no retries."""


class Unresolved(Exception):
    """The name did not resolve now: nothing is sent; the attempt fails and may be retried."""


@dataclasses.dataclass(frozen=True, kw_only=True)
class Target:
    url: httpx.URL
    host: str  #: ASCII (IDNA) name, or the IP literal without brackets
    port: int
    literal: IPAddress | None  #: the host, when it is an IP address


# --- the URL, checked at submit and again before a delivery ----------------------------------


def check_url(url: str) -> str:
    """``url`` if a webhook may be posted to it, else ValueError saying why."""
    parse(url)
    return url


def parse(url: str) -> Target:
    if len(url) > MAX_URL_LENGTH:
        raise ValueError(f"must be at most {MAX_URL_LENGTH} characters")
    for char in url:
        _check_char(char)
    parts = urlsplit(url)  # ValueError for a bad IPv6 host ("http://[::1")
    if parts.scheme not in ("http", "https"):
        raise ValueError("must be an http or https URL")
    if "@" in parts.netloc:
        raise ValueError("must not carry user info (user@host)")
    if not parts.hostname:
        raise ValueError("must name a host")
    port = _port(parts)
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL as exc:
        raise ValueError(f"not a usable URL: {exc}") from None
    literal = _literal(parts)
    host = str(literal) if literal else _dns_name(parsed.raw_host.decode("ascii"))
    return Target(url=parsed, host=host, port=port, literal=literal)


def _check_char(char: str) -> None:
    if char == "\x00":
        raise ValueError("must not contain a NUL character")
    if char == "\\":
        raise ValueError("must not contain a backslash")
    category = unicodedata.category(char)
    if category in ("Cc", "Cf", "Cs"):
        raise ValueError(f"must not contain control characters (U+{ord(char):04X})")
    if char.isspace() or category in ("Zs", "Zl", "Zp"):
        raise ValueError(f"must not contain whitespace (U+{ord(char):04X})")


def _port(parts: SplitResult) -> int:
    authority = parts.netloc.rpartition("]")[2] if "[" in parts.netloc else parts.netloc
    if ":" not in authority:
        return 443 if parts.scheme == "https" else 80
    text = authority.rpartition(":")[2]
    if not re.fullmatch(r"[0-9]{1,5}", text) or not 0 < int(text) < 65536:
        raise ValueError(f"port must be a number from 1 to 65535, not {text!r}")
    return int(text)


def _literal(parts: SplitResult) -> IPAddress | None:
    host = parts.hostname or ""
    if "[" in parts.netloc:
        if "%" in host:
            raise ValueError("must not carry an IPv6 zone (%...)")
        return ipaddress.IPv6Address(host)  # urlsplit has already refused a malformed one
    try:
        return ipaddress.IPv4Address(host)  # dotted quad only: "127.1", "0x7f.1" are not
    except ValueError:
        return None


_LABEL = re.compile(r"^(?!-)[a-z0-9_-]{1,63}(?<!-)$")
_NUMERIC = re.compile(r"^(?:[0-9]+|0x[0-9a-f]*)$")


def _dns_name(host: str) -> str:
    name = host.lower().removesuffix(".")
    labels = name.split(".")
    if len(name) > 253 or not all(_LABEL.match(label) for label in labels):
        raise ValueError(f"host {host!r} is not a valid host name")
    if _NUMERIC.match(labels[-1]):  # "127.1", "0x7f.1", "2130706433": IPv4 in disguise
        raise ValueError(f"host {host!r} is neither a host name nor a dotted-quad IPv4 address")
    return name


# --- addresses ---------------------------------------------------------------------------------


Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def _nets(*specs: tuple[str, str]) -> list[tuple[Network, str]]:
    return [(ipaddress.ip_network(net), why) for net, why in specs]


_REFUSED_V4 = _nets(
    ("0.0.0.0/8", "unspecified ('this network')"),
    ("10.0.0.0/8", "private"),
    ("100.64.0.0/10", "shared address space (CGNAT)"),
    ("127.0.0.0/8", "loopback"),
    ("169.254.0.0/16", "link-local"),
    ("172.16.0.0/12", "private"),
    ("192.0.0.0/24", "reserved (IETF protocol assignments)"),
    ("192.0.2.0/24", "documentation"),
    ("192.88.99.0/24", "reserved (6to4 relay anycast)"),
    ("192.168.0.0/16", "private"),
    ("198.18.0.0/15", "reserved (benchmarking)"),
    ("198.51.100.0/24", "documentation"),
    ("203.0.113.0/24", "documentation"),
    ("224.0.0.0/4", "multicast"),
    ("240.0.0.0/4", "reserved"),  # includes the broadcast address
)
_REFUSED_V6 = _nets(
    ("::/128", "unspecified"),
    ("::1/128", "loopback"),
    ("64:ff9b:1::/48", "local-use NAT64"),
    ("fc00::/7", "unique-local"),
    ("fe80::/10", "link-local"),
    ("fec0::/10", "site-local"),
    ("ff00::/8", "multicast"),
    ("2001:2::/48", "reserved (benchmarking)"),
    ("2001:10::/28", "reserved (ORCHID)"),
    ("2001:20::/28", "reserved (ORCHIDv2)"),
    ("2001:db8::/32", "documentation"),
    ("3fff::/20", "documentation"),
)
_GLOBAL_UNICAST = ipaddress.IPv6Network("2000::/3")
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_SIX_TO_FOUR = ipaddress.IPv6Network("2002::/16")
_TEREDO = ipaddress.IPv6Network("2001::/32")


def refusal(ip: IPAddress) -> str | None:
    """Why a webhook may not be sent to ``ip`` (None: it may)."""
    if isinstance(ip, ipaddress.IPv4Address):
        return next((why for net, why in _REFUSED_V4 if ip in net), None)
    for embedded, how in _embedded(ip):
        why = refusal(embedded)
        if why:
            return f"{how} {why}"
    if ip.ipv4_mapped or ip in _NAT64:
        return None  # a public IPv4 address, reached over IPv6
    found = next((why for net, why in _REFUSED_V6 if ip in net), None)
    if found is None and ip not in _GLOBAL_UNICAST:
        return "reserved"  # outside 2000::/3 (IPv4-compatible ::/96, 100::/64, unassigned)
    return found


def _embedded(ip: ipaddress.IPv6Address) -> list[tuple[ipaddress.IPv4Address, str]]:
    """The IPv4 addresses an IPv6 address stands for (mapped, NAT64, 6to4, Teredo)."""
    low32 = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    if ip.ipv4_mapped:
        return [(ip.ipv4_mapped, "IPv4-mapped")]
    if ip in _NAT64:
        return [(low32, "NAT64")]
    if ip.sixtofour:
        return [(ip.sixtofour, "6to4")]
    if ip.teredo:
        server, client = ip.teredo
        return [(server, "Teredo server"), (client, "Teredo client")]
    return []


# --- resolution and sending -------------------------------------------------------------------


async def system_resolver(host: str, port: int) -> list[str]:
    infos = await asyncio.get_running_loop().getaddrinfo(
        host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
    )
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


async def resolve(target: Target, resolver: Resolver, *, allow_private: bool) -> list[IPAddress]:
    """The addresses to connect to, each checked; :class:`Refused` if any is refused (a name
    that mixes public and private answers is not sent to), :class:`Unresolved` if none."""
    if target.literal is not None:
        found: list[IPAddress] = [target.literal]
    else:
        found = await _lookup(target, resolver)
    for ip in found if not allow_private else ():
        why = refusal(ip)
        if why:
            raise Refused(f"{target.host} resolves to {ip}, a {why} address")
    return found


async def _lookup(target: Target, resolver: Resolver) -> list[IPAddress]:
    try:
        answers = await resolver(target.host, target.port)
        found = [ipaddress.ip_address(a.partition("%")[0]) for a in answers]
    except (OSError, UnicodeError, ValueError) as exc:
        raise Unresolved(f"{target.host} did not resolve: {exc}") from None
    if not found:
        raise Unresolved(f"{target.host} did not resolve")
    return found


@dataclasses.dataclass(frozen=True, kw_only=True)
class Addressed:
    """A request to ``ip`` that names the target: ``Host`` and TLS SNI stay the name."""

    url: httpx.URL
    headers: dict[str, str]
    extensions: dict[str, str]


def addressed(target: Target, ip: IPAddress) -> Addressed:
    extensions = {"sni_hostname": target.host} if target.url.scheme == "https" else {}
    return Addressed(
        url=target.url.copy_with(host=str(ip), fragment=None),
        headers={"Host": target.url.netloc.decode("ascii")},
        extensions=extensions,
    )


def http_client(
    *, timeout: float, connections: int, verify: ssl.SSLContext | bool = True
) -> httpx.AsyncClient:
    """A client for webhooks: no pooled connection is reused (one to an IP may carry another
    name's TLS session), no proxy from the environment (it would connect elsewhere), no
    redirects."""
    return httpx.AsyncClient(
        timeout=timeout,
        limits=httpx.Limits(max_connections=connections, max_keepalive_connections=0),
        trust_env=False,
        follow_redirects=False,
        verify=verify,
    )
