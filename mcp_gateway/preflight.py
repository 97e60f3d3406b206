"""Can this config be served on this host? One set of checks for `serve`, `call`,
`check-config` and `doctor`, so the commands never disagree.

Each check looks at the host the way the gateway will use it: TLS files are loaded, the
listening address is bound, the audit destination is opened as the audit writer opens it and
its filesystem asked for space, and every filesystem path is tried by a child process that has
taken the workers' own uid and gid (the allowed roots are opened by the trusted side first, as
the zygote does, so only the data itself must be readable by the worker identity). A failed
check names what, why, and the fix; `serve` and `call` refuse to start on any, `check-config`
exits 1, `doctor` prints them as FAIL lines. A warning is a finding that passes but needs a look:
the HTTP port already in use, which is what `check-config` and `doctor` see next to the gateway
serving this very config (`serve` itself still fails hard on a port it cannot bind).
"""

from __future__ import annotations

import difflib
import errno
import json
import os
import select
import signal
import socket
import ssl
import stat
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from mcp_gateway.config import GatewayConfig
from mcp_gateway.connectors import KINDS
from mcp_gateway.connectors.base import DataPaths, Instance
from mcp_gateway.supervisor.audit import MIN_FREE_BYTES, free_bytes

# The path-probe child answers within this, or the check fails.
PROBE_TIMEOUT_S = 20.0


@dataclass(frozen=True, slots=True)
class Finding:
    """One check's verdict: `ok`, and a line an operator acts on; `warn`: ok, but worth a look."""

    ok: bool
    text: str
    warn: bool = False


def failures(findings: list[Finding]) -> list[str]:
    return [f.text for f in findings if not f.ok]


def warnings(findings: list[Finding]) -> list[str]:
    return [f.text for f in findings if f.ok and f.warn]


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
        paths = KINDS[instance.kind].data_paths(instance)
        if paths is not None:
            findings += check_data_paths(instance, paths, config)
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
            return (f"{path} is {kind} ({_describe_mode(st)}): records written there are lost "
                    "(/dev/null) or refused (/dev/full)")
        return _space_problem(fd, path)
    finally:
        os.close(fd)


def _create_probe(path: Path) -> str | None:
    parent = path.parent
    try:
        fd = os.open(parent, os.O_TMPFILE | os.O_WRONLY | os.O_CLOEXEC, 0o600)
    except FileNotFoundError:
        return f"{path} cannot be created: directory {_first_missing(parent)} does not exist"
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
    if problem is not None:
        return [Finding(False, problem)]
    s = config.server.http
    if bind_listener:
        finding = _listen_finding(s.host, s.port)
        if finding is not None:
            return [finding]
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


