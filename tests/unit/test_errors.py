"""One ErrorCode enum on the wire and in the audit, and one refusal exception everywhere."""

import json

import msgspec
import pytest

from mcp_gateway.guards import GuardDenied
from mcp_gateway.ipc.errors import DENIALS, WORKER_CODES, ErrorCode, Refusal
from mcp_gateway.ipc.messages import CallFailed, reply_decoder, reply_encoder
from mcp_gateway.supervisor import results
from mcp_gateway.supervisor.audit import encode_record

# DESIGN.md's table (code -> decision), and the audit's own CANCELLED.
DESIGN = {"VALIDATION_ERROR": "deny", "POLICY_DENIED": "deny", "SECURITY_ERROR": "deny", "RATE_LIMITED": "deny",
          "TIMEOUT": "allow", "RESULT_TOO_LARGE": "allow", "NOT_FOUND": "allow", "UPSTREAM_ERROR": "allow",
          "WORKER_CRASHED": "allow", "UNAVAILABLE": "allow", "INTERNAL_ERROR": "allow", "CANCELLED": "allow"}


def test_codes_and_decisions_are_designs():
    assert {code.value: "deny" if code.is_denial else "allow" for code in ErrorCode} == DESIGN
    assert all(code.name == code.value for code in ErrorCode)
    assert DENIALS <= set(ErrorCode) and WORKER_CODES <= set(ErrorCode)


def test_a_worker_may_report_only_what_a_worker_decides():
    assert WORKER_CODES.isdisjoint(DENIALS - {ErrorCode.VALIDATION_ERROR, ErrorCode.SECURITY_ERROR})
    assert {ErrorCode.WORKER_CRASHED, ErrorCode.UNAVAILABLE, ErrorCode.CANCELLED}.isdisjoint(WORKER_CODES)


@pytest.mark.parametrize("code", list(ErrorCode))
def test_the_reply_decoder_takes_exactly_the_worker_codes(code):
    payload = reply_encoder.encode(CallFailed("r", code, "why"))
    if code in WORKER_CODES:
        assert reply_decoder.decode(payload).error_code is code
    else:
        with pytest.raises(msgspec.ValidationError, match="may not report"):
            reply_decoder.decode(payload)


def test_codes_keep_their_exact_spelling_in_answers_and_audit_lines():
    for code in ErrorCode:
        answer = json.loads(results.error("r", code, "why"))
        assert answer["content"][0]["text"] == f"{code.value}: why"
        assert answer["_meta"]["io.mcp-gateway/error"]["error_code"] == code.value
        assert json.loads(encode_record({"error_code": code}))["error_code"] == code.value
        assert f"{code}" == str(code) == code.value


def test_a_guard_refusal_is_a_security_error_refusal():
    e = GuardDenied("path is outside the allowed paths")
    assert isinstance(e, Refusal) and e.code is ErrorCode.SECURITY_ERROR and e.log_detail == ""
    assert str(e) == "SECURITY_ERROR: path is outside the allowed paths"
