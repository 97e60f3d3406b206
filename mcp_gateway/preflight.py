"""Can this config be served on this host? One set of checks for `serve`, `call`,
`check-config` and `doctor`, so the commands never disagree.

Each check looks at the host the way the gateway will use it: TLS files are loaded, the
listening address is bound, the audit destination is opened as the audit writer opens it and
its filesystem asked for space, and every filesystem path is tried by a child process that has
taken the workers' own uid and gid (the allowed roots are opened by the trusted side first, as
the zygote does, so only the data itself must be readable by the worker identity). A failed
check names what, why, and the fix; `serve` and `call` refuse to start on any, `check-config`
exits 1, `doctor` prints them as FAIL lines.
"""

from __future__ import annotations

import difflib
import errno
import os
import socket
import ssl
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from mcp_gateway.config import GatewayConfig
from mcp_gateway.connectors import KINDS
from mcp_gateway.supervisor.audit import MIN_FREE_BYTES, free_bytes

# The path-probe child answers within this, or the check fails.
PROBE_TIMEOUT_S = 20.0


@dataclass(frozen=True, slots=True)
class Finding:
    """One check's verdict: `ok`, and a line an operator acts on."""

    ok: bool
    text: str


def failures(findings: list[Finding]) -> list[str]:
    return [f.text for f in findings if not f.ok]


def preflight(config: GatewayConfig, http: Literal["bind", "rules", "none"] = "bind") -> list[Finding]:
    """Every check of this config against this host. `http`: for the HTTP transport, check
    its rules and bind its address once ("bind"), only its rules ("rules": `serve`, which
    binds it for real a moment later), or nothing ("none": the one-shot `call`)."""
    findings: list[Finding] = []
    findings += check_actors(config)
    findings += check_audit_destination(config.audit.path)
    if config.server.transport == "http" and http != "none":
        findings += check_http(config, bind_listener=http == "bind")
    for instance in config.instances():
        findings += KINDS[instance.kind].preflight(instance, config)
    return findings


# --- actors ---------------------------------------------------------------------------------


def defined_actors(config: GatewayConfig) -> list[str]:
    """Actors a caller can have: server.actor (stdio, `call`, HTTP without tokens) and the
    actor of every bearer token."""
    return list(dict.fromkeys([config.server.actor, *(t.actor for t in config.server.http.auth.bearer_tokens)]))


def check_actors(config: GatewayConfig) -> list[Finding]:
    known = defined_actors(config)
    out = []
    for name in config.policy.actors:
        if name in known:
            out.append(Finding(True, f"policy.actors.{name}: a caller has this actor"))
            continue
        close = difflib.get_close_matches(name, known, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        out.append(Finding(False, (
            f"policy.actors.{name}: no caller has this actor{hint}; the actors are "
            f"{', '.join(repr(a) for a in known)} (server.actor and the bearer tokens' actors). "
            "Its restrictions would never apply: fix the name, or add the token it belongs to.")))
    return out


# --- audit ----------------------------------------------------------------------------------


def check_audit_destination(path: str) -> list[Finding]:
    problem = audit_destination_problem(path)
    if problem is not None:
        return [Finding(False, f"audit log {problem}; every call would be refused. Fix audit.path "
                                "(a regular file in a writable directory, or `stderr`).")]
    if path == "stderr":
        return [Finding(True, "audit records go to stderr: make sure the process's stderr is collected and kept")]
    return [Finding(True, f"audit log {path} is writable")]


def audit_destination_problem(path: str) -> str | None:
    """Why records could not be written to `path` now, or None. Opens it the way the audit
    writer does (O_WRONLY|O_APPEND; a missing file is probed by creating an unnamed file in
    its directory and writing to it), and asks its filesystem for space."""
    if path == "stderr":
        try:
            st = os.fstat(2)
        except OSError:
            return "stderr is not open in this process"
        return None if not stat.S_ISREG(st.st_mode) else _space_problem(2, "stderr")
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC | os.O_NOCTTY | os.O_NONBLOCK)
    except FileNotFoundError:
        return _create_probe(Path(path))
    except OSError as e:
        return f"{path} cannot be opened for appending: {e.strerror}"
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            kind = "a directory" if stat.S_ISDIR(st.st_mode) else "not a regular file"
            return (f"{path} is {kind} ({describe_mode(st)}): records written there are lost "
                    "(/dev/null) or refused (/dev/full)")
        return _space_problem(fd, path)
    finally:
        os.close(fd)


def _create_probe(path: Path) -> str | None:
    parent = path.parent
    try:
        fd = os.open(parent, os.O_TMPFILE | os.O_WRONLY | os.O_CLOEXEC, 0o600)
    except FileNotFoundError:
        return f"{path} cannot be created: directory {first_missing(parent)} does not exist"
    except NotADirectoryError:
        return f"{path} cannot be created: {parent} is not a directory"
    except PermissionError:
        return f"{path} cannot be created: directory {parent} is not writable by uid {os.geteuid()}"
    except OSError as e:
        if e.errno not in (errno.EOPNOTSUPP, errno.EISDIR):
            return f"{path} cannot be created in {parent}: {e.strerror}"
        # No O_TMPFILE on this filesystem: ask the kernel's permission check instead.
        if not os.access(parent, os.W_OK | os.X_OK):
            return f"{path} cannot be created: directory {parent} is not writable by uid {os.geteuid()}"
        return None
    try:
        os.write(fd, b"{}\n")
        return _space_problem(fd, str(path))
    except OSError as e:
        return f"{path} cannot be written in {parent}: {e.strerror}"
    finally:
        os.close(fd)


