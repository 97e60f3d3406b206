"""Connector kind `mcp_servers`: upstream stdio MCP servers, run confined by the gateway, behind its
validation, policy, rate limits and audit (docs/UPSTREAM.md)."""
