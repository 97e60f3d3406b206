"""The filesystem connector: fs.readFile and fs.listDir, confined beneath the allowed roots.

Defence in depth, outermost first (docs/FILESYSTEM.md has the full rules):

1. `check_path` (lexical): NUL bytes, length, `..` collapsing, component-wise root and
   denied-path matching. The supervisor runs it too.
2. Every open is relative to an O_PATH fd of the allowed root, through
   `openat2(RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS)` (or, where openat2 is unavailable, an
   O_NOFOLLOW walk that refuses all symlinks and `..`). Nothing can resolve outside the root.
3. The location actually reached is checked against the denied paths by identity: the
   (st_dev, st_ino) of the file itself and of every directory from its parent up to the root
   (walked with openat(fd, "..") on the opened fd, no /proc needed, so it works under
   Landlock). A symlink or bind mount into a denied directory, or a hard link to a denied
   file, is refused.
4. Only regular files are opened for reading: the last component is first opened O_PATH
   (which never triggers a device's or FIFO's open side effects), fstat'ed, and reopened
   O_RDONLY|O_NOFOLLOW|O_NONBLOCK only if it is a regular file; the two opens must yield the
   same inode.
5. Reads never hold more than max_bytes (+1 to detect overflow) of file content.
6. Landlock (read-only beneath the allowed paths) and seccomp underneath, applied by the
   sandbox before start().
"""

from __future__ import annotations

import base64
import binascii  # noqa: F401 - base64's C half, imported before the sandbox
import errno
import fcntl
import os
import stat
import sys

from mcp_gateway.config import GatewayConfig
from mcp_gateway.connectors.base import Instance
from mcp_gateway.connectors.filesystem.openat2 import BeneathOpener, openat2_available
from mcp_gateway.connectors.filesystem.paths import (
    CheckedPath,
    as_sent,
    check_path,
    lexical_components,
    normalise_root,
)
from mcp_gateway.connectors.filesystem.settings import FilesystemSettings
from mcp_gateway.connectors.filesystem.tools import LIST_DIR, READ_FILE, ListDirArgs, ReadFileArgs
from mcp_gateway.guards import GuardDenied
from mcp_gateway.ipc.errors import ErrorCode, Refusal
from mcp_gateway.sandbox.profile import SandboxProfile
from mcp_gateway.workers.connector import CallLimits, Connector

READ_CHUNK = 1024 * 1024
MAX_DIR_ENTRIES = 10_000
# Estimated JSON bytes per listDir entry besides its name ({"name":"","type":"directory","size":N}).
ENTRY_OVERHEAD = 64
# Symlinks followed by hand on the last component (the kernel's own limit is 40).
MAX_SYMLINK_HOPS = 40
# Directories walked up from a resolved location before giving up.
MAX_ANCESTORS = 65_536

_PATH_DIR = os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC
_PATH_ANY = os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC
_READ_FILE = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
_READ_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC

_KIND = {
    stat.S_IFIFO: "a FIFO",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFSOCK: "a socket",
    stat.S_IFLNK: "a symlink",
}


def _kind(mode: int) -> str:
    return _KIND.get(stat.S_IFMT(mode), "not a regular file")


# Root fds opened in the zygote live at or above this number, clear of the descriptors a
# worker is built from (0-2 stdio, 3 its socket; see workers/zygote.py).
ANCHOR_FD_MIN = 16


def _above_worker_fds(fd: int) -> int:
    if fd >= ANCHOR_FD_MIN:
        return fd
    try:
        return fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, ANCHOR_FD_MIN)
    finally:
        os.close(fd)


def _ident(st: os.stat_result) -> tuple[int, int]:
    return (st.st_dev, st.st_ino)


class _Root:
    __slots__ = ("path", "fd", "ident", "parts")

    def __init__(self, path: str, fd: int, ident: tuple[int, int]) -> None:
        self.path = path
        self.fd = fd
        self.ident = ident
        self.parts = tuple(lexical_components(path))


class _IsDirectory(Exception):
    pass


