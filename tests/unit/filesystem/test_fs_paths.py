"""check_path: the supervisor-side lexical guard (pure, no filesystem access)."""

from __future__ import annotations

from pathlib import Path, PurePosixPath

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from mcp_gateway.connectors.filesystem.paths import CheckedPath, check_path
from mcp_gateway.connectors.filesystem.settings import FilesystemSettings
from mcp_gateway.guards import GuardDenied

S = FilesystemSettings(
    enabled=True,
    allowed_paths=[Path("/app/data"), Path("/srv/pub"), Path("/app/data/nested")],
    denied_paths=[Path("/app/data/secrets"), Path("/srv/pub/private.key")],
)


def ok(path: str) -> tuple[str, str]:
    r = check_path(path, S)
    return str(r.root), r.relative


def denied(path: str) -> str:
    with pytest.raises(GuardDenied) as ei:
        check_path(path, S)
    return ei.value.reason


@pytest.mark.parametrize(
    "path, expected",
    [
        ("/app/data", ("/app/data", ".")),
        ("/app/data/", ("/app/data", ".")),
        ("/app/data/a.txt", ("/app/data", "a.txt")),
        ("a.txt", ("/app/data", "a.txt")),  # relative to the first allowed path
        (".", ("/app/data", ".")),
        ("./x/./y//z", ("/app/data", "x/y/z")),
        ("x/../y", ("/app/data", "y")),
        ("/app/data/x/../../data/y", ("/app/data", "y")),
        ("/../../app/data/y", ("/app/data", "y")),  # "/.." is "/"
        ("/srv/pub/doc", ("/srv/pub", "doc")),
        ("../../srv/pub/doc", ("/srv/pub", "doc")),  # relative, lands beneath another root
        ("/app/data/nested/q", ("/app/data/nested", "q")),  # the deepest root wins
        ("/app/data/secrets-public/x", ("/app/data", "secrets-public/x")),  # not beneath secrets
        ("/app/data/%2e%2e/%2e%2e/etc/passwd", ("/app/data", "%2e%2e/%2e%2e/etc/passwd")),
        ("%2e%2e%2fetc%2fpasswd", ("/app/data", "%2e%2e%2fetc%2fpasswd")),
        ("..\\..\\etc\\passwd", ("/app/data", "..\\..\\etc\\passwd")),
        ("/app/data/...", ("/app/data", "...")),
        ("/app/data/ ../x", ("/app/data", " ../x")),
        ("/app/data/secrets/../a", ("/app/data", "a")),
    ],
)
def test_accepted(path: str, expected: tuple[str, str]) -> None:
    assert ok(path) == expected


@pytest.mark.parametrize(
    "path",
    [
        "/app/data-evil/secret.txt",  # prefix trick
        "/app/dat",
        "/app",
        "/",
        "/etc/passwd",
        "../x",
        "../data-evil/x",
        "/app/data/../../etc/passwd",
        "/app/data/x/../../../etc",
        "/proc/self/root/etc/passwd",
        "/proc/self/fd/3",
        "/srv/pubx",
    ],
)
def test_outside_denied(path: str) -> None:
    assert "outside the allowed paths" in denied(path)


@pytest.mark.parametrize(
    "path",
    [
        "/app/data/secrets",
        "/app/data/secrets/",
        "/app/data/secrets/key",
        "secrets/key",
        "./secrets//key",
        "x/../secrets/key",
        "/app/data/nested/../secrets/key",
        "/srv/pub/private.key",
        "/srv/pub/./private.key",
    ],
)
def test_denied_paths(path: str) -> None:
    assert "denied" in denied(path)


@pytest.mark.parametrize(
    "path, why",
    [
        ("", "empty"),
        ("a\0b", "NUL"),
        ("/app/data/a\0", "NUL"),
        ("a" * 4097, "longer than 4096"),
        ("é" * 2049, "longer than 4096"),  # 4098 bytes of UTF-8
        ("a\udcffb", "UTF-8"),
    ],
)
def test_malformed(path: str, why: str) -> None:
    assert why in denied(path)


def test_non_string_and_no_roots() -> None:
    with pytest.raises(GuardDenied):
        check_path(b"/app/data/x", S)  # type: ignore[arg-type]
    with pytest.raises(GuardDenied, match="no allowed paths"):
        check_path("/app/data/x", FilesystemSettings())


def test_result_shape() -> None:
    r = check_path("sub/../b/c", S)
    assert isinstance(r, CheckedPath) and isinstance(r, tuple)
    root, rel = r
    assert root == Path("/app/data") and rel == "b/c"
    assert r.display == "/app/data/b/c"
    assert check_path("/app/data", S).display == "/app/data"
    assert check_path("/x", FilesystemSettings(allowed_paths=[Path("/")])).display == "/x"


# --- properties ---------------------------------------------------------------------------

COMPONENTS = ["..", ".", "", "a", "b", "secrets", "secrets-x", "%2e", "%2e%2e", "\\", "..\\..",
              "link", "data", "data-evil", "app", "srv", "pub", "private.key", "nested", "\0", "é",
              "\udcff", "~", "*"]
ROOTS = [tuple(PurePosixPath(p).parts[1:]) for p in S.allowed_paths]
DENIED = [tuple(PurePosixPath(p).parts[1:]) for p in S.denied_paths]

paths = st.builds(
    lambda lead, comps: lead + "/".join(comps),
    st.sampled_from(["", "/", "/app/data/", "/srv/pub/", "/app/", "//"]),
    st.lists(st.sampled_from(COMPONENTS), max_size=12),
)


def _beneath(parts: tuple[str, ...], base: tuple[str, ...]) -> bool:
    return parts[: len(base)] == base


@settings(max_examples=1500, deadline=None)
@given(paths)
@example("/app/data/secrets/../secrets/x")
@example("secrets/./x")
@example("/app/data-evil/x")
def test_property_result_is_beneath_a_root_and_not_denied(path: str) -> None:
    try:
        r = check_path(path, S)
    except GuardDenied:
        return
    assert r.relative == "." or all(c not in ("", ".", "..") for c in r.relative.split("/"))
    assert not r.relative.startswith("/")
    full = PurePosixPath(r.display)
    parts = full.parts[1:]
    base = tuple(PurePosixPath(r.root).parts[1:])
    assert base in ROOTS and _beneath(parts, base)
    assert not any(_beneath(parts, d) for d in DENIED)
    assert "\0" not in r.display


@settings(max_examples=1000, deadline=None)
@given(st.text(max_size=300))
def test_property_arbitrary_text_only_guard_denied(path: str) -> None:
    try:
        r = check_path(path, S)
    except GuardDenied:
        return
    parts = PurePosixPath(r.display).parts[1:]
    assert any(_beneath(parts, b) for b in ROOTS)
    assert not any(_beneath(parts, d) for d in DENIED)


@settings(max_examples=500, deadline=None)
@given(st.text(alphabet=st.sampled_from("./a\\%e2"), max_size=40))
def test_property_dotdot_never_escapes(path: str) -> None:
    try:
        r = check_path(path, S)
    except GuardDenied:
        return
    # A relative path may only land outside /app/data by naming another root by its names.
    parts = PurePosixPath(r.display).parts[1:]
    assert any(_beneath(parts, b) for b in ROOTS)
