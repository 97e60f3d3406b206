"""Lexical path guard of the filesystem connector (pure: it never touches the filesystem).

`check_path(path, settings)` answers "which allowed root is this path beneath, and what is
left of it below that root?", or raises GuardDenied. The rules (docs/FILESYSTEM.md):

- the path is a str without NUL bytes, at most 4096 bytes of UTF-8 (lone surrogates are not
  UTF-8 and are refused);
- absolute, or relative to the first allowed path;
- normalised lexically: empty and `.` components vanish, `..` removes the previous
  component (`/..` stays `/`, as in POSIX); no symlink is looked at here;
- beneath an allowed root by whole components (`/app/data-evil` is not beneath `/app/data`);
  when several roots match, the deepest one wins;
- not equal to or beneath a denied path, again by whole components;
- every other character is literal: `%2e%2e` is a file name, not `..`; `a\\..\\b` is one
  file name with backslashes in it.

Reasons quote the path as the agent sent it (`as_sent`), never the root it was resolved
against. The supervisor calls it for a fast, well-explained denial. The worker calls it again and
then enforces for real (openat2 beneath the root's fd, identity checks against the denied
paths), because symlinks, bind mounts, hard links and case-insensitive filesystems all make
lexical answers incomplete.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import NamedTuple

from mcp_gateway.connectors.filesystem.settings import FilesystemSettings
from mcp_gateway.guards import GuardDenied

PATH_MAX_BYTES = 4096


class CheckedPath(NamedTuple):
    """An accepted path: the allowed root it lies beneath and the rest below it."""

    root: Path
    # '/'-joined components below the root, "." for the root itself; never absolute,
    # never containing "", "." or ".." components. Ready for openat2(root_fd, relative).
    relative: str

    @property
    def display(self) -> str:
        """The normalised absolute path, as the agent should see it."""
        if self.relative == ".":
            return str(self.root)
        return str(self.root).rstrip("/") + "/" + self.relative


def _components(path: str) -> list[str]:
    """Lexical normalisation of an absolute or root-relative path into components."""
    out: list[str] = []
    for comp in path.split("/"):
        if comp in ("", "."):
            continue
        if comp == "..":
            if out:
                out.pop()
            continue
        out.append(comp)
    return out


def _beneath(parts: list[str], base: tuple[str, ...]) -> bool:
    return len(parts) >= len(base) and tuple(parts[: len(base)]) == base


def _roots(paths: list[Path]) -> tuple[tuple[Path, tuple[str, ...]], ...]:
    return _parsed_roots(tuple(paths))


@functools.lru_cache(maxsize=64)
def _parsed_roots(paths: tuple[Path, ...]) -> tuple[tuple[Path, tuple[str, ...]], ...]:
    # Parsed once per configured list: this runs on every call, in the supervisor and the worker.
    return tuple((Path("/" + "/".join(c)), tuple(c)) for c in (_components(str(p)) for p in paths))


def normalise_root(path: Path | str) -> Path:
    """An allowed or denied path in the form check_path reports it (CheckedPath.root)."""
    return Path("/" + "/".join(_components(str(path))))


def check_path(path: str, settings: FilesystemSettings) -> CheckedPath:
    """Accept `path` (returning its root and relative remainder) or raise GuardDenied."""
    if not isinstance(path, str):
        raise GuardDenied("the path must be a string")
    if not path:
        raise GuardDenied("the path is empty")
    if "\0" in path:
        raise GuardDenied("the path contains a NUL byte")
    try:
        size = len(path.encode("utf-8"))
    except UnicodeEncodeError:
        raise GuardDenied("the path is not valid UTF-8 (it contains a lone surrogate)") from None
    if size > PATH_MAX_BYTES:
        raise GuardDenied(f"the path is longer than {PATH_MAX_BYTES} bytes")
    allowed = _roots(settings.allowed_paths)
    if not allowed:
        raise GuardDenied("no allowed paths are configured for the filesystem connector")

    if path.startswith("/"):
        parts = _components(path)
    else:
        parts = _components("/".join(("/".join(allowed[0][1]), path)))

    match: tuple[Path, tuple[str, ...]] | None = None
    for root, base in allowed:
        if _beneath(parts, base) and (match is None or len(base) > len(match[1])):
            match = (root, base)
    if match is None:
        raise GuardDenied(f"{as_sent(path)} is outside the allowed paths")

    for _denied, dbase in _roots(settings.denied_paths):
        if _beneath(parts, dbase):
            raise GuardDenied(f"{as_sent(path)} is beneath a denied path")

    rest = parts[len(match[1]) :]
    return CheckedPath(match[0], "/".join(rest) if rest else ".")


def as_sent(path: str) -> str:
    """The path exactly as the agent sent it, for a reason text: quoted (control characters
    escaped) and shortened so a reason stays readable. Never a host path it did not send."""
    return repr(path if len(path) <= 200 else path[:200] + "...")


def lexical_components(path: str) -> list[str]:
    """An absolute path's components after lexical normalisation (as check_path sees it)."""
    return _components(path)
