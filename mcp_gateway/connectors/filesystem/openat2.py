"""Open a path beneath a directory fd, never escaping it: openat2(2) or an O_NOFOLLOW walk.

`openat2` is called through ctypes (syscall 437, the same number on every architecture that
uses the generic syscall table, x86_64 and aarch64 included) with
`RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS`: the kernel refuses, atomically with the lookup
itself, any `..`, absolute path or symlink (absolute or relative) that would leave the
directory, and every procfs "magic link" (`/proc/self/root`, `/proc/self/fd/N`, ...).

Where openat2 is missing (kernel < 5.6: ENOSYS; or a seccomp filter refusing it: ENOSYS or
EPERM) `walk_open` does the same job more strictly in userspace: one `openat` per component
with `O_NOFOLLOW`, refusing every symlink and every `..`. Each step starts from the fd of the
previous one, so a component swapped for a symlink between two steps is seen as a symlink
(refused), never followed.

Errors are OSError with the kernel's errno: EXDEV (would escape: `..` above the start or an
absolute path/symlink), ELOOP (symlink refused, magic link, or too many symlinks), ENOENT,
ENOTDIR, EACCES, ...; EAGAIN from openat2 (a concurrent rename raced a `..` lookup) is
retried a few times before it is raised.
"""

from __future__ import annotations

import ctypes
import errno
import os
import stat

SYS_openat2 = 437

RESOLVE_NO_XDEV = 0x01
RESOLVE_NO_MAGICLINKS = 0x02
RESOLVE_NO_SYMLINKS = 0x04
RESOLVE_BENEATH = 0x08
RESOLVE_IN_ROOT = 0x10
RESOLVE_CACHED = 0x20

# What the filesystem connector always asks for; RESOLVE_NO_XDEV is added unless
# `connectors.filesystem.cross_mounts` is on: a mount point inside a root (a bind mount of a
# denied directory's child, an overlay over it) carries identities the denied-path checks
# cannot relate to the denied directory, so by default a lookup never crosses one.
RESOLVE_DEFAULT = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS

# openat2 returns EAGAIN when a rename or mount raced a `..` step under RESOLVE_BENEATH.
EAGAIN_RETRIES = 8

_DIR_STEP = os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class OpenHow(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64), ("resolve", ctypes.c_uint64)]


_libc = ctypes.CDLL(None, use_errno=True)
_syscall = _libc.syscall
_syscall.restype = ctypes.c_long
_syscall.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_char_p, ctypes.c_void_p, ctypes.c_size_t]


def _raise(err: int, path: str | bytes) -> None:
    raise OSError(err, os.strerror(err), path)


def openat2(dirfd: int, path: str | bytes, flags: int, mode: int = 0, resolve: int = RESOLVE_DEFAULT) -> int:
    """The raw syscall; returns the new fd or raises OSError (ENOSYS when unavailable)."""
    bpath = os.fsencode(path)
    if b"\0" in bpath:
        _raise(errno.EINVAL, path)
    how = OpenHow(flags, mode, resolve)
    for _attempt in range(EAGAIN_RETRIES):
        fd = _syscall(SYS_openat2, dirfd, bpath, ctypes.addressof(how), ctypes.sizeof(how))
        if fd >= 0:
            return int(fd)
        err = ctypes.get_errno()
        if err not in (errno.EAGAIN, errno.EINTR):
            _raise(err, path)
    _raise(errno.EAGAIN, path)
    raise AssertionError("unreachable")


