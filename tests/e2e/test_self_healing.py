"""Process lifecycle on a real gateway: zygote restarts, worker deaths and their causes,
recycling, the deadline a worker is given, process titles."""

from __future__ import annotations

import json
import os
import re
import resource
import signal
import socket
import threading
import time
from contextlib import contextmanager

from tests.support.gateway_process import audit_lines, children, fs_config, raw_gateway, wait_until, worker_pids

HELLO = {"path": "hello.txt"}


def _wait_for(predicate, timeout=15.0):  # zygote restarts back off: a longer bound than the default
    return wait_until(predicate, timeout)


def _alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        return False


def _cmdline(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().split(b"\0")[0].decode()
    except (FileNotFoundError, ProcessLookupError):
        return ""


def _code(result):
    """The error code of a tool result, wherever this version of the gateway puts it."""
    if not result.get("isError"):
        return None
    meta = (result.get("_meta") or {}).get("io.mcp-gateway/error")
    if meta:
        return meta["error_code"]
    return (result.get("structuredContent") or {}).get("error_code")


def _reason(result):
    meta = (result.get("_meta") or {}).get("io.mcp-gateway/error")
    return (meta or result.get("structuredContent") or {}).get("reason", "")


SEED_INSTANCES = {"filesystem": "fs", "http_fetch": "web", "postgres": "db"}


def _zygote_of(gw, connector):
    """The zygote of the seed instance of kind `connector`."""
    for pid in children(gw.proc.pid):
        if _cmdline(pid) == f"mcp-gateway: {SEED_INSTANCES[connector]} zygote ({connector})":
            return pid
    return None


@contextmanager
def hanging_http_server():
    """A loopback TCP server that accepts and never answers: a fetch worker that connects to
    it is provably inside a call. Yields (port, queue of accepted connections)."""
    import queue

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    accepted: queue.Queue = queue.Queue()
    stop = threading.Event()

    def serve():
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except (TimeoutError, OSError):
                continue
            accepted.put(conn)

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    try:
        yield listener.getsockname()[1], accepted
    finally:
        stop.set()
        t.join(5)
        listener.close()
        while not accepted.empty():
            accepted.get().close()


def _both_config(gw_dir, port, timeout_ms=20000, fetch=None, fs=None):
    return fs_config(gw_dir, policy={"allow_tools": ["fs.readFile", "web.fetch"], "global_timeout_ms": timeout_ms},
                     connectors={"filesystem": {"workers": 2, **(fs or {})},
                                 "http_fetch": {"enabled": True, "allowed_domains": ["*"], "workers": 1,
                                                "allow_internal_cidrs": ["127.0.0.1/32"], "allowed_ports": [port],
                                                **(fetch or {})}})


def _send_call(gw, rid, tool, arguments):
    gw.send_json({"jsonrpc": "2.0", "id": rid, "method": "tools/call",
                  "params": {"name": tool, "arguments": arguments}})


def _stderr_so_far(gw, wait_for: str, timeout=10.0, count: int = 1) -> str:
    """The gateway's stderr read while it runs, until `wait_for` appears (`count` times)."""
    import select

    fd = gw.proc.stderr.fileno()
    deadline = time.monotonic() + timeout
    while gw._stderr.count(wait_for.encode()) < count:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            raise AssertionError(f"{wait_for!r} not logged; stderr: {gw._stderr[-3000:]!r}")
        gw._stderr += os.read(fd, 65536)
    return gw._stderr.decode(errors="replace")


# --- zygotes ------------------------------------------------------------------------------


def test_a_dead_zygote_is_restarted_and_every_call_is_answered(gw_dir):
    """Kill the filesystem zygote and all its workers under load: every call is answered
    (served, or WORKER_CRASHED / UNAVAILABLE), the connector is back within seconds, and
    web.fetch never notices."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Page(BaseHTTPRequestHandler):
        def log_message(self, *a):
            pass

        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

    page = ThreadingHTTPServer(("127.0.0.1", 0), Page)
    threading.Thread(target=page.serve_forever, daemon=True).start()
    port = page.server_address[1]
    url = f"http://127.0.0.1:{port}/page"
    try:
        with raw_gateway(_both_config(gw_dir, port)) as gw:
            fs_zygote = _wait_for(lambda: _zygote_of(gw, "filesystem"))
            fetch_zygote = _zygote_of(gw, "http_fetch")
            fetch_workers = children(fetch_zygote)
            fs_workers = _wait_for(lambda: children(fs_zygote) if len(children(fs_zygote)) == 2 else None)
            # One call provably in flight: its request sits unread in a stopped worker.
            os.kill(fs_workers[0], signal.SIGSTOP)
            ids = list(range(500, 530))
            for i in ids[:10]:
                _send_call(gw, i, "fs.readFile", HELLO)
            os.kill(fs_zygote, signal.SIGKILL)
            for w in fs_workers:
                os.kill(w, signal.SIGKILL)
            for i in ids[10:20]:
                _send_call(gw, i, "fs.readFile", HELLO)
            for i in ids[20:]:
                _send_call(gw, i, "web.fetch", {"url": url})
            replies = {}
            while len(replies) < len(ids):
                r = gw.read(timeout=30)
                replies[r["id"]] = r["result"]
            for i in ids[20:]:
                assert _code(replies[i]) is None, replies[i]  # the other connector never noticed
            for i in ids[:20]:
                assert _code(replies[i]) in (None, "WORKER_CRASHED", "UNAVAILABLE"), replies[i]
            # Back within seconds, from a new zygote (a fresh interpreter) with new workers.
            new_zygote = _wait_for(lambda: (z := _zygote_of(gw, "filesystem")) and z != fs_zygote and z)
            assert not _alive(fs_zygote)
            _wait_for(lambda: _code(gw.call("fs.readFile", HELLO)) is None, timeout=10)
            assert len(_wait_for(lambda: children(new_zygote) if len(children(new_zygote)) == 2 else None)) == 2
            assert _zygote_of(gw, "http_fetch") == fetch_zygote and children(fetch_zygote) == fetch_workers
            log = _stderr_so_far(gw, "(zygote restarted)")
            # The fresh-interpreter zygote's workers have the same layers as the first ones (the
            # numbers differ: each worker's own uid, the address-space baseline it measured).
            sandboxes = re.findall(r"fs: 2 workers ready; sandbox: (.*?)( \(zygote restarted\))?$", log, re.M)
            layers = [re.sub(r"\d+", "#", text) for text, _ in sandboxes]
            assert len(layers) == 2 and layers[0] == layers[1] and sandboxes[1][1]
            assert re.search(rf"ERROR .*the fs zygote \(pid {fs_zygote}\) killed by SIGKILL; starting a new "
                             "one", log), log[-3000:]
        lines = audit_lines(gw_dir)
        assert len({x["request_id"] for x in lines}) == len(lines) >= len(ids)  # one line per call
    finally:
        page.shutdown()
        page.server_close()


def test_a_call_with_no_live_worker_gets_unavailable_and_healthz_says_so(gw_dir):
    """A stopped zygote cannot replace the workers killed under it: the call waits for a
    worker within its timeout, then gets UNAVAILABLE (decision allow); /healthz and the
    live-workers gauge say 0, not the 2 that were once started. Then everything recovers."""
    import httpx

    from tests.support.http_gateway import HttpGateway, McpHttp, http_config, scrape

    config = http_config(gw_dir, policy={"global_timeout_ms": 500}, connectors={"filesystem": {"workers": 2}})
    with HttpGateway(config) as gw, McpHttp(gw.url) as client:
        client.initialize()
        (zygote,) = children(gw.proc.pid)
        os.kill(zygote, signal.SIGSTOP)
        try:
            for w in children(zygote):
                os.kill(w, signal.SIGKILL)
            result = client.call("fs.readFile", HELLO)
            assert _code(result) == "UNAVAILABLE", result
            assert "retry later" in _reason(result)
            health = httpx.get(gw.base + "/healthz", timeout=5)
            assert health.status_code == 503 and health.json()["workers"] == {"fs": 0}
            assert scrape(gw.base)[("mcp_gateway_workers_live", (("connector", "fs"),))] == 0
        finally:
            os.kill(zygote, signal.SIGCONT)
        _wait_for(lambda: httpx.get(gw.base + "/healthz", timeout=5).status_code == 200)
        assert scrape(gw.base)[("mcp_gateway_workers_live", (("connector", "fs"),))] == 2
        assert _code(client.call("fs.readFile", HELLO)) is None
    lines = audit_lines(gw_dir)
    assert [x["error_code"] for x in lines] == ["UNAVAILABLE", None]
    assert all(x["decision"] == "allow" for x in lines)


def test_a_call_inside_a_worker_when_its_zygote_dies_is_answered(gw_dir):
    with hanging_http_server() as (port, accepted):
        with raw_gateway(_both_config(gw_dir, port)) as gw:
            zygote = _zygote_of(gw, "http_fetch")
            _send_call(gw, 1, "web.fetch", {"url": f"http://127.0.0.1:{port}/slow"})
            accepted.get(timeout=10)  # read and started: it cannot be retried
            os.kill(zygote, signal.SIGKILL)  # the worker dies with it (pdeathsig)
            result = gw.read()["result"]
            assert _code(result) == "WORKER_CRASHED", result
            assert "died during the call" in _reason(result)
            assert _code(gw.call("fs.readFile", HELLO)) is None
            _wait_for(lambda: (z := _zygote_of(gw, "http_fetch")) and z != zygote and children(z))
    assert [x["error_code"] for x in audit_lines(gw_dir)] == ["WORKER_CRASHED", None]


# --- workers ------------------------------------------------------------------------------


def test_every_idle_worker_killed_at_once_costs_no_call(gw_dir):
    config = fs_config(gw_dir, connectors={"filesystem": {"workers": 3}})
    with raw_gateway(config) as gw:
        for _ in range(5):
            workers = _wait_for(lambda: worker_pids(gw.proc.pid) if len(worker_pids(gw.proc.pid)) == 3 else None)
            for w in workers:
                os.kill(w, signal.SIGKILL)
            result = gw.call("fs.readFile", HELLO)  # at once: no waiting for the deaths to be seen
            assert _code(result) is None, result
            _wait_for(lambda killed=workers: not any(_alive(w) for w in killed))
        # The zygote reaps each one and the pool logs how it died, call or no call.
        log = _stderr_so_far(gw, f"fs worker pid {workers[-1]} ")
        assert all(f"worker pid {w} " in log for w in workers)
    assert [x["error_code"] for x in audit_lines(gw_dir)] == [None] * 5


def test_a_worker_dying_mid_call_fails_only_that_call_and_says_how(gw_dir):
    with hanging_http_server() as (port, accepted):
        with raw_gateway(_both_config(gw_dir, port)) as gw:
            (worker,) = children(_zygote_of(gw, "http_fetch"))
            _send_call(gw, 1, "web.fetch", {"url": f"http://127.0.0.1:{port}/slow"})
            accepted.get(timeout=10)  # the worker is inside the call
            os.kill(worker, signal.SIGKILL)
            result = gw.read()["result"]
            assert _code(result) == "WORKER_CRASHED"
            assert "killed by SIGKILL" in _reason(result)
            assert _code(gw.call("fs.readFile", HELLO)) is None
            log = _stderr_so_far(gw, f"web worker pid {worker} killed by SIGKILL while serving request")
            assert "WARNING" in log
    assert [x["error_code"] for x in audit_lines(gw_dir)] == ["WORKER_CRASHED", None]


def test_a_worker_killed_by_sigsys_is_a_security_event(gw_dir):
    """SIGSYS from outside gives the wait status a seccomp kill gives: log, metric, audit."""
    from tests.support.http_gateway import HttpGateway, McpHttp, http_config, scrape

    with hanging_http_server() as (port, accepted):
        config = http_config(gw_dir, policy={"allow_tools": ["fs.readFile", "web.fetch"]},
                             connectors={"http_fetch": {"enabled": True, "allowed_domains": ["*"], "workers": 1,
                                                        "allow_internal_cidrs": ["127.0.0.1/32"],
                                                        "allowed_ports": [port]}})
        with HttpGateway(config) as gw, McpHttp(gw.url) as client:
            client.initialize()
            zygote = next(z for z in children(gw.proc.pid) if _cmdline(z) == "mcp-gateway: web zygote (http_fetch)")
            (worker,) = children(zygote)
            results = []
            t = threading.Thread(target=lambda: results.append(
                client.call("web.fetch", {"url": f"http://127.0.0.1:{port}/x"})))
            t.start()
            accepted.get(timeout=10)
            os.kill(worker, signal.SIGSYS)
            t.join(30)
            (result,) = results
            assert _code(result) == "WORKER_CRASHED"
            assert "the sandbox stopped the worker" in _reason(result) and "SIGSYS" in _reason(result)
            request_id = ((result.get("_meta") or {}).get("io.mcp-gateway/error")
                          or result["structuredContent"])["request_id"]
            log = _wait_for(lambda: "SECURITY" in gw.stderr() and gw.stderr())
            line = next(x for x in log.splitlines() if "SECURITY" in x)
            assert " ERROR " in line and f"pid {worker}" in line and "web" in line
            assert request_id in line and "SIGSYS" in line
            metrics = scrape(gw.base)
            assert metrics[("mcp_gateway_worker_sandbox_kills_total", (("connector", "web"),))] == 1
            assert metrics[("mcp_gateway_worker_sandbox_kills_total", (("connector", "fs"),))] == 0
    (line,) = [x for x in audit_lines(gw_dir) if x["request_id"] == request_id]
    assert "sandbox stopped the worker" in line["reason"] and line["error_code"] == "WORKER_CRASHED"


def test_workers_are_recycled_after_a_number_of_calls(gw_dir):
    config = fs_config(gw_dir, connectors={"filesystem": {"workers": 1, "recycle_after_calls": 3}})
    with raw_gateway(config) as gw:
        first = worker_pids(gw.proc.pid)
        for _ in range(7):
            assert _code(gw.call("fs.readFile", HELLO)) is None
        # Both retirements may be logged in one read or two: read until the second is in.
        log = _stderr_so_far(gw, "retired after 3 calls: max_calls", timeout=15.0, count=2)
        retired = re.findall(r"worker pid (\d+) stopped by the gateway \(retired after 3 calls: max_calls\)", log)
        # After calls 3 and 6 a new worker took over, between calls: none failed for it.
        assert len(set(retired)) == 2 and int(retired[0]) == first[0]
        (now,) = _wait_for(lambda: (live := [w for w in worker_pids(gw.proc.pid) if _alive(w)])
                           and len(live) == 1 and live)
        assert str(now) not in retired
    assert [x["error_code"] for x in audit_lines(gw_dir)] == [None] * 7


def test_a_worker_past_its_share_of_cpu_is_recycled_between_calls(gw_dir):
    # 0.1 % of a 1 s RLIMIT_CPU is 1 ms: any worker has used that by the end of its first call.
    config = fs_config(gw_dir, connectors={"filesystem": {"workers": 1, "recycle_cpu_share": 0.001}},
                       sandbox={"limits": {"filesystem": {"cpu_s": 1}}})
    with raw_gateway(config) as gw:
        (worker,) = worker_pids(gw.proc.pid)
        assert _code(gw.call("fs.readFile", HELLO)) is None  # answered normally, then retired
        log = _stderr_so_far(gw, f"worker pid {worker} stopped by the gateway (retired after 1 calls: cpu_budget)")
        assert "cpu_budget" in log
        assert _code(gw.call("fs.readFile", HELLO)) is None
    assert [x["error_code"] for x in audit_lines(gw_dir)] == [None, None]


def test_a_worker_out_of_descriptors_is_recycled(gw_dir):
    config = fs_config(gw_dir, connectors={"filesystem": {"workers": 1}})
    with raw_gateway(config) as gw:
        (worker,) = worker_pids(gw.proc.pid)
        # What a sibling did to a shared-uid worker in issue 12: no descriptor can be opened.
        _as_owner_of(worker, lambda: resource.prlimit(worker, resource.RLIMIT_NOFILE, (0, 0)))
        gw.call("fs.readFile", HELLO)  # fails or not: the worker must say it is broken
        log = _stderr_so_far(gw, "broken_state")
        assert f"worker pid {worker} stopped by the gateway (retired after 1 calls: broken_state)" in log, log
        assert _code(gw.call("fs.readFile", HELLO)) is None
        assert worker not in worker_pids(gw.proc.pid)


def _as_owner_of(pid, action):
    """Run `action` in a child with the uid/gid of process `pid` (root here may lack
    CAP_SYS_RESOURCE, and a same-uid process may always lower another's limits)."""
    status = {k: v.split() for k, v in (line.split(":", 1) for line in open(f"/proc/{pid}/status") if ":" in line)}
    uid, gid = int(status["Uid"][0]), int(status["Gid"][0])
    child = os.fork()
    if child == 0:
        code = 1
        try:
            if os.getuid() != uid:
                os.setgroups([])
                os.setresgid(gid, gid, gid)
                os.setresuid(uid, uid, uid)
            action()
            code = 0
        finally:
            os._exit(code)
    assert os.waitpid(child, 0)[1] == 0


def test_a_worker_whose_database_connections_keep_failing_is_recycled(gw_dir):
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))  # bound, never listening: every connect is refused
    port = closed.getsockname()[1]
    try:
        config = fs_config(gw_dir, policy={"allow_tools": ["db.query"]},
                           connectors={"postgres": {"enabled": True, "host": "127.0.0.1", "port": port,
                                                    "workers": 1, "sslmode": "disable"}})
        with raw_gateway(config) as gw:
            (worker,) = children(_zygote_of(gw, "postgres"))
            for _ in range(3):
                assert _code(gw.call("db.query", {"sql": "SELECT 1"})) == "UPSTREAM_ERROR"
            log = _stderr_so_far(gw, f"worker pid {worker} stopped by the gateway (retired after 3 calls: "
                                     "broken_state)")
            assert "broken_state" in log
            assert worker not in _wait_for(lambda: (w := children(_zygote_of(gw, "postgres"))) and worker not in w
                                           and w)
    finally:
        closed.close()