class FilesystemConnector(Connector):
    kind = "filesystem"

    def __init__(self, config: GatewayConfig, instance: Instance | None = None) -> None:
        super().__init__(config, instance)
        self.settings: FilesystemSettings
        self._roots: dict[str, _Root] = {}
        self._missing_roots: set[str] = set()
        self._denied_idents: set[tuple[int, int]] = set()
        self._denied_known: set[str] = set()  # denied paths identified at least once
        self._denied_unverified: set[str] = set()  # exist, but cannot be identified: fail closed
        self._opener: BeneathOpener | None = None
        # True forces the O_NOFOLLOW-walk fallback (tests, or an operator distrusting openat2);
        # otherwise start() probes whether openat2 works under the sandbox.
        self.force_walk: bool = False

    # --- lifecycle -------------------------------------------------------------------

    def warm(self) -> None:
        """In the zygote, still privileged: open the roots and identify the denied paths (the
        trusted side does it, so only the data itself must be readable by the workers' uids;
        the fds are inherited by every worker), and load everything a call touches."""
        self._open_roots()
        self._refresh_denied()
        "é".encode().decode("utf-8", "strict")
        base64.b64encode(b"warm").decode("ascii")
        try:
            b"\xff".decode("utf-8")
        except UnicodeDecodeError as e:
            str(e)
        errno.errorcode.get(errno.EXDEV)
        os.strerror(errno.ENOENT)
        stat.filemode(0o100644)
        # Exercise the ctypes call path once (the answer is probed again in start(), under
        # the sandbox, where a seccomp filter may change it).
        openat2_available()

    def sandbox_profile(self) -> SandboxProfile:
        limits = self.limits()
        return SandboxProfile(
            instance=self.name,
            read_paths=tuple(str(p) for p in self.settings.allowed_paths),
            connect_ports=(),
            socket_families=(),
            extra_syscalls=("openat2",),
            memory_mb=limits.memory_mb,
            cpu_s=limits.cpu_s,
            nofile=limits.nofile,
        )

    def inherited_fds(self) -> tuple[int, ...]:
        return tuple(r.fd for r in self._roots.values())

    def start(self) -> None:
        """In the worker, confined: retry the roots that were missing in the zygote (as the
        worker's uid now), refresh the denied identities, choose openat2 or the walk."""
        self._open_roots()
        self._refresh_denied()
        first_fd = next(iter(self._roots.values())).fd if self._roots else None
        use_openat2 = (not self.force_walk) and openat2_available(first_fd)
        self._opener = BeneathOpener(use_openat2, cross_mounts=self.settings.cross_mounts)

    def _open_roots(self) -> None:
        """O_PATH fd and identity of each allowed root not opened yet."""
        self._missing_roots.clear()
        for p in self.settings.allowed_paths:
            key = str(normalise_root(p))
            if key in self._roots:
                continue
            try:
                fd = _above_worker_fds(os.open(key, _PATH_DIR))
            except OSError as e:
                self._missing_roots.add(key)
                print(f"mcp-gateway filesystem worker: allowed path {key!r} unusable: {e.strerror}",
                      file=sys.stderr, flush=True)
                continue
            self._roots[key] = _Root(key, fd, _ident(os.fstat(fd)))

    def close(self) -> None:
        for r in self._roots.values():
            try:
                os.close(r.fd)
            except OSError:
                pass
        self._roots.clear()
        self._missing_roots.clear()
        self._opener = None

    @property
    def mechanism(self) -> str:
        return self._opener.mechanism if self._opener else "not started"

    def _refresh_denied(self) -> None:
        # Identities accumulate: a denied directory renamed away keeps being denied by
        # identity for the life of this worker; one created later is picked up here.
        # Fail closed: a denied path that exists but cannot be identified (EACCES...) and was
        # never identified before stops every call until it can be.
        for p in self.settings.denied_paths:
            key = str(p)
            try:
                self._denied_idents.add(_ident(os.stat(p)))
            except (FileNotFoundError, NotADirectoryError):
                continue  # absent: enforced lexically until it exists
            except OSError as e:
                if key not in self._denied_known and key not in self._denied_unverified:
                    print(f"mcp-gateway filesystem worker: denied path {key!r} cannot be identified "
                          f"({e.strerror}); every call is refused until it can be",
                          file=sys.stderr, flush=True)
                if key not in self._denied_known:
                    self._denied_unverified.add(key)
                continue
            self._denied_known.add(key)
            self._denied_unverified.discard(key)

    # --- calls -----------------------------------------------------------------------

    def call(self, tool: str, args, limits: CallLimits) -> dict:
        if self._opener is None:
            raise Refusal(ErrorCode.INTERNAL_ERROR, "the filesystem worker was not started")
        if tool == READ_FILE.tool and isinstance(args, ReadFileArgs):
            return self.read_file(args, limits)
        if tool == LIST_DIR.tool and isinstance(args, ListDirArgs):
            return self.list_dir(args, limits)
        raise Refusal(ErrorCode.VALIDATION_ERROR, f"tool {tool!r} is not served by the filesystem connector")

    def _check(self, path: str) -> tuple[CheckedPath, _Root]:
        checked = check_path(path, self.settings)
        root = self._roots.get(str(checked.root))
        if root is None:
            raise Refusal(ErrorCode.NOT_FOUND, f"{as_sent(path)}: its allowed directory is not available")
        self._refresh_denied()
        if self._denied_unverified:
            raise Refusal(ErrorCode.SECURITY_ERROR,
                          "a denied path of the gateway's configuration cannot be verified, so every "
                          "filesystem call is refused (the gateway log names it)")
        return checked, root

    # readFile ------------------------------------------------------------------------

    def read_file(self, args: ReadFileArgs, limits: CallLimits) -> dict:
        checked, root = self._check(args.path)
        shown = as_sent(args.path)
        fd = self._open_regular(root, checked.relative, shown)
        try:
            st = os.fstat(fd)
            size = st.st_size
            cap = limits.max_bytes
            remaining = max(0, size - args.offset)
            expected = remaining if args.length is None else min(args.length, remaining)
            if expected > cap:
                raise Refusal(
                    ErrorCode.RESULT_TOO_LARGE,
                    f"{shown} has {expected} bytes to return from offset {args.offset}, more than the cap "
                    f"of {cap} bytes; page through it with offset and length (length <= {cap})")
            # Read at most cap+1 bytes: the size from fstat may be stale (growing files) or
            # meaningless (procfs/sysfs report 0), the +1 detects overflow.
            want = cap + 1 if args.length is None else min(args.length, cap + 1)
            data = self._pread(fd, want, args.offset)
        finally:
            os.close(fd)
        if len(data) > cap:
            raise Refusal(ErrorCode.RESULT_TOO_LARGE,
                          f"{shown} grew past the cap of {cap} bytes while being read; "
                          "page with offset/length")
        if args.encoding == "base64":
            content = base64.b64encode(data).decode("ascii")
        else:
            try:
                content = data.decode("utf-8", "strict")
            except UnicodeDecodeError as e:
                raise Refusal(
                    ErrorCode.VALIDATION_ERROR,
                    f"{shown} is not valid UTF-8 (invalid byte at offset {args.offset + e.start}; a page "
                    f"boundary may also split a character); read it with encoding \"base64\"") from None
        return {
            "path": checked.display,
            "size": size,
            "offset": args.offset,
            "length": len(data),
            "encoding": args.encoding,
            "content": content,
        }

    @staticmethod
    def _pread(fd: int, want: int, offset: int) -> bytearray:
        buf = bytearray()
        while len(buf) < want:
            try:
                chunk = os.pread(fd, min(READ_CHUNK, want - len(buf)), offset + len(buf))
            except OSError as e:
                if e.errno == errno.EINTR:
                    continue
                raise Refusal(ErrorCode.INTERNAL_ERROR, f"read failed: {e.strerror}") from None
            if not chunk:
                break
            buf += chunk
        return buf

    def _open_regular(self, root: _Root, relative: str, shown: str) -> int:
        """fd (O_RDONLY) of the regular file `relative` names beneath root, checked, or Refusal."""
        assert self._opener is not None
        path = relative
        for _hop in range(MAX_SYMLINK_HOPS + 1):
            head, _, name = path.rpartition("/")
            if name in ("", ".", ".."):
                self._dir_then_refuse(root, path, shown)
            # A name directly beneath the root needs no second directory fd: the root's own
            # O_PATH fd is the parent, and it is the root by construction.
            parent = self._open_beneath(root, head, _PATH_DIR, shown) if head else root.fd
            try:
                if parent != root.fd:
                    self._check_location(parent, root, shown)
                pfd = self._open(parent, name, _PATH_ANY, shown)
                try:
                    pst = os.fstat(pfd)
                    if stat.S_ISDIR(pst.st_mode):
                        self._check_location(pfd, root, shown)  # "denied" beats "is a directory"
                finally:
                    os.close(pfd)
                mode = pst.st_mode
                if stat.S_ISLNK(mode):
                    if not self._opener.follows_symlinks:
                        raise Refusal(ErrorCode.SECURITY_ERROR,
                                      f"{shown}: symlinks are not followed (openat2 is unavailable here)")
                    try:
                        target = os.readlink(name, dir_fd=parent)
                    except OSError as e:
                        raise self._error(e, shown) from None
                    if target.startswith("/"):
                        path = self._inside_root(root, target, shown)
                        continue
                    # The kernel resolves a relative symlink as if its target replaced the
                    # link's name: re-resolve head/target beneath the root fd (physical `..`).
                    path = f"{head}/{target}" if head else target
                    continue
                if stat.S_ISDIR(mode):
                    raise Refusal(ErrorCode.VALIDATION_ERROR, f"{shown} is a directory; use fs.listDir")
                if not stat.S_ISREG(mode):
                    raise Refusal(ErrorCode.SECURITY_ERROR,
                                  f"{shown} is {_kind(mode)}; only regular files are read")
                if _ident(pst) in self._denied_idents:
                    raise Refusal(ErrorCode.SECURITY_ERROR, f"{shown} is a denied file (or a hard link to one)")
                fd = self._open(parent, name, _READ_FILE, shown)
                st = os.fstat(fd)
                if _ident(st) != _ident(pst) or not stat.S_ISREG(st.st_mode):
                    os.close(fd)
                    raise Refusal(ErrorCode.SECURITY_ERROR, f"{shown} changed while it was being opened; refused")
                return fd
            finally:
                if parent != root.fd:
                    os.close(parent)
        raise Refusal(ErrorCode.SECURITY_ERROR, f"{shown}: too many levels of symlinks")

    def _dir_then_refuse(self, root: _Root, path: str, shown: str) -> None:
        fd = self._open_beneath(root, path, _PATH_DIR, shown)
        try:
            self._check_location(fd, root, shown)
        finally:
            os.close(fd)
        raise Refusal(ErrorCode.VALIDATION_ERROR, f"{shown} is a directory; use fs.listDir")

    # listDir -------------------------------------------------------------------------

    def list_dir(self, args: ListDirArgs, limits: CallLimits) -> dict:
        checked, root = self._check(args.path)
        shown = as_sent(args.path)
        # O_PATH without O_DIRECTORY first, to tell "not a directory" from "not found".
        pfd = self._open_beneath(root, checked.relative, os.O_PATH | os.O_CLOEXEC, shown)
        try:
            pst = os.fstat(pfd)
            if not stat.S_ISDIR(pst.st_mode):
                if stat.S_ISLNK(pst.st_mode):  # only the walk can hand back a link; it refuses them
                    raise Refusal(ErrorCode.SECURITY_ERROR, f"{shown}: symlinks are not followed")
                raise Refusal(ErrorCode.VALIDATION_ERROR, f"{shown} is not a directory; use fs.readFile")
            self._check_location(pfd, root, shown)
            try:
                dfd = os.open(".", _READ_DIR, dir_fd=pfd)
            except OSError as e:
                raise self._error(e, shown) from None
        finally:
            os.close(pfd)
        try:
            if _ident(os.fstat(dfd)) != _ident(pst):
                raise Refusal(ErrorCode.SECURITY_ERROR, f"{shown} changed while it was being opened; refused")
            entries = self._scan(dfd, shown, limits.max_bytes)
        finally:
            os.close(dfd)
        return {"path": checked.display, "entries": entries}

    @staticmethod
    def _scan(dfd: int, shown: str, max_bytes: int) -> list[dict]:
        entries: list[dict] = []
        budget = 0
        try:
            with os.scandir(dfd) as it:
                for entry in it:
                    if len(entries) >= MAX_DIR_ENTRIES:
                        raise Refusal(ErrorCode.RESULT_TOO_LARGE,
                                      f"{shown} has more than {MAX_DIR_ENTRIES} entries")
                    try:
                        st = entry.stat(follow_symlinks=False)
                    except FileNotFoundError:
                        continue  # removed while listing
                    mode = st.st_mode
                    if stat.S_ISLNK(mode):
                        kind = "symlink"
                    elif stat.S_ISDIR(mode):
                        kind = "directory"
                    elif stat.S_ISREG(mode):
                        kind = "file"
                    else:
                        kind = "other"
                    name = entry.name
                    try:
                        name.encode("utf-8")
                    except UnicodeEncodeError:
                        # Not UTF-8 on disk: show the bytes escaped (\xff); the name is then
                        # not usable as a path, which is the honest answer.
                        name = os.fsencode(name).decode("utf-8", "backslashreplace")
                    budget += len(name.encode("utf-8")) + ENTRY_OVERHEAD
                    if budget > max_bytes:
                        raise Refusal(ErrorCode.RESULT_TOO_LARGE,
                                      f"the listing of {shown} passes the cap of {max_bytes} bytes")
                    entries.append({"name": name, "type": kind, "size": st.st_size})
        except OSError as e:
            raise Refusal(ErrorCode.INTERNAL_ERROR, f"listing {shown} failed: {e.strerror}") from None
        entries.sort(key=lambda e: e["name"])
        return entries

    # shared --------------------------------------------------------------------------

    def _open_beneath(self, root: _Root, relative: str, flags: int, shown: str) -> int:
        """openat2 beneath the root in one go; where the kernel refuses (EXDEV: an absolute
        symlink, or a mount point), resolve by hand to find out which and follow what may be."""
        assert self._opener is not None
        try:
            return self._opener.open(root.fd, relative, flags)
        except OSError as e:
            if e.errno != errno.EXDEV or not self._opener.follows_symlinks:
                raise self._error(e, shown) from None
        return self._open(root.fd, self._canonical(root, relative, shown), flags, shown)

    def _canonical(self, root: _Root, relative: str, shown: str) -> str:
        """`relative` with every symlink resolved, one component at a time beneath the root fd
        (each step openat2 RESOLVE_BENEATH | NO_SYMLINKS | NO_MAGICLINKS, + NO_XDEV unless
        cross_mounts): absolute symlinks into the same root are followed from the root, those
        elsewhere refused; `..` in a symlink target is physical (the path so far has no links)."""
        assert self._opener is not None
        done: list[str] = []
        todo = list(reversed(relative.split("/")))
        hops = 0
        while todo:
            comp = todo.pop()
            if comp in ("", "."):
                continue
            if comp == "..":
                if not done:
                    raise Refusal(ErrorCode.SECURITY_ERROR, f"{shown} goes through a symlink that leaves its "
                                                            "allowed root; refused")
                done.pop()
                continue
            step = "/".join((*done, comp))
            try:
                fd = self._opener.open_component(root.fd, step)
            except OSError as e:
                if e.errno == errno.EXDEV:
                    raise Refusal(ErrorCode.SECURITY_ERROR, f"{shown} crosses a mount point inside its allowed "
                                                            "root; refused (connectors.filesystem.cross_mounts is "
                                                            "off)") from None
                raise self._error(e, shown) from None
            try:
                if not stat.S_ISLNK(os.fstat(fd).st_mode):
                    done.append(comp)
                    continue
                hops += 1
                if hops > MAX_SYMLINK_HOPS:
                    raise Refusal(ErrorCode.SECURITY_ERROR, f"{shown}: too many levels of symlinks")
                target = os.readlink("", dir_fd=fd)  # readlinkat on the link's own O_PATH fd
            finally:
                os.close(fd)
            if target.startswith("/"):
                done = []
                target = self._inside_root(root, target, shown)
            todo.extend(reversed(target.split("/")))
        return "/".join(done) or "."

    def _inside_root(self, root: _Root, target: str, shown: str) -> str:
        """An absolute symlink target as a path relative to `root`, if it lies beneath that
        same root (lexically, then denied paths by name); else SECURITY_ERROR."""
        parts = lexical_components(target)
        if tuple(parts[: len(root.parts)]) != root.parts:
            raise Refusal(ErrorCode.SECURITY_ERROR, f"{shown} goes through an absolute symlink that points "
                                                    "outside its allowed root; refused")
        try:
            check_path("/" + "/".join(parts), self.settings)
        except GuardDenied:
            raise Refusal(ErrorCode.SECURITY_ERROR, f"{shown} resolves into a denied path") from None
        return "/".join(parts[len(root.parts):]) or "."

    def _open(self, dirfd: int, path: str, flags: int, shown: str) -> int:
        assert self._opener is not None
        try:
            return self._opener.open(dirfd, path, flags)
        except OSError as e:
            raise self._error(e, shown) from None

    def _check_location(self, dirfd: int, root: _Root, shown: str) -> None:
        """Walk up from the directory `dirfd` to the root: refuse denied directories, escapes.

        Uses openat(fd, "..") on O_PATH fds (not subject to Landlock, no /proc needed), so
        it sees where the directory really is now, whatever names led to it.
        """
        cur = os.dup(dirfd)
        try:
            st = os.fstat(cur)
            for _ in range(MAX_ANCESTORS):
                ident = _ident(st)
                if ident in self._denied_idents:
                    raise Refusal(ErrorCode.SECURITY_ERROR, f"{shown} resolves into a denied path")
                if ident == root.ident:
                    return
                try:
                    parent = os.open("..", _PATH_DIR, dir_fd=cur)
                except OSError as e:
                    raise Refusal(ErrorCode.SECURITY_ERROR,
                                  f"{shown}: cannot verify its location ({e.strerror}); refused") from None
                os.close(cur)
                cur = parent
                pst = os.fstat(cur)
                if _ident(pst) == ident:  # reached "/" without meeting the root
                    raise Refusal(ErrorCode.SECURITY_ERROR, f"{shown} resolves outside its allowed root")
                st = pst
            raise Refusal(ErrorCode.SECURITY_ERROR, f"{shown} is nested too deeply to verify; refused")
        finally:
            os.close(cur)

    @staticmethod
    def _error(e: OSError, shown: str) -> Refusal:
        n = e.errno
        if n == errno.EXDEV:
            return Refusal(ErrorCode.SECURITY_ERROR,
                           f"{shown} leaves its allowed root (through a symlink or a mount point); refused")
        if n == errno.ELOOP:
            return Refusal(ErrorCode.SECURITY_ERROR,
                           f"{shown} goes through a symlink that is not followed here, a /proc magic "
                           "link or a symlink loop; refused")
        if n in (errno.ENOENT, errno.ENOTDIR):
            return Refusal(ErrorCode.NOT_FOUND, f"{shown} does not exist")
        if n in (errno.EACCES, errno.EPERM):
            return Refusal(ErrorCode.SECURITY_ERROR, f"{shown}: permission denied")
        if n == errno.EAGAIN:
            return Refusal(ErrorCode.SECURITY_ERROR,
                           f"{shown}: path resolution kept racing concurrent renames; refused, retry later")
        if n == errno.ENAMETOOLONG:
            return Refusal(ErrorCode.VALIDATION_ERROR, f"{shown}: a name or the resolved path is too long")
        if n in (errno.EMFILE, errno.ENFILE):
            return Refusal(ErrorCode.INTERNAL_ERROR, "the worker ran out of file descriptors")
        name = errno.errorcode.get(n or 0, "unknown error")
        return Refusal(ErrorCode.INTERNAL_ERROR, f"{shown}: open failed ({name})")
