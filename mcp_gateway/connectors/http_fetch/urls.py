"""The web.fetch URL guard: a strict parse, IDNA, IP literals in every spelling, the allowlist.

`check_url` is pure (no DNS, no I/O). The supervisor calls it for a fast, well-explained
denial; the fetch worker calls it again for every hop, and its network backend re-checks the
host, the port and every resolved address right before it connects (the guarantee).

The parser is deliberately narrower than WHATWG or RFC 3986: anything two parsers could read
differently (userinfo, backslashes, percent-encoded or odd characters in the host, missing
`//`, whitespace or control characters anywhere) is refused instead of interpreted. The URL
handed to the HTTP client is rebuilt from the parsed parts, so the client never sees the
caller's spelling of the authority.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address
from typing import Protocol

import idna

from mcp_gateway.guards import GuardDenied
from mcp_gateway.guards.addresses import IPAddress, blocked_name, classify

DEFAULT_PORTS = {"http": 80, "https": 443}
MAX_URL_LENGTH = 8192

_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*):")
_HOST_ASCII = re.compile(r"[a-z0-9._-]+")
_LABEL = re.compile(r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?")
_PORT = re.compile(r"[0-9]{1,5}")
_HEX = re.compile(r"0[xX][0-9a-fA-F]*")
_OCT = re.compile(r"0[0-7]*")
_DEC = re.compile(r"[1-9][0-9]*")
_NUMERIC_LAST_LABEL = re.compile(r"[0-9]+|0[xX][0-9a-fA-F]*")


class FetchRules(Protocol):
    """What the URL checks read of web.fetch's settings (settings.HttpFetchSettings is one): the
    settings validate their entries with this module's parsers, so this module does not import them."""

    @property
    def allowed_domains(self) -> Sequence[str]: ...
    @property
    def allow_internal_cidrs(self) -> Sequence[str]: ...
    @property
    def allowed_ports(self) -> Sequence[int]: ...


@dataclass(frozen=True, slots=True)
class ParsedTarget:
    scheme: str            # "http" | "https"
    host: str              # lower-case ASCII (punycode) name, or canonical IP text (no brackets)
    port: int              # effective port
    target: str            # path and query, starting with "/"
    ip: IPAddress | None   # set when the host is an IP literal
    url: str               # normalised URL rebuilt from the parts above (no fragment)

    @property
    def netloc(self) -> str:
        host = f"[{self.host}]" if isinstance(self.ip, IPv6Address) else self.host
        return host if self.port == DEFAULT_PORTS[self.scheme] else f"{host}:{self.port}"


# --- IPv4 in the spellings inet_aton (and WHATWG) accept ----------------------------------


def parse_ipv4_number(part: str) -> int | None:
    if _HEX.fullmatch(part):
        return int(part[2:] or "0", 16)
    if _OCT.fullmatch(part):
        return int(part, 8)
    if _DEC.fullmatch(part):
        return int(part, 10)
    return None


def parse_inet_aton(text: str) -> IPv4Address | None:
    """IPv4 address of `text` by inet_aton's rules (1-4 parts; hex 0x, octal 0, decimal), or None.

    `127.1`, `0x7f.1`, `0177.0.0.1`, `017700000001`, `2852039166` and `0` are all addresses.
    """
    parts = text.split(".")
    if not 1 <= len(parts) <= 4:
        return None
    nums = []
    for p in parts:
        if not p or len(p) > 40:
            return None
        n = parse_ipv4_number(p)
        if n is None:
            return None
        nums.append(n)
    *head, last = nums
    if any(n > 255 for n in head) or last >= 256 ** (5 - len(nums)):
        return None
    value = last
    for i, n in enumerate(head):
        value |= n << (8 * (3 - i))
    return IPv4Address(value)


def ends_in_number(host: str) -> bool:
    """WHATWG: a host whose last label is numeric must be an IPv4 address (or is invalid)."""
    last = host.rsplit(".", 1)[-1]
    return bool(_NUMERIC_LAST_LABEL.fullmatch(last))


# --- host names ---------------------------------------------------------------------------


