"""The tool catalogue shared by the supervisor and the workers."""

from mcp_gateway.tools.catalogue import TOOLS, ToolSpec

__all__ = ["TOOLS", "ToolSpec"]
