"""Fixtures shared by the sandbox probe and layer tests."""

import os
import socket

import pytest

from tests.support.sandbox_probe import Sleeper, world_readable_tree

# Collected only inside the namespace test_upstream_netns.py creates (it sets MCPGW_IN_NETNS).
collect_ignore = [] if os.environ.get("MCPGW_IN_NETNS") == "1" else [
    "test_upstream_egress_in_netns.py", "test_fetch_server_in_netns.py"]


@pytest.fixture(scope="module")
def tree() -> str:
    """A directory tree every uid can read (workers may drop to 65534)."""
    return world_readable_tree()


@pytest.fixture
def sleeper():
    """A process that is not the test runner, to aim signals and ptrace at."""
    s = Sleeper()
    yield s
    s.stop()


@pytest.fixture(scope="module")
def netns_loopback_only():
    """The tests run inside test_upstream_netns.py's namespace: no interface but loopback."""
    names = sorted(name for _, name in socket.if_nameindex())
    assert names == ["lo"], f"not inside a loopback-only network namespace: {names}"
