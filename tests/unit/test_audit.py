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
