"""Absolute symlinks whose target lies inside the same allowed root are followed, resolved
beneath the root one component at a time; every other absolute symlink stays refused
(issue 15: `/srv/data/current -> /srv/data/releases/7`)."""

from __future__ import annotations

import os

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.support.fs_tree import Tree, listdir, make_connector, read, refused


@pytest.fixture
def linked(tree: Tree) -> Tree:
    r = tree.root
    (r / "releases" / "7").mkdir(parents=True)
    (r / "releases" / "7" / "notes.txt").write_text("release 7")
    os.symlink(str(r / "releases" / "7"), r / "current")  # the operator's deploy link
    os.symlink(str(r / "current" / "notes.txt"), r / "notes")  # absolute, through another link
    os.symlink(str(r / "releases" / ".." / "hello.txt"), r / "dotted")  # lexical .. in the target
    os.symlink(str(tree.outside), r / "out")
    os.symlink(str(tree.outside / "secret.txt"), r / "out-file")
    os.symlink(str(tree.evil / "secret.txt"), r / "evil")  # root-evil shares root's prefix
    os.symlink(str(tree.secrets), r / "to-secrets")
    os.symlink(str(tree.private), r / "to-private")
    os.symlink(str(r / "loop-b"), r / "loop-a")
    os.symlink(str(r / "loop-a"), r / "loop-b")
    os.symlink("/proc/self/root" + str(tree.outside), r / "via-proc")
    return tree


def test_absolute_links_into_the_same_root_are_followed(linked: Tree) -> None:
    fs = make_connector([linked.root], [linked.secrets, linked.private])
    try:
        assert read(fs, "current/notes.txt")["content"] == "release 7"
        assert read(fs, str(linked.root / "current" / "notes.txt"))["content"] == "release 7"
        assert read(fs, "notes")["content"] == "release 7"
        assert read(fs, "dotted")["content"] == "hello"
        got = listdir(fs, "current")
        assert [e["name"] for e in got["entries"]] == ["notes.txt"]
        assert got["path"] == str(linked.root / "current")  # the path asked for, not the target
    finally:
        fs.close()


@pytest.mark.parametrize("path", ["out/secret.txt", "out-file", "evil", "via-proc/secret.txt"])
def test_absolute_links_elsewhere_stay_refused(linked: Tree, path: str) -> None:
    fs = make_connector([linked.root], [linked.secrets, linked.private])
    try:
        e = refused(read, fs, path)
        assert e.code == "SECURITY_ERROR", e.reason
        assert "SECRET" not in e.reason and str(linked.outside) not in e.reason
        assert repr(path) in e.reason  # the path as the agent sent it
    finally:
        fs.close()


@pytest.mark.parametrize("path", ["to-secrets/key", "to-private"])
def test_absolute_links_into_denied_paths_are_refused(linked: Tree, path: str) -> None:
    fs = make_connector([linked.root], [linked.secrets, linked.private])
    try:
        e = refused(read, fs, path)
        assert e.code == "SECURITY_ERROR" and "denied" in e.reason, e.reason
        assert refused(listdir, fs, "to-secrets").code == "SECURITY_ERROR"
    finally:
        fs.close()


def test_absolute_link_loops_end(linked: Tree) -> None:
    fs = make_connector([linked.root], [])
    try:
        e = refused(read, fs, "loop-a/x")
        assert e.code == "SECURITY_ERROR" and "symlinks" in e.reason
        assert refused(read, fs, "loop-a").code == "SECURITY_ERROR"
    finally:
        fs.close()


def test_links_into_another_allowed_root_stay_refused(linked: Tree) -> None:
    other = linked.base / "other-root"
    other.mkdir()
    (other / "f.txt").write_text("other")
    os.symlink(str(other / "f.txt"), linked.root / "cross")
    fs = make_connector([linked.root, other], [])
    try:
        assert refused(read, fs, "cross").code == "SECURITY_ERROR"
    finally:
        fs.close()


def test_the_walk_fallback_follows_no_symlink(linked: Tree) -> None:
    fs = make_connector([linked.root], [], mode="walk")
    try:
        assert refused(read, fs, "current/notes.txt").code == "SECURITY_ERROR"
    finally:
        fs.close()


@pytest.fixture(scope="module")
def one_root(tmp_path_factory):
    from tests.support.fs_tree import build_tree

    t = build_tree(tmp_path_factory.mktemp("abs"))
    fs = make_connector([t.root], [t.secrets, t.private])
    yield t, fs
    fs.close()


_component = st.sampled_from(["..", ".", "", "secrets", "sub", "root", "root-evil", "x", "private.key"])


@given(st.lists(_component, max_size=8), st.booleans())
def test_property_absolute_targets_map_beneath_their_own_root_or_are_refused(one_root, parts, prefixed) -> None:
    """Whatever an absolute symlink says, the mapped path is a clean root-relative path that
    lies beneath the root and outside the denied paths, or the link is refused."""
    from mcp_gateway.ipc.errors import Refusal

    t, fs = one_root
    root = fs._roots[str(t.root)]
    target = (str(t.root) if prefixed else "") + "/" + "/".join(parts)
    try:
        rel = fs._inside_root(root, target, "'link'")
    except Refusal as e:
        assert e.code == "SECURITY_ERROR" and str(t.base) not in e.reason
        return
    comps = rel.split("/")
    assert rel == "." or all(c not in ("", ".", "..") for c in comps), rel
    full = os.path.normpath(os.path.join(str(t.root), rel))
    assert full == str(t.root) or full.startswith(str(t.root) + "/")
    assert not (full + "/").startswith(str(t.secrets) + "/") and full != str(t.private)
