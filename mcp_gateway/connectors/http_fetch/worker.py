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
import logging
import os
import pkgutil
import re
import ssl
import time
import zlib
from dataclasses import dataclass
from email.message import Message

import certifi
import httpcore
import httpx
import idna
import msgspec

from mcp_gateway.config import GatewayConfig
from mcp_gateway.connectors.base import Args, Instance
from mcp_gateway.connectors.http_fetch.pinned_transport import (
    FetchBudget,
    PinnedBackend,
    PinnedTransport,
    Resolver,
)
from mcp_gateway.connectors.http_fetch.resolver import HOSTS_FILE, RESOLV_CONF, DnsResolver, warm_resolver
from mcp_gateway.connectors.http_fetch.settings import HttpFetchSettings
from mcp_gateway.connectors.http_fetch.tools import FETCH, FetchArgs
from mcp_gateway.connectors.http_fetch.urls import ParsedTarget, check_characters, check_url, sanitize_headers
from mcp_gateway.guards import GuardDenied
from mcp_gateway.ipc.errors import ErrorCode, Refusal
from mcp_gateway.sandbox.profile import INET_FAMILIES, SandboxProfile
from mcp_gateway.workers.connector import CallLimits, Connector

_ABSOLUTE = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:")
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
CHUNK = 64 * 1024
# JSON around the body and the structured content in the answer (content list, flags, _meta
# with the request id): measured at about 150 bytes; this leaves room.
ANSWER_ENVELOPE = 512

TEXT_TYPES = frozenset({
    "application/json", "application/xml", "application/javascript", "application/ecmascript",
    "application/x-javascript", "application/xhtml+xml", "application/rss+xml", "application/atom+xml",
    "application/ld+json", "application/x-www-form-urlencoded", "application/yaml", "application/x-yaml",
    "application/toml", "application/graphql", "application/sql", "application/x-ndjson",
    "image/svg+xml",
})


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


@dataclass(frozen=True, slots=True)
class DecodedText:
    text: str
    lossy: bool  # bytes invalid in the charset were replaced by U+FFFD


def decode_text(body: bytes, charset: str | None) -> DecodedText:
    name = "utf-8"
    if charset:
        try:
            name = codecs.lookup(charset).name
        except (LookupError, ValueError):
            name = "utf-8"
    if name == "utf-8" and body.startswith(codecs.BOM_UTF8):
        name = "utf-8-sig"
    try:
        return DecodedText(body.decode(name), lossy=False)
    except UnicodeDecodeError:
        return DecodedText(body.decode(name, errors="replace"), lossy=True)
    except (LookupError, ValueError, TypeError):  # not a text codec ("hex" is bytes-to-bytes)
        return DecodedText(body.decode("utf-8", errors="replace"), lossy=True)