# Scripts whose letters look like Latin ones: a label mixing two of them is a homograph trick
# (e.g. Cyrillic "е" in "еxample"). Such labels are refused even when allowed_domains is "*".
CONFUSABLE_SCRIPTS = frozenset({"LATIN", "CYRILLIC", "GREEK", "ARMENIAN", "CHEROKEE", "COPTIC"})


def mixed_scripts(label: str) -> list[str]:
    """The confusable scripts a label mixes (empty when it does not mix two of them)."""
    scripts = set()
    for ch in label:
        if unicodedata.category(ch).startswith("L"):
            script = unicodedata.name(ch, "?").split(" ", 1)[0]
            if script in CONFUSABLE_SCRIPTS:
                scripts.add(script)
    return sorted(scripts) if len(scripts) > 1 else []


def _to_ascii_host(raw: str) -> str:
    """Lower-case ASCII (punycode) form of a host name, UTS #46 mapped; GuardDenied if invalid."""
    host = raw
    if not host.isascii():
        try:
            host = idna.uts46_remap(host, std3_rules=False, transitional=False)
        except (idna.IDNAError, ValueError) as e:
            raise GuardDenied(f"host {raw!r} is not a valid internationalised domain name: {e}") from None
        if not host.isascii():
            labels = []
            for label in host.split("."):
                if label.isascii():
                    labels.append(label)
                    continue
                mixed = mixed_scripts(label)
                if mixed:
                    raise GuardDenied(
                        f"host {raw!r} mixes {' and '.join(mixed)} letters in one label (possible homograph)")
                try:
                    labels.append(idna.alabel(label).decode("ascii"))
                except (idna.IDNAError, UnicodeError, ValueError) as e:
                    raise GuardDenied(
                        f"host {raw!r} is not a valid internationalised domain name: {e}") from None
            host = ".".join(labels)
    host = host.lower()
    if host.endswith("."):
        host = host[:-1]
    if not host:
        raise GuardDenied("the URL has an empty host")
    if not _HOST_ASCII.fullmatch(host):
        bad = next(c for c in host if not _HOST_ASCII.fullmatch(c))
        raise GuardDenied(f"character {bad!r} is not allowed in a host name")
    return host


def _check_dns_name(host: str) -> None:
    if len(host) > 253:
        raise GuardDenied("host name longer than 253 characters")
    for label in host.split("."):
        if not _LABEL.fullmatch(label):
            raise GuardDenied(f"host name label {label!r} is not valid")
        if label.startswith("xn--"):
            try:
                idna.decode(label)
            except (idna.IDNAError, UnicodeError, ValueError):
                raise GuardDenied(f"host name label {label!r} is not valid punycode") from None


def parse_host(raw: str) -> tuple[str, IPAddress | None]:
    """(ASCII host, IP if it is an IP literal) for the host part of an authority."""
    if raw.startswith("["):
        if not raw.endswith("]"):
            raise GuardDenied("unterminated IPv6 literal in the host")
        inner = raw[1:-1]
        if not inner or not re.fullmatch(r"[0-9A-Fa-f:.]+", inner):
            raise GuardDenied(f"IPv6 literal {raw!r} is not valid (zone ids and IPvFuture are refused)")
        try:
            ip6 = IPv6Address(inner)
        except ValueError:
            raise GuardDenied(f"IPv6 literal {raw!r} is not valid") from None
        return str(ip6), ip6
    host = _to_ascii_host(raw)
    if ends_in_number(host):
        ip4 = parse_inet_aton(host)
        if ip4 is None:
            raise GuardDenied(f"host {raw!r} ends in a number but is not a valid IPv4 address")
        return str(ip4), ip4
    _check_dns_name(host)
    return host, None


# --- allowlist ----------------------------------------------------------------------------


@functools.lru_cache(maxsize=64)
def _allow_entries(entries: tuple[str, ...]) -> tuple[bool, frozenset[str], tuple[str, ...], frozenset[str]]:
    """(star, exact names, wildcard suffixes, IP literals) with names in ASCII form."""
    star = False
    exact: set[str] = set()
    suffixes: list[str] = []
    ips: set[str] = set()
    for entry in entries:
        e = entry.strip()
        if e == "*":
            star = True
            continue
        wildcard = e.startswith("*.")
        name = e[2:] if wildcard else e
        try:
            host, ip = parse_host(name if not (":" in name and not name.startswith("[")) else f"[{name}]")
        except GuardDenied:
            continue  # an entry that is not a valid host matches nothing
        if ip is not None:
            if not wildcard:
                ips.add(str(ip))
            continue
        if wildcard:
            suffixes.append("." + host)
        else:
            exact.add(host)
    return star, frozenset(exact), tuple(suffixes), frozenset(ips)


