"""Least privilege, the second wall behind the SQL guard: is the configured role read-only?

Used by ``doctor`` (a FAIL) and by ``serve`` (a loud warning at start). Each problem names the
statement that fixes it.
"""

from __future__ import annotations

import os
from typing import Any

from mcp_gateway.connectors.postgres.settings import PostgresSettings

__all__ = ["RoleCheck", "check_role", "role_problems"]

#: Predefined roles that reach outside the database (files, programs, other sessions) or write.
DANGEROUS_ROLES = (
    "pg_read_server_files",
    "pg_write_server_files",
    "pg_execute_server_program",
    "pg_signal_backend",
    "pg_write_all_data",
)

_PRIVILEGES_SQL = """
SELECT r.rolsuper, r.rolreplication, r.rolbypassrls, r.rolcreaterole, r.rolcreatedb,
  (SELECT array_agg(DISTINCT n.nspname ORDER BY n.nspname) FROM pg_catalog.pg_class c
     JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
    WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f')
      AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_toast%%'
      AND pg_catalog.has_table_privilege(current_user, c.oid, 'INSERT, UPDATE, DELETE, TRUNCATE')),
  (SELECT array_agg(t.name ORDER BY t.name) FROM (
      SELECT n.nspname || '.' || c.relname AS name FROM pg_catalog.pg_class c
        JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
       WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f')
         AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_toast%%'
         AND pg_catalog.has_table_privilege(current_user, c.oid, 'INSERT, UPDATE, DELETE, TRUNCATE')
       LIMIT 5) t),
  (SELECT array_agg(nspname ORDER BY nspname) FROM pg_catalog.pg_namespace
    WHERE pg_catalog.has_schema_privilege(current_user, oid, 'CREATE')
      AND nspname NOT LIKE 'pg\\_temp%%' AND nspname NOT LIKE 'pg\\_toast%%'),
  pg_catalog.has_database_privilege(current_user, pg_catalog.current_database(), 'CREATE'),
  pg_catalog.current_database(),
  (SELECT array_agg(g.rolname ORDER BY g.rolname) FROM pg_catalog.pg_roles g
    WHERE g.rolname = ANY (%s) AND pg_catalog.pg_has_role(current_user, g.oid, 'USAGE'))
FROM pg_catalog.pg_roles r WHERE r.rolname = current_user
"""


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def role_problems(row: tuple[Any, ...], user: str) -> list[str]:
    """The privileges a read-only gateway role must not have, each with its fix."""
    (superuser, replication, bypassrls, createrole, createdb, write_schemas, write_tables,
     create_schemas, create_db, database, roles) = row
    u = _ident(user)
    problems: list[str] = []
    if superuser:
        problems.append(f"is a superuser (ALTER ROLE {u} NOSUPERUSER)")
    for flag, word in ((replication, "REPLICATION"), (bypassrls, "BYPASSRLS"), (createrole, "CREATEROLE"),
                       (createdb, "CREATEDB")):
        if flag:
            problems.append(f"has {word} (ALTER ROLE {u} NO{word})")
    for role in roles or ():
        problems.append(f"is a member of {role} (REVOKE {role} FROM {u})")
    if write_tables:
        fix = "; ".join(
            f"REVOKE INSERT, UPDATE, DELETE, TRUNCATE ON ALL TABLES IN SCHEMA {_ident(s)} FROM {u}"
            for s in write_schemas or ()
        )
        problems.append(f"can write tables ({', '.join(write_tables)}...) ({fix})")
    for s in create_schemas or ():
        problems.append(f"can CREATE in schema {s} (REVOKE CREATE ON SCHEMA {_ident(s)} FROM {u})")
    if create_db:
        problems.append(f"can CREATE in database {database} (REVOKE CREATE ON DATABASE {_ident(database)} FROM {u})")
    return problems


class RoleCheck:
    """The outcome: `problems` when the database answered, else `error` (unreachable...)."""

    def __init__(self, problems: list[str] | None, error: str | None = None) -> None:
        self.problems = problems
        self.error = error


def check_role(pg: PostgresSettings, application_name: str = "mcp-gateway-doctor") -> RoleCheck:
    """Connect as the configured role (password from `password_env`) and list what it must not be allowed."""
    try:
        import psycopg
    except ImportError as e:
        return RoleCheck(None, f"psycopg is missing ({e})")
    kwargs: dict[str, Any] = {
        "host": pg.host,
        "port": pg.port,
        "dbname": pg.database,
        "user": pg.user,
        "sslmode": pg.sslmode,
        "connect_timeout": pg.connect_timeout_s,
        "application_name": application_name,
        "gssencmode": "disable",
    }
    password = os.environ.get(pg.password_env)
    if password:
        kwargs["password"] = password
    try:
        with psycopg.connect(autocommit=True, **kwargs) as conn:
            row = conn.execute(_PRIVILEGES_SQL, (list(DANGEROUS_ROLES),)).fetchone()
    except Exception as e:  # noqa: BLE001 - any failure means "not checked"
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        return RoleCheck(None, first)
    if row is None:
        return RoleCheck(None, f"role {pg.user} not found in pg_roles")
    return RoleCheck(role_problems(row, pg.user))
