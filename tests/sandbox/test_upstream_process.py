"""A hostile upstream MCP server, confined by start_upstream, attacks from inside: every attempt fails.

Real processes and real layers: the gateway's zygote forks the warden, which forks the server;
the server confines itself and execs the stand-in (upstream_hostile.py) with the system
Python. Each mode runs once per module (one server, many attacks); the tests assert on what
the attacks reported. `namespaces`: own pid and network namespaces (root, or a user namespace
of its own as nobody); `floor`: namespaces off, what holds without them. Attacks that could
reach a blocked address live in test_upstream_egress_in_netns.py (inside a test-made network
namespace).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import tempfile
import threading

import pytest
import trio

from mcp_gateway.connectors.mcp_servers.process import UpstreamStarter, UpstreamStartError, start_upstream
from mcp_gateway.sandbox import namespaces
from mcp_gateway.sandbox._common import proc_status
from mcp_gateway.workers.zygote import STDERR_TOTAL
from tests.sandbox.upstream_support import HERE, MODES, Area, Client, make_config, run_session, start

SECRET_NAME, SECRET_VALUE = "MCPGW_TEST_GATEWAY_SECRET", "do-not-leak-4f1c2b"
TOKEN_NAME, TOKEN_VALUE = "MCPGW_TEST_UPSTREAM_TOKEN", "token-for-the-server"
IS_ROOT = os.geteuid() == 0


def _skip_without_namespaces(mode: str) -> None:
    if mode == "namespaces" and (why := namespaces.available()) is not None:
        pytest.skip(f"this host cannot make namespaces for uid {os.geteuid()} ({why}); the floor mode is tested")


class Listener:
    """A loopback TCP listener that counts the connections it accepts."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted += 1
            conn.close()


def _tree(root: int) -> list[int]:
    """Host pids of `root` and every process below it (from /proc's PPid links)."""
    parents: dict[int, int] = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                parents[int(name)] = int(proc_status(name)["PPid"])
            except (OSError, KeyError, ValueError):
                continue
    found, frontier = [root], [root]
    while frontier:
        frontier = [p for p, pp in parents.items() if pp in frontier]
        found += frontier
    return found


def _alive(pid: int) -> bool:
    try:
        return proc_status(pid).get("State", "Z").split()[0] not in ("Z", "X")
    except OSError:
        return False


@pytest.fixture(scope="module", params=MODES)
def attacks(request):
    """Run every attack once against one confined server of this mode; name -> outcome."""
    mode = request.param
    _skip_without_namespaces(mode)
    area, listener = Area(), Listener()
    os.environ[SECRET_NAME], os.environ[TOKEN_NAME] = SECRET_VALUE, TOKEN_VALUE
    config = make_config(area, mode, env={"VISIBLE": "1"}, env_from_gateway=[TOKEN_NAME])
    me = os.getpid()

    async def script(client: Client, proc) -> dict:
        out = {"mode": mode, "pid": proc.pid, "layers": proc.layers, "status": proc_status(proc.pid)}
        for name, tool, args in [
            ("shadow", "read_file", {"path": "/etc/shadow"}),
            ("passwd", "read_file", {"path": "/etc/passwd"}),
            ("secret", "read_file", {"path": str(area.secret)}),
            ("own_code", "read_file", {"path": str(area.script)}),
            ("supervisor_environ", "read_file", {"path": f"/proc/{me}/environ"}),
            ("write_outside", "write_file", {"path": str(area.outside / "x")}),
            ("write_code", "write_file", {"path": str(area.code / "x")}),
            ("write_tmp", "write_file", {"path": "/tmp/mcpgw-upstream-escape"}),  # noqa: S108 - the attack
            ("write_allowed", "write_file", {"path": str(area.writable / "x")}),
            ("exec_sh", "execute", {"path": "/bin/sh"}),
            ("connect_loopback", "connect", {"host": "127.0.0.1", "port": listener.port}),
            ("signal_supervisor", "kill", {"pid": me, "sig": int(signal.SIGTERM)}),
            ("signal_zygote", "kill", {"pid": int(proc_status(proc.warden_pid)["PPid"]), "sig": int(signal.SIGKILL)}),
            ("signal_warden", "kill", {"pid": proc.warden_pid, "sig": int(signal.SIGKILL)}),
            ("environ", "environ", {}),
            ("threads", "threads", {"count": 16}),
            ("tree", "spawn_tree", {"count": 3}),
            ("setsid", "escape", {"call": "setsid"}),
            ("setpgid", "escape", {"call": "setpgid"}),
            ("io_uring", "escape", {"call": "io_uring_setup"}),
        ]:
            out[name] = await client.tool(tool, **args)
        out["tree_pids"] = _tree(proc.warden_pid)
        out["zombies"] = await client.tool("spawn_zombies", count=5)
        out["zombies_left"] = await _zombies_after(proc.warden_pid)
        await proc.kill_tree()
        out["exit"] = proc.exit_status()
        return out

    try:
        result = trio.run(run_session, config, script)
    finally:
        del os.environ[SECRET_NAME], os.environ[TOKEN_NAME]
    result["listener_accepted"] = listener.accepted
    yield result
    listener.sock.close()
    area.remove()


