"""The http_fetch connector: web.fetch (GET only) with SSRF protection.

Layers, outermost first: the supervisor's `check_url` (fast denial); here, `check_url` again
for the first URL and for every redirect hop; then the pinned network backend, which
re-checks host and port, resolves once, checks every address and connects only to a checked
one (see pinned_transport.py). Redirects are followed by hand, at most `max_redirects`.
Bodies are streamed and cut at `max_bytes`; every socket operation waits at most until the
call's deadline. See docs/WEB_FETCH.md.
"""

from __future__ import annotations

import base64
import codecs
import ctypes
import ctypes.util
import os
import pkgutil
import re
import socket
import ssl
import time
import zlib
from email.message import Message

import certifi
import httpcore
import httpx
import idna

from mcp_gateway.config import GatewayConfig, HttpFetchSettings
from mcp_gateway.guards import GuardDenied
from mcp_gateway.guards.urls import ParsedTarget, check_characters, check_url, sanitize_headers
from mcp_gateway.sandbox.profile import INET_FAMILIES, SandboxProfile
from mcp_gateway.tools.arguments import Args, FetchArgs
from mcp_gateway.workers.connector import CallLimits, Connector, ToolError
from mcp_gateway.workers.pinned_transport import (
    FetchBudget,
    PinnedBackend,
    PinnedTransport,
    Resolver,
    system_resolver,
)

_ABSOLUTE = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:")
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
CHUNK = 64 * 1024

RESOLVER_FILES = ("/etc/resolv.conf", "/etc/hosts", "/etc/nsswitch.conf", "/etc/gai.conf",
                  "/etc/host.conf")

TEXT_TYPES = frozenset({
    "application/json", "application/xml", "application/javascript", "application/ecmascript",
    "application/x-javascript", "application/xhtml+xml", "application/rss+xml", "application/atom+xml",
    "application/ld+json", "application/x-www-form-urlencoded", "application/yaml", "application/x-yaml",
    "application/toml", "application/graphql", "application/sql", "application/x-ndjson",
    "image/svg+xml",
})


def _nss_host_modules() -> list[str]:
    """Paths of libnss_*.so.2 modules glibc would dlopen for `hosts:` lookups (files/dns are built in)."""
    try:
        with open("/etc/nsswitch.conf", encoding="utf-8", errors="replace") as f:
            lines = f.read().splitlines()
    except OSError:
        return []
    services: list[str] = []
    for line in lines:
        line = line.split("#", 1)[0].strip()
        if line.startswith("hosts:"):
            for word in line[len("hosts:"):].split():
                if not word.startswith("[") and word not in ("files", "dns"):
                    services.append(word)
    paths = []
    for svc in services:
        for libdir in ("/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu", "/lib64", "/usr/lib64",
                       "/lib/aarch64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/lib", "/usr/lib"):
            p = os.path.join(libdir, f"libnss_{svc}.so.2")
            if os.path.exists(p):
                paths.append(os.path.realpath(p))
                break
    return paths


def is_text_type(media_type: str) -> bool:
    return (media_type.startswith("text/") or media_type in TEXT_TYPES
            or media_type.endswith("+json") or media_type.endswith("+xml"))


def parse_content_type(value: str | None) -> tuple[str, str | None]:
    if not value:
        return "", None
    msg = Message()
    msg["content-type"] = value
    media = msg.get_content_type().lower() if "/" in value else ""
    charset = msg.get_param("charset")
    if isinstance(charset, tuple):  # RFC 2231 form
        charset = charset[2]
    return media, (str(charset).strip().strip('"').lower() or None) if charset else None


def decode_text(body: bytes, charset: str | None) -> str:
    name = "utf-8"
    if charset:
        try:
            name = codecs.lookup(charset).name
        except (LookupError, ValueError):
            name = "utf-8"
    if name == "utf-8" and body.startswith(codecs.BOM_UTF8):
        name = "utf-8-sig"
    return body.decode(name, errors="replace")


