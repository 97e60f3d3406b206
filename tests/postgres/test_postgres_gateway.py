"""db.query / db.schema through the real gateway: supervisor guard, pre-forked workers from
the warmed zygote, every sandbox layer applied before the first connection."""

from __future__ import annotations

import pytest

from tests.gateway_process import audit_lines, error_of, fs_config, raw_gateway


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
        stderr = gw.stderr_tail()
    assert pg_cluster.password not in stderr
    lines = audit_lines(gw_dir)
    assert [x["decision"] for x in lines].count("deny") == 2
    assert all(pg_cluster.password not in str(x) for x in lines)
    assert pg_cluster.snapshot() == before
