"""Confinement of worker processes, one module per concern (nsjail style).

`apply()` runs in a freshly forked, single-threaded worker whose descriptors are already closed
(fd 0-2 and the IPC socket on fd 3 stay) and whose modules are already imported. Order:

    user (a uid/gid of the worker's own, no capabilities) -> prctl (no_new_privs, dumpable 0) -> rlimits
    -> Landlock -> seccomp

The uid drop comes first because RLIMIT_NPROC does not bind uid 0 and because the bounding set
can only be emptied while still privileged; seccomp comes last so the earlier layers may use
calls the filter refuses (setresuid, landlock_*, prctl).

Every layer obeys `sandbox.layers.<layer>`: `required` (cannot apply -> SandboxError, the
worker does not start), `best_effort` (applied when the host can; otherwise reported as
"unavailable: why"), `off` (skipped, reported "off").
"""

from __future__ import annotations

import os
from collections.abc import Callable

from mcp_gateway.config import SandboxSettings
from mcp_gateway.sandbox import _common
from mcp_gateway.sandbox import identity as _identity
from mcp_gateway.sandbox import landlock as _landlock
from mcp_gateway.sandbox import seccomp as _seccomp
from mcp_gateway.sandbox._common import PR_GET_SECCOMP, LayerUnavailable, proc_status
from mcp_gateway.sandbox.limits import apply_rlimits
from mcp_gateway.sandbox.prctl import apply_prctl
from mcp_gateway.sandbox.profile import SandboxProfile
from mcp_gateway.sandbox.user import drop_privileges

LAYERS = ("user", "prctl", "rlimits", "landlock", "seccomp")

__all__ = ["LAYERS", "SandboxError", "SandboxProfile", "apply", "check_identities", "host_support", "run_layers",
           "with_limits"]


class SandboxError(Exception):
    """A layer configured as `required` could not be applied."""


def check_identities(settings: SandboxSettings) -> str | None:
    """At start, as root: refuse (SandboxError) a sandbox.uid_range that is not ours to use."""
    if os.geteuid() != 0 or settings.uid_range is None or settings.layers.user == "off":
        return None
    try:
        return _identity.check_range(*settings.uid_range)
    except _identity.IdentityError as e:
        raise SandboxError(f"the gateway cannot start: {e}") from None


def become_worker_identity(settings: SandboxSettings) -> str:
    """As root with a uid_range: a uid/gid of this worker's own; else the shared user/group."""
    if os.geteuid() == 0 and settings.uid_range is not None:
        uid = _identity.allocate(*settings.uid_range)
        return drop_privileges(uid, uid) + " (own uid, sandbox.uid_range)"
    return drop_privileges(settings.user, settings.group)


def _steps(
    profile: SandboxProfile, settings: SandboxSettings, anchors: _landlock.ReadAnchors
) -> list[tuple[str, Callable[[], str]]]:
    return [
        ("user", lambda: become_worker_identity(settings)),
        ("prctl", apply_prctl),
        ("rlimits", lambda: apply_rlimits(profile.memory_mb, profile.cpu_s, profile.nofile)),
        ("landlock", lambda: _landlock.apply_landlock(anchors, profile.connect_ports)),
        ("seccomp", lambda: _seccomp.apply_seccomp(profile.instance, profile.extra_syscalls,
                                                   profile.socket_families)),
    ]


def apply(profile: SandboxProfile, settings: SandboxSettings) -> dict[str, str]:
    """Confine the calling (freshly forked, single-threaded) worker. Returns layer -> status."""
    # Opened before the uid drop: see ReadAnchors.
    anchors = _landlock.ReadAnchors(profile.read_paths if settings.layers.landlock != "off" else ())
    try:
        return run_layers(_steps(profile, settings, anchors), settings, f"the {profile.instance} worker")
    finally:
        anchors.close()


def run_layers(steps: list[tuple[str, Callable[[], str]]], settings: SandboxSettings, subject: str) -> dict[str, str]:
    """Apply each (layer, step) under its `sandbox.layers` mode, in order. Returns layer -> status;
    SandboxError for a required layer that could not be applied (`subject` names who)."""
    report: dict[str, str] = {}
    for layer, step in steps:
        mode = getattr(settings.layers, layer)
        if mode == "off":
            report[layer] = "off"
            continue
        try:
            report[layer] = step()
        except (LayerUnavailable, OSError, ValueError) as e:
            why = str(e) if isinstance(e, LayerUnavailable) else f"{type(e).__name__}: {e}"
            if mode == "required":
                raise SandboxError(
                    f"sandbox layer {layer!r} is required but could not be applied to "
                    f"{subject}: {why}. Fix the host, or set "
                    f"sandbox.layers.{layer} to best_effort (or off) knowingly."
                ) from e
            report[layer] = f"unavailable: {why}"
    return report


def host_support() -> dict[str, str]:
    """What this host offers each layer, for `mcp-gateway doctor` (no layer is applied)."""
    out: dict[str, str] = {}
    root = os.geteuid() == 0
    drops = "root: each worker drops to a uid of its own (sandbox.uid_range)" if root else "not root"
    out["running as"] = f"uid {os.getuid()} ({drops})"
    try:
        status = proc_status()
        caps = int(status.get("CapEff", "0"), 16)
        out["capabilities"] = "none" if caps == 0 else f"CapEff {status.get('CapEff')}"
    except OSError:
        status = {}
    abi = _landlock.abi_version()
    out["landlock"] = (
        f"ABI {abi}" + (" (fs)" if abi < 4 else " (fs, tcp)" if abi < 6 else " (fs, tcp, scoping)")
        if abi
        else f"unavailable: {_landlock.why_unavailable()}"
    )
    ok, why = _seccomp.available()
    if ok:
        try:
            mode = _common.prctl(PR_GET_SECCOMP)  # (`prctl` here is the submodule)
            why += f", this process in mode {mode}"
        except OSError:
            pass
    out["seccomp"] = why if ok else f"unavailable: {why}"
    out["no_new_privs"] = f"this process: {status.get('NoNewPrivs', '?')}"
    try:
        with open("/proc/sys/user/max_user_namespaces") as f:
            n = int(f.read())
        out["user namespaces"] = "enabled" if n > 0 else "disabled (max_user_namespaces 0)"
    except (OSError, ValueError):
        out["user namespaces"] = "unknown"
    from mcp_gateway.sandbox import namespaces

    no_ns = namespaces.available()
    out["namespaces (upstream servers)"] = (
        "pid + network namespaces can be made" if no_ns is None
        else f"unavailable ({no_ns}): upstream servers get the floor (docs/SANDBOX.md \"Upstream servers\")")
    return out