def host_allowed(host: str, ip: IPAddress | None, allowed_domains: Sequence[str]) -> bool:
    star, exact, suffixes, ips = _allow_entries(tuple(allowed_domains))
    if star:
        return True
    if ip is not None:
        return str(ip) in ips
    return host in exact or any(host.endswith(s) for s in suffixes)


def check_host(host: str, ip: IPAddress | None, port: int, settings: FetchRules) -> None:
    """Host-level rules shared by check_url and the worker's connect: names, literals, allowlist, port."""
    if ip is not None:
        reason = classify(ip, settings.allow_internal_cidrs)
        if reason is not None:
            raise GuardDenied(f"address {ip} is blocked: {reason}")
        if not host_allowed(host, ip, settings.allowed_domains):
            raise GuardDenied(f"IP address {ip} is not in allowed_domains (list it, or use \"*\")")
    else:
        reason = blocked_name(host)
        if reason is not None:
            raise GuardDenied(f"host {host!r} is blocked: {reason}")
        if not host_allowed(host, None, settings.allowed_domains):
            raise GuardDenied(f"host {host!r} is not in allowed_domains")
    if port not in settings.allowed_ports:
        raise GuardDenied(f"port {port} is not in allowed_ports {sorted(settings.allowed_ports)}")


# --- the URL ------------------------------------------------------------------------------


_INVISIBLE = frozenset({"Cc", "Cf", "Zs", "Zl", "Zp", "Cs", "Co"})


def check_characters(url: str) -> None:
    for i, ch in enumerate(url):
        o = ord(ch)
        if o < 0x21 or o == 0x7F or 0x80 <= o <= 0x9F:
            raise GuardDenied(f"control character or whitespace U+{o:04X} at position {i} of the URL")
        if ch == "\\":
            raise GuardDenied(f"backslash at position {i} of the URL")
        if o > 0x7F and (ch.isspace() or unicodedata.category(ch) in _INVISIBLE):
            raise GuardDenied(f"invisible or whitespace character U+{o:04X} at position {i} of the URL")


def check_url(url: str, settings: FetchRules) -> ParsedTarget:
    """Parse and check a web.fetch URL without any lookup; GuardDenied names the rule broken."""
    if not isinstance(url, str) or not url:
        raise GuardDenied("the URL is empty")
    if len(url) > MAX_URL_LENGTH:
        raise GuardDenied(f"the URL is longer than {MAX_URL_LENGTH} characters")
    check_characters(url)
    m = _SCHEME.match(url)
    if m is None:
        raise GuardDenied("the URL has no scheme (only http:// and https:// are allowed)")
    scheme = m.group(1).lower()
    if scheme not in DEFAULT_PORTS:
        raise GuardDenied(f"scheme {scheme!r} is not allowed (only http and https)")
    rest = url[m.end():]
    if not rest.startswith("//"):
        raise GuardDenied("the URL must have the form scheme://host/...")
    rest = rest[2:]
    end = len(rest)
    for sep in "/?#":
        i = rest.find(sep)
        if i != -1:
            end = min(end, i)
    authority, remainder = rest[:end], rest[end:]
    if "@" in authority:
        raise GuardDenied("credentials (userinfo '@') in the URL are not allowed")
    if "%" in authority:
        raise GuardDenied("percent-encoding in the host is not allowed")
    if not authority:
        raise GuardDenied("the URL has an empty host")

    if authority.startswith("["):
        close = authority.find("]")
        if close == -1:
            raise GuardDenied("unterminated IPv6 literal in the host")
        host_part, after = authority[: close + 1], authority[close + 1:]
        if after and not after.startswith(":"):
            raise GuardDenied("unexpected characters after the IPv6 literal")
        port_part = after[1:] if after else None
    else:
        if authority.count(":") > 1:
            raise GuardDenied("more than one ':' in the authority (IPv6 literals need brackets)")
        host_part, colon, port_part_s = authority.partition(":")
        port_part = port_part_s if colon else None
    if port_part:
        if not _PORT.fullmatch(port_part):
            raise GuardDenied(f"port {port_part[:16]!r} is not a number")
        port = int(port_part)
        if not 1 <= port <= 65535:
            raise GuardDenied(f"port {port} is out of range")
    else:
        port = DEFAULT_PORTS[scheme]

    host, ip = parse_host(host_part)
    check_host(host, ip, port, settings)

    target = remainder.split("#", 1)[0]
    if not target.startswith("/"):
        target = "/" + target
    parsed = ParsedTarget(scheme=scheme, host=host, port=port, target=target, ip=ip, url="")
    return ParsedTarget(scheme, host, port, target, ip, f"{scheme}://{parsed.netloc}{target}")


