"""Connector kind `mcp_servers`: upstream stdio MCP servers behind the gateway (docs/UPSTREAM.md)."""
