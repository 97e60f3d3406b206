"""Capacity: 128 concurrent clients at the defaults, and a full queue is UNAVAILABLE, not a denial."""

import os
import signal
import threading
import time

from tests.support.gateway_process import audit_lines, error_of, wait_until, worker_pids
from tests.support.http_gateway import HttpGateway, McpHttp, http_config, scrape

CLIENTS = 128
CALLS_EACH = 4

def test_128_concurrent_clients_get_no_capacity_refusal_at_the_defaults(gw_dir):
    config = http_config(gw_dir)  # default queue_size, sessions and connection caps
    with HttpGateway(config) as gw:
        clients = [McpHttp(gw.url) for _ in range(CLIENTS)]
        results: list = [None] * CLIENTS
        start = threading.Barrier(CLIENTS)

        def run(i: int) -> None:
            try:
                # All start together, and never leave a keep-alive connection idle long enough
                # for the server's keep-alive timeout to close it under the client's feet.
                start.wait(60)
                clients[i].initialize()
                results[i] = [clients[i].call("fs.readFile", {"path": "hello.txt"}) for _ in range(CALLS_EACH)]
            except Exception as e:  # noqa: BLE001
                results[i] = e

        threads = [threading.Thread(target=run, args=(i,)) for i in range(CLIENTS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        for c in clients:
            c.close()
        m = scrape(gw.base)
    failures = [r for r in results if not isinstance(r, list)]
    assert not failures, failures[:3]
    codes = {error_of(r)["error_code"] if r["isError"] else None
             for rs in results for r in rs}
    assert codes == {None}
    assert m[("mcp_gateway_http_sessions", ())] == CLIENTS
    assert not any(k[0] == "mcp_gateway_unavailable_total" and v for k, v in m.items())
    lines = audit_lines(gw_dir)
    assert len(lines) == CLIENTS * CALLS_EACH and {x["decision"] for x in lines} == {"allow"}

def test_a_full_queue_is_unavailable_audited_as_allow(gw_dir):
    config = http_config(gw_dir, connectors={"filesystem": {"queue_size": 1}})
    with HttpGateway(config) as gw:
        # Exactly the pool's two workers (the default), once no other child of a zygote is about:
        # counting a short-lived one as a worker would send one call too many.
        workers = wait_until(lambda: w if len(w := worker_pids(gw.proc.pid)) == 2 else None, 30,
                             "the filesystem pool never had exactly its two workers")
        for w in workers:  # both workers busy with a call each, one call waiting: the queue is full
            os.kill(w, signal.SIGSTOP)
        try:
            busy = [McpHttp(gw.url) for _ in range(len(workers) + 1)]
            for c in busy:
                c.initialize()
            threads = [threading.Thread(target=c.call, args=("fs.readFile", {"path": "hello.txt"})) for c in busy]
            for t in threads:
                t.start()
            deadline = time.monotonic() + 10
            while True:
                m = scrape(gw.base)
                if (m[("mcp_gateway_workers_busy", (("connector", "fs"),))] == len(workers)
                        and m[("mcp_gateway_queue_depth", (("connector", "fs"),))] == 1):
                    break
                assert time.monotonic() < deadline, m
                time.sleep(0.02)
            with McpHttp(gw.url) as c:
                c.initialize()
                r = c.call("fs.readFile", {"path": "hello.txt"})
            assert r["isError"] and r["content"][0]["text"].startswith("UNAVAILABLE")
            m = scrape(gw.base)
            assert m[("mcp_gateway_unavailable_total", (("tool", "fs.readFile"),))] == 1
            assert m[("mcp_gateway_calls_total", (("decision", "allow"), ("error_code", "UNAVAILABLE"),
                                                  ("tool", "fs.readFile")))] == 1
        finally:
            for w in workers:
                os.kill(w, signal.SIGCONT)
        for t in threads:
            t.join(30)
        for c in busy:
            c.close()
    unavailable = [x for x in audit_lines(gw_dir) if x["error_code"] == "UNAVAILABLE"]
    assert len(unavailable) == 1 and unavailable[0]["decision"] == "allow"
    assert "capacity" in unavailable[0]["reason"]
