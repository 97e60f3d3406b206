"""The markers select what they say: `-m unit` (component, sandbox, e2e) runs exactly the tests of
its folder, `-m identity` exactly those IDENTITY names (tests/conftest.py applies both), and
every test of this suite lives in a tier folder.

The hook is run for real by pytest on a small tree with this suite's conftest.py and pytest
configuration (collecting the whole suite again for each marker would cost more than it shows)."""

from __future__ import annotations

import shutil

import pytest

from tests.conftest import TESTS, TIERS, tier_markers
from tests.support import REPO

TREE = {  # a test file of every kind of place, and one left in a folder that is not a tier
    "unit/test_u.py": 2, "unit/filesystem/test_uf.py": 1, "component/test_c.py": 1,
    "component/postgres/test_cp.py": 2, "sandbox/test_s.py": 1, "sandbox/filesystem/test_sf.py": 1,
    "e2e/test_e.py": 1, "e2e/http/test_eh.py": 3, "e2e/clients/test_ec.py": 2, "http/test_old.py": 1,
}


@pytest.fixture
def tree(pytester: pytest.Pytester) -> pytest.Pytester:
    shutil.copy(REPO / "pyproject.toml", pytester.path / "pyproject.toml")
    (pytester.path / "tests").mkdir()
    shutil.copy(TESTS / "conftest.py", pytester.path / "tests" / "conftest.py")
    for name, count in TREE.items():
        path = pytester.path / "tests" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(f"def test_{i}():\n    pass\n\n\n" for i in range(count)))
    return pytester


def selected(tree: pytest.Pytester, *args: str) -> dict[str, int]:
    """Test files a collection selects, with how many of their tests."""
    rec = tree.inline_run("--collect-only", "-p", "no:cacheprovider", *args)
    items = rec.getcall("pytest_collection_finish").session.items
    out: dict[str, int] = {}
    for item in items:
        name = item.path.relative_to(tree.path / "tests").as_posix()
        out[name] = out.get(name, 0) + 1
    return out


def test_each_marker_selects_exactly_its_folders_tests(tree):
    assert selected(tree) == TREE
    for tier in TIERS:
        assert selected(tree, "-m", tier) == {n: c for n, c in TREE.items() if n.startswith(tier + "/")}, tier
    identity = {"component/postgres/test_cp.py", "sandbox/test_s.py", "sandbox/filesystem/test_sf.py",
                "e2e/test_e.py", "e2e/http/test_eh.py"}
    assert selected(tree, "-m", "identity") == {n: TREE[n] for n in identity}
    assert selected(tree, "-m", "not unit and not component and not sandbox and not e2e") == {"http/test_old.py": 1}


def test_every_test_file_of_the_suite_lives_in_a_tier_folder():
    outside = sorted(str(p.relative_to(TESTS)) for p in TESTS.rglob("test_*.py")
                     if p.relative_to(TESTS).parts[0] not in TIERS)
    assert not outside, f"move these into tests/{{{','.join(TIERS)}}}/: {outside}"


def test_markers_of_paths():
    assert tier_markers(TESTS / "unit" / "test_x.py") == ["unit"]
    assert tier_markers(TESTS / "e2e" / "http" / "test_x.py") == ["e2e", "identity"]
    assert tier_markers(TESTS / "e2e" / "clients" / "test_x.py") == ["e2e"]
    assert tier_markers(TESTS / "component" / "postgres" / "test_x.py") == ["component", "identity"]
    assert tier_markers(TESTS / "component" / "test_x.py") == ["component"]
    assert tier_markers(TESTS / "http" / "test_x.py") == []
    assert tier_markers(TESTS / "test_x.py") == []