def _refused(outcome: dict, *errors: str) -> None:
    assert outcome["ok"] is False, outcome
    if errors:
        assert outcome["error"] in errors, outcome


def test_proc_status_shows_the_confinement(attacks):
    status = attacks["status"]
    assert status["NoNewPrivs"] == "1"
    assert status["Seccomp"] == "2"
    for key in ("CapEff", "CapPrm", "CapInh", "CapAmb"):
        assert int(status[key], 16) == 0, (key, status[key])
    uids = status["Uid"].split()
    assert len(set(uids)) == 1
    if IS_ROOT:
        first, count = (1_879_048_192, 65_536)
        assert first <= int(uids[0]) < first + count, uids  # its own uid from sandbox.uid_range
        assert int(status["CapBnd"], 16) == 0
    else:
        assert int(uids[0]) == os.getuid()
    if attacks["mode"] == "namespaces":
        # pid 2 of its own pid namespace, under the namespace's init (which reaps its orphans)
        assert status["NSpid"].split()[1:] == ["2"], status["NSpid"]
    layers = attacks["layers"]
    for layer in ("user", "prctl", "rlimits", "landlock", "seccomp"):
        assert not layers[layer].startswith(("off", "unavailable")), layers


def test_files_outside_its_paths_cannot_be_read(attacks):
    _refused(attacks["shadow"], "EACCES")
    _refused(attacks["passwd"], "EACCES")
    _refused(attacks["secret"], "EACCES")
    _refused(attacks["supervisor_environ"], "EACCES", "EPERM")
    assert attacks["own_code"]["ok"] is True


def test_it_writes_only_its_write_paths(attacks):
    _refused(attacks["write_outside"], "EACCES")
    _refused(attacks["write_code"], "EACCES")
    _refused(attacks["write_tmp"], "EACCES")
    assert attacks["write_allowed"] == {"ok": True}


def test_it_cannot_execute_a_shell(attacks):
    _refused(attacks["exec_sh"], "EACCES")


def test_network_none_allows_no_socket(attacks):
    _refused(attacks["connect_loopback"], "EPERM")
    assert attacks["listener_accepted"] == 0


def test_it_cannot_signal_the_gateway(attacks):
    _refused(attacks["signal_supervisor"], "EPERM")
    _refused(attacks["signal_zygote"], "EPERM", "ESRCH")
    _refused(attacks["signal_warden"], "EPERM", "ESRCH")


def test_environment_is_exactly_env_and_env_from_gateway(attacks):
    assert attacks["environ"]["env"] == {"VISIBLE": "1", TOKEN_NAME: TOKEN_VALUE}


def test_threads_run(attacks):
    assert attacks["threads"] == {"ok": True, "threads": 16}


def test_it_cannot_leave_its_process_group_and_io_uring_is_refused_politely(attacks):
    _refused(attacks["setsid"], "EPERM")
    _refused(attacks["setpgid"], "EPERM")
    _refused(attacks["io_uring"], "EPERM")  # an errno runtimes fall back from, not a kill


def test_the_attacks_succeed_without_the_layers():
    """The attack tests can fail: with every layer off the same attempts succeed."""
    area, listener = Area(), Listener()
    config = make_config(area, "floor")
    config = config.model_copy(update={"sandbox": config.sandbox.model_copy(update={
        "layers": config.sandbox.layers.model_copy(update={layer: "off" for layer in
                                                            ("user", "prctl", "rlimits", "landlock", "seccomp")})})})

    async def script(client: Client, proc) -> dict:
        return {"passwd": await client.tool("read_file", path="/etc/passwd"),
                "secret": await client.tool("read_file", path=str(area.secret)),
                "exec_sh": await client.tool("execute", path="/bin/sh"),
                "connect": await client.tool("connect", host="127.0.0.1", port=listener.port)}

    try:
        out = trio.run(run_session, config, script)
    finally:
        listener.sock.close()
        area.remove()
    assert all(outcome["ok"] for outcome in out.values()), out


