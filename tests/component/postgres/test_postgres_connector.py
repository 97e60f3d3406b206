"""PostgresConnector against a real throwaway cluster, called in-process as a SUPERUSER
(the worst case: only the guard and the read-only transaction stand in the way)."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from mcp_gateway.config import GatewayConfig
from mcp_gateway.connectors.postgres import worker as pgmod
from mcp_gateway.connectors.postgres.sql import CheckedSql
from mcp_gateway.connectors.postgres.tools import QueryArgs, SchemaArgs
from mcp_gateway.connectors.postgres.worker import PostgresConnector
from mcp_gateway.ipc.errors import Refusal
from mcp_gateway.workers.connector import CallLimits
from tests.component.postgres.conftest import GOOD_SQL_SQLGLOT_CANNOT_READ, LIMITS, make_config
from tests.support.corpus import SQL_ACCEPT, SQL_REJECT, load_corpus
from tests.support.pg_cluster import PgCluster, pg_available


def q(conn: PostgresConnector, sql: str, limits: CallLimits = LIMITS, **kw) -> dict:
    return conn.call("query", QueryArgs(sql=sql, **kw), limits)


def q_err(conn: PostgresConnector, sql: str, limits: CallLimits = LIMITS, **kw) -> Refusal:
    with pytest.raises(Refusal) as ei:
        q(conn, sql, limits, **kw)
    return ei.value


# --- corpora ------------------------------------------------------------------------------


def test_accept_corpus_runs(connector):
    accepted = load_corpus(SQL_ACCEPT)
    failures = []
    for sql in accepted:
        try:
            res = q(connector, sql)
            assert set(res) == {"columns", "rows", "row_count", "truncated"}
        except Refusal as e:
            failures.append((sql, e.code, e.reason))
    assert len(failures) <= len(accepted) * 0.05, failures
    assert not failures, failures  # aim: all of them


def test_reject_corpus_refused_and_database_unchanged(connector, pg_cluster):
    before = pg_cluster.snapshot()
    for sql in load_corpus(SQL_REJECT):
        err = q_err(connector, sql)
        assert err.code == "SECURITY_ERROR", (sql, err.code, err.reason)
        # the connection stays usable after every refusal
    assert q(connector, "SELECT count(*) FROM users")["rows"] == [[3]]
    assert pg_cluster.snapshot() == before


@pytest.mark.parametrize("sql", GOOD_SQL_SQLGLOT_CANNOT_READ)
def test_good_sql_sqlglot_cannot_read_runs(connector, sql):
    assert q(connector, sql)["row_count"] >= 1


EXTRA_ATTACKS = [
    "SELECT lo_export(424242, '/tmp/mcpgw-stolen')",
    "SELECT lo_unlink(424242)",
    "SELECT lo_put(424242, 0, 'x')",
    "SELECT nextval('users_id_seq')",
    "SELECT setval('counter_seq', 1)",
    "SELECT pg_file_write('x', 'y', false)",
    "COPY (SELECT 1) TO '/tmp/mcpgw-copy'",
    "COPY users TO PROGRAM 'touch /tmp/mcpgw-pwned'",
    "ALTER SYSTEM SET work_mem = '1GB'",
    "CREATE TABLE stolen AS SELECT * FROM secrets",
    "SELECT * INTO stolen FROM secrets",
    "WITH x AS (UPDATE users SET name = 'pwned' RETURNING 1) SELECT * FROM x",
    "SELECT set_config('default_transaction_read_only', 'off', false)",
    "SELECT 1 /* /* */, ' */ ; DELETE FROM users; --'",
    "SELECT '\\'; DELETE FROM users; --'",
    "EXPLAIN ANALYZE SELECT nextval('users_id_seq')",
    "EXPLAIN (ANALYZE true) WITH d AS (DELETE FROM users RETURNING 1) SELECT 1",
    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE pid <> pg_backend_pid()",
    "DROP TABLE users",
    "REFRESH MATERIALIZED VIEW order_totals",
    "SELECT pg_advisory_lock(42)",
    "SELECT pg_stat_reset()",
    "SELECT rolname, rolpassword FROM pg_authid",
    "SELECT data FROM pg_largeobject",
    "TABLE pg_file_settings",
]


def test_more_attacks_refused_and_database_unchanged(connector, pg_cluster):
    before = pg_cluster.snapshot()
    for sql in EXTRA_ATTACKS:
        err = q_err(connector, sql)
        assert err.code == "SECURITY_ERROR", (sql, err.code, err.reason)
    for path in ("/tmp/mcpgw-stolen", "/tmp/mcpgw-copy", "/tmp/mcpgw-pwned"):  # noqa: S108
        assert not os.path.exists(path)
    assert pg_cluster.snapshot() == before


def test_read_only_transaction_is_the_backstop(connector, pg_cluster, monkeypatch):
    """Even if the guard let a write through, the transaction is read-only and DECLARE
    accepts only a query."""
    before = pg_cluster.snapshot()

    def let_through(sql, catalog, *, with_params=False):
        return CheckedSql(text=sql, explain=False, placeholders=0)

    monkeypatch.setattr(pgmod, "prepare_sql", let_through)
    err = q_err(connector, "SELECT nextval('users_id_seq')")
    assert err.code == "SECURITY_ERROR" and "read-only" in err.reason
    # PostgreSQL 15 lets lo_unlink run in a read-only transaction: the ROLLBACK that ends
    # every call is what keeps the large object.
    try:
        q(connector, "SELECT lo_unlink(424242)")
    except Refusal as e:
        assert e.code in ("SECURITY_ERROR", "UPSTREAM_ERROR")
    assert pg_cluster.execute("SELECT count(*) FROM pg_largeobject_metadata WHERE oid = 424242") == [(1,)]
    err = q_err(connector, "WITH d AS (DELETE FROM users RETURNING 1) SELECT * FROM d")
    assert err.code in ("SECURITY_ERROR", "UPSTREAM_ERROR")
    err = q_err(connector, "DELETE FROM users")
    assert err.code == "UPSTREAM_ERROR"  # DECLARE ... CURSOR FOR DELETE is a syntax error
    err = q_err(connector, "SELECT 1; DELETE FROM users")
    assert err.code == "UPSTREAM_ERROR"
    monkeypatch.undo()
    assert q(connector, "SELECT count(*) FROM users")["rows"] == [[3]]
    after = pg_cluster.snapshot()
    # lo_unlink took a transaction id before the ROLLBACK: the counter moved, nothing else
    before["server"].pop("next_xid")
    after["server"].pop("next_xid")
    assert after == before


# --- parameters ---------------------------------------------------------------------------


def test_params_bind_as_data(connector):
    res = q(connector, "SELECT id, name FROM users WHERE name = %s", params=["alice"])
    assert res["rows"] == [[1, "alice"]]
    res = q(connector, "SELECT id FROM users WHERE name = %s", params=["x' OR '1'='1"])
    assert res["rows"] == []
    res = q(
        connector,
        "SELECT %s::text, %s::int, %s::float8, %s::bool, %s::text IS NULL",
        params=["'; DROP TABLE users; --", 7, 1.5, True, None],
    )
    assert res["rows"] == [["'; DROP TABLE users; --", 7, 1.5, True, True]]
    assert q(connector, "SELECT count(*) FROM users")["rows"] == [[3]]


def test_percent_rules(connector):
    # without params, % is an operator and LIKE patterns need no escaping
    assert q(connector, "SELECT 10 % 3, 'a%' LIKE 'a%%'")["rows"] == [[1, True]]
    # with params, a literal % operator is %%; % inside literals stays as is
    res = q(connector, "SELECT 10 %% 3, %s, name FROM users WHERE name LIKE 'a%'", params=["p"])
    assert res["rows"] == [[1, "p", "alice"]]
    assert q_err(connector, "SELECT 10 % 3, %s", params=[1]).code == "SECURITY_ERROR"
    assert q_err(connector, "SELECT %s, %s", params=[1]).code == "VALIDATION_ERROR"
    # native $n placeholders also work
    assert q(connector, "SELECT $1::int + 1", params=[41])["rows"] == [[42]]


# --- caps ---------------------------------------------------------------------------------

MiB = 1024 * 1024


def test_big_table_byte_cap(connector):
    err = q_err(
        connector, "SELECT * FROM big", CallLimits(timeout_ms=10_000, max_bytes=MiB), max_rows=1_000_000
    )
    assert err.code == "RESULT_TOO_LARGE"


def test_big_table_row_cap(connector):
    res = q(
        connector, "SELECT * FROM big ORDER BY id", CallLimits(timeout_ms=10_000, max_bytes=MiB), max_rows=100
    )
    assert res["row_count"] == 100 and res["truncated"] is True
    assert res["rows"][0][0] == 1 and res["rows"][-1][0] == 100
    res = q(connector, "SELECT id FROM big WHERE id <= 100", max_rows=100)
    assert res["row_count"] == 100 and res["truncated"] is False


def test_default_max_rows_from_config(pg_env):
    c = PostgresConnector(make_config(pg_env, default_max_rows=7))
    try:
        res = q(c, "SELECT id FROM big")
        assert res["row_count"] == 7 and res["truncated"]
    finally:
        c.close()


def test_timeout_then_served_at_once(connector):
    t = time.monotonic()
    err = q_err(
        connector,
        "SELECT count(*) FROM generate_series(1, 10000000000)",
        CallLimits(timeout_ms=1000, max_bytes=MiB),
    )
    elapsed = time.monotonic() - t
    assert err.code == "TIMEOUT"
    assert elapsed < 3
    t = time.monotonic()
    assert q(connector, "SELECT 1")["rows"] == [[1]]
    assert time.monotonic() - t < 0.5


def test_cross_join_timeout(connector):
    err = q_err(connector, "SELECT count(*) FROM big a, big b", CallLimits(timeout_ms=800, max_bytes=MiB))
    assert err.code == "TIMEOUT"
    assert q(connector, "SELECT 2")["rows"] == [[2]]


# --- errors and recovery ------------------------------------------------------------------


def test_database_errors(connector):
    err = q_err(connector, "SELECT * FROM no_such_table")
    assert err.code == "NOT_FOUND" and "42P01" in err.reason
    err = q_err(connector, "SELECT no_such_column FROM users")
    assert err.code == "UPSTREAM_ERROR" and "42703" in err.reason
    err = q_err(connector, "SELECT 1 / 0")
    assert err.code == "UPSTREAM_ERROR" and "22012" in err.reason and "division by zero" in err.reason
    assert q(connector, "SELECT 3")["rows"] == [[3]]


def test_bad_password_is_upstream_error_without_secret(pg_cluster, monkeypatch):
    monkeypatch.setenv("POSTGRES_PASSWORD", "wrong-password-xyz")
    monkeypatch.delenv("PGPASSWORD", raising=False)
    c = PostgresConnector(make_config(pg_cluster))
    err = q_err(c, "SELECT 1")
    assert err.code == "UPSTREAM_ERROR"
    assert "wrong-password-xyz" not in err.reason and pg_cluster.password not in err.reason
    c.close()


@pytest.fixture
def own_cluster(monkeypatch):
    if not pg_available():
        pytest.skip("PostgreSQL binaries not available")
    c = PgCluster.start()
    for k, v in c.env().items():
        monkeypatch.setenv(k, v)
    yield c
    c.stop()


def test_restart_mid_run_recovers(own_cluster):
    conn = PostgresConnector(make_config(own_cluster))
    conn.warm()
    try:
        assert q(conn, "SELECT 1")["rows"] == [[1]]
        own_cluster.restart()
        err = q_err(conn, "SELECT 2")
        assert err.code == "UPSTREAM_ERROR"
        assert q(conn, "SELECT 3")["rows"] == [[3]]
        # the database down: a clear error, and back again once it is up
        own_cluster._run("pg_ctl", "-D", str(own_cluster.datadir), "-w", "-m", "fast", "stop")
        err = q_err(conn, "SELECT 4")
        assert err.code == "UPSTREAM_ERROR"
        err = q_err(conn, "SELECT 5")
        assert err.code == "UPSTREAM_ERROR" and "could not connect" in err.reason
        own_cluster._pg_ctl_start()
        assert q(conn, "SELECT 6")["rows"] == [[6]]
    finally:
        conn.close()


# --- values -------------------------------------------------------------------------------


def test_value_conversions(connector):
    res = q(
        connector,
        "SELECT 12345678901234567890.123456789::numeric AS n, 1.50::numeric(5,2) AS n2, 'NaN'::numeric AS nn,"
        " 9007199254740993::int8 AS big, 0.1::float8 AS f, 'Infinity'::float8 AS inf,"
        " '2024-01-02 03:04:05.123456+00'::timestamptz AS tstz, '2024-01-02 03:04:05'::timestamp AS ts,"
        " 'infinity'::timestamptz AS tinf, '2024-02-29'::date AS d, '13:14:15'::time AS tm,"
        " '1 year 2 mons 3 days 04:05:06'::interval AS iv, '\\xdeadbeef'::bytea AS b,"
        ' \'{"a": [1, 2.5, null, "x"], "b": {"c": true}}\'::jsonb AS j, ARRAY[1, 2, NULL] AS arr,'
        " ARRAY[ARRAY['a', 'b'], ARRAY['c', 'd']] AS arr2, '123e4567-e89b-12d3-a456-426614174000'::uuid AS u,"
        " '192.168.0.1/24'::inet AS ip, int4range(1, 5) AS r, true AS t, NULL::text AS nul,"
        " ARRAY['2024-01-01 00:00:00+00'::timestamptz] AS tsarr, ARRAY['\\x01'::bytea] AS barr",
    )
    cols = {c["name"]: c["type"] for c in res["columns"]}
    assert (
        cols["n"] == "numeric" and cols["tstz"] == "timestamp with time zone" and cols["arr"] == "integer[]"
    )
    assert cols["j"] == "jsonb" and cols["b"] == "bytea" and cols["u"] == "uuid"
    row = dict(zip([c["name"] for c in res["columns"]], res["rows"][0], strict=True))
    assert row["n"] == "12345678901234567890.123456789"
    assert row["n2"] == "1.50" and row["nn"] == "NaN"
    assert row["big"] == 9007199254740993
    assert row["f"] == 0.1 and row["inf"] == "Infinity"
    assert row["tstz"] == "2024-01-02T03:04:05.123456+00:00"
    assert row["ts"] == "2024-01-02T03:04:05"
    assert row["tinf"] == "infinity"
    assert row["d"] == "2024-02-29" and row["tm"] == "13:14:15"
    assert row["iv"] == "P1Y2M3DT4H5M6S"
    assert row["b"] == "3q2+7w=="
    assert row["j"] == {"a": [1, 2.5, None, "x"], "b": {"c": True}}
    assert row["arr"] == [1, 2, None] and row["arr2"] == [["a", "b"], ["c", "d"]]
    assert row["u"] == "123e4567-e89b-12d3-a456-426614174000"
    assert row["ip"] == "192.168.0.1/24" and row["r"] == "[1,5)"
    assert row["t"] is True and row["nul"] is None
    assert row["tsarr"] == ["2024-01-01T00:00:00+00:00"] and row["barr"] == ["AQ=="]


def test_explain_rows(connector):
    res = q(connector, "EXPLAIN (COSTS OFF) SELECT * FROM users WHERE id = 1")
    assert res["columns"] == [{"name": "QUERY PLAN", "type": "text"}]
    assert any("users" in r[0] for r in res["rows"])
    res = q(connector, "EXPLAIN (FORMAT JSON) SELECT * FROM users")
    assert isinstance(res["rows"][0][0], list)
    res = q(connector, "EXPLAIN SELECT * FROM users WHERE name = %s", params=["alice"])
    assert res["row_count"] >= 1


# --- db.schema ----------------------------------------------------------------------------


def s(conn: PostgresConnector, limits: CallLimits = LIMITS, **kw) -> dict:
    return conn.call("schema", SchemaArgs(**kw), limits)


def test_schema_default(connector):
    tables = {(t["schema"], t["name"]): t for t in s(connector)["tables"]}
    assert ("public", "users") in tables and ("other", "things") in tables
    assert tables[("public", "user_names")]["kind"] == "view"
    assert tables[("public", "order_totals")]["kind"] == "materialized view"
    assert not any(sch in ("pg_catalog", "information_schema") for sch, _ in tables)
    users = tables[("public", "users")]
    assert users["kind"] == "table"
    assert users["columns"][0] == {"name": "id", "type": "integer", "nullable": False}
    assert {"name": "email", "type": "text", "nullable": True} in users["columns"]
    orders = tables[("public", "orders")]
    assert {"name": "amount", "type": "numeric(12,2)", "nullable": False} in orders["columns"]


def test_schema_filters(connector):
    res = s(connector, schema="other")
    assert [(t["schema"], t["name"]) for t in res["tables"]] == [("other", "things")]
    res = s(connector, table="users")
    assert [(t["schema"], t["name"]) for t in res["tables"]] == [("public", "users")]
    res = s(connector, schema="pg_catalog", table="pg_class")
    assert res["tables"][0]["schema"] == "pg_catalog"
    with pytest.raises(Refusal) as ei:
        s(connector, schema="public", table="things")
    assert ei.value.code == "NOT_FOUND"
    with pytest.raises(Refusal) as ei:
        s(connector, schema="nope")
    assert ei.value.code == "NOT_FOUND"
    with pytest.raises(Refusal) as ei:
        s(connector, table="x'; DROP TABLE users; --")
    assert ei.value.code == "NOT_FOUND"
    with pytest.raises(Refusal) as ei:
        s(connector, CallLimits(timeout_ms=5000, max_bytes=200))
    assert ei.value.code == "RESULT_TOO_LARGE"


# --- process-level properties --------------------------------------------------------------


def test_sandbox_profile(pg_cluster):
    c = PostgresConnector(make_config(pg_cluster))
    p = c.sandbox_profile()
    assert p.instance == "db" and p.extra_syscalls == ()
    assert p.connect_ports == (pg_cluster.port,)
    import socket

    assert socket.AF_UNIX not in p.socket_families and socket.AF_INET in p.socket_families
    assert "/etc/hosts" in p.read_paths or not os.path.exists("/etc/hosts")
    u = PostgresConnector(make_config(pg_cluster, host=str(pg_cluster.sockdir))).sandbox_profile()
    assert socket.AF_UNIX in u.socket_families and str(pg_cluster.sockdir) in u.read_paths


_WARM_PROBE = r"""
import sys
from mcp_gateway.config import GatewayConfig
from mcp_gateway.connectors.postgres.worker import PostgresConnector
from mcp_gateway.workers.connector import CallLimits
from mcp_gateway.connectors.postgres.tools import QueryArgs, SchemaArgs
cfg = GatewayConfig.model_validate({"connectors": {"postgres": %(settings)r}})
c = PostgresConnector(cfg)
c.warm()
before = set(sys.modules)
L = CallLimits(timeout_ms=5000, max_bytes=1 << 20)
c.call("query", QueryArgs(sql=%(sql)r), L)
c.call("query", QueryArgs(sql="SELECT %%s::text, %%s::int", params=["a", 1]), L)
c.call("query", QueryArgs(sql="EXPLAIN (FORMAT JSON) SELECT 1"), L)
c.call("schema", SchemaArgs(), L)
try:
    c.call("query", QueryArgs(sql="SELECT 1/0"), L)
