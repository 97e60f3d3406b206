"""Settings of one postgres instance (`connectors.postgres`)."""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

from pydantic import Field

from mcp_gateway.connectors.base import WorkerPoolSettings


class PostgresSettings(WorkerPoolSettings):
    # docs/CONFIG.md: (description, example) per key (scripts/gen_config_doc.py).
    field_docs: ClassVar[dict[str, tuple[str, Any]]] = {
        "enabled": (
            "Serve the instance's tools, `<instance>.query` and `<instance>.schema` (`db.query` and "
            "`db.schema` in the single-object form).", True),
        "host": (
            "Database host name, address, or Unix socket directory.", 'db.internal'),
        "port": (
            "Database port (also the only port the worker may connect to).", 5432),
        "database": (
            "Database name.", 'analytics'),
        "user": (
            "Role to connect as; give it SELECT only (`doctor` checks). The password comes from the "
            "environment (`password_env`) or a libpq passfile, never from this file.", 'mcp_readonly'),
        "password_env": (
            "The environment variable holding the role's password (give each instance with a role of "
            "its own a variable of its own).", "ANALYTICS_PGPASSWORD"),
        "sslmode": (
            "libpq `sslmode`.", 'verify-full'),
        "connect_timeout_s": (
            "Connection timeout.", 5),
        "default_max_rows": (
            "Row cap of a query when the call gives no `max_rows`.", 500),
    }

    enabled: bool = False
    host: str = "localhost"
    port: Annotated[int, Field(ge=1, le=65535)] = 5432
    database: str = "postgres"
    user: str = "mcp_readonly"
    # The environment variable holding this role's password (each instance may log in as a
    # role of its own); unset or empty: libpq's own sources (PGPASSFILE, ~/.pgpass).
    password_env: Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")] = "POSTGRES_PASSWORD"  # noqa: S105 - a variable name
    sslmode: Literal["disable", "allow", "prefer", "require", "verify-ca", "verify-full"] = "prefer"
    connect_timeout_s: Annotated[int, Field(ge=1, le=120)] = 5
    default_max_rows: Annotated[int, Field(ge=1, le=1_000_000)] = 1000
    # Relations of system schemas db.query may read beyond the reviewed introspection set
    # ("pg_catalog.pg_stat_user_tables", "information_schema.foo"; a bare name means pg_catalog).
    allow_relations: list[str] = []
    # Functions db.query may call beyond the catalog's own rule ("name" or "schema.name"):
    # functions outside pg_catalog / information_schema run only when listed here.
    allow_functions: list[str] = []