async def _zombies_after(root: int) -> list[int]:
    """Zombies still below `root` once they had time to be reaped (a bounded wait)."""
    with trio.move_on_after(5):
        while _zombies(root):
            await trio.sleep(0.1)
    return _zombies(root)


def _zombies(root: int) -> list[int]:
    found = []
    for pid in _tree(root):
        try:
            if proc_status(pid).get("State", "").startswith("Z"):
                found.append(pid)
        except OSError:
            continue
    return found


def test_orphans_are_reaped(attacks):
    assert attacks["zombies"] == {"ok": True}
    assert attacks["zombies_left"] == []


def test_kill_tree_kills_every_descendant(attacks):
    tree = attacks["tree_pids"]
    assert attacks["tree"]["ok"] is True
    assert len(tree) >= 2 + 3, tree  # the warden, the server and its three detached grandchildren
    assert [pid for pid in tree if _alive(pid)] == []
    assert attacks["exit"] == "killed by SIGKILL"


@pytest.fixture(scope="module", params=MODES)
def faults(request):
    """One server per mode: threads under a small max_processes, a stderr flood, then its own exit."""
    mode = request.param
    _skip_without_namespaces(mode)
    area = Area()

    async def script(client: Client, proc) -> dict:
        out = {"orphans": await client.tool("spawn_tree", count=2)}
        for kind in ("shared", "growsdown", "heap"):  # 3 x the memory limit, each kind
            out[f"memory_{kind}"] = await client.tool("allocate", kind=kind, mib=3 * 128)
        out["memory_small"] = await client.tool("allocate", kind="heap", mib=16)
        out["few"] = await client.tool("threads", count=4)
        out["many"] = await client.tool("threads", count=64)
        out["flood"] = await client.tool("flood_stderr", size=8 * STDERR_TOTAL)
        out["alive"] = await client.tool("whoami")  # the relay drained the pipe: the server was never blocked
        out["tree"] = _tree(proc.warden_pid)
        await proc.send_stream.send_all(b'{"jsonrpc":"2.0","id":99,"method":"tools/call","params":'
                                        b'{"name":"exit_now","arguments":{"code":3}}}\n')
        with trio.fail_after(30):
            out["exit"] = await proc.wait()
        out["left"] = [pid for pid in out["tree"] if _alive(pid)]  # before kill_tree: the warden's own doing
        return out

    try:
        with stderr_captured() as err:
            out = trio.run(run_session, make_config(area, mode, limits={"max_processes": 24, "memory_mb": 128}),
                       script)
        out["stderr"] = err[0]
    finally:
        area.remove()
    return out


@contextlib.contextmanager
def stderr_captured():
    """What the gateway's processes write on fd 2 (the zygote's stderr relay writes there)."""
    saved = os.dup(2)
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        out: list[str] = []
        try:
            yield out
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            out.append(sink.read().decode(errors="replace"))


@pytest.mark.parametrize("kind", ["shared", "growsdown", "heap"])
def test_memory_past_the_limit_cannot_be_had_of_any_kind(faults, kind):
    _refused(faults[f"memory_{kind}"], "EPERM", "ENOMEM", "MemoryError: ")
    assert faults["memory_small"]["ok"] is True  # and it still allocates normally


def test_max_processes_bounds_threads(faults):
    assert faults["few"] == {"ok": True, "threads": 4}
    _refused(faults["many"])
    assert "thread" in faults["many"]["error"], faults["many"]


def test_stderr_flood_is_bounded(faults):
    assert faults["flood"]["ok"] and faults["flood"]["written"] >= 8 * STDERR_TOTAL
    assert faults["alive"]["ok"] is True
    err = faults["stderr"]
    assert "dropping the excess" in err
    assert err.count("E") < STDERR_TOTAL + 64 * 1024, len(err)


def test_its_own_death_is_observed_and_ends_what_it_started(faults):
    assert faults["exit"] == "exited with status 3"
    assert faults["orphans"]["ok"] is True, faults["orphans"]
    assert len(faults["tree"]) >= 2 + 2, faults["tree"]
    assert faults["left"] == []