def openat2_available(dirfd: int | None = None) -> bool:
    """True when openat2 with RESOLVE_BENEATH works here (call it after the sandbox is applied).

    ENOSYS (old kernel, or a seccomp filter answering ENOSYS) and EPERM (a filter answering
    EPERM) mean "use the walk"; any other answer means the syscall exists.
    """
    own = dirfd is None
    if own:
        dirfd = os.open("/", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        fd = openat2(dirfd, ".", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC, 0, RESOLVE_DEFAULT)
    except OSError as e:
        return e.errno not in (errno.ENOSYS, errno.EPERM)
    else:
        os.close(fd)
        return True
    finally:
        if own:
            os.close(dirfd)


def walk_open(dirfd: int, path: str | bytes, flags: int, mode: int = 0, same_device: bool = False) -> int:
    """Open `path` beneath `dirfd` one component at a time, refusing symlinks and `..`.

    Intermediate components are opened O_PATH|O_DIRECTORY|O_NOFOLLOW from the previous
    component's fd; the last one with `flags | O_NOFOLLOW`. A symlink anywhere (including the
    last component, even with O_PATH) raises ELOOP; `..` or an absolute path raises EXDEV.
    `same_device`: a component on another device than dirfd raises EXDEV (the walk's stand-in
    for RESOLVE_NO_XDEV; a bind mount of the same filesystem keeps st_dev and is not seen).
    """
    spath = os.fsdecode(path)
    if "\0" in spath:
        _raise(errno.EINVAL, path)
    if spath.startswith("/"):
        _raise(errno.EXDEV, path)
    parts = [p for p in spath.split("/") if p not in ("", ".")]
    if ".." in parts:
        _raise(errno.EXDEV, path)
    if not parts:
        parts = ["."]
    cur = dirfd
    device = os.fstat(dirfd).st_dev if same_device else None
    try:
        for comp in parts[:-1]:
            try:
                nxt = os.open(comp, _DIR_STEP, dir_fd=cur)
            except OSError as e:
                if e.errno in (errno.ENOTDIR, errno.ELOOP) and _is_symlink(cur, comp):
                    _raise(errno.ELOOP, path)
                raise
            if cur != dirfd:
                os.close(cur)
            cur = nxt
            st = os.fstat(cur)
            if not stat.S_ISDIR(st.st_mode):  # belt and braces: O_DIRECTORY said so
                _raise(errno.ENOTDIR, path)
            if device is not None and st.st_dev != device:
                _raise(errno.EXDEV, path)
        try:
            fd = os.open(parts[-1], flags | os.O_NOFOLLOW | os.O_CLOEXEC, mode, dir_fd=cur)
        except OSError as e:
            if e.errno in (errno.ENOTDIR, errno.ELOOP) and _is_symlink(cur, parts[-1]):
                _raise(errno.ELOOP, path)
            raise
        # O_PATH|O_NOFOLLOW on a symlink returns the link itself: refused like any other.
        st = os.fstat(fd)
        if stat.S_ISLNK(st.st_mode):
            os.close(fd)
            _raise(errno.ELOOP, path)
        if device is not None and st.st_dev != device:
            os.close(fd)
            _raise(errno.EXDEV, path)
        return fd
    finally:
        if cur != dirfd:
            os.close(cur)


def _is_symlink(dirfd: int, name: str) -> bool:
    try:
        return stat.S_ISLNK(os.stat(name, dir_fd=dirfd, follow_symlinks=False).st_mode)
    except OSError:
        return False


class BeneathOpener:
    """`open(dirfd, path, flags)` that never leaves dirfd: openat2 if usable, else the walk.

    `follows_symlinks` tells callers whether symlinks that stay beneath the directory are
    followed (openat2) or refused outright (the walk).
    """

    def __init__(self, use_openat2: bool, cross_mounts: bool = False) -> None:
        self.use_openat2 = use_openat2
        self.cross_mounts = cross_mounts
        self.resolve = RESOLVE_DEFAULT | (0 if cross_mounts else RESOLVE_NO_XDEV)

    @property
    def mechanism(self) -> str:
        return "openat2" if self.use_openat2 else "nofollow-walk"

    @property
    def follows_symlinks(self) -> bool:
        return self.use_openat2

    def open(self, dirfd: int, path: str, flags: int, mode: int = 0) -> int:
        if self.use_openat2:
            return openat2(dirfd, path, flags | os.O_CLOEXEC, mode, self.resolve)
        return walk_open(dirfd, path, flags, mode, same_device=not self.cross_mounts)

    def open_component(self, dirfd: int, path: str) -> int:
        """O_PATH fd of `path` itself (a symlink is returned, not followed), no symlink on the
        way: one step of a resolution done by hand (FilesystemConnector._canonical)."""
        flags = os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC
        if self.use_openat2:
            return openat2(dirfd, path, flags, 0, self.resolve | RESOLVE_NO_SYMLINKS)
        return walk_open(dirfd, path, flags, 0, same_device=not self.cross_mounts)
