"""The supervisor: one trio process that owns config, the MCP server, policy, audit and workers.

It never touches a file, URL or database on behalf of an agent; workers do.
"""
