"""db.query / db.schema through the real gateway: supervisor guard, pre-forked workers from
the warmed zygote, every sandbox layer applied before the first connection."""

from __future__ import annotations

import json
import os
import re
import signal
import time

import pytest

from tests.support.corpus import SQL_ACCEPT, SQL_REJECT, load_corpus
from tests.support.gateway_process import audit_lines, error_of, fs_config, raw_gateway, worker_pids


@pytest.fixture
def pg_gateway_config(gw_dir, pg_env):
    return fs_config(
        gw_dir,
        policy={"allow_tools": ["fs.readFile", "db.query", "db.schema"], "global_timeout_ms": 2000},
        connectors={"postgres": pg_env.postgres_settings(workers=1)},
    )


def _ok(result: dict) -> dict:
    assert not result.get("isError"), result
    return result["structuredContent"]


def _code(result: dict) -> str:
    assert result.get("isError"), result
    return error_of(result)["error_code"]


def test_queries_in_a_sandboxed_worker(pg_gateway_config, gw_dir, pg_cluster):
    before = pg_cluster.snapshot()
    with raw_gateway(pg_gateway_config) as gw:
        res = _ok(gw.call("db.query", {"sql": "SELECT id, name FROM users ORDER BY id"}))
        assert res["rows"] == [[1, "alice"], [2, "bob"], [3, "O'Reilly"]]
        res = _ok(
            gw.call(
                "db.query",
                {
                    "sql": "SELECT %s::text AS p, 1.50::numeric AS n, '\\x01'::bytea AS b,"
                    " '{\"a\": 1}'::jsonb AS j, ARRAY[1, 2] AS a, now() AS t, '1 day'::interval AS i",
                    "params": ["x' OR 1=1 --"],
                },
            )
        )
        assert res["rows"][0][:5] == ["x' OR 1=1 --", "1.50", "AQ==", {"a": 1}, [1, 2]]
        res = _ok(gw.call("db.query", {"sql": "EXPLAIN (FORMAT JSON) SELECT * FROM users"}))
        assert res["row_count"] == 1
        res = _ok(gw.call("db.schema", {"schema": "other"}))
        assert res["tables"][0]["name"] == "things"
        refused = gw.call("db.query", {"sql": "WITH d AS (DELETE FROM users RETURNING *) SELECT * FROM d"})
        assert _code(refused) == "SECURITY_ERROR"
        assert _code(gw.call("db.query", {"sql": "SELECT pg_read_file('/etc/passwd')"})) == "SECURITY_ERROR"
        slow = gw.call("db.query", {"sql": "SELECT count(*) FROM generate_series(1, 10000000000)"})
        assert _code(slow) == "TIMEOUT"
        again = _ok(gw.call("db.query", {"sql": "SELECT 42"}))
        assert again["rows"] == [[42]]
        gw.proc.send_signal(signal.SIGTERM)  # drains and exits: then its whole stderr is readable
        gw.proc.wait(20)
        stderr = gw.stderr_tail()
    assert pg_cluster.password not in stderr
    # connected as a superuser: serve says so at start, with the fix
    assert "SECURITY WARNING: database role pgadmin is not read-only" in stderr
    assert 'ALTER ROLE "pgadmin" NOSUPERUSER' in stderr
    lines = audit_lines(gw_dir)
    assert [x["decision"] for x in lines].count("deny") == 2
    assert all(pg_cluster.password not in str(x) for x in lines)
    assert pg_cluster.snapshot() == before


# Secrets the enriched test cluster holds (tests/pg_cluster.py): none may come back.
SECRETS = (
    "analyst-password-secret",
    "mapping-secret",
    "subscription-secret",
    "database-setting-secret",
    "SCRAM-SHA-256$",
)


