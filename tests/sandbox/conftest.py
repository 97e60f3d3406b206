"""Fixtures shared by the sandbox probe and layer tests."""

import pytest

from tests.support.sandbox_probe import Sleeper, world_readable_tree


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
