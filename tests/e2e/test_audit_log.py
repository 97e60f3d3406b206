"""Exactly one valid audit line per tools/call, and no call without one."""

import hashlib
import json
import os
import signal
import time

import pytest

from tests.support.gateway_process import audit_lines, error_of, fs_config, raw_gateway

FIELDS = {"timestamp", "request_id", "tool", "actor", "args_sha256", "decision", "reason", "duration_ms",
          "result_bytes", "error_code"}


def test_n_calls_of_mixed_outcomes_give_exactly_n_lines(gw_dir):
    calls = [
        ("fs.readFile", {"path": "hello.txt"}, None),
        ("fs.readFile", {"path": "secrets/key.txt"}, "SECURITY_ERROR"),
        ("fs.readFile", {"path": "nope.txt"}, "NOT_FOUND"),
        ("fs.listDir", {"path": "."}, None),
        ("web.fetch", {"url": "https://example.com/"}, "POLICY_DENIED"),
        ("fs.readFile", {"path": "hello.txt", "bogus": 1}, "VALIDATION_ERROR"),
        ("fs.readFile", {"path": "é/../hello.txt"}, None),
        ("no.such.tool", {}, "POLICY_DENIED"),
    ] * 5
    results = []
    with raw_gateway(fs_config(gw_dir)) as gw:
        for tool, args, _ in calls:
            results.append(gw.call(tool, args))
    lines = audit_lines(gw_dir)
    assert len(lines) == len(calls)
    assert len({x["request_id"] for x in lines}) == len(calls)
    for line, (tool, args, code), result in zip(lines, calls, results, strict=True):
        assert set(line) == FIELDS
        assert line["tool"] == tool and line["actor"] == "tester"
        assert line["error_code"] == code
        assert line["decision"] == ("allow" if code in (None, "NOT_FOUND") else "deny")
        canonical = json.dumps(args, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
        assert line["args_sha256"] == hashlib.sha256(canonical).hexdigest()
        assert line["timestamp"].endswith("Z") and len(line["timestamp"]) == 24
        assert result["isError"] == (code is not None)
        if code:
            assert error_of(result)["request_id"] == line["request_id"]
            assert result["content"][0]["text"].startswith(code)
        else:
            assert line["result_bytes"] > 0


@pytest.mark.parametrize("where", ["/dev/full", "/dev/null", "missing-dir/audit.jsonl", "a-directory",
                                   "read-only.jsonl"])
def test_an_unusable_audit_destination_is_refused_at_start(gw_dir, where):
    import subprocess
    import sys

    from tests.support.gateway_process import gateway_env

    if where == "read-only.jsonl":
        if os.geteuid() == 0:
            pytest.skip("root ignores file modes (the other cases cover root)")
        (gw_dir / where).write_text("")
        (gw_dir / where).chmod(0o444)
    if where == "a-directory":
        (gw_dir / where).mkdir()
    path = where if where.startswith("/") else str(gw_dir / where)
    out = subprocess.run([sys.executable, "-m", "mcp_gateway", "serve", "--config",
                          str(fs_config(gw_dir, audit={"path": path}))],
                         input="", capture_output=True, text=True, env=gateway_env(), timeout=60)
    assert out.returncode == 1
    assert out.stderr.startswith(f"mcp-gateway: cannot start: audit log {path}"), out.stderr
    assert len(out.stderr.splitlines()) == 1 and "Traceback" not in out.stderr


def test_an_audit_log_that_fails_later_refuses_calls_and_the_gateway_keeps_serving(gw_dir):
    with raw_gateway(fs_config(gw_dir)) as gw:
        assert not gw.call("fs.readFile", {"path": "hello.txt"})["isError"]
        # Rotated away, and a directory now stands where the log must be reopened.
        os.rename(gw_dir / "audit.jsonl", gw_dir / "audit.jsonl.1")
        (gw_dir / "audit.jsonl").mkdir()
        gw.proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 10
        while True:
            result = gw.call("fs.readFile", {"path": "hello.txt"})
            if result["isError"] or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        for _ in range(3):
            text = result["content"][0]["text"]
            assert result["isError"] and text.startswith("INTERNAL_ERROR") and "audit" in text, result
            assert "hello world" not in json.dumps(result)
            result = gw.call("fs.readFile", {"path": "hello.txt"})
        assert gw.request("ping")["result"] == {}
    assert len((gw_dir / "audit.jsonl.1").read_text().splitlines()) == 1


def test_sighup_reopens_the_log_for_logrotate(gw_dir):
    with raw_gateway(fs_config(gw_dir)) as gw:
        gw.call("fs.readFile", {"path": "hello.txt"})
        os.rename(gw_dir / "audit.jsonl", gw_dir / "audit.jsonl.1")
        gw.proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 5
        while not (gw_dir / "audit.jsonl").exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        gw.call("fs.listDir", {"path": "."})
    rotated = (gw_dir / "audit.jsonl.1").read_text().splitlines()
    current = audit_lines(gw_dir)
    assert [json.loads(x)["tool"] for x in rotated] == ["fs.readFile"]
    assert [x["tool"] for x in current] == ["fs.listDir"]
