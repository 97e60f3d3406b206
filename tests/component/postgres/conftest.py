"""Fixtures for the postgres connector; the session's throwaway cluster is tests/conftest.py's pg_cluster."""

from __future__ import annotations

import pytest

from mcp_gateway.config import GatewayConfig
from mcp_gateway.connectors.postgres.worker import PostgresConnector
from mcp_gateway.ipc.errors import Refusal
from mcp_gateway.workers.connector import CallLimits
from tests.support.pg_cluster import PgCluster

# Valid, harmless SQL that sqlglot cannot parse as written (the guard rewrites it for the
# structure check only): test_sql_guard accepts each, test_postgres_connector runs it.
GOOD_SQL_SQLGLOT_CANNOT_READ = [
    "SELECT @ -5 AS abs_val",
    "SELECT collation for ('x'::text)",
    "SELECT id FROM users ORDER BY id USING >",
    "SELECT 1 FOR READ ONLY",
    "SELECT xmlserialize(content xmlelement(name a, 'x') AS text)",
    "SELECT xmlparse(document '<a>1</a>')",
    "SELECT xmlparse(content '<a>1</a>')::text",
    "SELECT (ARRAY[[1, 2], [3, 4]])[2][1], regexp_replace('a b', '\\s', '_', 'g')",
    "SELECT point(1, 2) ## lseg(point(0, 0), point(3, 3))",
    "SELECT box '((0,0),(1,1))' && box '((0,0),(2,2))', circle '<(0,0),1>', lseg '[(0,0),(1,1)]'",
    "SELECT tsvector 'a b' @@ tsquery 'a', cidr '10.0.0.0/8', macaddr '08:00:2b:01:02:03', pg_lsn '0/0'",
]


def make_config(cluster: PgCluster, **overrides) -> GatewayConfig:
    return GatewayConfig.model_validate({"connectors": {"postgres": cluster.postgres_settings(**overrides)}})


@pytest.fixture
def connector(pg_env):
    """A warmed connector talking to the session cluster as its superuser (in-process)."""
    c = PostgresConnector(make_config(pg_env))
    c.warm()
    c.start()
    yield c
    c.close()


LIMITS = CallLimits(timeout_ms=10_000, max_bytes=10 * 1024 * 1024)


def call_error(fn, *args) -> Refusal:
    with pytest.raises(Refusal) as ei:
        fn(*args)
    return ei.value