except Exception:
    pass
new = sorted(set(sys.modules) - before)
print("NEW:" + ",".join(new))
"""


def test_warm_preloads_everything(pg_env):
    sql = (
        "SELECT 1.5::numeric, now(), now()::date, '1 day'::interval, '\\x01'::bytea,"
        " '{}'::jsonb, '[1]'::json,"
        " ARRAY[1], gen_random_uuid(), '1.2.3.4'::inet, int4range(1,2), 1.5::float8, true, 'x'::text,"
        " '12:00'::time, '12:00+01'::timetz, now()::timestamp, 'a=>b'::text, '(1,2)'::point"
    )
    code = _WARM_PROBE % {"settings": pg_env.postgres_settings(), "sql": sql}
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **pg_env.env()},
        cwd=os.getcwd(),
    )
    assert out.returncode == 0, out.stderr
    line = [ln for ln in out.stdout.splitlines() if ln.startswith("NEW:")][0]
    new = [m for m in line[4:].split(",") if m]
    assert new == [], f"modules imported after warm(): {new}"


def test_operator_extends_the_allowlists(pg_env):
    """allow_functions / allow_relations: what the catalog's rule refuses, the operator may allow."""
    plain = PostgresConnector(make_config(pg_env))
    extended = PostgresConnector(
        make_config(pg_env, allow_functions=["public.fixture_volatile"], allow_relations=["pg_stat_user_tables"])
    )
    try:
        for sql in ("SELECT fixture_volatile(1, 2)", "SELECT count(*) FROM pg_stat_user_tables"):
            assert q_err(plain, sql).code == "SECURITY_ERROR"
        assert q(extended, "SELECT fixture_volatile(1, 2)")["rows"] == [[3]]
        assert q(extended, "SELECT count(*) > 0 FROM pg_catalog.pg_stat_user_tables")["rows"] == [[True]]
        # the operator behind ### is the same function: allowed with it
        assert q(extended, "SELECT 1 ### 2")["rows"] == [[3]]
    finally:
        plain.close()
        extended.close()


# --- named instances ----------------------------------------------------------------------------


def test_password_env_each_instance_reads_its_own_variable(pg_cluster, monkeypatch):
    """password_env: instances logging in as different roles each take their own password."""
    monkeypatch.delenv("POSTGRES_PASSWORD", raising=False)
    monkeypatch.setenv("MCP_TEST_APP_PGPASSWORD", pg_cluster.password)
    settings = pg_cluster.postgres_settings(password_env="MCP_TEST_APP_PGPASSWORD")  # noqa: S106 - a name
    config = GatewayConfig.model_validate({"connectors": {"postgres": {"instances": {
        "app": settings, "other": {**settings, "password_env": "MCP_TEST_UNSET_PGPASSWORD"}}}}})
    app = PostgresConnector(config, instance=config.instance("app"))
    other = PostgresConnector(config, instance=config.instance("other"))
    try:
        assert app.name == "app" and q(app, "SELECT 1")["rows"] == [[1]]
        assert q_err(other, "SELECT 1").code == "UPSTREAM_ERROR"  # no password in its variable
    finally:
        app.close()
        other.close()
