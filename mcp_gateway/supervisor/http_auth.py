"""Who may talk to the HTTP transport: bearer tokens, Host and Origin rules (DNS rebinding).

Pure functions and small classes, no I/O, so they are unit-testable and the ASGI layer in
`http.py` stays thin.

- Tokens: only SHA-256 hashes live in the config. The presented token is hashed and compared
  with *every* configured hash with `hmac.compare_digest` (no early exit), so neither the
  position of a match nor a near miss shows in the timing.
- Host: the bound address (any port), the loopback names when bound to loopback, IP literals
  when bound to a wildcard address (a DNS-rebinding attack needs the attacker's *name* in the
  Host header), plus `server.http.allowed_hosts`. Anything else: 421 Misdirected Request.
- Origin: absent (non-browser clients) is fine; otherwise it must be in
  `server.http.allowed_origins`, or a loopback origin when bound to loopback. Else 403.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
from dataclasses import dataclass

from mcp_gateway.config import HttpSettings

LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
WILDCARD_HOSTS = frozenset({"", "0.0.0.0", "::", "[::]", "*"})
# A bearer token longer than this is refused without being hashed.
MAX_TOKEN_CHARS = 4096


def _strip_brackets(host: str) -> str:
    return host[1:-1] if host.startswith("[") and host.endswith("]") else host


def is_loopback_host(host: str) -> bool:
    h = _strip_brackets(host.strip().lower())
    if h in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(h).is_loopback
    except ValueError:
        return False


def is_wildcard_host(host: str) -> bool:
    return host.strip().lower() in WILDCARD_HOSTS


def _is_ip_literal(name: str) -> bool:
    try:
        ipaddress.ip_address(_strip_brackets(name))
        return True
    except ValueError:
        return False


def split_host_port(value: str) -> tuple[str, str | None] | None:
    """'name:port' / '[v6]:port' / 'name' -> (lowercase name without brackets, port or None).

    None for a value that is not a plausible Host header."""
    value = value.strip().lower()
    if not value or any(c in value for c in " /\\@?#\t\r\n"):
        return None
    if value.startswith("["):
        end = value.find("]")
        if end < 0:
            return None
        name, rest = value[1:end], value[end + 1:]
        if rest and not rest.startswith(":"):
            return None
        port = rest[1:] if rest else None
    elif value.count(":") > 1:  # a bare IPv6 literal (not valid in Host, but be lenient in config)
        name, port = value, None
    else:
        name, _, port_s = value.partition(":")
        port = port_s if ":" in value else None
    if port is not None and port != "*" and not (port.isdigit() and 0 < int(port) < 65536):
        return None
    if name.endswith("."):
        name = name[:-1]
    return (name, port) if name else None


# --- bearer tokens ------------------------------------------------------------------------


class TokenTable:
    """Constant-time lookup of an actor by bearer token."""

    def __init__(self, settings: HttpSettings) -> None:
        self._entries = [(bytes.fromhex(t.sha256.lower()), t.actor) for t in settings.auth.bearer_tokens]

    @property
    def enabled(self) -> bool:
        return bool(self._entries)

    def actor_for(self, token: str) -> str | None:
        if len(token) > MAX_TOKEN_CHARS:
            return None
        try:  # ASGI header values are latin-1 decoded bytes: hash the bytes that were sent
            raw = token.encode("latin-1")
        except UnicodeEncodeError:
            raw = token.encode("utf-8", "surrogatepass")
        digest = hashlib.sha256(raw).digest()
        found: str | None = None
        for expected, actor in self._entries:  # every entry, always: no early exit
            if hmac.compare_digest(digest, expected) and found is None:
                found = actor
        return found


def bearer_token(authorization: str | None) -> str | None:
    """The token of an `Authorization: Bearer <token>` header (scheme case-insensitive)."""
    if not authorization:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        return None
    return token


# --- Host / Origin ------------------------------------------------------------------------


@dataclass(frozen=True)
class _HostRule:
    name: str
    port: str | None  # None or "*": any port

    def matches(self, name: str, port: str | None) -> bool:
        if name != self.name:
            return False
        return self.port in (None, "*") or port == self.port


class OriginPolicy:
    """Host and Origin checks against DNS rebinding and cross-site browser requests."""

    def __init__(self, settings: HttpSettings) -> None:
        self.loopback = is_loopback_host(settings.host)
        self.wildcard = is_wildcard_host(settings.host)
        rules: list[_HostRule] = []
        if self.loopback:
            rules += [_HostRule(n, None) for n in LOOPBACK_NAMES]
        if not self.wildcard:
            bound = split_host_port(settings.host)
            if bound is not None:
                rules.append(_HostRule(bound[0], None))
        for entry in settings.allowed_hosts:
            parsed = split_host_port(entry)
            if parsed is None:
                raise ValueError(f"server.http.allowed_hosts entry {entry!r} is not a host[:port]")
            rules.append(_HostRule(*parsed))
        self._host_rules = rules
        self._origins: set[str] = set()
        self._origin_any_port: set[str] = set()
        for origin in settings.allowed_origins:
            norm = origin.strip().rstrip("/").lower()
            if norm.endswith(":*"):
                self._origin_any_port.add(norm[:-2])
            else:
                self._origins.add(norm)

    def host_allowed(self, host: str | None) -> bool:
        if host is None:
            return False
        parsed = split_host_port(host)
        if parsed is None:
            return False
        name, port = parsed
        if port == "*":
            return False
        if any(rule.matches(name, port) for rule in self._host_rules):
            return True
        # Bound to every interface: a client that reached us by IP address is fine; a DNS
        # name must be listed (that is what a rebinding attack would present).
        return self.wildcard and _is_ip_literal(name)

    def origin_allowed(self, origin: str | None) -> bool:
        if origin is None:
            return True  # not a browser (or a same-origin GET, which browsers do not mark)
        norm = origin.strip().rstrip("/").lower()
        if norm in self._origins:
            return True
        scheme, sep, rest = norm.partition("://")
        if not sep or scheme not in ("http", "https"):
            return False
        parsed = split_host_port(rest)
        if parsed is None:
            return False
        name, port = parsed
        base = f"{scheme}://{'[' + name + ']' if ':' in name else name}"
        if base in self._origin_any_port and port is not None:
            return True
        return self.loopback and name in LOOPBACK_NAMES
