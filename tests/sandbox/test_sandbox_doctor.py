"""mcp-gateway doctor: the sandbox report and the production checklist (loopback only)."""

from __future__ import annotations

import io
import os
import socket
import tempfile
from pathlib import Path

import yaml

from mcp_gateway.config import load_config
from mcp_gateway.doctor import find_secrets, run_doctor
from tests.support.sandbox_probe import IS_ROOT, world_readable_tree


def closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def write(data: dict, extra: str = "") -> Path:
    d = Path(tempfile.mkdtemp(prefix="mcp-doctor-"))
    path = d / "config.yaml"
    path.write_text(yaml.safe_dump(data) + extra)
    return path


def doctor(data: dict, extra: str = "") -> tuple[int, str]:
    out = io.StringIO()
    code = run_doctor(load_config(write(data, extra)), out=out)
    return code, out.getvalue()


def good_config(tree: str) -> dict:
    audit = tempfile.mkdtemp(prefix="mcp-doctor-audit-")
    return {
        "audit": {"path": os.path.join(audit, "audit.jsonl")},
        "policy": {"default_deny": True, "allow_tools": ["fs.readFile", "fs.listDir"]},
        "connectors": {"filesystem": {"enabled": True, "allowed_paths": [tree]}},
    }


def test_a_good_config_passes_and_the_sandbox_is_verified() -> None:
    code, text = doctor(good_config(world_readable_tree()))
    assert code == 0, text
    assert "FAIL" not in text
    assert "PASS  /proc/<worker>/status NoNewPrivs 1" in text
    assert "PASS  /proc/<worker>/status Seccomp 2" in text
    assert "PASS  /proc/<worker>/status CapEff 0000000000000000" in text
    assert "PASS  landlock: ABI" in text and "PASS  seccomp: allowlist" in text
    if IS_ROOT:
        assert "workers run as uids of their own (sandbox.uid_range" in text


def test_bad_settings_fail_with_advice() -> None:
    cfg = good_config(world_readable_tree())
    cfg["policy"] = {"default_deny": False, "allow_tools": ["web.fetch"]}
    cfg["server"] = {"transport": "http", "http": {"host": "0.0.0.0"}}  # noqa: S104
    cfg["audit"] = {"path": "/nonexistent-dir/audit.jsonl"}
    cfg["sandbox"] = {"layers": {"landlock": "off"}}
    cfg["connectors"]["postgres"] = {"enabled": True, "host": "127.0.0.1", "port": closed_port()}
    code, text = doctor(cfg, extra="# old: postgres://admin:hunter2@db.internal/app\n")
    assert code == 1
    assert "FAIL  policy.default_deny is off" in text
    assert "FAIL  HTTP is exposed on 0.0.0.0" in text
    assert "FAIL  audit log /nonexistent-dir/audit.jsonl cannot be created" in text
    assert "a URL with a password in it" in text
    assert "WARN  sandbox layer landlock is off" in text
    assert "WARN  landlock: off" in text
    assert "unreachable" in text and "WARN  database" in text
    assert "web.fetch whose connector is disabled" in text


def test_secret_scanner() -> None:
    text = "\n".join(
        [
            "server:",
            "  http:",
            "    auth:",
            "      bearer_tokens:          # only hashes are stored",
            "        - actor: a",
            '          sha256: "' + "ab" * 32 + '"',
            "postgres_password: hunter2",
            "  api_key: 'abc'",
            "  token: ${TOKEN}",
            "# secret: s3cr3t",
            "url: postgresql://u:pw@host/db",
            "key: ghp_" + "a" * 36,
        ]
    )
    found = find_secrets(text)
    assert [f.split(":")[0] for f in found] == ["line 7", "line 8", "line 10", "line 11", "line 12"], found


def test_landlock_without_scoping_is_a_warning_that_names_the_cover(monkeypatch) -> None:
    """This kernel has ABI >= 6; an older one is stood in for by the ABI query alone."""
    from mcp_gateway import doctor as doctor_module

    config = good_config(world_readable_tree())
    code, text = doctor(config)
    assert "cannot scope signals" not in text
    monkeypatch.setattr(doctor_module, "landlock_abi", lambda: 5)
    code, text = doctor(config)
    warn = next(line for line in text.splitlines() if "cannot scope signals" in line)
    assert warn.startswith("WARN") and "Landlock ABI 5 (< 6)" in warn
    assert "covered by seccomp" in warn and "F_SETOWN" in warn
    config["connectors"]["postgres"] = {"enabled": True, "host": "/run/postgresql", "database": "x", "user": "x"}
    config["policy"]["allow_tools"].append("db.query")
    _, text = doctor(config)
    assert "use a TCP host" in text
