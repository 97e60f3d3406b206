"""Which IP addresses web.fetch may connect to: an explicit table, not `ipaddress.is_global`.

The table is written out by hand so that a Python upgrade never silently changes what is
reachable, and so that every refusal names the rule that caused it. IPv6 forms that carry an
IPv4 address (IPv4-mapped, IPv4-compatible, NAT64, 6to4, Teredo) are unwrapped and the
embedded address is checked too.

`allow_internal_cidrs` (config) opens internal ranges explicitly; cloud metadata addresses
stay blocked whatever it says.
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Iterable
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network

IPAddress = IPv4Address | IPv6Address
IPNetwork = IPv4Network | IPv6Network

_V4 = IPv4Network
_V6 = IPv6Network

# (network, rule name). Order matters only for which name is reported first.
BLOCKED_V4: tuple[tuple[IPv4Network, str], ...] = (
    (_V4("0.0.0.0/8"), "this-network"),
    (_V4("10.0.0.0/8"), "private"),
    (_V4("100.64.0.0/10"), "carrier-grade NAT"),
    (_V4("127.0.0.0/8"), "loopback"),
    (_V4("169.254.0.0/16"), "link-local"),
    (_V4("172.16.0.0/12"), "private"),
    (_V4("192.0.0.0/24"), "IETF protocol assignments"),
    (_V4("192.0.2.0/24"), "documentation (TEST-NET-1)"),
    (_V4("192.88.99.0/24"), "6to4 relay anycast"),
    (_V4("192.168.0.0/16"), "private"),
    (_V4("198.18.0.0/15"), "benchmarking"),
    (_V4("198.51.100.0/24"), "documentation (TEST-NET-2)"),
    (_V4("203.0.113.0/24"), "documentation (TEST-NET-3)"),
    (_V4("224.0.0.0/4"), "multicast"),
    (_V4("240.0.0.0/4"), "reserved"),
    (_V4("255.255.255.255/32"), "limited broadcast"),
)

BLOCKED_V6: tuple[tuple[IPv6Network, str], ...] = (
    (_V6("::/128"), "unspecified"),
    (_V6("::1/128"), "loopback"),
    (_V6("::/96"), "IPv4-compatible (deprecated)"),
    (_V6("64:ff9b:1::/48"), "local-use NAT64"),
    (_V6("100::/64"), "discard-only"),
    (_V6("2001::/23"), "IETF protocol assignments (incl. Teredo)"),
    (_V6("2001:db8::/32"), "documentation"),
    (_V6("3fff::/20"), "documentation"),
    (_V6("5f00::/16"), "SRv6 SIDs"),
    (_V6("fc00::/7"), "unique local"),
    (_V6("fe80::/10"), "link-local"),
    (_V6("fec0::/10"), "site-local (deprecated)"),
    (_V6("ff00::/8"), "multicast"),
)

# Only 2000::/3 is global unicast today; everything else outside the forms that carry an
# IPv4 address (mapped ::ffff:0:0/96, NAT64 64:ff9b::/96) is unallocated or special.
GLOBAL_UNICAST_V6 = _V6("2000::/3")
MAPPED = _V6("::ffff:0:0/96")
NAT64 = _V6("64:ff9b::/96")
SIX_TO_FOUR = _V6("2002::/16")
TEREDO = _V6("2001::/32")

# Cloud instance metadata services: never reachable, whatever allow_internal_cidrs says.
METADATA_ADDRESSES: frozenset[IPAddress] = frozenset({
    IPv4Address("169.254.169.254"),  # AWS, GCP, Azure, OpenStack, Oracle, DigitalOcean...
    IPv4Address("169.254.170.2"),    # AWS ECS task credentials
    IPv4Address("100.100.100.200"),  # Alibaba Cloud
    IPv6Address("fd00:ec2::254"),    # AWS IMDS over IPv6
    IPv6Address("fd20:ce::254"),     # GCP metadata over IPv6
})

# Names of metadata services (and loopback names) refused before any lookup.
METADATA_NAMES: frozenset[str] = frozenset({
    "metadata.google.internal",
    "metadata.goog",
    "metadata",
    "instance-data",
    "instance-data.ec2.internal",
    "metadata.azure.internal",
})
LOOPBACK_NAMES: frozenset[str] = frozenset({
    "localhost",
    "localhost.localdomain",
    "ip6-localhost",
    "ip6-loopback",
})


def blocked_name(ascii_host: str) -> str | None:
    """The rule refusing a (lower-case ASCII, no trailing dot) host name, or None."""
    if ascii_host in METADATA_NAMES:
        return f"cloud metadata host name {ascii_host!r}"
    if ascii_host in LOOPBACK_NAMES or ascii_host.endswith(".localhost"):
        return f"loopback host name {ascii_host!r}"
    return None


@functools.lru_cache(maxsize=64)
def _networks(cidrs: tuple[str, ...]) -> tuple[IPNetwork, ...]:
    return tuple(ipaddress.ip_network(c, strict=False) for c in cidrs)


def _covered(ip: IPAddress, nets: Iterable[IPNetwork]) -> bool:
    return any(ip.version == n.version and ip in n for n in nets)


def _table_rule(ip: IPAddress) -> str | None:
    if isinstance(ip, IPv4Address):
        for net, name in BLOCKED_V4:
            if ip in net:
                return f"{name} {net}"
        return None
    for net, name in BLOCKED_V6:
        if ip in net:
            return f"{name} {net}"
    if ip not in GLOBAL_UNICAST_V6 and ip not in NAT64:
        return "not IPv6 global unicast (outside 2000::/3)"
    return None


def embedded_ipv4(ip: IPv6Address) -> list[tuple[IPv4Address, str]]:
    """IPv4 addresses an IPv6 address carries, with the form that carries them."""
    n = int(ip)
    out: list[tuple[IPv4Address, str]] = []
    if ip in MAPPED:
        out.append((IPv4Address(n & 0xFFFFFFFF), "IPv4-mapped ::ffff:0:0/96"))
    if ip in _V6("::/96") and n > 1:
        out.append((IPv4Address(n & 0xFFFFFFFF), "IPv4-compatible ::/96"))
    if ip in NAT64:
        out.append((IPv4Address(n & 0xFFFFFFFF), "NAT64 64:ff9b::/96"))
    if ip in SIX_TO_FOUR:
        out.append((IPv4Address((n >> 80) & 0xFFFFFFFF), "6to4 2002::/16"))
    if ip in TEREDO:
        out.append((IPv4Address((n >> 64) & 0xFFFFFFFF), "Teredo server 2001::/32"))
        out.append((IPv4Address(~n & 0xFFFFFFFF), "Teredo client 2001::/32"))
    return out


def parse_ip(value: str | IPAddress) -> IPAddress:
    if isinstance(value, IPv4Address | IPv6Address):
        return value
    return ipaddress.ip_address(value)


def classify(ip: str | IPAddress, allow_internal_cidrs: Iterable[str] = ()) -> str | None:
    """The rule that forbids connecting to `ip` (e.g. 'loopback 127.0.0.0/8'), or None if allowed.

    `ip` is a canonical address (an `ipaddress` object or the text of one, as getaddrinfo
    returns it); odd spellings are the URL guard's business. A scoped IPv6 address
    (fe80::1%eth0) is always refused.
    """
    try:
        addr = parse_ip(ip)
    except ValueError:
        return f"not an IP address: {str(ip)[:64]!r}"
    if isinstance(addr, IPv6Address) and addr.scope_id:
        return "scoped IPv6 address"
    nets = _networks(tuple(allow_internal_cidrs))

    if isinstance(addr, IPv6Address) and addr.ipv4_mapped is not None:
        # A mapped address *is* the IPv4 address to the kernel: judge that one.
        inner = classify(addr.ipv4_mapped, tuple(allow_internal_cidrs))
        if inner is not None and not _covered(addr, nets):
            return f"{inner} (embedded in IPv4-mapped ::ffff:0:0/96)"
        return None

    embedded = embedded_ipv4(addr) if isinstance(addr, IPv6Address) else []
    for candidate in (addr, *(v4 for v4, _ in embedded)):
        if candidate in METADATA_ADDRESSES:
            where = "" if candidate == addr else f" (embedded in {addr})"
            return f"cloud metadata address {candidate}{where}; never allowed"

    rule = _table_rule(addr)
    if rule is not None and not _covered(addr, nets):
        return rule
    for v4, form in embedded:
        inner_rule = _table_rule(v4)
        if inner_rule is not None and not (_covered(v4, nets) or _covered(addr, nets)):
            return f"{inner_rule} ({v4} embedded in {form})"
    return None
