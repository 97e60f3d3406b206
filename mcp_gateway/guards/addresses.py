"""Which IP addresses web.fetch may connect to: an explicit table, not `ipaddress.is_global`.

The table is written out by hand so that a Python upgrade never silently changes what is
reachable, and so that every refusal names the rule that caused it.

An IPv6 address that carries an IPv4 address (IPv4-mapped, IPv4-translated,
IPv4-compatible, NAT64, 6to4, Teredo) reaches that IPv4 host, through the kernel or through
a translator or relay: it is judged *only* as the IPv4 address it carries, against the IPv4
table and the IPv4 networks of `allow_internal_cidrs`, metadata first. An IPv6 network in
`allow_internal_cidrs` (even "::/0") never opens one.

`allow_internal_cidrs` (config) opens internal ranges explicitly; cloud metadata addresses
and the unspecified addresses (which Linux connects to the local host) stay blocked whatever
it says.
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Iterable
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network
from typing import NamedTuple

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
    (_V4("255.255.255.255/32"), "limited broadcast"),
    (_V4("240.0.0.0/4"), "reserved"),
)

BLOCKED_V6: tuple[tuple[IPv6Network, str], ...] = (
    (_V6("::/128"), "unspecified"),
    (_V6("::1/128"), "loopback"),
    (_V6("100::/64"), "discard-only"),
    (_V6("2001::/23"), "IETF protocol assignments"),
    (_V6("2001:db8::/32"), "documentation"),
    (_V6("3fff::/20"), "documentation"),
    (_V6("5f00::/16"), "SRv6 SIDs"),
    (_V6("fc00::/7"), "unique local"),
    (_V6("fe80::/10"), "link-local"),
    (_V6("fec0::/10"), "site-local (deprecated)"),
    (_V6("ff00::/8"), "multicast"),
)

# Only 2000::/3 is global unicast today; everything else outside the forms that carry an
# IPv4 address is unallocated or special.
GLOBAL_UNICAST_V6 = _V6("2000::/3")
MAPPED = _V6("::ffff:0:0/96")
TRANSLATED = _V6("::ffff:0:0:0/96")    # IPv4-translated (SIIT, RFC 2765)
COMPATIBLE = _V6("::/96")
NAT64 = _V6("64:ff9b::/96")
NAT64_LOCAL = _V6("64:ff9b:1::/48")    # RFC 8215; the operator picks the embedding length
SIX_TO_FOUR = _V6("2002::/16")
TEREDO = _V6("2001::/32")

# Forms whose only meaning is the IPv4 address they carry: not reachable as IPv6 at all.
# (Teredo, NAT64 and 6to4 addresses are routed as IPv6 towards a relay or translator, which
# then talks to the embedded IPv4 host.)
DEPRECATED_FORMS = frozenset({"IPv4-compatible ::/96", "Teredo 2001::/32"})

# Never opened by allow_internal_cidrs: Linux connects 0.0.0.0 and :: to the local host.
UNSPECIFIED: frozenset[IPAddress] = frozenset({IPv4Address("0.0.0.0"), IPv6Address("::")})

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


# Rules no allow_internal_cidrs entry lifts: not unicast hosts at all.
NEVER_OPENED = frozenset({"multicast", "limited broadcast"})
LOOPBACK_NETS = {4: _V4("127.0.0.0/8"), 6: _V6("::1/128")}


def _opened(ip: IPAddress, rule: str, nets: Iterable[IPNetwork]) -> bool:
    """Whether allow_internal_cidrs lifts `rule` for `ip`.

    An IPv4 address is only ever opened by an IPv4 network, an IPv6 one by an IPv6 network.
    Loopback is opened only by a network inside the loopback range (127.0.0.1/32, ::1/128):
    a wide entry ("0.0.0.0/0", "::/0") meant for internal networks never exposes the
    gateway host's own services.
    """
    if rule in NEVER_OPENED:
        return False
    loopback = LOOPBACK_NETS[ip.version] if rule == "loopback" else None
    return any(ip.version == n.version and ip in n
               and (loopback is None or n.subnet_of(loopback))  # type: ignore[arg-type]
               for n in nets)


class Refusal(NamedTuple):
    rule: str    # the rule's name, safe to tell anyone ("private", "cloud metadata")
    detail: str  # with the network and address, for whoever sent the address or the operator


def _table_rule(ip: IPAddress) -> Refusal | None:
    table = BLOCKED_V4 if isinstance(ip, IPv4Address) else BLOCKED_V6
    for net, name in table:
        if ip in net:
            return Refusal(name, f"{name} {net}")
    if isinstance(ip, IPv6Address) and ip not in GLOBAL_UNICAST_V6:
        return Refusal("not IPv6 global unicast", "not IPv6 global unicast (outside 2000::/3)")
    return None


def embedded_ipv4(ip: IPv6Address) -> tuple[str, list[IPv4Address]] | None:
    """(form, IPv4 addresses) for an IPv6 address that carries IPv4, or None for a native one.

    Local-use NAT64 (64:ff9b:1::/48) may embed at /48, /56, /64 or /96 (RFC 6052): which one
    depends on the translator's configuration, unknown here, so only the /96 form with the
    bits between prefix and address all zero is taken as an IPv4 address (every other
    reading of it is in 0.0.0.0/8); any other address in that range is refused whole.
    """
    n = int(ip)
    low = IPv4Address(n & 0xFFFFFFFF)
    if ip in MAPPED:
        return "IPv4-mapped ::ffff:0:0/96", [low]
    if ip in TRANSLATED:
        return "IPv4-translated ::ffff:0:0:0/96", [low]
    if ip in COMPATIBLE and n > 1:  # :: and ::1 are native IPv6
        return "IPv4-compatible ::/96", [low]
    if ip in NAT64:
        return "NAT64 64:ff9b::/96", [low]
    if ip in NAT64_LOCAL:
        middle = (n >> 32) & ((1 << 48) - 1)
        return "local-use NAT64 64:ff9b:1::/48", ([low] if middle == 0 else [])
    if ip in SIX_TO_FOUR:
        return "6to4 2002::/16", [IPv4Address((n >> 80) & 0xFFFFFFFF)]
    if ip in TEREDO:
        return "Teredo 2001::/32", [IPv4Address((n >> 64) & 0xFFFFFFFF), IPv4Address(~n & 0xFFFFFFFF)]
    return None


def parse_ip(value: str | IPAddress) -> IPAddress:
    if isinstance(value, IPv4Address | IPv6Address):
        return value
    return ipaddress.ip_address(value)


def _refusal_direct(addr: IPAddress, nets: tuple[IPNetwork, ...]) -> Refusal | None:
    """The rules for an address that carries no other address (IPv4, or plain IPv6)."""
    if addr in METADATA_ADDRESSES:
        return Refusal("cloud metadata", f"cloud metadata address {addr}; never allowed")
    if addr in UNSPECIFIED:
        return Refusal("unspecified", f"unspecified address {addr} (the local host); never allowed")
    rule = _table_rule(addr)
    return None if rule is None or _opened(addr, rule.rule, nets) else rule


def refusal(ip: str | IPAddress, allow_internal_cidrs: Iterable[str] = ()) -> Refusal | None:
    """Why connecting to `ip` is forbidden, or None if it is allowed.

    `ip` is a canonical address (an `ipaddress` object or the text of one, as a resolver
    returns it); odd spellings are the URL guard's business. A scoped IPv6 address
    (fe80::1%eth0) is always refused.
    """
    try:
        addr = parse_ip(ip)
    except ValueError:
        return Refusal("not an IP address", f"not an IP address: {str(ip)[:64]!r}")
    nets = _networks(tuple(allow_internal_cidrs))
    if isinstance(addr, IPv4Address):
        return _refusal_direct(addr, nets)
    if addr.scope_id:
        return Refusal("scoped IPv6 address", "scoped IPv6 address")
    carried = embedded_ipv4(addr)
    if carried is not None:
        form, v4s = carried
        name = form.split(" ", 1)[0] if not form.startswith("local-use") else "local-use NAT64"
        if not v4s:
            return Refusal(f"{name} with an unknown embedding",
                           f"{form} with an embedding other than /96 (the translator's reading is unknown)")
        # Metadata first, for every carried address, before any other rule.
        for v4 in v4s:
            if v4 in METADATA_ADDRESSES:
                return Refusal(f"cloud metadata (in {name})",
                               f"cloud metadata address {v4} (embedded in {form}); never allowed")
        for v4 in v4s:
            inner = _refusal_direct(v4, nets)
            if inner is not None:
                return Refusal(f"{inner.rule} (in {name})", f"{inner.detail} ({v4} embedded in {form})")
        if form in DEPRECATED_FORMS:
            return Refusal(f"{name} (deprecated)", f"{form} (deprecated; carries {', '.join(map(str, v4s))})")
        return None
    return _refusal_direct(addr, nets)


def classify(ip: str | IPAddress, allow_internal_cidrs: Iterable[str] = ()) -> str | None:
    """The detailed rule that forbids connecting to `ip` (e.g. 'loopback 127.0.0.0/8'), or None."""
    r = refusal(ip, allow_internal_cidrs)
    return None if r is None else r.detail
