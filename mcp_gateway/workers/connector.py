"""The interface every connector implements (a tool refuses or fails by raising
`ipc.errors.Refusal`).

Life of a connector object: built and `warm()`ed once in the connector's zygote (before any
sandbox layer, so lazily imported modules are loaded while the filesystem is still open),
inherited by every forked worker, `start()`ed in the worker after the sandbox is applied,
then `call()`ed once per request.
"""

from __future__ import annotations

import abc
import time
from dataclasses import dataclass
from typing import ClassVar

from mcp_gateway.config import GatewayConfig
from mcp_gateway.sandbox.profile import SandboxProfile
from mcp_gateway.tools.arguments import Args


@dataclass(frozen=True, slots=True)
class CallLimits:
    """`timeout_ms`: the worker's own budget for this call (what the supervisor had left when
    it sent the request, minus the runtime's margin for the reply). `deadline`: the same as a
    `time.monotonic()` instant; connectors stop there with their own TIMEOUT, before the
    supervisor's hard deadline kills the worker."""

    timeout_ms: int
    max_bytes: int
    deadline: float | None = None  # None (limits built by hand): timeout_ms from any moment

    def remaining_s(self) -> float:
        if self.deadline is None:
            return self.timeout_ms / 1000
        return self.deadline - time.monotonic()


class Connector(abc.ABC):
    name: ClassVar[str]

    def __init__(self, config: GatewayConfig) -> None:
        self.config = config

    def warm(self) -> None:  # noqa: B027 - optional hook
        """Import and initialise everything the worker needs, before any sandbox layer."""

    def inherited_fds(self) -> tuple[int, ...]:
        """Descriptors `warm()` opened (as the trusted zygote) that every worker keeps."""
        return ()

    @abc.abstractmethod
    def sandbox_profile(self) -> SandboxProfile:
        """What this connector's workers may touch."""

    def start(self) -> None:  # noqa: B027 - optional hook
        """Per-worker initialisation, run after the sandbox is applied."""

    def broken(self) -> str | None:
        """Why this worker's local state can no longer serve calls (checked after each call;
        the pool then replaces the worker), or None. E.g. a connection that keeps failing."""
        return None

    @abc.abstractmethod
    def call(self, tool: str, args: Args, limits: CallLimits) -> dict:
        """Run one tool call; return the structured result or raise Refusal (a code in WORKER_CODES)."""