def test_a_missing_env_from_gateway_variable_refuses_the_start():
    area = Area()
    config = make_config(area, "floor", env_from_gateway=["MCPGW_TEST_NOT_SET_ANYWHERE"])
    try:
        with pytest.raises(UpstreamStartError, match="MCPGW_TEST_NOT_SET_ANYWHERE"):
            trio.run(start_upstream, start(config), config)
    finally:
        area.remove()


def test_a_script_run_through_env_is_refused():
    area = Area()
    script = area.code / "via-env"
    script.write_text("#!/usr/bin/env python3\nprint('hi')\n")
    script.chmod(0o755)
    config = make_config(area, "floor", command=[str(script)])
    try:
        with pytest.raises(UpstreamStartError, match="#!/usr/bin/env"):
            trio.run(start_upstream, start(config), config)
    finally:
        area.remove()


@pytest.mark.skipif(not os.path.exists("/usr/bin/node"), reason="node is not installed")
def test_a_node_server_runs_confined():
    mode = "namespaces" if namespaces.available() is None else "floor"
    area = Area()
    js = area.code / "upstream_node.js"
    shutil.copy(HERE / "upstream_node.js", js)
    js.chmod(0o644)
    config = make_config(area, mode, command=["/usr/bin/node", str(js)])

    async def script(client: Client, proc) -> dict:
        out = await client.tool("anything")
        out["threads"] = int(proc_status(proc.pid)["Threads"])
        out["status"] = proc_status(proc.pid)
        return out

    try:
        out = trio.run(run_session, config, script)
    finally:
        area.remove()
    assert out["passwd"] == "EACCES"  # noqa: S105 - an outcome, not a password
    assert out["exec"] == "EACCES"
    assert out["env"] == {}
    assert out["threads"] > 1  # libuv and V8 threads started under RLIMIT_NPROC
    assert out["status"]["Seccomp"] == "2" and out["status"]["NoNewPrivs"] == "1"


def test_a_starter_restarts_from_its_warm_zygote():
    """kill_tree then start again: a new server from the same zygote; each exit is its own (the
    second dies of SIGSYS: seccomp kills a server that tries to make a user namespace)."""
    area = Area()
    config = make_config(area, "floor")

    async def scenario() -> dict:
        starter = UpstreamStarter(start(config), config)
        try:
            first = await starter.start()
            state = str(area.writable / "state.json")
            wrote = [await Client(first).tool("write_file", path=state, data="1")]
            zygote = int(proc_status(first.warden_pid)["PPid"])
            await first.kill_tree()
            second = await starter.start()
            same_zygote = int(proc_status(second.warden_pid)["PPid"]) == zygote
            client = Client(second)
            answer = await client.request("tools/list")
            wrote.append(await client.tool("write_file", path=state, data="2"))  # its own file still
            await second.send_stream.send_all(b'{"jsonrpc":"2.0","id":7,"method":"tools/call","params":'
                                              b'{"name":"escape","arguments":{"call":"unshare_user"}}}\n')
            with trio.fail_after(30):
                await second.wait()
            await second.kill_tree()
            return {"first": first.exit_status(), "second": second.exit_status(), "same": same_zygote,
                    "pids": (first.pid, second.pid), "tools": len(answer["tools"]), "wrote": wrote}
        finally:
            starter.close()

    try:
        out = trio.run(scenario)
    finally:
        area.remove()
    assert out["same"] is True
    assert out["first"] == "killed by SIGKILL"
    assert out["second"] == "killed by SIGSYS"
    assert out["pids"][0] != out["pids"][1] and out["tools"] > 0
    # As root each start gets the instance's own uid again (while free): what it wrote stays writable.
    assert out["wrote"] == [{"ok": True}, {"ok": True}]


def test_a_cancelled_kill_tree_still_ends_everything():
    """kill_tree under a caller's short deadline: whatever it did not wait for is killed anyway."""
    area = Area()
    config = make_config(area, "floor")

    async def scenario() -> list[int]:
        proc = await start_upstream(start(config), config)
        await Client(proc).tool("spawn_tree", count=2)
        tree = _tree(proc.warden_pid)
        with trio.move_on_after(0):  # cancelled at its first checkpoint
            await proc.kill_tree()
        return tree

    try:
        tree = trio.run(scenario)
    finally:
        area.remove()

    left = trio.run(_wait_gone, tree)
    assert len(tree) >= 4 and left == [], (tree, left)


async def _wait_gone(pids: list[int]) -> list[int]:
    with trio.move_on_after(10):
        while [p for p in pids if _alive(p)]:
            await trio.sleep(0.05)
    return [p for p in pids if _alive(p)]
