"""The tool catalogue shared by the supervisor and the workers."""

from mcp_gateway.tools.catalogue import CONNECTOR_TOOLS, TOOLS, ToolSpec

__all__ = ["CONNECTOR_TOOLS", "TOOLS", "ToolSpec"]
