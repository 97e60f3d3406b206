"""`doctor` checks the database role against a real PostgreSQL: a superuser or a role that can
write fails, a role with SELECT only passes (the role DOCS/POSTGRES.md tells operators to make)."""

import io

from mcp_gateway.config import GatewayConfig
from mcp_gateway.doctor import Report, check_instances

RO_PASSWORD = "ro-test-password-3f9a"  # noqa: S105 - a throwaway test cluster's role


def _check(pg_cluster, user: str, password: str, monkeypatch) -> str:
    monkeypatch.setenv("POSTGRES_PASSWORD", password)
    config = GatewayConfig.model_validate({"connectors": {"postgres": pg_cluster.postgres_settings(user=user)}})
    out = io.StringIO()
    check_instances(config, Report(out))
    return out.getvalue()


def test_superuser_fails(pg_cluster, monkeypatch):
    text = _check(pg_cluster, pg_cluster.superuser, pg_cluster.password, monkeypatch)
    assert text.startswith("FAIL") and 'is a superuser (ALTER ROLE "pgadmin" NOSUPERUSER)' in text


def test_dangerous_memberships_and_attributes_fail_naming_the_fix(pg_cluster, monkeypatch):
    pg_cluster.execute(
        "DROP ROLE IF EXISTS doctor_wide;"
        f"CREATE ROLE doctor_wide LOGIN REPLICATION BYPASSRLS PASSWORD '{RO_PASSWORD}';"
        "GRANT pg_read_server_files, pg_signal_backend TO doctor_wide;"
    )
    try:
        text = _check(pg_cluster, "doctor_wide", RO_PASSWORD, monkeypatch)
    finally:
        pg_cluster.execute("DROP ROLE doctor_wide")
    assert text.startswith("FAIL") and "doctor_wide" in text
    for fix in (
        'ALTER ROLE "doctor_wide" NOREPLICATION',
        'ALTER ROLE "doctor_wide" NOBYPASSRLS',
        'REVOKE pg_read_server_files FROM "doctor_wide"',
        'REVOKE pg_signal_backend FROM "doctor_wide"',
    ):
        assert fix in text, (fix, text)


def test_role_with_write_privilege_fails_and_select_only_passes(pg_cluster, monkeypatch):
    pg_cluster.execute(
        "DROP ROLE IF EXISTS doctor_ro; DROP ROLE IF EXISTS doctor_rw;"
        f"CREATE ROLE doctor_ro LOGIN PASSWORD '{RO_PASSWORD}';"
        f"CREATE ROLE doctor_rw LOGIN PASSWORD '{RO_PASSWORD}';"
        "GRANT USAGE ON SCHEMA public TO doctor_ro, doctor_rw;"
        "GRANT SELECT ON ALL TABLES IN SCHEMA public TO doctor_ro, doctor_rw;"
        "GRANT INSERT ON users TO doctor_rw;"
    )
    try:
        rw = _check(pg_cluster, "doctor_rw", RO_PASSWORD, monkeypatch)
        assert rw.startswith("FAIL") and "can write tables" in rw and "users" in rw
        ro = _check(pg_cluster, "doctor_ro", RO_PASSWORD, monkeypatch)
        assert ro.startswith("PASS") and "is read-only" in ro
    finally:
        pg_cluster.execute("REVOKE ALL ON ALL TABLES IN SCHEMA public FROM doctor_ro, doctor_rw;"
                           "REVOKE USAGE ON SCHEMA public FROM doctor_ro, doctor_rw;"
                           "DROP ROLE doctor_ro; DROP ROLE doctor_rw;")


def test_unreachable_database_warns(pg_cluster, monkeypatch):
    monkeypatch.setenv("POSTGRES_PASSWORD", "wrong")
    config = GatewayConfig.model_validate({"connectors": {"postgres": pg_cluster.postgres_settings()}})
    out = io.StringIO()
    check_instances(config, Report(out))
    assert out.getvalue().startswith("WARN") and "could not be verified" in out.getvalue()
