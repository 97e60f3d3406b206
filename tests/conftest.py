"""The suite's markers, applied by folder; shared fixtures: configs written to temp dirs and loaded
through the real loader, the session's throwaway PostgreSQL cluster (tests/support/pg_cluster.py),
started only when a test asks for it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml
from hypothesis import settings

from mcp_gateway.config import GatewayConfig, load_config

pytest_plugins = ("pytester",)  # tests/unit/test_markers.py runs the marker hook on a tree of its own

# Deterministic, fast property tests; no example database written into the tree.
settings.register_profile("gateway", deadline=None, database=None, derandomize=True, max_examples=200)
settings.load_profile("gateway")

IS_ROOT = os.geteuid() == 0

TESTS = Path(__file__).resolve().parent
# Each folder is its marker (registered in pyproject.toml): `pytest -m unit` runs tests/unit.
TIERS = ("unit", "component", "sandbox", "e2e")
# Whether the outcome depends on the identity of the process running the tests (a gateway and its
# workers, the sandbox, the cluster's roles): those are marked `identity`, which make test runs again
# as nobody. The deepest listed folder decides: e2e/clients (clients nobody here wrote) checks the
# protocol, which no identity changes.
IDENTITY = {"e2e": True, "e2e/clients": False, "sandbox": True, "component/postgres": True}


def tier_markers(path: Path) -> list[str]:
    """The markers of a test file at `path`: its tier folder, and `identity` as IDENTITY says; none
    for a file outside the tier folders (tests/unit/test_markers.py refuses those)."""
    rel = path.resolve().relative_to(TESTS)
    if len(rel.parts) < 2 or rel.parts[0] not in TIERS:
        return []
    decided = [folder for folder in IDENTITY if rel.is_relative_to(folder)]
    identity = IDENTITY[max(decided, key=len)] if decided else False
    return [rel.parts[0], *(["identity"] if identity else [])]


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects (a conftest-level pytestmark never applies)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        for name in tier_markers(item.path):
            item.add_marker(name)


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