def test_corpora_in_a_sandboxed_worker(pg_gateway_config, pg_cluster):
    """Every accept statement runs and every reject statement is refused inside a real
    sandboxed worker (a lazy import the sandbox refuses would fail here), nothing secret comes
    back, and the data and the server state are unchanged."""
    before = pg_cluster.snapshot()
    failures = []
    with raw_gateway(pg_gateway_config) as gw:
        for sql in load_corpus(SQL_ACCEPT):
            res = gw.call("db.query", {"sql": sql})
            if res.get("isError"):
                failures.append((sql, res["structuredContent"]))
            assert not any(s in json.dumps(res) for s in SECRETS), sql
        for sql in load_corpus(SQL_REJECT):
            res = gw.call("db.query", {"sql": sql})
            assert _code(res) == "SECURITY_ERROR", (sql, res)
            assert not any(s in json.dumps(res) for s in SECRETS), sql
    assert not failures, failures
    assert pg_cluster.snapshot() == before


def test_heavy_statement_does_not_hold_up_a_ping(pg_gateway_config):
    """A 100 KB statement that is expensive to parse is parsed in the worker, under the call's
    deadline: a ping sent after it is answered before it."""
    heavy = "SELECT a" + "[1]" * 33_000 + " FROM t"
    assert len(heavy) <= 100_000
    with raw_gateway(pg_gateway_config) as gw:
        gw.send_json(
            {"jsonrpc": "2.0", "id": 1, "method": "tools/call",
             "params": {"name": "db.query", "arguments": {"sql": heavy}}}
        )
        gw.send_json({"jsonrpc": "2.0", "id": 2, "method": "ping"})
        first, second = gw.read(), gw.read(timeout=30)
        assert first["id"] == 2 and first["result"] == {}
        assert second["id"] == 1 and second["result"]["isError"]
        assert error_of(second["result"])["error_code"] in ("TIMEOUT", "SECURITY_ERROR")
        assert _ok(gw.call("db.query", {"sql": "SELECT 1"}))["rows"] == [[1]]


def _running(pg_cluster, marker: str) -> list[tuple]:
    return pg_cluster.execute(
        "SELECT pid FROM pg_stat_activity WHERE application_name = 'mcp-gateway'"
        " AND state = 'active' AND query LIKE %s",
        (f"%{marker}%",),
    )


