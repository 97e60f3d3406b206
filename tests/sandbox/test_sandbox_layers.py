"""Each layer alone (every other layer off), in a forked child: what this one layer guarantees."""

from __future__ import annotations

import dataclasses
import encodings.idna  # noqa: F401 - lazily imported by create_connection; pre-import like the zygote
import os
import resource
import signal
import socket
import tempfile

import pytest

import mcp_gateway.sandbox as sandbox
from mcp_gateway.config import DEFAULT_UID_RANGE, SandboxSettings
from mcp_gateway.sandbox import SandboxError, apply, host_support
from mcp_gateway.sandbox._common import (
    PR_GET_DUMPABLE,
    PR_GET_NO_NEW_PRIVS,
    PR_GET_SECCOMP,
    LayerUnavailable,
    prctl,
    proc_status,
)
from mcp_gateway.sandbox.landlock import abi_version
from mcp_gateway.sandbox.profile import SandboxProfile
from tests.support.sandbox_probe import (
    IS_ROOT,
    TEST_MEMORY_MB,
    TEST_NOFILE,
    Sleeper,
    attempt,
    filesystem_profile,
    http_fetch_profile,
    loopback_listener,
    only,
    pending_connection,
    raw_syscall,
    run_child,
    settings,
)

MiB = 1024 * 1024


def try_fork() -> None:
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)


