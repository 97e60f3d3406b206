"""Red-team: the tool name is the agent's. A name of a megabyte came back twice in the answer and
was written twice (tool, reason) into a 2 MB audit line: an agent could grow the audit log by
twice what it sends, per call. The pipeline runs for real here (no worker is reached)."""

from __future__ import annotations

import json

import pytest
import trio

from mcp_gateway.config import GatewayConfig
from mcp_gateway.ipc.errors import ErrorCode
from mcp_gateway.supervisor.audit import AuditLog
from mcp_gateway.supervisor.gateway import Gateway


@pytest.mark.parametrize("name", ["x" * 1_000_000, "fs." + "é" * 300_000, "db." + "\n" * 10_000])
def test_a_huge_tool_name_is_refused_with_a_short_answer_and_audit_line(tmp_path, name):
    audit = tmp_path / "audit.jsonl"
    gateway = Gateway(GatewayConfig(), {}, AuditLog(str(audit)))
    outcome = trio.run(gateway.call, name, {}, "agent")
    assert outcome.error_code is ErrorCode.POLICY_DENIED and "unknown tool" in outcome.reason
    assert len(outcome.answer) < 2000
    [line] = audit.read_text().splitlines()
    record = json.loads(line)
    assert len(line) < 2000 and record["tool"].startswith(name[:20]) and "characters" in record["tool"]
