"""Shared test helpers: configs written to temp dirs, loaded through the real loader."""

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
