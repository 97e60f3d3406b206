"""Benchmarks: the gateway side by side with peer MCP servers (`make bench`)."""