def _listen_finding(host: str, port: int) -> Finding | None:
    """Bind the listening address once (and let it go) to learn whether serve could; None when it
    could. In use is a warning: next to the gateway already serving this config, it is expected."""
    h = host.strip().strip("[]") or "0.0.0.0"
    if h == "*":
        h = "0.0.0.0"
    try:
        infos = socket.getaddrinfo(h, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as e:
        return Finding(False, f"server.http.host {host!r} does not resolve: {e.strerror}")
    family, kind, proto, _, addr = infos[0]
    with socket.socket(family, kind, proto) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(addr)
        except PermissionError:
            return Finding(False, f"server.http.port {port}: binding {host}:{port} is not permitted (ports "
                                  "below 1024 need root or CAP_NET_BIND_SERVICE): use a port of 1024 or more")
        except OSError as e:
            if e.errno == errno.EADDRINUSE:
                return Finding(True, f"server.http.port {port}: {host}:{port} is already in use by another "
                                     "process (a gateway already serving it?): `serve` cannot start on it "
                                     "until that process lets it go", warn=True)
            return Finding(False, f"server.http.host {host!r}: cannot listen on {host}:{port}: {e.strerror}")
    return None


# --- an instance's data paths, as the worker identity ---------------------------------


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


def _first_missing(p: Path) -> Path:
    for candidate in [*reversed(p.parents), p]:
        if not os.path.lexists(candidate):
            return candidate
    return p


def _first_blocking(p: Path) -> Path:
    """The first directory on the way to `p` that this process cannot search."""
    for candidate in [*reversed(p.parents), p]:
        if candidate.is_dir() and not os.access(candidate, os.X_OK):
            return candidate
    return p.parent


def _describe(p: Path) -> str:
    try:
        return _describe_mode(os.stat(p))
    except OSError as e:
        return e.strerror or "cannot stat"


def _describe_mode(st: os.stat_result) -> str:
    return f"mode {stat.filemode(st.st_mode)}, owner uid {st.st_uid} gid {st.st_gid}"


def check_data_paths(instance: Instance, paths: DataPaths, config: GatewayConfig) -> list[Finding]:
    """Each allowed root opened by the trusted side, then read by a child that took the worker
    identity; each denied path identified."""
    identity = worker_identity(config)
    opened: dict[str, Finding | int] = {}  # each allowed path: why it cannot be opened, or its fd
    try:
        for p in paths.allowed:
            problem = _open_problem(p, "allowed path", paths.allowed_key)
            opened[str(p)] = (Finding(False, problem) if problem is not None
                              else os.open(p, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC))
        roots = {path: fd for path, fd in opened.items() if isinstance(fd, int)}
        probe = _probe_as_worker(config, identity, roots) if roots else {"as": "", "paths": {}}
    finally:
        for fd in opened.values():
            if isinstance(fd, int):
                os.close(fd)
    if "error" in probe:
        return [Finding(False, f"{instance.name} workers: cannot take their identity ({probe['error']}): "
                               "fix sandbox.uid_range (or sandbox.user/sandbox.group)")]
    who = f"the worker identity ({probe['as']})"
    findings: list[Finding] = []
    for path, state in opened.items():
        if isinstance(state, Finding):
            findings.append(state)
        elif (error := probe["paths"].get(path)) is None:
            findings.append(Finding(True, f"allowed path {path} is readable by {who}"))
        else:
            findings.append(Finding(False, _unreadable_message(Path(path), error, probe["as"], identity)))
    if not any(f.ok for f in findings):
        findings.append(Finding(False, f"instance {instance.name} has no usable allowed path: every call "
                                       f"of its tools would fail ({paths.allowed_key})"))
    findings += [_denied_finding(p, paths.denied_key) for p in paths.denied]
    return findings


def _open_problem(p: Path, what: str, key: str) -> str | None:
    """Why the trusted side (this process) cannot open directory `p`, or None."""
    try:
        st = os.stat(p)
    except FileNotFoundError:
        missing = _first_missing(p)
        where = "" if missing == p else f" ({missing} is missing)"
        return (f"{what} {p} does not exist{where}: create it, or fix "
                f"{key}")
    except NotADirectoryError:
        return f"{what} {p} is not a directory (a component of it is a file): fix {key}"
    except PermissionError:
        blocker = _first_blocking(p)
        return (f"{what} {p} cannot be reached by the gateway (uid {os.geteuid()}): directory {blocker} "
                f"({_describe(blocker)}) is not searchable. Make it searchable, or run the gateway "
                "as the data's owner")
    except OSError as e:
        return f"{what} {p} cannot be opened: {e.strerror}"
    if not stat.S_ISDIR(st.st_mode):
        return f"{what} {p} is not a directory ({_describe_mode(st)}): allowed paths are directories"
    return None


def _denied_finding(p: Path, key: str) -> Finding:
    try:
        os.stat(p)
    except FileNotFoundError:
        return Finding(False, (
            f"denied path {p} does not exist: a denied path that names nothing protects nothing "
            f"(a typo?). Fix it, create it, or remove it from {key}"))
    except PermissionError:
        blocker = _first_blocking(p)
        return Finding(False, (
            f"denied path {p} cannot be identified by the gateway (uid {os.geteuid()}): {blocker} "
            f"({_describe(blocker)}) is not searchable, so the workers could not recognise it. Make it "
            "searchable by the gateway, or run the gateway as the data's owner"))
    except OSError as e:
        return Finding(False, f"denied path {p} cannot be identified: {e.strerror}")
    return Finding(True, f"denied path {p} exists and is identified")


def _unreadable_message(p: Path, error: str, taken: str, identity: str | None) -> str:
    if identity is None:
        fix = "make it readable and searchable by the gateway's own uid"
    elif "uid_range" in identity:
        fix = ("make it readable and searchable by every user (chmod o+rx; the workers' uids own "
               "nothing and belong to no group), or run the gateway as the data's owner (not root: "
               "workers then keep its uid)")
    else:
        fix = ("make it readable and searchable by that identity (for example chmod o+rx), set "
               "sandbox.user/sandbox.group to an identity that may read it, or run the gateway as the "
               "data's owner")
    return (f"allowed path {p} cannot be read by the workers ({taken}; {identity or 'the gateway uid'}): "
            f"{error} ({_describe(p)}): {fix}")


def _probe_as_worker(config: GatewayConfig, identity: str | None, roots: dict[str, int]) -> dict:
    """Fork a child that takes the worker identity and lists each root through the descriptor
    the trusted side opened: {"as": "uid U gid G", "paths": {path: None if readable, else the
    error}}, or {"error": why the identity could not be taken}."""
    read_fd, write_fd = os.pipe2(os.O_CLOEXEC)
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(read_fd)
            answer = json.dumps(_as_worker(config, identity, roots)).encode()
            os.write(write_fd, answer[:60000])
        finally:
            os._exit(0)
    os.close(write_fd)
    try:
        data = b""
        deadline = time.monotonic() + PROBE_TIMEOUT_S
        while (left := deadline - time.monotonic()) > 0 and select.select([read_fd], [], [], left)[0]:
            chunk = os.read(read_fd, 65536)
            if not chunk:
                break
            data += chunk
        try:
            return json.loads(data)
        except ValueError:
            return {"error": "the probe process died or did not answer"}
    finally:
        os.close(read_fd)
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        os.waitpid(pid, 0)


def _as_worker(config: GatewayConfig, identity: str | None, roots: dict[str, int]) -> dict:
    from mcp_gateway.sandbox import become_worker_identity

    if identity is not None:
        try:
            become_worker_identity(config.sandbox)
        except Exception as e:  # noqa: BLE001 - reported to the operator as the reason
            return {"error": str(e)}
    paths: dict[str, str | None] = {}
    for path, fd in roots.items():
        try:
            # "." beneath the root's descriptor needs search permission, listing needs read.
            listing = os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=fd)
            try:
                os.listdir(listing)
            finally:
                os.close(listing)
            paths[path] = None
        except OSError as e:
            paths[path] = e.strerror or str(e)
    return {"as": f"uid {os.getuid()} gid {os.getgid()}", "paths": paths}
