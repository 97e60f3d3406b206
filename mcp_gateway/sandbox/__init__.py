"""Confinement of worker processes, one module per concern (filled by the sandbox work)."""

from __future__ import annotations

from mcp_gateway.config import SandboxSettings
from mcp_gateway.sandbox.profile import SandboxProfile


class SandboxError(Exception):
    """A layer configured as `required` could not be applied."""


def apply(profile: SandboxProfile, settings: SandboxSettings) -> dict[str, str]:
    """Confine the calling (freshly forked, single-threaded) worker. Returns layer -> status."""
    return {}