class _BodyCap:
    """Accumulates a body, refusing (before storing) anything that would pass the cap."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.buf = bytearray()

    def add(self, data: bytes) -> None:
        if len(self.buf) + len(data) > self.cap:
            raise Refusal(ErrorCode.RESULT_TOO_LARGE, f"the response body passes the cap of {self.cap} bytes "
                                                      "(reading stopped there)")
        self.buf += data


class HttpFetchConnector(Connector):
    kind = "http_fetch"

    def __init__(self, config: GatewayConfig, resolver: Resolver | None = None,
                 instance: Instance | None = None) -> None:
        super().__init__(config, instance)
        self.settings: HttpFetchSettings
        # Injectable for tests: (ASCII host, port, seconds left) -> address strings.
        self.resolver: Resolver = resolver or DnsResolver()
        self._ssl_context: ssl.SSLContext | None = None
        # The backend of the most recent call (tests inspect its connect records).
        self.last_backend: PinnedBackend | None = None

    # --- zygote side ----------------------------------------------------------------------

    def _ssl(self) -> ssl.SSLContext:
        if self._ssl_context is None:
            # Built by hand, not with ssl.create_default_context(), which would honour
            # SSLKEYLOGFILE and write every session key of every fetch to that file.
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # CERT_REQUIRED and check_hostname
            ctx.minimum_version = ssl.TLSVersion.TLSv1_2
            ctx.load_verify_locations(cafile=certifi.where())
            self._ssl_context = ctx
        return self._ssl_context

    def warm(self) -> None:
        """Load everything a call needs while the filesystem is still open (before the sandbox)."""
        # Runs in the zygote: its workers inherit neither the key-log setting nor, below,
        # httpx's per-request INFO lines (the audit log records every call, without its URL).
        os.environ.pop("SSLKEYLOGFILE", None)
        for name in ("httpx", "httpcore"):
            logging.getLogger(name).setLevel(logging.WARNING)
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
        # Resolver: dnspython's lazily imported pieces (no glibc lookup is ever made).
        warm_resolver()
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
                self._result(resp, "http://warm-up.invalid/x", bytes(cap.buf), 1 << 20)
                resp.url.join("/other?x#y")
        base64.b64encode(b"x")
        zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(b"", 10)
        for exc in (httpx.ConnectError, httpx.ReadTimeout, httpx.RemoteProtocolError):
            str(exc("warm"))

    def sandbox_profile(self) -> SandboxProfile:
        paths = [certifi.where()]
        paths += [p for p in (RESOLV_CONF, HOSTS_FILE) if os.path.exists(p)]
        limits = self.limits()
        return SandboxProfile(
            instance=self.name,
            read_paths=tuple(dict.fromkeys(paths)),
            connect_ports=tuple(sorted(set(self.settings.allowed_ports))),
            socket_families=INET_FAMILIES,
            memory_mb=limits.memory_mb,
            cpu_s=limits.cpu_s,
            nofile=limits.nofile,
        )

    # --- worker side ----------------------------------------------------------------------

    def call(self, tool: str, args: Args, limits: CallLimits) -> dict:
        if tool != FETCH.tool or not isinstance(args, FetchArgs):
            raise Refusal(ErrorCode.VALIDATION_ERROR, f"tool {tool!r} is not served by http_fetch")
        budget = FetchBudget(time.monotonic() + limits.remaining_s())  # the runtime's deadline, margin included
        try:
            headers, _dropped = sanitize_headers(dict(args.headers), self.settings.request_headers)
        except GuardDenied as e:
            raise Refusal(ErrorCode.VALIDATION_ERROR, e.reason) from None
        headers["User-Agent"] = self.settings.user_agent
        headers["Accept-Encoding"] = "identity"
        backend = PinnedBackend(self.settings, self.resolver, budget)
        self.last_backend = backend
        transport = PinnedTransport(backend, self._ssl())
        try:
            with httpx.Client(transport=transport, trust_env=False, follow_redirects=False,
                              max_redirects=0) as client:
                return self._fetch(client, args.url, headers, limits, budget)
        except Refusal:
            raise
        except httpx.TimeoutException as e:
            raise Refusal(ErrorCode.TIMEOUT, f"web.fetch ran past its timeout of {limits.timeout_ms} ms "
                                             f"({type(e).__name__})") from None
        except httpx.ConnectError as e:
            raise Refusal(ErrorCode.UPSTREAM_ERROR, f"connection failed: {_short(e)}") from None
        except httpx.TransportError as e:  # protocol errors, resets, TLS trouble after connect
            raise Refusal(ErrorCode.UPSTREAM_ERROR, f"{type(e).__name__}: {_short(e)}") from None
        except (httpx.InvalidURL, httpx.UnsupportedProtocol) as e:
            raise Refusal(ErrorCode.SECURITY_ERROR, f"URL refused by the HTTP client: {_short(e)}") from None

    def _fetch(self, client: httpx.Client, url: str, headers: dict[str, str], limits: CallLimits,
               budget: FetchBudget) -> dict:
        hops = 0
        while True:
            try:
                target = check_url(url, self.settings)
            except GuardDenied as e:
                where = "" if hops == 0 else f"redirect {hops} to {url[:200]!r} refused: "
                raise Refusal(ErrorCode.SECURITY_ERROR, where + e.reason) from None
            timeout = httpx.Timeout(max(0.001, budget.remaining()))
            with client.stream("GET", target.url, headers=headers, timeout=timeout) as resp:
                location = resp.headers.get("location")
                if resp.status_code in REDIRECT_STATUSES and location:
                    hops += 1
                    if hops > self.settings.max_redirects:
                        raise Refusal(ErrorCode.SECURITY_ERROR, f"more than {self.settings.max_redirects} "
                                                                "redirects (max_redirects)")
                    _drain(resp, budget)
                    try:
                        url = _join(target, location)
                    except GuardDenied as e:
                        raise Refusal(ErrorCode.SECURITY_ERROR, f"redirect {hops} refused: {e.reason}") from None
                    continue
                body = self._read_body(resp, limits.max_bytes, budget, limits.timeout_ms)
                return self._result(resp, target.url, body, limits.max_bytes)

    def _read_body(self, resp: httpx.Response, cap: int, budget: FetchBudget, timeout_ms: int) -> bytes:
        declared = resp.headers.get("content-length")
        if declared is not None and declared.strip().isdigit() and int(declared) > cap:
            raise Refusal(ErrorCode.RESULT_TOO_LARGE, f"the response declares {int(declared)} bytes, more than "
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
                raise Refusal(ErrorCode.TIMEOUT, f"web.fetch ran past its timeout of {timeout_ms} ms "
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
                raise Refusal(ErrorCode.UPSTREAM_ERROR, f"the {coding} response body is corrupt: {e}") from None
        return bytes(out.buf)

    def _result(self, resp: httpx.Response, final_url: str, body: bytes, max_bytes: int) -> dict:
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
        result: dict = {"status": resp.status_code, "url": final_url, "headers": headers, "size": len(body)}
        encoded, text = _encode_body(body, headers.get("content-type"), raw=bool(coding) and coding != "identity")
        if text is None:
            result["encoding"] = "base64"
            result["body"] = base64.b64encode(body).decode("ascii")
        else:
            result["encoding"] = "text"
            result["body"] = text.text
            if text.lossy:
                result["lossy"] = True
        # The answer carries the body once (as the text content; see tools/catalogue.py) next
        # to the rest as structured content: hold that JSON to max_bytes here, where the
        # reason can say why, rather than ship a reply the supervisor must refuse.
        rest = {k: v for k, v in result.items() if k != "body"}
        answer_bytes = encoded + len(msgspec.json.encode(rest)) + ANSWER_ENVELOPE
        if answer_bytes > max_bytes:
            raise Refusal(ErrorCode.RESULT_TOO_LARGE, f"the response body ({len(body)} bytes) would be {answer_bytes} "
                                                      f"bytes of JSON in the answer as {result['encoding']}, more than "
                                                      f"the cap of {max_bytes} bytes")
        return result


def _encode_body(body: bytes, content_type: str | None, raw: bool) -> tuple[int, DecodedText | None]:
    """(JSON size of the body in the answer, the text if it goes as text, else None for base64).

    Text is chosen when the media type is textual (or absent and the body is UTF-8 without
    NUL) and its JSON string is no longer than the base64 one would be: a body of control
    characters (six bytes each once JSON-escaped) or of bytes invalid in its charset (three
    bytes each as U+FFFD) goes as base64 (four bytes per three), losslessly.
    """
    b64_size = 4 * ((len(body) + 2) // 3) + 2
    if raw:
        return b64_size, None
    media, charset = parse_content_type(content_type)
    decoded: DecodedText | None = None
    if is_text_type(media):
        decoded = decode_text(body, charset)
    elif not media:
        try:
            candidate = body.decode("utf-8")
        except UnicodeDecodeError:
            candidate = None
        if candidate is not None and "\x00" not in candidate:
            decoded = DecodedText(candidate, lossy=False)
    if decoded is None:
        return b64_size, None
    text_size = len(msgspec.json.encode(decoded.text))
    if text_size > b64_size:
        return b64_size, None
    return text_size, decoded


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
