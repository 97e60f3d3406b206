"""Filesystem attacks against the real gateway: sandboxed workers, full pipeline."""

import os
import threading
import time

from tests.support.gateway_process import error_of, fs_config, raw_gateway


def test_directory_swapped_for_a_symlink_never_leaks(gw_dir):
    config = fs_config(gw_dir, policy={"global_timeout_ms": 5000})
    data = gw_dir / "data"
    outside = gw_dir / "outside"
    outside.mkdir()
    (outside / "f").write_text("OUTSIDE-SECRET")
    real = gw_dir / "data" / "real"
    real.mkdir()
    (real / "f").write_text("inside")
    swap = data / "swap"
    stop = threading.Event()

    def swapper():
        while not stop.is_set():
            tmp = data / ".swap-tmp"
            try:
                os.symlink(outside, tmp)
                os.replace(tmp, swap)  # swap is now a symlink out of the root
                os.unlink(swap)
                os.symlink("real", tmp)
                os.replace(tmp, swap)  # ... and now a symlink to a directory inside
            except OSError:
                pass

    with raw_gateway(config) as gw:
        t = threading.Thread(target=swapper, daemon=True)
        t.start()
        seen = {"inside": 0, "error": 0}
        try:
            for _ in range(400):
                result = gw.call("fs.readFile", {"path": "swap/f"})
                text = result["content"][0]["text"]
                assert "OUTSIDE-SECRET" not in text
                seen["error" if result["isError"] else "inside"] += 1
        finally:
            stop.set()
            t.join(5)
    assert seen["error"] > 0  # the race really happened


def test_fifo_without_writer_does_not_hang_the_gateway(gw_dir):
    config = fs_config(gw_dir, policy={"global_timeout_ms": 2000})
    os.mkfifo(gw_dir / "data" / "fifo")
    with raw_gateway(config) as gw:
        started = time.monotonic()
        result = gw.call("fs.readFile", {"path": "fifo"})
        assert result["isError"]
        assert error_of(result)["error_code"] in ("SECURITY_ERROR", "TIMEOUT")
        assert time.monotonic() - started < 5
        assert not gw.call("fs.readFile", {"path": "hello.txt"})["isError"]


def test_two_gib_sparse_file_under_a_one_mib_cap(gw_dir):
    config = fs_config(gw_dir, policy={"global_max_bytes": 1024 * 1024})
    big = gw_dir / "data" / "sparse.bin"
    with open(big, "wb") as f:
        f.truncate(2 * 1024**3)
    big.chmod(0o644)
    with raw_gateway(config) as gw:
        started = time.monotonic()
        result = gw.call("fs.readFile", {"path": "sparse.bin", "encoding": "base64"})
        assert error_of(result)["error_code"] == "RESULT_TOO_LARGE"
        assert time.monotonic() - started < 5
        page = gw.call("fs.readFile", {"path": "sparse.bin", "encoding": "base64", "offset": 2**31 - 8,
                                       "length": 8})
        assert not page["isError"] and page["structuredContent"]["content"] == "AAAAAAAAAAA="


def test_proc_magic_links_and_absolute_escapes(gw_dir):
    config = fs_config(gw_dir)
    os.symlink("/proc/self/root/etc/passwd", gw_dir / "data" / "magic")
    os.symlink("/etc/passwd", gw_dir / "data" / "abs")
    with raw_gateway(config) as gw:
        for path in ("magic", "abs", "/proc/self/root/etc/passwd", "/etc/passwd", "../../../../etc/passwd",
                     "hello.txt\x00.png"):
            result = gw.call("fs.readFile", {"path": path})
            assert result["isError"], path
            assert "root:" not in result["content"][0]["text"]