class _BodyCap:
    """Accumulates a body, refusing (before storing) anything that would pass the cap."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.buf = bytearray()

    def add(self, data: bytes) -> None:
        if len(self.buf) + len(data) > self.cap:
            raise ToolError("RESULT_TOO_LARGE", f"the response body passes the cap of {self.cap} bytes "
                                                "(reading stopped there)")
        self.buf += data


class HttpFetchConnector(Connector):
    name = "http_fetch"

    def __init__(self, config: GatewayConfig, resolver: Resolver | None = None) -> None:
        super().__init__(config)
        self.settings: HttpFetchSettings = config.connectors.http_fetch
        # Injectable for tests: (ASCII host, port) -> address strings. Called once per connection.
        self.resolver: Resolver = resolver or system_resolver
        self._ssl_context: ssl.SSLContext | None = None
        self._nss_modules: list[str] = []
        self._preloaded: list[ctypes.CDLL] = []
        # The backend of the most recent call (tests inspect its connect records).
        self.last_backend: PinnedBackend | None = None

    # --- zygote side ----------------------------------------------------------------------

    def _ssl(self) -> ssl.SSLContext:
        if self._ssl_context is None:
            ctx = ssl.create_default_context(cafile=certifi.where())
            ctx.minimum_version = ssl.TLSVersion.TLSv1_2
            self._ssl_context = ctx
        return self._ssl_context

    def warm(self) -> None:
        """Load everything a call needs while the filesystem is still open (before the sandbox)."""
        import email.charset  # noqa: F401
        import encodings

        import h11  # noqa: F401
        import httpcore._sync.connection  # noqa: F401
        import httpcore._sync.connection_pool  # noqa: F401
        import httpcore._sync.http11  # noqa: F401
        import httpx._decoders  # noqa: F401

        # Every codec a Content-Type may name; the encodings package imports them lazily.
        for mod in pkgutil.iter_modules(encodings.__path__):
            if mod.name in ("mbcs", "oem", "cp65001"):
                continue
            try:
                __import__(f"encodings.{mod.name}")
            except Exception:  # noqa: S112 - a codec this platform lacks is simply not offered
                continue
        for name in ("utf-8", "latin-1", "ascii", "idna", "utf-8-sig", "utf-16", "cp1252"):
            codecs.lookup(name)
        # IDNA and UTS #46 tables.
        idna.encode("exämple.com", uts46=True)
        idna.decode("xn--exmple-cua.com")
        "exämple.com".encode("idna")
        # TLS: the CA bundle is read now, never again.
        self._ssl()
        # Resolver: glibc parses nsswitch/resolv.conf and dlopens any NSS module now.
        for path in _nss_host_modules():
            try:
                self._preloaded.append(ctypes.CDLL(path))
            except OSError:
                pass
        self._nss_modules = _nss_host_modules()
        try:
            socket.getaddrinfo("localhost", 80, type=socket.SOCK_STREAM)
        except OSError:
            pass
        # One request through the whole client stack, against an in-memory server, so that
        # every lazily imported piece of httpx/httpcore/h11 is loaded.
        self._warm_request()

    def _warm_request(self) -> None:
        body = "warm ✓".encode()
        canned = [
            b"HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\n",
            b"Content-Length: " + str(len(body)).encode() + b"\r\nSet-Cookie: a=b\r\n\r\n" + body,
        ]
        transport = httpx.HTTPTransport(trust_env=False)
        transport._pool = httpcore.ConnectionPool(network_backend=httpcore.MockBackend(canned))
        with httpx.Client(transport=transport, trust_env=False, follow_redirects=False) as client:
            with client.stream("GET", "http://warm-up.invalid/x", headers={"User-Agent": "x"},
                               timeout=httpx.Timeout(1.0)) as resp:
                cap = _BodyCap(1 << 20)
                for chunk in resp.iter_raw(CHUNK):
                    cap.add(chunk)
                self._result(resp, "http://warm-up.invalid/x", bytes(cap.buf))
                resp.url.join("/other?x#y")
        base64.b64encode(b"x")
        zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(b"", 10)
        for exc in (httpx.ConnectError, httpx.ReadTimeout, httpx.RemoteProtocolError):
            str(exc("warm"))

    def sandbox_profile(self) -> SandboxProfile:
        paths = [certifi.where()]
        paths += [p for p in RESOLVER_FILES if os.path.exists(p)]
        paths += self._nss_modules or _nss_host_modules()
        limits = self.config.sandbox.limits_for(self.name)
        return SandboxProfile(
            connector=self.name,
            read_paths=tuple(dict.fromkeys(paths)),
            connect_ports=tuple(sorted(set(self.settings.allowed_ports))),
            socket_families=INET_FAMILIES,
            memory_mb=limits.memory_mb,
            cpu_s=limits.cpu_s,
            nofile=limits.nofile,
        )

    # --- worker side ----------------------------------------------------------------------

    def call(self, tool: str, args: Args, limits: CallLimits) -> dict:
        if tool != "web.fetch" or not isinstance(args, FetchArgs):
            raise ToolError("VALIDATION_ERROR", f"tool {tool!r} is not served by http_fetch")
        budget = FetchBudget(time.monotonic() + limits.remaining_s())  # the runtime's deadline, margin included
        try:
            headers, _dropped = sanitize_headers(dict(args.headers))
        except GuardDenied as e:
            raise ToolError("VALIDATION_ERROR", e.reason) from None
        headers["User-Agent"] = self.settings.user_agent
        headers["Accept-Encoding"] = "identity"
        backend = PinnedBackend(self.settings, self.resolver, budget)
        self.last_backend = backend
        transport = PinnedTransport(backend, self._ssl())
        try:
            with httpx.Client(transport=transport, trust_env=False, follow_redirects=False,
                              max_redirects=0) as client:
                return self._fetch(client, args.url, headers, limits, budget)
        except ToolError:
            raise
        except httpx.TimeoutException as e:
            raise ToolError("TIMEOUT", f"web.fetch ran past its timeout of {limits.timeout_ms} ms "
                                       f"({type(e).__name__})") from None
        except httpx.ConnectError as e:
            raise ToolError("UPSTREAM_ERROR", f"connection failed: {_short(e)}") from None
        except httpx.TransportError as e:  # protocol errors, resets, TLS trouble after connect
            raise ToolError("UPSTREAM_ERROR", f"{type(e).__name__}: {_short(e)}") from None
        except (httpx.InvalidURL, httpx.UnsupportedProtocol) as e:
            raise ToolError("SECURITY_ERROR", f"URL refused by the HTTP client: {_short(e)}") from None

    def _fetch(self, client: httpx.Client, url: str, headers: dict[str, str], limits: CallLimits,
               budget: FetchBudget) -> dict:
        hops = 0
        while True:
            try:
                target = check_url(url, self.settings)
            except GuardDenied as e:
                where = "" if hops == 0 else f"redirect {hops} to {url[:200]!r} refused: "
                raise ToolError("SECURITY_ERROR", where + e.reason) from None
            timeout = httpx.Timeout(max(0.001, budget.remaining()))
            with client.stream("GET", target.url, headers=headers, timeout=timeout) as resp:
                location = resp.headers.get("location")
                if resp.status_code in REDIRECT_STATUSES and location:
                    hops += 1
                    if hops > self.settings.max_redirects:
                        raise ToolError("SECURITY_ERROR", f"more than {self.settings.max_redirects} "
                                                          "redirects (max_redirects)")
                    _drain(resp, budget)
                    try:
                        url = _join(target, location)
                    except GuardDenied as e:
                        raise ToolError("SECURITY_ERROR", f"redirect {hops} refused: {e.reason}") from None
                    continue
                body = self._read_body(resp, limits.max_bytes, budget, limits.timeout_ms)
                return self._result(resp, target.url, body)

    def _read_body(self, resp: httpx.Response, cap: int, budget: FetchBudget, timeout_ms: int) -> bytes:
        declared = resp.headers.get("content-length")
        if declared is not None and declared.strip().isdigit() and int(declared) > cap:
            raise ToolError("RESULT_TOO_LARGE", f"the response declares {int(declared)} bytes, more than "
                                                f"the cap of {cap} bytes (nothing was read)")
        coding = resp.headers.get("content-encoding", "").strip().lower()
        inflater = None
        if coding in ("gzip", "x-gzip"):
            inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
        elif coding == "deflate":
            inflater = zlib.decompressobj()
        out = _BodyCap(cap)
        for chunk in resp.iter_raw(CHUNK):
            if budget.remaining() <= 0:
                raise ToolError("TIMEOUT", f"web.fetch ran past its timeout of {timeout_ms} ms "
                                           "while reading the body")
            if inflater is None:
                out.add(chunk)
                continue
            try:
                # Never inflate more than one byte past the cap: a bomb stops right there.
                data = inflater.decompress(chunk, cap - len(out.buf) + 1)
                out.add(data)
                while inflater.unconsumed_tail:
                    out.add(inflater.decompress(inflater.unconsumed_tail, cap - len(out.buf) + 1))
            except zlib.error as e:
                raise ToolError("UPSTREAM_ERROR", f"the {coding} response body is corrupt: {e}") from None
        return bytes(out.buf)

    def _result(self, resp: httpx.Response, final_url: str, body: bytes) -> dict:
        headers: dict[str, str] = {}
        for k, v in resp.headers.multi_items():
            k = k.lower()
            if k in headers:
                headers[k] = headers[k] + ("\n" if k == "set-cookie" else ", ") + v
            else:
                headers[k] = v
        coding = headers.get("content-encoding", "").strip().lower()
        if coding in ("gzip", "x-gzip", "deflate"):
            headers.pop("content-encoding", None)
            headers.pop("content-length", None)
            coding = ""
        media, charset = parse_content_type(headers.get("content-type"))
        text: str | None = None
        if not coding or coding == "identity":
            if is_text_type(media):
                text = decode_text(body, charset)
            elif not media:
                try:
                    candidate = body.decode("utf-8")
                except UnicodeDecodeError:
                    candidate = None
                if candidate is not None and "\x00" not in candidate:
                    text = candidate
        if text is not None:
            return {"status": resp.status_code, "url": final_url, "headers": headers,
                    "encoding": "text", "body": text}
        return {"status": resp.status_code, "url": final_url, "headers": headers,
                "encoding": "base64", "body": base64.b64encode(body).decode("ascii")}


def _join(base: ParsedTarget, location: str) -> str:
    """Absolute form of a Location header (the result is checked by check_url like any URL).

    An absolute Location goes to check_url exactly as sent; a relative one is resolved
    against the current URL after the same character checks.
    """
    location = location.strip(" \t")
    if _ABSOLUTE.match(location):
        return location
    check_characters(location)
    try:
        return str(httpx.URL(base.url).join(location))
    except (httpx.InvalidURL, ValueError):
        # Hand the raw value to check_url, which refuses it with a precise reason.
        return location


def _drain(resp: httpx.Response, budget: FetchBudget, limit: int = 64 * 1024) -> None:
    """Read a small redirect body so that its connection can be reused (a big one is just closed)."""
    declared = resp.headers.get("content-length", "").strip()
    if declared.isdigit() and int(declared) > limit:
        return
    seen = 0
    for chunk in resp.iter_raw(CHUNK):
        seen += len(chunk)
        if seen > limit or budget.remaining() <= 0:
            return


def _short(e: BaseException) -> str:
    text = str(e) or type(e).__name__
    return text if len(text) <= 300 else text[:300] + "…"
