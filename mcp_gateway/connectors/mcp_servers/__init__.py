"""Upstream MCP servers (connector kind `mcp_servers`): stdio servers run confined by the gateway."""
