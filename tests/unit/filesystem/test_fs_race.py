"""A directory swapped for a symlink (to an outside directory) while reads run.

A thread keeps exchanging `root/swap` between a real directory holding f = 'inside' and a
symlink to a directory outside the root holding f = 'OUTSIDE-SECRET' (atomically with
renameat2(RENAME_EXCHANGE) where available, else by rename/symlink/unlink), while the
main thread reads `swap/f` 2,000 times. Every call must return 'inside' or an error;
'OUTSIDE-SECRET' never.
"""

from __future__ import annotations

import ctypes
import os
import threading
import time

import pytest

from mcp_gateway.ipc.errors import Refusal
from tests.support.fs_tree import Tree, listdir, naive_read, read

_libc = ctypes.CDLL(None, use_errno=True)
AT_FDCWD = -100
RENAME_EXCHANGE = 2
ROUNDS = 2000


def _exchange(a: str, b: str) -> None:
    if _libc.renameat2(AT_FDCWD, os.fsencode(a), AT_FDCWD, os.fsencode(b), RENAME_EXCHANGE) != 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e), a)


def _has_exchange(tmp) -> bool:
    a, b = tmp / "xa", tmp / "xb"
    a.mkdir()
    os.symlink("xa", b)
    try:
        _exchange(str(a), str(b))
        return True
    except (OSError, AttributeError):
        return False


@pytest.mark.parametrize("link_kind", ["absolute", "relative"])
@pytest.mark.parametrize("swapper", ["exchange", "rename"])
def test_swap_dir_for_symlink(fs, tree: Tree, link_kind: str, swapper: str, tmp_path) -> None:
    if swapper == "exchange" and not _has_exchange(tmp_path):
        pytest.skip("renameat2(RENAME_EXCHANGE) unavailable")
    swap = tree.root / "swap"
    other = tree.root / ".swap_other"
    swap.mkdir()
    (swap / "f").write_text("inside")
    target = str(tree.outside) if link_kind == "absolute" else "../outside"
    (tree.outside / "f").write_text("OUTSIDE-SECRET")
    os.symlink(target, other)
    # the attack works against a naive reader once swapped
    _exchange(str(swap), str(other)) if swapper == "exchange" else None
    if swapper == "exchange":
        assert naive_read(tree.root, "swap/f") == b"OUTSIDE-SECRET"
        _exchange(str(swap), str(other))

    stop = threading.Event()
    errors: list[BaseException] = []

    def toggler() -> None:
        hold = tree.root / ".hold"
        try:
            while not stop.is_set():
                if swapper == "exchange":
                    _exchange(str(swap), str(other))
                else:
                    os.rename(swap, hold)
                    os.symlink(target, swap)
                    time.sleep(0.0001)  # leave the outside symlink in place for a moment
                    os.unlink(swap)
                    os.rename(hold, swap)
                    time.sleep(0.0001)  # let the real-directory state be seen too
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    t = threading.Thread(target=toggler, daemon=True)
    t.start()
    outcomes = {"inside": 0, "error": 0}
    codes: set[str] = set()
    try:
        for i in range(ROUNDS):
            try:
                if i % 10 == 9:
                    r = listdir(fs, "swap")
                    assert [e["name"] for e in r["entries"]] == ["f"]
                    continue
                r = read(fs, "swap/f")
            except Refusal as e:
                assert "OUTSIDE" not in e.reason
                outcomes["error"] += 1
                codes.add(e.code)
                continue
            assert r["content"] == "inside", r
            outcomes["inside"] += 1
    finally:
        stop.set()
        t.join(5)
    assert not errors, errors
    assert codes <= {"SECURITY_ERROR", "NOT_FOUND"}, codes
    print(outcomes, codes)
    # the race was really exercised both ways
    assert outcomes["inside"] > 0 and outcomes["error"] > 0, outcomes


def test_swap_file_for_symlink_into_denied(fs, tree: Tree, tmp_path) -> None:
    """The last component flips between a plain file and a symlink into the denied directory."""
    if not _has_exchange(tmp_path):
        pytest.skip("renameat2(RENAME_EXCHANGE) unavailable")
    flip = tree.root / "flip"
    other = tree.root / ".flip_other"
    flip.write_text("inside")
    os.symlink("secrets/key", other)
    stop = threading.Event()

    def toggler() -> None:
        while not stop.is_set():
            _exchange(str(flip), str(other))

    t = threading.Thread(target=toggler, daemon=True)
    t.start()
    seen = {"inside": 0, "error": 0}
    try:
        for _ in range(ROUNDS):
            try:
                r = read(fs, "flip")
            except Refusal as e:
                assert "TOPSECRET" not in e.reason
                seen["error"] += 1
                continue
            assert r["content"] == "inside", r
            seen["inside"] += 1
    finally:
        stop.set()
        t.join(5)
    assert seen["inside"] > 0, seen
