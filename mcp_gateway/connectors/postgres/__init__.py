"""The postgres connector kind: read-only SQL on one database, as one role."""

from __future__ import annotations

from mcp_gateway.connectors.base import ConnectorKind, DoctorFinding, Guard, Instance, ToolSpec
from mcp_gateway.connectors.postgres.settings import PostgresSettings
from mcp_gateway.connectors.postgres.tools import QUERY, TOOLS


class PostgresKind(ConnectorKind):
    name = "postgres"
    summary = "Read-only SQL. See [POSTGRES.md](POSTGRES.md)."
    settings = PostgresSettings
    seed_instance = "db"
    static_tools = TOOLS
    worker = "mcp_gateway.connectors.postgres.worker:PostgresConnector"

    def guard(self, instance: Instance, spec: ToolSpec) -> Guard | None:
        if spec.tool != QUERY.tool:
            return None
        from mcp_gateway.connectors.postgres.sql_precheck import precheck_sql

        # Bounded and linear: the full parse runs in the worker, under the call's deadline.
        return lambda args: precheck_sql(args.sql)  # type: ignore[attr-defined]

    def describe(self, instance: Instance) -> str:
        s = instance.settings
        return f"{s.user}@{s.host}:{s.port}/{s.database}"

    def doctor_checks(self, instance: Instance) -> list[DoctorFinding]:
        from mcp_gateway.connectors.postgres.role import check_role

        pg = instance.settings
        result = check_role(pg)
        if result.problems is None:
            return [DoctorFinding("WARN", (
                f"database {pg.host}:{pg.port}/{pg.database} unreachable as {pg.user} ({result.error}): "
                "the read-only role could not be verified; run doctor where the database is reachable."))]
        if result.problems:
            return [DoctorFinding("FAIL", (
                f"database role {pg.user} is not read-only: it {'; '.join(result.problems)}. Use a role with "
                "only SELECT (see docs/POSTGRES.md)."))]
        return [DoctorFinding("PASS", f"database role {pg.user} is read-only (no superuser, no write or CREATE "
                                      "privilege)")]

    def startup_warnings(self, instance: Instance) -> list[str]:
        """Least privilege is the second wall behind the SQL guard: say loudly when it is missing."""
        from mcp_gateway.connectors.postgres.role import check_role

        pg = instance.settings
        result = check_role(pg, "mcp-gateway-check")
        if result.problems:
            return [f"SECURITY WARNING: database role {pg.user} is not read-only (instance {instance.name}): "
                    f"it {'; '.join(result.problems)}. Its queries then rest on the SQL guard alone; fix the "
                    "role (docs/POSTGRES.md) and run `mcp-gateway doctor`."]
        if result.problems is None:
            return [f"database role {pg.user} of instance {instance.name} could not be checked for least "
                    f"privilege ({result.error}); run `mcp-gateway doctor`"]
        return []


KIND = PostgresKind()
