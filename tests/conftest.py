"""Shared test helpers: configs written to temp dirs, loaded through the real loader; the session's
throwaway PostgreSQL cluster (tests/support/pg_cluster.py), started only when a test asks for it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml
from hypothesis import settings

from mcp_gateway.config import GatewayConfig, load_config

# Deterministic, fast property tests; no example database written into the tree.
settings.register_profile("gateway", deadline=None, database=None, derandomize=True, max_examples=200)
settings.load_profile("gateway")

IS_ROOT = os.geteuid() == 0


def write_config(directory: Path, data: dict) -> Path:
    path = directory / "config.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.fixture
def config_factory(tmp_path: Path):
    def make(data: dict) -> GatewayConfig:
        return load_config(write_config(tmp_path, data))

    return make


@pytest.fixture
def gw_dir():
    """A temp dir the gateway's workers can read after dropping to an unprivileged uid
    (pytest's own tmp_path lives under a 0700 directory of the test user)."""
    import shutil
    import tempfile

    path = Path(tempfile.mkdtemp(prefix="mcp-gw-test-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def pg_cluster():
    """One cluster for the whole session, shared by tests/component/postgres and tests/e2e."""
    from tests.support.pg_cluster import PgCluster, pg_available

    if not pg_available():
        pytest.skip("PostgreSQL binaries not available")
    cluster = PgCluster.start()
    try:
        cluster.load_fixture()
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="session")
def sql_catalog(pg_cluster):
    """The guard's catalog as a worker reads it from the session cluster at connect."""
    import psycopg

    from mcp_gateway.connectors.postgres.sql_catalog import load_catalog

    with psycopg.connect(autocommit=True, **pg_cluster.conninfo()) as conn, conn.cursor() as cur:
        return load_catalog(cur)


@pytest.fixture
def pg_env(pg_cluster, monkeypatch):
    """The session cluster, with its password in this process's environment (as the gateway reads it)."""
    for k, v in pg_cluster.env().items():
        monkeypatch.setenv(k, v)
    return pg_cluster
