import hashlib
import json
import os

import pytest

from mcp_gateway.supervisor.audit import AuditError, AuditLog, args_sha256


def test_args_hash_is_sha256_of_canonical_json():
    args = {"b": [1, 2], "a": "é", "c": {"z": None, "y": True}}
    canonical = '{"a":"é","b":[1,2],"c":{"y":true,"z":null}}'
    assert args_sha256(args) == hashlib.sha256(canonical.encode()).hexdigest()
    assert args_sha256({"a": 1, "b": 2}) == args_sha256({"b": 2, "a": 1})


def test_unencodable_args_still_hash_without_crashing():
    h = args_sha256({"path": "\ud800"})
    assert len(h) == 64 and h != args_sha256({"path": ""})


def test_one_line_per_record_and_reopen(tmp_path):
    path = tmp_path / "audit.jsonl"
    log = AuditLog(str(path))
    log.write({"n": 1, "reason": "line\nbreak \u2028 and \ud800"})
    os.rename(path, tmp_path / "audit.jsonl.1")  # logrotate moves the file...
    log.write({"n": 2})  # ...writes still go to the old inode until SIGHUP
    log.reopen()
    log.write({"n": 3})
    old = (tmp_path / "audit.jsonl.1").read_text().splitlines()
    new = path.read_text().splitlines()
    assert [json.loads(x)["n"] for x in old] == [1, 2]
    assert [json.loads(x)["n"] for x in new] == [3]


def test_write_failure_raises_audit_error():
    log = AuditLog("/dev/full")
    with pytest.raises(AuditError, match="cannot write audit log /dev/full"):
        log.write({"n": 1})
    assert not log.healthy


def test_unopenable_path_is_reported_and_retried(tmp_path):
    target = tmp_path / "missing-dir" / "audit.jsonl"
    log = AuditLog(str(target))
    assert not log.healthy and "cannot open audit log" in log.last_error
    with pytest.raises(AuditError):
        log.write({"n": 1})
    target.parent.mkdir()
    log.write({"n": 2})  # healed without a restart
    assert log.healthy and json.loads(target.read_text())["n"] == 2


def test_record_encoding_keeps_one_line_and_unicode():
    from mcp_gateway.supervisor.audit import encode_record

    for reason in ("plain", "é ü", "a\u2028b\u2029c", "nl\nx", "lone \ud800 surrogate"):
        line = encode_record({"reason": reason, "n": 1})
        assert line.endswith(b"\n") and line.count(b"\n") == 1
        assert b"\xe2\x80\xa8" not in line and b"\xe2\x80\xa9" not in line
        decoded = json.loads(line)
        assert decoded["n"] == 1
        if "\ud800" not in reason:
            assert decoded["reason"] == reason


_FILL_UNDER_FSIZE = """
import json, resource, sys
from mcp_gateway.supervisor.audit import AuditError, AuditLog

log = AuditLog(sys.argv[1])
log.write({"n": "first"})
# Writes past this size fail: a record crossing it is written in part, then EFBIG.
resource.setrlimit(resource.RLIMIT_FSIZE, (int(sys.argv[2]), resource.RLIM_INFINITY))
outcomes = []
for n in range(12):
    try:
        log.write({"n": n, "reason": "x" * 90})
        outcomes.append("ok")
    except AuditError as e:
        outcomes.append(str(e))
resource.setrlimit(resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
log.write({"n": "after"})
print(json.dumps(outcomes))
"""


def test_a_record_that_does_not_fit_is_rolled_back_and_the_next_one_is_whole(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    path = tmp_path / "audit.jsonl"
    repo = Path(__file__).resolve().parents[2]
    out = subprocess.run([sys.executable, "-c", _FILL_UNDER_FSIZE, str(path), "700"], capture_output=True,
                         text=True, timeout=60, env={"PYTHONPATH": str(repo), "PATH": os.environ["PATH"]})
    assert out.returncode == 0, out.stderr
    outcomes = json.loads(out.stdout)
    written = outcomes.count("ok")
    assert 0 < written < len(outcomes), outcomes
    assert outcomes[written:] == [outcomes[written]] * (len(outcomes) - written)
    assert "File too large" in outcomes[written]
    data = path.read_bytes()
    assert data.endswith(b"\n")
    records = [json.loads(line) for line in data.splitlines()]  # every line parses
    assert [r["n"] for r in records] == ["first", *range(written), "after"]