def _poll(predicate, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


def test_killed_or_cancelled_call_stops_its_statement(gw_dir, pg_env, pg_cluster):
    """A call that ends by timeout or cancellation kills its worker; the backend notices the
    closed connection (client_connection_check_interval) and aborts the statement, long
    before its own statement_timeout (almost 30 s here)."""
    config = fs_config(
        gw_dir,
        policy={"allow_tools": ["db.query"], "global_timeout_ms": 30_000},
        connectors={"postgres": pg_env.postgres_settings(workers=1)},
    )
    slow = "SELECT count(*) FROM generate_series(1, 100000000000)"
    with raw_gateway(config) as gw:
        # 1. the worker is killed (what the pool does when a call times out)
        gw.send_json(
            {"jsonrpc": "2.0", "id": 7, "method": "tools/call",
             "params": {"name": "db.query", "arguments": {"sql": slow}}}
        )
        # the rows are computed by the cursor's first FETCH: kill the worker while it runs
        assert _poll(lambda: bool(_running(pg_cluster, "FETCH")), 20), "the FETCH never started"
        for pid in worker_pids(gw.proc.pid):
            os.kill(pid, signal.SIGKILL)
        # bounded wait, generous for a loaded machine; without the check interval the
        # statement would run until statement_timeout, ~29 s later
        assert _poll(lambda: not _running(pg_cluster, "FETCH"), 5), "the statement outlived its worker"
        reply = gw.read(timeout=30)
        assert reply["id"] == 7 and reply["result"]["isError"]
        # 2. notifications/cancelled (a request with _meta goes through the SDK, which honours
        # cancellation): the gateway stops the call's worker, and the statement stops too
        gw.send_json(
            {"jsonrpc": "2.0", "id": 9, "method": "tools/call",
             "params": {"name": "db.query", "_meta": {"progressToken": "p9"}, "arguments": {"sql": slow}}}
        )
        assert _poll(lambda: bool(_running(pg_cluster, "FETCH")), 20), "the FETCH never started"
        gw.send_json({"jsonrpc": "2.0", "method": "notifications/cancelled",
                      "params": {"requestId": 9, "reason": "test"}})
        assert _poll(lambda: not _running(pg_cluster, "FETCH"), 5), "the statement outlived its call"
        # the gateway keeps serving
        assert _ok(gw.call("db.query", {"sql": "SELECT 1"}))["rows"] == [[1]]


def test_a_queued_query_stops_at_the_time_it_has_left_with_its_own_timeout(gw_dir, pg_env, pg_cluster):
    """The deadline travels: a call that waited in the queue gives its worker only what is left of
    its timeout, and the connector stops there (lock_timeout) with its own TIMEOUT, in time to roll
    back and answer, instead of running to the full timeout and being SIGKILLed by the pool."""
    import psycopg

    timeout_ms = 3000
    fresh_budget_ms = timeout_ms - 300  # what a call that never queued gets (the runtime's 10 % margin)
    config = fs_config(
        gw_dir,
        policy={"allow_tools": ["db.query"], "global_timeout_ms": timeout_ms},
        connectors={"filesystem": {"enabled": False}, "postgres": pg_env.postgres_settings(workers=1)},
    )
    first_lock = psycopg.connect(autocommit=True, **pg_cluster.conninfo())
    second_lock = psycopg.connect(autocommit=True, **pg_cluster.conninfo())
    try:
        second_lock.execute("BEGIN")
        second_lock.execute("LOCK TABLE other.things IN ACCESS EXCLUSIVE MODE")  # held to the end
        with raw_gateway(config) as gw:
            assert _ok(gw.call("db.query", {"sql": "SELECT 1"}))["rows"] == [[1]]
            (worker,) = worker_pids(gw.proc.pid)
            first_lock.execute("BEGIN")
            first_lock.execute("LOCK TABLE users IN ACCESS EXCLUSIVE MODE")
            gw.send_json({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                          "params": {"name": "db.query", "arguments": {"sql": "SELECT count(*) FROM users"}}})
            waiting = ("SELECT 1 FROM pg_stat_activity WHERE application_name = 'mcp-gateway'"
                       " AND wait_event_type = 'Lock'")
            assert _poll(lambda: bool(pg_cluster.execute(waiting)), 10), "the first query never waited"
            gw.send_json({"jsonrpc": "2.0", "id": 2, "method": "tools/call",
                          "params": {"name": "db.query", "arguments": {"sql": "SELECT count(*) FROM other.things"}}})
            time.sleep(1.0)  # the second call waits in the queue (one worker) for at least this long
            first_lock.execute("COMMIT")  # the first query runs and answers; the second gets the worker
            replies = {r["id"]: r["result"] for r in (gw.read(), gw.read())}
            assert _ok(replies[1])["rows"] == [[3]]
            failure = error_of(replies[2])
            assert failure["error_code"] == "TIMEOUT", failure
            # The connector's own answer (statement_timeout fires first: it counts from the
            # statement's start, lock_timeout from the lock wait's), not the pool's "killed".
            budget = re.search(r"(statement|lock)_timeout \(?(\d+) ms", failure["reason"])
            assert budget and "killed" not in failure["reason"], failure
            budget_ms = int(budget.group(2))
            # Less than a call that never queued gets: the time spent in the queue (about 1 s; the
            # supervisor's deadline starts when it reads the request) was taken off.
            assert budget_ms < fresh_budget_ms, failure
            assert worker_pids(gw.proc.pid) == [worker]  # the worker answered: never killed
            assert _ok(gw.call("db.query", {"sql": "SELECT 1"}))["rows"] == [[1]]
        timed_out = [x for x in audit_lines(gw_dir) if x["error_code"] == "TIMEOUT"]
        assert len(timed_out) == 1 and timed_out[0]["reason"] == failure["reason"], timed_out
    finally:
        first_lock.close()
        second_lock.close()