# --- deadlines ----------------------------------------------------------------------------


def test_a_queued_call_gives_its_worker_only_the_time_left(gw_dir):
    """Two slow fetches on one worker: the second waits in the queue, then gets what is left
    of its own timeout, so the worker answers with its own TIMEOUT instead of being killed."""
    with hanging_http_server() as (port, accepted):
        with raw_gateway(_both_config(gw_dir, port, timeout_ms=3000)) as gw:
            (worker,) = children(_zygote_of(gw, "http_fetch"))
            _send_call(gw, 1, "web.fetch", {"url": f"http://127.0.0.1:{port}/a"})
            accepted.get(timeout=10)
            time.sleep(1.0)
            _send_call(gw, 2, "web.fetch", {"url": f"http://127.0.0.1:{port}/b"})
            replies = {r["id"]: r["result"] for r in (gw.read(), gw.read())}
            for rid in (1, 2):
                assert _code(replies[rid]) == "TIMEOUT"
                assert "killed" not in _reason(replies[rid]), replies[rid]
            assert children(_zygote_of(gw, "http_fetch")) == [worker]  # never killed


# --- titles -------------------------------------------------------------------------------


def test_process_titles_say_what_each_process_is(gw_dir):
    with hanging_http_server() as (port, _):
        with raw_gateway(_both_config(gw_dir, port)) as gw:
            assert _cmdline(gw.proc.pid) == "mcp-gateway: supervisor"
            titles = {}
            for z in children(gw.proc.pid):
                titles[_cmdline(z)] = [_cmdline(w) for w in children(z)]
            assert titles == {"mcp-gateway: fs zygote (filesystem)": ["mcp-gateway: fs worker (filesystem)"] * 2,
                              "mcp-gateway: web zygote (http_fetch)": ["mcp-gateway: web worker (http_fetch)"]}
            with open(f"/proc/{children(_zygote_of(gw, 'filesystem'))[0]}/comm") as f:
                assert f.read().strip() == "gw-fs-worker"