# --- request headers ----------------------------------------------------------------------

# What an agent may set by default: content negotiation, caching and conditional requests,
# ranges. Anything else is dropped (an allowlist: a new proxy-trust, client-IP or credential
# header is never sent just because nobody listed it). Operators extend it with
# `connectors.http_fetch.request_headers`, minus the names below, which are never sent.
DEFAULT_REQUEST_HEADERS = (
    "accept", "accept-language", "cache-control", "pragma", "if-match", "if-none-match",
    "if-modified-since", "if-unmodified-since", "if-range", "range",
)

# Never sent whatever the configuration says: credentials, hop-by-hop and framing headers,
# headers the gateway sets itself, and headers that claim a client address, a proxy hop or a
# client certificate towards the upstream.
NEVER_SENT = frozenset({
    "authorization", "proxy-authorization", "cookie", "cookie2", "set-cookie", "set-cookie2",
    "www-authenticate", "proxy-authenticate", "dpop",
    "connection", "keep-alive", "te", "trailer", "transfer-encoding", "upgrade", "host",
    "content-length", "expect", "http2-settings",
    "user-agent", "accept-encoding",
    "forwarded", "via", "x-real-ip", "x-client-ip", "client-ip", "x-remote-addr", "x-remote-ip",
    "x-originating-ip", "true-client-ip", "cf-connecting-ip", "x-cluster-client-ip", "fastly-client-ip",
    "x-original-host", "x-host", "x-original-url", "x-rewrite-url", "x-http-method-override",
    "x-http-method", "x-method-override",
})
NEVER_SENT_PREFIXES = ("proxy-", "x-forwarded-", "sec-", "x-envoy-", "x-amzn-", "x-goog-", "cf-",
                       "x-ssl-", "x-client-", "ssl-", "x-tls-")
# A name containing one of these (letter case and '_' vs '-' ignored) is credential-like.
CREDENTIAL_WORDS = ("auth", "token", "secret", "key", "passw", "session", "cookie", "credential",
                    "signature", "csrf", "xsrf", "jwt", "bearer", "cert", "dpop")


def header_never_sent(name: str) -> bool:
    """A header no configuration may allow (operators are told at config load)."""
    n = name.strip().lower().replace("_", "-")
    return (n in NEVER_SENT or n.startswith(NEVER_SENT_PREFIXES)
            or any(w in n for w in CREDENTIAL_WORDS))


def sanitize_headers(headers: dict[str, str], allowed: Iterable[str]) -> tuple[dict[str, str], list[str]]:
    """(headers to send, names dropped). GuardDenied for a value no HTTP server would read as sent.

    `allowed` is the configured allowlist (lower-case names); a name outside it is dropped,
    never an error: agents routinely add headers like User-Agent, and a dropped header cannot
    carry anything.
    """
    allow = frozenset(allowed)
    kept: dict[str, str] = {}
    dropped: list[str] = []
    for name, value in headers.items():
        if name.lower() not in allow or header_never_sent(name):
            dropped.append(name)
            continue
        if not isinstance(value, str) or not value.isascii() or any(
                (ord(c) < 0x20 and c != "\t") or c == "\x7f" for c in value):
            raise GuardDenied(f"header {name!r} has a value with control or non-ASCII characters")
        if value != value.strip(" \t"):
            # h11 refuses it only after the connection is open; say so before.
            raise GuardDenied(f"header {name!r} has a value with leading or trailing whitespace")
        kept[name] = value
    return kept, dropped
