"""The per-call pipeline: validation -> policy -> guard -> dispatch -> audit.

Transport-independent: the MCP server (stdio or HTTP) and the one-shot `call` command both
go through `Gateway.call`, so a call behaves the same whichever way it arrives. Exactly one
audit record is written per call, whatever happens (including cancellation), before the
result is handed back; if it cannot be written the result is withheld.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import msgspec
import trio

from mcp_gateway.config import GatewayConfig
from mcp_gateway.connectors.base import MAX_TOOL_NAME_CHARS, Backend, Guard, ToolSpec, as_dict
from mcp_gateway.ipc.errors import ErrorCode, Refusal
from mcp_gateway.ipc.messages import CallFailed, CallRequest
from mcp_gateway.supervisor import results
from mcp_gateway.supervisor.audit import AuditError, AuditLog, args_sha256, timestamp
from mcp_gateway.supervisor.policy import Policy
from mcp_gateway.supervisor.pool import QueueFull
from mcp_gateway.supervisor.ratelimit import RateLimiter
from mcp_gateway.supervisor.validation import decode_arguments

log = logging.getLogger("mcp_gateway")


@dataclass(frozen=True, slots=True)
class Outcome:
    """How a call ended, with its answer already encoded (results.py) for every transport."""

    request_id: str
    tool: str
    answer: bytes
    error_code: ErrorCode | None = None
    reason: str = ""
    result_bytes: int = 0  # the size of a successful answer; 0 on errors

    @classmethod
    def failed(cls, request_id: str, tool: str, code: ErrorCode, reason: str) -> Outcome:
        return cls(request_id, tool, results.error(request_id, code, reason), code, reason)

    @property
    def is_error(self) -> bool:
        return self.error_code is not None

    @property
    def decision(self) -> str:
        """The audit line's (and the metrics') "allow" or "deny"."""
        return "deny" if self.error_code is not None and self.error_code.is_denial else "allow"

    def error_payload(self) -> dict[str, Any]:
        return {"error_code": self.error_code, "reason": self.reason, "request_id": self.request_id}




class Gateway:
    """`pools`: the backend of each enabled instance, by instance name."""

    def __init__(self, config: GatewayConfig, pools: dict[str, Backend], audit: AuditLog,
                 observer: Callable[[Outcome, float], None] | None = None) -> None:
        self.config = config
        self.catalogue = config.catalogue()
        self.policy = Policy(config, self.catalogue)
        self.pools = pools
        self.audit = audit
        self.rate_limiter = RateLimiter(config.policy.rate_limit)
        self._guards: dict[str, Guard | None] = {}
        self._guards_version = self.catalogue.version
        self._observer = observer
        self.stopping = False  # set by a transport that is shutting down: its cuts are not the client's

    def _guard(self, spec: ToolSpec) -> Guard | None:
        """The kind's fast check of a tool's arguments (the worker enforces it again for real).
        Built again once the catalogue changed: a redefined tool's old guard would check the
        arguments against a schema no longer served (and withdrawn tools' guards would pile up)."""
        if self._guards_version != self.catalogue.version:
            self._guards.clear()
            self._guards_version = self.catalogue.version
        if spec.name not in self._guards:
            instance = self.catalogue.instances[spec.instance]
            self._guards[spec.name] = self.catalogue.kind_of(spec.instance).guard(instance, spec)
        return self._guards[spec.name]

    async def discovery_settled(self) -> None:
        """Until every backend that discovers its tools has tried once (listed them, or failed)."""
        for backend in list(self.pools.values()):
            first_try = getattr(backend, "first_try", None)
            if first_try is not None:
                await first_try.wait()

    def tools_for(self, actor: str) -> list[ToolSpec]:
        return [spec for name in self.policy.exposed_tools(actor) if (spec := self.catalogue.get(name))]

    async def call(self, tool: str, arguments: dict[str, Any] | None, actor: str,
                   cancelled_by: Callable[[], str] | None = None) -> Outcome:
        """Run one call; raises trio.Cancelled (after auditing it as CANCELLED) when cancelled.

        `cancelled_by` says, for the audit line, what cancelled the call (the transport knows).
        """
        request_id = str(uuid.uuid4())
        started = time.monotonic()
        if len(tool) > MAX_TOOL_NAME_CHARS:
            # Names no tool has: the answer and the audit line carry its start, not megabytes of it.
            tool = f"{tool[:MAX_TOOL_NAME_CHARS]}...({len(tool)} characters)"
        outcome: Outcome | None = None
        try:
            outcome = await self._run(request_id, tool, arguments, actor)
        except Refusal as e:
            outcome = Outcome.failed(request_id, tool, e.code, e.reason)
        except (trio.Cancelled, KeyboardInterrupt) as e:
            # Ctrl-C may land in this very task: the call is still audited on the way out.
            stopped = self.stopping or cancelled_by is None or isinstance(e, KeyboardInterrupt)
            cause = "the gateway stopped" if stopped else cancelled_by()
            outcome = Outcome.failed(request_id, tool, ErrorCode.CANCELLED,
                                     f"the call was cancelled ({cause}) before it finished; a worker running "
                                     "it was killed and replaced")
            raise
        except Exception:
            log.exception("request %s (%s): unexpected error in the supervisor", request_id, tool)
            outcome = Outcome.failed(request_id, tool, ErrorCode.INTERNAL_ERROR,
                                     f"unexpected gateway error; the log has details under request {request_id}")
        finally:
            if outcome is not None:
                outcome = self._audit(outcome, actor, arguments, started)
        return outcome

    async def _run(self, request_id: str, tool: str, arguments: Any, actor: str) -> Outcome:
        if arguments is not None and not isinstance(arguments, dict):
            raise Refusal(ErrorCode.VALIDATION_ERROR, "arguments must be a JSON object")
        limited = self.rate_limiter.check(actor)
        if limited is not None:
            raise Refusal(ErrorCode.RATE_LIMITED, limited)
        decision = self.policy.check_tool(tool, actor)
        if not decision.allowed:
            raise Refusal(ErrorCode.POLICY_DENIED, decision.reason)
        spec = self.catalogue.get(tool)
        if spec is None:  # withdrawn since the policy looked
            raise Refusal(ErrorCode.POLICY_DENIED, f"unknown tool {tool!r}")
        args = decode_arguments(spec, arguments)
        args_dict = as_dict(args) if args is not None else dict(arguments or {})
        refusal = self.policy.check_arguments(tool, actor, args_dict)
        if refusal is not None:
            raise Refusal(ErrorCode.POLICY_DENIED, refusal)
        guard = self._guard(spec)
        if guard is not None and args is not None:
            guard(args)  # raises GuardDenied (a SECURITY_ERROR Refusal)
        if not self.audit.healthy and self.audit.last_error:
            # Fail closed before doing any work when the audit log is known to be broken.
            raise Refusal(ErrorCode.INTERNAL_ERROR,
                          f"{self.audit.last_error}: call refused; fix the audit path and send SIGHUP")
        pool = self.pools[spec.instance]
        deadline = trio.current_time() + decision.timeout_ms / 1000
        try:
            reply = await pool.call(
                CallRequest(request_id, tool, args_dict, decision.timeout_ms, decision.max_bytes), deadline)
        except QueueFull as e:  # capacity, not the caller's fault: not a denial
            raise Refusal(ErrorCode.UNAVAILABLE, f"the gateway is at capacity, retry later: {e}") from None
        if isinstance(reply, CallFailed):
            return Outcome.failed(request_id, tool, reply.error_code, reply.reason)
        return self._answer(request_id, spec, reply.result, decision.max_bytes)

    @staticmethod
    def _answer(request_id: str, spec: ToolSpec, encoded: bytes | msgspec.Raw, max_bytes: int) -> Outcome:
        """Decode the worker's result strictly as the tool's result struct (anything else never
        reaches the client as structuredContent), encode the answer once, and hold it to max_bytes
        as the client would receive it. A discovered tool's backend answers content blocks it
        already checked and rebuilt from the server's result."""
        try:
            if spec.discovered is not None:
                blocks = msgspec.msgpack.decode(encoded)
                answer = results.success_content(request_id, blocks["content"], blocks.get("structuredContent"))
            else:
                result = spec.decode_result(encoded)
                answer = results.success(request_id, spec.render_text(result), spec.structured(result))
        except (msgspec.ValidationError, msgspec.DecodeError) as e:
            log.error("request %s (%s): the worker's result does not match the tool's result type: %s",
                      request_id, spec.name, e)
            return Outcome.failed(request_id, spec.name, ErrorCode.INTERNAL_ERROR,
                                  "the worker returned a malformed result")
        if len(answer) > max_bytes:
            return Outcome.failed(
                request_id, spec.name, ErrorCode.RESULT_TOO_LARGE,
                f"the answer would be {len(answer)} bytes of JSON (text and structured content together), over "
                f"the cap of {max_bytes} bytes; ask for less{f' ({spec.smaller})' if spec.smaller else ''}")
        return Outcome(request_id, spec.name, answer, result_bytes=len(answer))

    def _audit(self, outcome: Outcome, actor: str, arguments: Any, started: float) -> Outcome:
        duration_ms = round((time.monotonic() - started) * 1000)
        code = outcome.error_code
        record = {
            "timestamp": timestamp(),
            "request_id": outcome.request_id,
            "tool": outcome.tool,
            "actor": actor,
            "args_sha256": args_sha256({} if arguments is None else arguments),
            "decision": outcome.decision,
            "reason": outcome.reason if code else "ok",
            "duration_ms": duration_ms,
            "result_bytes": outcome.result_bytes,
            "error_code": code,
        }
        try:
            self.audit.write(record)
        except AuditError as e:
            log.error("request %s (%s): %s; the call is refused", outcome.request_id, outcome.tool, e)
            outcome = Outcome.failed(outcome.request_id, outcome.tool, ErrorCode.INTERNAL_ERROR,
                                     f"{e}: call refused (no call runs unaudited); fix the audit path "
                                     "and send SIGHUP")
        if self._observer is not None:
            self._observer(outcome, duration_ms / 1000)
        return outcome

