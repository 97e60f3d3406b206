"""Fixtures for the real-client tests (see helpers.py)."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.clients.helpers import StallServer
from tests.support.node_clients import require_node


@pytest.fixture
def client_dir() -> Iterator[Path]:
    """A directory the workers' uid can read (config, data, audit log)."""
    path = Path(tempfile.mkdtemp(prefix="mcp-gw-clients-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def stall(client_dir: Path) -> Iterator[StallServer]:
    server = StallServer(client_dir)
    yield server
    server.close()


@pytest.fixture
def node() -> Path:
    return require_node()