# --- stderr relay -------------------------------------------------------------------------


def test_the_stderr_relay_is_bounded_per_worker(tmp_path):
    """A real relay on a real pipe: 20 MiB written as fast as possible come out as at most
    the relay's burst (plus the rate), with one note, and the writer is never blocked."""
    import subprocess
    import sys

    script = r"""
import os, select, sys, threading
from mcp_gateway.workers import zygote
poller = select.poll()
relay = zygote._StderrRelay(poller)
r, w = os.pipe()
relay.adopt(r, 4242)
def flood():
    chunk = b"x" * 4095 + b"\n"
    for _ in range(20 * 256):
        os.write(w, chunk)
    os.close(w)
t = threading.Thread(target=flood); t.start()
while relay.pipes:
    for fd, _ in poller.poll(1000):
        relay.drain(fd)
t.join()
"""
    from tests.support.gateway_process import REPO, gateway_env

    out = tmp_path / "stderr.bin"
    with open(out, "wb") as f:
        subprocess.run([sys.executable, "-c", script], stderr=f, env=gateway_env(), cwd=REPO, timeout=60,
                       check=True)
    data = out.read_bytes()
    from mcp_gateway.workers.zygote import STDERR_BURST, STDERR_RATE

    assert len(data) < 20 * 1024 * 1024 // 10
    assert len(data) <= STDERR_BURST + 60 * STDERR_RATE + 4096  # generous: the run takes seconds at most
    assert data.count(b"over its limit") == 1
    assert re.search(rb"\(exited; \d+ more bytes of its stderr were dropped\)", data)
    assert all(line.startswith(b"[worker 4242] ") for line in data.splitlines())


def test_config_travels_to_a_restarted_zygote_as_parsed(gw_dir):
    """The fresh-interpreter zygote gets the supervisor's parsed config, never the file."""
    config = fs_config(gw_dir, connectors={"filesystem": {"workers": 1}})
    with raw_gateway(config) as gw:
        (zygote,) = children(gw.proc.pid)
        config.write_text("this: [is not, a valid config")  # changed on disk after start
        os.kill(zygote, signal.SIGKILL)
        _wait_for(lambda: (z := children(gw.proc.pid)) and z[0] != zygote and children(z[0]))
        result = gw.call("fs.readFile", HELLO)
        assert _code(result) is None, result
        assert json.loads(json.dumps(result))["structuredContent"]["content"] == "hello world\n"
