"""The filesystem connector's fixtures (tests/support/fs_tree.py)."""

from tests.support.fs_tree import fs, mode, tree  # noqa: F401  (fixtures)
