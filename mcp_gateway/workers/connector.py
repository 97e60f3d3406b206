"""The worker side of a connector kind (a tool refuses or fails by raising `ipc.errors.Refusal`).

Life of a connector object: built for one instance and `warm()`ed once in that instance's
zygote (before any sandbox layer, so lazily imported modules are loaded while the filesystem
is still open), inherited by every forked worker, `start()`ed in the worker after the sandbox
is applied, then `call()`ed once per request with the tool's own name ("readFile").
"""

from __future__ import annotations

import abc
import importlib
import time
from dataclasses import dataclass
from typing import ClassVar

from mcp_gateway.config import ConnectorLimits, GatewayConfig
from mcp_gateway.connectors import KINDS
from mcp_gateway.connectors.base import Args, Instance, ToolSpec
from mcp_gateway.sandbox.profile import SandboxProfile


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
    kind: ClassVar[str]  # the kind's config key

    def __init__(self, config: GatewayConfig, instance: Instance | None = None) -> None:
        """`instance`: the one this object serves; None: the kind's first configured instance
        (the seed instance of a single-object config section)."""
        self.config = config
        self.instance = instance or next(i for i in config.instances(enabled_only=False) if i.kind == self.kind)
        self.settings = self.instance.settings
        # The instance's tools by full name: what its workers accept.
        self.tools: dict[str, ToolSpec] = {spec.name: spec for spec in KINDS[self.kind].tools(self.instance)}

    @property
    def name(self) -> str:
        """The instance's name (its process titles, logs and sandbox profile say it)."""
        return self.instance.name

    def limits(self) -> ConnectorLimits:
        """The instance's rlimits (`sandbox.limits.<instance>`, else `.<kind>`)."""
        return self.config.sandbox.limits_for(self.instance)

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
        """Run one call of the kind's tool `tool` ("readFile"); return the structured result or
        raise Refusal (a code in WORKER_CODES)."""


def build_connector(instance_name: str, config: GatewayConfig) -> Connector:
    """The worker side of the instance's kind (its module is imported here: in the instance's
    zygote, or in `doctor`, never in a serving supervisor)."""
    instance = config.instance(instance_name)
    module, _, attr = KINDS[instance.kind].worker.partition(":")
    cls: type[Connector] = getattr(importlib.import_module(module), attr)
    return cls(config, instance=instance)
