"""`mcp-gateway doctor`: which sandbox layers protect workers on this host, and the production
checklist as automated checks. Every line is PASS, WARN or FAIL plus what to do about it; the
exit code is non-zero when anything FAILs.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import select
import signal
import socket
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from mcp_gateway.config import GatewayConfig
from mcp_gateway.connectors import KINDS
from mcp_gateway.connectors.sections import matches
from mcp_gateway.sandbox import LAYERS, SandboxError, apply, host_support
from mcp_gateway.sandbox.landlock import abi_version as landlock_abi
from mcp_gateway.sandbox.profile import SandboxProfile


@dataclass
class Report:
    out: TextIO
    results: list[str] = field(default_factory=list)

    def line(self, level: str, text: str) -> None:
        self.results.append(level)
        print(f"{level:4}  {text}", file=self.out)

    def info(self, text: str) -> None:
        print(f"      {text}", file=self.out)

    def section(self, title: str) -> None:
        print(f"\n== {title}", file=self.out)

    @property
    def failed(self) -> bool:
        return "FAIL" in self.results


# --- sandbox ------------------------------------------------------------------------------


def _profile_for(name: str, config: GatewayConfig) -> SandboxProfile:
    from mcp_gateway.workers.connector import build_connector

    return build_connector(name, config).sandbox_profile()


def probe_sandbox(profile: SandboxProfile, config: GatewayConfig, timeout: float = 20.0) -> tuple[dict, dict]:
    """Fork a child that confines itself with `profile`; return (apply() result or error, the
    child's /proc status as seen from outside)."""
    ready_r, ready_w = os.pipe()
    go_r, go_w = os.pipe()
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(ready_r)
            os.close(go_w)
            try:
                msg = {"layers": apply(profile, config.sandbox)}
            except SandboxError as e:
                msg = {"error": str(e)}
            except BaseException as e:  # noqa: BLE001
                msg = {"error": f"{type(e).__name__}: {e}"}
            os.write(ready_w, json.dumps(msg).encode()[:60000])
            os.close(ready_w)
            os.read(go_r, 1)
        finally:
            os._exit(0)
    os.close(ready_w)
    os.close(go_r)
    status: dict[str, str] = {}
    try:
        if not select.select([ready_r], [], [], timeout)[0]:
            return {"error": f"the probe worker did not confine itself within {timeout:.0f} s"}, {}
        data = b""
        while chunk := os.read(ready_r, 65536):
            data += chunk
        msg = json.loads(data or b'{"error": "the probe worker died"}')
        try:
            with open(f"/proc/{pid}/status") as f:
                for line in f:
                    key, _, value = line.partition(":")
                    status[key] = value.strip()
        except OSError:
            pass
        return msg, status
    finally:
        os.close(go_w)
        os.close(ready_r)
        deadline = time.monotonic() + 5
        while os.waitpid(pid, os.WNOHANG) == (0, 0):
            if time.monotonic() > deadline:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                break
            time.sleep(0.01)


def _check_landlock_scoping(config: GatewayConfig, profiles: list[SandboxProfile], rep: Report) -> None:
    """Landlock ABI < 6 has no signal or abstract-socket scoping: say what covers it instead."""
    abi = landlock_abi()
    if abi >= 6 or config.sandbox.layers.landlock == "off":
        return
    unix = [p.instance for p in profiles if socket.AF_UNIX in p.socket_families]
    rep.line(
        "WARN",
        f"Landlock ABI {abi} (< 6) cannot scope signals or abstract UNIX sockets. Signals: covered by "
        "seccomp (kill/tgkill/tkill only towards the worker itself; F_SETOWN, F_SETSIG, the owner and "
        "TIOCSTI ioctls, sigqueue and pidfd signals refused). Abstract sockets: seccomp lets workers "
        "create UNIX sockets only where their profile says so"
        + (f"; the workers of {', '.join(unix)} may (a database host that is a socket directory) and so "
           "reach other processes' abstract sockets: use a TCP host, or a kernel >= 6.12."
           if unix else ", and no instance's profile does."),
    )


def check_sandbox(config: GatewayConfig, rep: Report) -> None:
    rep.section("sandbox: host support")
    for key, value in host_support().items():
        rep.info(f"{key}: {value}")
    for layer in LAYERS:
        mode = getattr(config.sandbox.layers, layer)
        if mode == "off":
            rep.line(
                "WARN",
                f"sandbox layer {layer} is off: set sandbox.layers.{layer} to required unless "
                "this host cannot provide it.",
            )
    targets = _sandbox_targets(config)
    _check_landlock_scoping(config, [p for _, p, _ in targets if p is not None], rep)
    for name, profile, note in targets:
        rep.section(f"sandbox: a {name} worker on this host {note if profile else ''}".rstrip())
        if profile is None:
            rep.line(
                "FAIL", f"the {name} connector cannot build its sandbox profile ({note}); fix its config."
            )
            continue
        msg, status = probe_sandbox(profile, config)
        if "error" in msg:
            rep.line("FAIL", f"{name} workers cannot start: {msg['error']}")
            continue
        _report_confinement(msg["layers"], status, rep)
        _report_identity(msg["layers"], status, config, rep)


def _sandbox_targets(config: GatewayConfig) -> list[tuple[str, SandboxProfile | None, str]]:
    """(instance, its workers' sandbox profile or None when it cannot build one, a note) to probe."""
    targets: list[tuple[str, SandboxProfile | None, str]] = []
    for instance in config.instances():
        if KINDS[instance.kind].backend != "pool":
            continue  # an upstream server is confined by its own launcher: its kind's doctor rows
        try:
            targets.append((instance.name, _profile_for(instance.name, config), ""))
        except Exception as e:  # noqa: BLE001
            targets.append((instance.name, None, f"{type(e).__name__}: {e}"))
    if not targets:
        targets.append(("bare", SandboxProfile("bare"), "(no connector enabled: a bare profile)"))
    return targets


def _report_confinement(layers: dict[str, str], status: dict[str, str], rep: Report) -> None:
    """Each layer as the probe worker reported it, then checked from outside in /proc."""
    for layer, state in layers.items():
        level = "PASS"
        if state == "off" or state.startswith("unavailable"):
            level = "WARN"
        rep.line(level, f"{layer}: {state}")
    want_seccomp = layers.get("seccomp", "off").startswith("allowlist")
    checks = [
        ("NoNewPrivs", "1", layers.get("prctl", "off") != "off" or want_seccomp),
        ("Seccomp", "2", want_seccomp),
        ("CapEff", "0000000000000000", True),
    ]
    for key, expected, required in checks:
        got = status.get(key, "?")
        if got == expected:
            rep.line("PASS", f"/proc/<worker>/status {key} {got}")
        elif required:
            rep.line(
                "FAIL",
                f"/proc/<worker>/status {key} is {got}, expected {expected}: the worker is "
                "not confined as reported; do not serve agents from this host.",
            )
        else:
            rep.line("WARN", f"/proc/<worker>/status {key} is {got} (layer off or unavailable).")


def _report_identity(layers: dict[str, str], status: dict[str, str], config: GatewayConfig, rep: Report) -> None:
    """Which uid the probe worker runs as, against what the gateway's own uid calls for."""
    if os.geteuid() != 0:
        rep.line("PASS", f"gateway not running as root (uid {os.getuid()}): workers run unprivileged")
        return
    uid = status.get("Uid", "?").split()
    uid_range = config.sandbox.uid_range
    if uid and uid[0] not in ("0", "?") and uid_range is not None:
        first, count = uid_range
        rep.line("PASS", f"workers run as uids of their own (sandbox.uid_range {first}-"
                         f"{first + count - 1}; this one {uid[0]})")
    elif uid and uid[0] not in ("0", "?"):
        rep.line("WARN", f"workers share uid {uid[0]} (sandbox.uid_range is null): a subverted "
                         "worker can signal or change the limits of the others and of every "
                         "process of that uid. Set sandbox.uid_range.")
    elif layers.get("user") == "off":
        rep.line(
            "FAIL",
            "the gateway runs as root and the user layer is off: workers keep uid 0. "
            "Set sandbox.layers.user to required.",
        )
    else:
        rep.line("FAIL", f"workers still run as uid {uid[:1]}; check sandbox.user/sandbox.group.")


# --- production checklist -----------------------------------------------------------------

_SECRET_KEY = re.compile(
    r"""^\s*-?\s*["']?(?P<key>[A-Za-z0-9_.-]*(?:password|passwd|secret|token|api[_-]?key|apikey|private[_-]?key|credential)[A-Za-z0-9_.-]*)["']?\s*:\s*(?P<value>.*)$""",
    re.IGNORECASE,
)
_URL_CREDENTIALS = re.compile(r"\b[a-z][a-z0-9+.-]*://[^\s/:@'\"]+:[^\s/@'\"]+@", re.IGNORECASE)
_SECRET_SHAPES = [
    (re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----"), "a PEM private key"),
    (re.compile(r"\bAKIA[0-9A-Z]{16}\b"), "an AWS access key id"),
    (re.compile(r"\b(?:ghp|gho|ghs|ghu|github_pat)_[A-Za-z0-9_]{20,}\b"), "a GitHub token"),
    (re.compile(r"\bxox[abposr]-[A-Za-z0-9-]{10,}\b"), "a Slack token"),
    (re.compile(r"\bsk-[A-Za-z0-9_-]{20,}\b"), "an API secret key"),
    (re.compile(r"\beyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{5,}\b"), "a JWT"),
]
_HASH = re.compile(r"^[0-9a-fA-F]{64}$")


def find_secrets(text: str) -> list[str]:
    """Lines of a config file that look like they hold a secret (line number: why)."""
    found: list[str] = []
    for n, raw in enumerate(text.splitlines(), 1):
        # A secret in a comment is still a secret in the file: comments are scanned too.
        stripped = raw.lstrip()
        line = stripped.lstrip("#") if stripped.startswith("#") else raw.split(" #", 1)[0]
        if not line.strip():
            continue
        if _URL_CREDENTIALS.search(line):
            found.append(f"line {n}: a URL with a password in it")
            continue
        m = _SECRET_KEY.match(line)
        if m:
            value = m.group("value").strip().strip("'\"")
            key = m.group("key").lower()
            empty = value in ("", "[]", "{}", "null", "~", "|", ">")
            if (
                not empty
                and not _HASH.match(value)
                and not value.startswith("${")
                and key not in ("max_tokens", "token_env")  # token_env names a variable
            ):
                found.append(f"line {n}: key {m.group('key')!r} has a literal value")
                continue
        for pattern, what in _SECRET_SHAPES:
            if pattern.search(line):
                found.append(f"line {n}: looks like {what}")
                break
    return found


def _is_loopback_host(host: str) -> bool:
    if host in ("localhost", "localhost.localdomain", "ip6-localhost"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _serves(entry: str, config: GatewayConfig) -> bool:
    """Whether a policy entry reaches a tool of an enabled instance (an instance that discovers
    its tools may serve any name)."""
    try:
        instance = config.instance(entry.partition(".")[0])
    except KeyError:
        return False
    kind = KINDS[instance.kind]
    return instance.enabled and (kind.discovers_tools or any(matches(entry, s.name) for s in kind.tools(instance)))


def check_policy(config: GatewayConfig, rep: Report) -> None:
    rep.section("production checklist")
    p = config.policy
    if p.default_deny:
        rep.line("PASS", "policy.default_deny is on: tools not listed in allow_tools are refused")
    else:
        rep.line(
            "FAIL",
            "policy.default_deny is off: set policy.default_deny: true and list the tools agents "
            "need in policy.allow_tools.",
        )
    catalogue = config.catalogue()
    entries = p.allow_tools if p.default_deny else [spec.name for spec in catalogue]
    effective = [e for e in entries if not any(matches(d, e) for d in p.deny_tools)]
    dead = sorted(e for e in effective if not _serves(e, config))
    if dead:
        rep.line(
            "WARN",
            f"allow_tools lists {', '.join(dead)} whose connector is disabled: remove them so "
            "the allow list says exactly what is served.",
        )
    else:
        rep.line("PASS", f"allow list is minimal: {', '.join(effective) or 'nothing allowed'}")


def check_secrets(config: GatewayConfig, rep: Report) -> None:
    if config.source is None:
        rep.line("WARN", "the config was not loaded from a file: cannot scan it for secrets.")
        return
    try:
        text = Path(config.source).read_text(encoding="utf-8", errors="replace")
    except OSError as e:
        rep.line("WARN", f"cannot read {config.source} to scan it for secrets: {e.strerror}")
        return
    found = find_secrets(text)
    if found:
        rep.line(
            "FAIL",
            f"{config.source} seems to contain secrets ({'; '.join(found)}): move them to the "
            "environment (POSTGRES_PASSWORD, a libpq passfile) and store only sha256 hashes of "
            "bearer tokens.",
        )
    else:
        rep.line("PASS", "no secrets found in the config file")


def check_preflight(config: GatewayConfig, rep: Report) -> None:
    """The checks `serve` runs before it starts (one implementation: mcp_gateway.preflight):
    a FAIL here is a gateway that would not start, or would refuse calls."""
    from mcp_gateway.preflight import preflight

    rep.section("preflight: what serve checks at start (paths as the worker identity, audit log, TLS, port, actors)")
    for finding in preflight(config):
        rep.line("FAIL" if not finding.ok else "WARN" if finding.warn else "PASS", finding.text)


def check_http(config: GatewayConfig, rep: Report) -> None:
    if config.server.transport != "http":
        rep.line("PASS", "transport is stdio: no network listener")
        return
    h = config.server.http
    tls = h.certfile is not None and h.keyfile is not None
    auth = bool(h.auth.bearer_tokens)
    if _is_loopback_host(h.host):
        rep.line(
            "PASS",
            f"HTTP bound to loopback ({h.host}:{h.port})"
            + ("" if auth else "; add bearer tokens if other local users must not call it"),
        )
    elif tls and auth and not h.allow_unauthenticated:
        rep.line("PASS", f"HTTP on {h.host}:{h.port} with TLS and bearer-token authentication")
    else:
        missing = [
            w
            for w, ok in (
                ("TLS (server.http.certfile/keyfile)", tls),
                ("bearer tokens (server.http.auth.bearer_tokens)", auth),
            )
            if not ok
        ]
        if h.allow_unauthenticated:
            missing.append("allow_unauthenticated: false")
        rep.line(
            "FAIL",
            f"HTTP is exposed on {h.host}:{h.port} without {' and '.join(missing)}: bind to "
            "127.0.0.1 behind a TLS proxy, or configure both.",
        )


def check_instances(config: GatewayConfig, rep: Report) -> None:
    """Each enabled instance's own checklist lines (its kind's `doctor_checks`)."""
    for instance in config.instances():
        kind = KINDS[instance.kind]
        for finding in [*kind.doctor_checks(instance), *kind.live_checks(instance, config)]:
            rep.line(finding.level, finding.text)


def run_doctor(config: GatewayConfig, out: TextIO = sys.stdout) -> int:
    """Print the report; return 1 when any check FAILs, else 0."""
    rep = Report(out)
    print(f"mcp-gateway doctor ({config.source or 'built-in config'})", file=out)
    check_sandbox(config, rep)
    check_policy(config, rep)
    check_secrets(config, rep)
    check_http(config, rep)
    check_instances(config, rep)
    check_preflight(config, rep)
    fails, warns = rep.results.count("FAIL"), rep.results.count("WARN")
    print(f"\n{fails} failed, {warns} warning(s), {rep.results.count('PASS')} passed", file=out)
    return 1 if rep.failed else 0