def _space_problem(fd: int, what: str) -> str | None:
    free = free_bytes(fd)
    if free is not None and free < MIN_FREE_BYTES:
        return f"{what} is on a full filesystem ({free} bytes free)"
    return None


# --- HTTP -----------------------------------------------------------------------------------


def check_http(config: GatewayConfig, bind_listener: bool) -> list[Finding]:
    problem = http_problem(config)
    if problem is None and bind_listener:
        problem = _listen_problem(config.server.http.host, config.server.http.port)
    if problem is not None:
        return [Finding(False, problem)]
    s = config.server.http
    tls = "TLS certificate and key load" if s.certfile else "no TLS (plain HTTP)"
    return [Finding(True, f"HTTP listener {s.host}:{s.port}{s.path}: {tls}")]


def http_problem(config: GatewayConfig) -> str | None:
    """Why the HTTP transport must not start with this config, or None (no socket is bound)."""
    from mcp_gateway.supervisor.http_auth import OriginPolicy, is_loopback_host, is_wildcard_host

    s = config.server.http
    if not s.auth.bearer_tokens and not is_loopback_host(s.host) and not s.allow_unauthenticated:
        where = "every interface" if is_wildcard_host(s.host) else s.host
        return (f"server.http.host {s.host!r} exposes the gateway on {where} but "
                "server.http.auth.bearer_tokens is empty: anyone who can reach the port could call "
                "tools. Add bearer tokens, bind to 127.0.0.1, or set "
                "server.http.allow_unauthenticated: true if another layer authenticates")
    if s.certfile is not None and s.keyfile is not None:
        problem = _tls_problem(s.certfile, s.keyfile)
        if problem is not None:
            return problem
    try:
        OriginPolicy(s)
    except ValueError as e:
        return str(e)
    if not s.path.startswith("/") or s.path in ("/healthz", "/metrics"):
        return f"server.http.path {s.path!r} must start with '/' and not be /healthz or /metrics"
    return None


def _tls_problem(certfile: Path, keyfile: Path) -> str | None:
    for key, p in (("certfile", certfile), ("keyfile", keyfile)):
        if not p.is_file():
            return f"server.http.{key}: TLS file {p} does not exist or is not a file"
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        ctx.load_cert_chain(str(certfile), str(keyfile))
    except PermissionError as e:
        return f"server.http.certfile/keyfile: cannot read {e.filename or certfile}: {e.strerror}"
    except (ssl.SSLError, OSError) as e:
        reason = getattr(e, "reason", None) or getattr(e, "strerror", None) or str(e)
        return (f"server.http.certfile {certfile} / keyfile {keyfile} do not load as a TLS certificate "
                f"and its private key ({reason}): check that both are PEM and belong together")
    return None


def _listen_problem(host: str, port: int) -> str | None:
    """Bind the listening address once (and let it go) to learn whether serve could."""
    h = host.strip().strip("[]") or "0.0.0.0"
    if h == "*":
        h = "0.0.0.0"
    try:
        infos = socket.getaddrinfo(h, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as e:
        return f"server.http.host {host!r} does not resolve: {e.strerror}"
    family, kind, proto, _, addr = infos[0]
    with socket.socket(family, kind, proto) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(addr)
        except PermissionError:
            return (f"server.http.port {port}: binding {host}:{port} is not permitted (ports below 1024 "
                    "need root or CAP_NET_BIND_SERVICE): use a port of 1024 or more")
        except OSError as e:
            if e.errno == errno.EADDRINUSE:
                return (f"server.http.port {port}: {host}:{port} is already in use by another process "
                        "(a gateway already serving it?)")
            return f"server.http.host {host!r}: cannot listen on {host}:{port}: {e.strerror}"
    return None


# --- the worker identity, and describing paths ---------------------------------------


def worker_identity(config: GatewayConfig) -> str | None:
    """Which uid/gid the workers of this config get, in words; None when they keep the
    gateway's own (it is not root, or sandbox.layers.user is off). The probe child takes that
    identity the way a worker does (`sandbox.become_worker_identity`)."""
    if os.geteuid() != 0 or config.sandbox.layers.user == "off":
        return None
    if config.sandbox.uid_range is not None:
        first, count = config.sandbox.uid_range
        return f"a uid and gid of their own from sandbox.uid_range ({first}-{first + count - 1})"
    return f"sandbox.user {config.sandbox.user} / sandbox.group {config.sandbox.group}"


def first_missing(p: Path) -> Path:
    for candidate in [*reversed(p.parents), p]:
        if not os.path.lexists(candidate):
            return candidate
    return p


def first_blocking(p: Path) -> Path:
    """The first directory on the way to `p` that this process cannot search."""
    for candidate in [*reversed(p.parents), p]:
        if candidate.is_dir() and not os.access(candidate, os.X_OK):
            return candidate
    return p.parent


def describe_path(p: Path) -> str:
    try:
        return describe_mode(os.stat(p))
    except OSError as e:
        return e.strerror or "cannot stat"


def describe_mode(st: os.stat_result) -> str:
    return f"mode {stat.filemode(st.st_mode)}, owner uid {st.st_uid} gid {st.st_gid}"
