"""An upstream server's tools as catalogue entries: `<instance>.<tool>`, discovered at run time."""

from __future__ import annotations

from typing import Any

from mcp_gateway.connectors.base import ToolSpec
from mcp_gateway.connectors.mcp_servers.discovery import UpstreamTool


def _no_text(result: dict[str, Any]) -> str:
    return ""  # never used: a discovered tool's answer is its content blocks (answers.py)


def tool_spec(tool: UpstreamTool) -> ToolSpec:
    return ToolSpec(instance=tool.instance, tool=tool.upstream_name, args_type=None, title=tool.title or "",
                    description=tool.description or "", output_schema=tool.output_schema or {}, open_world=True,
                    render_text=_no_text, discovered=tool)
