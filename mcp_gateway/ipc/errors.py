"""The error codes of DESIGN.md, and the one exception that carries a refusal or failure.

`ErrorCode` is a `StrEnum`: a member *is* its wire string, so the MCP answer, the audit line and
the metrics label keep DESIGN.md's exact spelling. `CANCELLED` is the audit's alone: a cancelled
call is audited, never answered.
"""

from __future__ import annotations

from enum import StrEnum


class ErrorCode(StrEnum):
    VALIDATION_ERROR = "VALIDATION_ERROR"
    POLICY_DENIED = "POLICY_DENIED"
    SECURITY_ERROR = "SECURITY_ERROR"
    RATE_LIMITED = "RATE_LIMITED"
    TIMEOUT = "TIMEOUT"
    RESULT_TOO_LARGE = "RESULT_TOO_LARGE"
    NOT_FOUND = "NOT_FOUND"
    UPSTREAM_ERROR = "UPSTREAM_ERROR"
    WORKER_CRASHED = "WORKER_CRASHED"
    UNAVAILABLE = "UNAVAILABLE"
    INTERNAL_ERROR = "INTERNAL_ERROR"
    CANCELLED = "CANCELLED"

    @property
    def is_denial(self) -> bool:
        """Audited (and counted) as decision "deny"; every other code is an allowed call that failed."""
        return self in DENIALS


DENIALS = frozenset({ErrorCode.VALIDATION_ERROR, ErrorCode.POLICY_DENIED, ErrorCode.SECURITY_ERROR,
                     ErrorCode.RATE_LIMITED})

# What a worker may report (ipc.messages.CallFailed refuses any other when decoding). WORKER_CRASHED
# and UNAVAILABLE are the supervisor's verdicts; POLICY_DENIED and RATE_LIMITED are decided before
# a worker sees the call; CANCELLED is never answered. A worker's TIMEOUT is its own: it stopped at
# its deadline, before the supervisor's hard one.
WORKER_CODES = frozenset({ErrorCode.VALIDATION_ERROR, ErrorCode.SECURITY_ERROR, ErrorCode.RESULT_TOO_LARGE,
                          ErrorCode.NOT_FOUND, ErrorCode.UPSTREAM_ERROR, ErrorCode.TIMEOUT,
                          ErrorCode.INTERNAL_ERROR})


class Refusal(Exception):
    """A call refused or failed with one of DESIGN.md's codes, wherever that is decided
    (supervisor pipeline, pool, guard, worker).

    `reason` goes to the agent and the audit line, so it names the rule, never an internal
    address or a host path the agent did not send; `log_detail` goes to the operator's log only
    (keyed by request id), e.g. the internal address a name resolved to.
    """

    def __init__(self, code: ErrorCode, reason: str, log_detail: str = "") -> None:
        super().__init__(f"{code}: {reason}")
        self.code = code
        self.reason = reason
        self.log_detail = log_detail