def test_user_layer_alone(tree: str) -> None:
    def probe():
        report = apply(filesystem_profile(tree), only("user"))
        st = proc_status()
        return {
            "report": report,
            "resuid": os.getresuid(),
            "resgid": os.getresgid(),
            "groups": os.getgroups(),
            "caps": {k: st[k] for k in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb")},
            "setuid0": attempt(lambda: os.setuid(0)),
            "nnp": prctl(PR_GET_NO_NEW_PRIVS),
        }

    o = run_child(probe)
    assert o.error is None, o
    r = o.result
    assert r["report"]["user"] != "off"
    assert all(r["report"][k] == "off" for k in ("prctl", "rlimits", "landlock", "seccomp"))
    for k in ("CapInh", "CapPrm", "CapEff", "CapAmb"):
        assert int(r["caps"][k], 16) == 0, r["caps"]
    assert r["nnp"] == 0  # the layer does not do more than it says
    if IS_ROOT:
        first, count = DEFAULT_UID_RANGE
        uid = r["resuid"][0]
        assert first <= uid < first + count, r["resuid"]
        assert r["report"]["user"] == f"uid {uid} gid {uid}, no capabilities (own uid, sandbox.uid_range)"
        assert r["resuid"] == [uid] * 3 and r["resgid"] == [uid] * 3
        assert r["groups"] in ([], [uid])
        assert int(r["caps"]["CapBnd"], 16) == 0
        assert r["setuid0"] == "EPERM"
    else:
        assert r["report"]["user"].startswith("not needed (not root)")


@pytest.mark.skipif(not IS_ROOT, reason="switching users needs root")
def test_user_layer_accepts_names() -> None:
    s = SandboxSettings.model_validate(
        {
            "uid_range": None,
            "user": "nobody",
            "group": "nogroup",
            "layers": {"prctl": "off", "rlimits": "off", "landlock": "off", "seccomp": "off"},
        }
    )
    o = run_child(lambda: (apply(SandboxProfile("filesystem"), s), os.getresuid())[1])
    assert o.error is None and o.result == [65534] * 3, o


@pytest.mark.skipif(not IS_ROOT, reason="switching users needs root")
def test_user_layer_refuses_root_target() -> None:
    s = SandboxSettings.model_validate(
        {"uid_range": None, "user": 0,
         "layers": {"prctl": "off", "rlimits": "off", "landlock": "off", "seccomp": "off"}}
    )
    o = run_child(lambda: apply(SandboxProfile("filesystem"), s))
    assert o.error and o.error.startswith("SandboxError") and "must not be root" in o.error


def test_prctl_layer_alone(tree: str) -> None:
    def probe():
        report = apply(filesystem_profile(tree), only("prctl"))
        return {
            "report": report,
            "nnp": prctl(PR_GET_NO_NEW_PRIVS),
            "dumpable": prctl(PR_GET_DUMPABLE),
            "seccomp": prctl(PR_GET_SECCOMP),
        }

    o = run_child(probe)
    assert o.error is None, o
    assert o.result["report"]["prctl"] == "no_new_privs, not dumpable"
    assert (o.result["nnp"], o.result["dumpable"], o.result["seccomp"]) == (1, 0, 0)


def test_rlimits_layer_alone(tree: str) -> None:
    scratch = tempfile.mkdtemp(prefix="mcp-sbx-rl-")
    os.chmod(scratch, 0o777)  # noqa: S103
    target = os.path.join(scratch, "grow.bin")

    def probe():
        data_before = int(proc_status()["VmData"].split()[0]) * 1024
        report = apply(filesystem_profile(tree), only("rlimits"))
        out = {"report": report, "data_before": data_before}
        out["limits"] = {
            k: resource.getrlimit(getattr(resource, f"RLIMIT_{k}"))[0]
            for k in ("DATA", "CPU", "NOFILE", "NPROC", "FSIZE", "CORE")
        }

        def grow():
            with open(target, "wb") as f:
                f.write(b"x")

        out["write_file"] = attempt(grow)
        out["memory"] = attempt(lambda: bytearray(2 * TEST_MEMORY_MB * MiB))
        fds: list[int] = []

        def exhaust():
            for _ in range(TEST_NOFILE + 8):
                fds.append(os.open("/dev/null", os.O_RDONLY))

        out["nofile"] = attempt(exhaust)
        for fd in fds:
            os.close(fd)
        out["fork"] = attempt(try_fork)
        out["small_alloc"] = len(bytearray(4 * MiB))
        return out

    o = run_child(probe)
    assert o.error is None, o
    r = o.result
    # RLIMIT_DATA is memory_mb on top of the data the process already had when it confined itself.
    data_over = r["limits"].pop("DATA") - r["data_before"] - TEST_MEMORY_MB * MiB
    assert 0 <= data_over < 16 * MiB, data_over
    assert r["limits"] == {
        "CPU": 30,
        "NOFILE": TEST_NOFILE,
        "NPROC": 0,
        "FSIZE": 0,
        "CORE": 0,
    }
    assert r["write_file"] == "EFBIG"  # SIGXFSZ ignored: a clean error, not a death
    assert r["memory"] == "MemoryError"
    assert r["nofile"] == "EMFILE"
    assert r["small_alloc"] == 4 * MiB
    # uid 0 is exempt from RLIMIT_NPROC: that is why the uid drop comes first.
    assert r["fork"] == ("ok" if IS_ROOT else "EAGAIN")


def test_rlimits_with_user_drop_forbid_fork(tree: str) -> None:
    s = settings(prctl="off", landlock="off", seccomp="off")
    o = run_child(lambda: (apply(filesystem_profile(tree), s), attempt(try_fork))[1])
    assert o.error is None and o.result == "EAGAIN", o


@pytest.mark.skipif(abi_version() < 1, reason="no Landlock on this kernel")
def test_landlock_layer_alone(tree: str, sleeper: Sleeper) -> None:
    listener, other = loopback_listener(), loopback_listener()
    port, other_port = listener.getsockname()[1], other.getsockname()[1]
    base = os.path.dirname(tree)
    profile = dataclasses.replace(
        filesystem_profile(tree), connect_ports=(port,), socket_families=(socket.AF_INET,)
    )

    def probe():
        report = apply(profile, only("landlock"))
        out = {"report": report}
        out["read_inside"] = open(os.path.join(tree, "hello.txt")).read()
        out["read_outside"] = attempt(lambda: open(os.path.join(base, "secret.txt")).read())
        out["write_inside"] = attempt(lambda: open(os.path.join(tree, "new.txt"), "w").close())
        out["mkdir_inside"] = attempt(lambda: os.mkdir(os.path.join(tree, "d")))
        out["exec"] = attempt(lambda: os.execv("/bin/true", ["true"]))  # noqa: S606

        def connect(p):
            with socket.create_connection(("127.0.0.1", p), timeout=5):
                pass

        out["connect_allowed"] = attempt(lambda: connect(port))
        out["connect_other"] = attempt(lambda: connect(other_port))

        def bind():
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))

        out["bind"] = attempt(bind)
        out["kill_other"] = attempt(lambda: os.kill(sleeper.pid, signal.SIGTERM))
        out["fork"] = attempt(try_fork)  # Landlock alone does not stop fork
        return out

    try:
        o = run_child(probe)
    finally:
        pass
    assert o.error is None, o
    r = o.result
    abi = abi_version()
    assert r["report"]["landlock"].startswith(f"ABI {abi}: fs read-only 1 path")
    assert r["read_inside"] == "hello\n"
    for key in ("read_outside", "write_inside", "mkdir_inside", "exec"):
        assert r[key] == "EACCES", (key, r[key])
    if abi >= 4:
        assert r["connect_allowed"] == "ok" and pending_connection(listener)
        assert r["connect_other"] == "EACCES" and not pending_connection(other)
        assert r["bind"] == "EACCES"
    if abi >= 6:
        assert r["kill_other"] == "EPERM"
        assert sleeper.alive()
    assert r["fork"] == "ok"
    listener.close()
    other.close()


def test_landlock_skips_missing_paths() -> None:
    profile = SandboxProfile("filesystem", read_paths=("/nonexistent/mcp-gateway",))
    o = run_child(lambda: apply(profile, only("landlock"))["landlock"])
    if abi_version() < 1:
        assert o.error and "SandboxError" in o.error
    else:
        assert (
            o.error is None and "fs read-only 0 paths" in o.result and "/nonexistent/mcp-gateway" in o.result
        )


