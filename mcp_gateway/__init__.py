"""mcp-gateway: a security-first Model Context Protocol gateway."""

__version__ = "0.1.0"