def test_seccomp_layer_alone(tree: str) -> None:
    def probe():
        report = apply(filesystem_profile(tree), only("seccomp"))
        out = {"report": report}
        out["socket"] = attempt(lambda: socket.socket())
        out["clone3"] = attempt(lambda: raw_syscall(435, 0, 0))
        out["fork"] = attempt(try_fork)
        out["write_open"] = attempt(lambda: open(os.path.join(tree, "new.txt"), "w"))
        out["read_outside"] = attempt(lambda: open("/etc/hostname").read(0))  # Landlock's job, not this one
        out["nnp"] = prctl(PR_GET_NO_NEW_PRIVS)
        return out

    o = run_child(probe)
    assert o.error is None, o
    r = o.result
    assert r["report"]["seccomp"].startswith("allowlist ") and "(fs)" in r["report"]["seccomp"]
    assert r["socket"] == "EPERM" and r["fork"] == "EPERM" and r["write_open"] == "EPERM"
    assert r["clone3"] == "ENOSYS"
    assert r["read_outside"] == "ok"
    assert r["nnp"] == 1  # seccomp without CAP_SYS_ADMIN needs no_new_privs: implied


def test_seccomp_alone_kills_ptrace(tree: str, sleeper: Sleeper) -> None:
    o = run_child(
        lambda: (
            apply(filesystem_profile(tree), only("seccomp")),
            raw_syscall(101 if os.uname().machine == "x86_64" else 117, 16, sleeper.pid),
        )[1]
    )
    assert o.killed_by_sigsys, o


# --- apply(): modes, order, reports ----------------------------------------------------


def test_all_layers_off_changes_nothing(tree: str) -> None:
    s = settings(user="off", prctl="off", rlimits="off", landlock="off", seccomp="off")
    o = run_child(lambda: (apply(filesystem_profile(tree), s), prctl(PR_GET_NO_NEW_PRIVS), os.getuid()))
    assert o.error is None, o
    report, nnp, uid = o.result
    assert report == dict.fromkeys(("user", "prctl", "rlimits", "landlock", "seccomp"), "off")
    assert nnp == 0 and uid == os.getuid()


def test_required_layer_that_cannot_apply_raises(tree: str, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*_a, **_k):
        raise LayerUnavailable("the kernel has no Landlock (test)")

    def probe():
        monkeypatch.setattr(sandbox._landlock, "apply_landlock", broken)
        try:
            apply(filesystem_profile(tree), settings(landlock="required"))
        except SandboxError as e:
            return str(e)
        return "applied"

    o = run_child(probe)
    assert o.error is None and "'landlock' is required" in o.result and "best_effort" in o.result, o


def test_best_effort_layer_reports_unavailable(tree: str, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*_a, **_k):
        raise LayerUnavailable("the kernel has no Landlock (test)")

    def probe():
        monkeypatch.setattr(sandbox._landlock, "apply_landlock", broken)
        return apply(filesystem_profile(tree), settings(landlock="best_effort"))

    o = run_child(probe)
    assert o.error is None, o
    assert o.result["landlock"] == "unavailable: the kernel has no Landlock (test)"
    assert o.result["seccomp"].startswith("allowlist")  # later layers still apply


def test_limits_are_the_instances_own_else_its_kinds() -> None:
    from mcp_gateway.config import GatewayConfig

    config = GatewayConfig.model_validate({
        "connectors": {"postgres": {"instances": {"app": {}, "analytics": {}}}},
        "sandbox": {"limits": {"postgres": {"memory_mb": 1024, "cpu_s": 9, "nofile": 99},
                               "analytics": {"memory_mb": 2048}}}})
    app, analytics = config.instance("app"), config.instance("analytics")
    assert config.sandbox.limits_for(app).model_dump() == {"memory_mb": 1024, "cpu_s": 9, "nofile": 99}
    assert config.sandbox.limits_for(analytics).model_dump() == {"memory_mb": 2048, "cpu_s": 300, "nofile": 64}
    assert config.sandbox.limits_for(config.instance("fs")).model_dump() == {"memory_mb": 512, "cpu_s": 300,
                                                                             "nofile": 64}


def test_http_fetch_filter_allows_only_its_families() -> None:
    from mcp_gateway.sandbox.seccomp import build_filter

    _, fs_count = build_filter(("openat2",), ())
    _, fetch_count = build_filter((), http_fetch_profile().socket_families)
    assert fetch_count > fs_count - 1  # socket/connect/setsockopt added, openat2 not


def test_host_support_describes_every_layer() -> None:
    hs = host_support()
    for key in ("running as", "landlock", "seccomp", "user namespaces", "no_new_privs"):
        assert key in hs
    if abi_version() > 0:
        assert hs["landlock"].startswith(f"ABI {abi_version()}")
    assert hs["seccomp"].startswith("available")
