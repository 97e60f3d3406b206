"""A throwaway PostgreSQL cluster for tests (loopback TCP and a unix socket only).

    cluster = PgCluster.start()          # initdb + pg_ctl start in a temp dir
    cluster.execute("SELECT 1")          # as the superuser, autocommit, returns rows
    cluster.load_fixture()               # users / orders / secrets / t / big / a large object
    snap = cluster.snapshot()            # prove the database unchanged: compare two snapshots
    cluster.restart()                    # pg_ctl restart (the gateway's connection dies)
    cluster.stop()                       # also registered with atexit

As root the cluster runs as an unprivileged user (``nobody`` by default, through
``subprocess``'s ``user=``/``group=``); as a non-root user it runs as that user. The
superuser logs in with a SCRAM password over TCP (``POSTGRES_PASSWORD`` for the gateway) and
without one over the cluster's private unix socket.

Environment: ``MCPGW_PG_BINDIR`` overrides ``/usr/lib/postgresql/15/bin``.
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PG_BINDIR = Path(os.environ.get("MCPGW_PG_BINDIR", "/usr/lib/postgresql/15/bin"))
SUPERUSER = "pgadmin"
DATABASE = "postgres"


def pg_available() -> bool:
    return (PG_BINDIR / "initdb").exists() and (PG_BINDIR / "pg_ctl").exists()


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


FIXTURE_SQL = r"""
CREATE TABLE users (
    id serial PRIMARY KEY,
    name text NOT NULL,
    email text,
    note text,
    created timestamptz NOT NULL DEFAULT '2024-01-02 03:04:05+00'
);
INSERT INTO users (name, email, note) VALUES
    ('alice', 'alice@example.com', 'admin'),
    ('bob', 'bob@example.com', NULL),
    ('O''Reilly', NULL, 'quote; DROP TABLE users; --');
CREATE TABLE orders (
    id serial PRIMARY KEY,
    customer_id int NOT NULL REFERENCES users (id),
    amount numeric(12, 2) NOT NULL,
    placed_at timestamptz NOT NULL DEFAULT '2024-02-03 04:05:06+00',
    created_at timestamptz NOT NULL DEFAULT '2024-02-03 04:05:06+00'
);
INSERT INTO orders (customer_id, amount, created_at) VALUES
    (1, 9.99, '2024-01-05 10:00+00'), (1, 20.00, '2024-02-10 11:30+00'),
    (2, 123.45, '2024-02-11 09:15+00'), (3, 5.00, '2024-03-01 00:00+00');
CREATE TABLE secrets (id int PRIMARY KEY, secret text NOT NULL);
INSERT INTO secrets VALUES (1, 'hunter2'), (2, 'correct horse battery staple');
CREATE TABLE t (a int, b int, note text, data jsonb);
INSERT INTO t VALUES (1, 2, 'x', '{"a": {"b": 1}, "k": true}'), (-1, 3, NULL, NULL), (5, 1, 'y', '{"z": 2}');
CREATE TABLE wide (id int PRIMARY KEY, h text NOT NULL);
INSERT INTO wide SELECT g, md5(g::text) FROM generate_series(1, 500) g;
CREATE TABLE "insert" ("delete" int, "drop" int, "update" int);
INSERT INTO "insert" VALUES (1, 2, 3);
CREATE TABLE big (id int PRIMARY KEY, payload text NOT NULL);
INSERT INTO big SELECT g, repeat(md5(g::text), 3) FROM generate_series(1, 20000) g;
CREATE VIEW user_names AS SELECT id, name FROM users;
CREATE MATERIALIZED VIEW order_totals AS
    SELECT customer_id, sum(amount) AS total FROM orders GROUP BY customer_id;
CREATE SCHEMA other;
CREATE TABLE other.things (x int NOT NULL, y text);
CREATE SEQUENCE counter_seq START 100;
SELECT lo_from_bytea(424242, 'large object content');
-- Like a real database: indexes whose maintenance functions write, credentials in catalogs,
-- a replication slot, a database-level secret setting.
CREATE INDEX big_id_brin ON big USING brin (id) WITH (pages_per_range = 1, autosummarize = off);
INSERT INTO big SELECT g, 'unsummarised' FROM generate_series(20001, 20400) g;
CREATE INDEX t_data_gin ON t USING gin (data) WITH (fastupdate = on);
INSERT INTO t SELECT g, g, 'pending', jsonb_build_object('g', g) FROM generate_series(10, 40) g;
CREATE ROLE analyst LOGIN PASSWORD 'analyst-password-secret';
CREATE ROLE app_owner LOGIN PASSWORD 'app-owner-password-secret';
CREATE FOREIGN DATA WRAPPER fixture_fdw;
CREATE SERVER fixture_server FOREIGN DATA WRAPPER fixture_fdw OPTIONS (host '10.0.0.9');
CREATE USER MAPPING FOR analyst SERVER fixture_server OPTIONS (user 'remote', password 'mapping-secret');
CREATE SUBSCRIPTION fixture_sub CONNECTION 'host=127.0.0.1 port=1 dbname=x password=subscription-secret'
    PUBLICATION nothing WITH (connect = false, enabled = false, create_slot = false, slot_name = NONE);
SELECT pg_create_physical_replication_slot('fixture_slot');
ALTER DATABASE postgres SET app.secret = 'database-setting-secret';
-- User-defined objects whose functions may not run: an operator, a cast, a 63-byte name.
CREATE FUNCTION fixture_volatile(a int, b int) RETURNS int LANGUAGE sql VOLATILE AS 'SELECT a + b';
CREATE OPERATOR ### (LEFTARG = int, RIGHTARG = int, FUNCTION = fixture_volatile);
CREATE TYPE fixture_mood AS ENUM ('calm');
CREATE FUNCTION fixture_to_mood(int) RETURNS fixture_mood LANGUAGE sql VOLATILE AS $$SELECT 'calm'::fixture_mood$$;
CREATE CAST (int AS fixture_mood) WITH FUNCTION fixture_to_mood(int);
CREATE FUNCTION fixture_function_whose_name_is_exactly_sixty_three_bytes_long_x(int) RETURNS int
    LANGUAGE sql VOLATILE AS 'SELECT $1';
CREATE SCHEMA fixture_tools;
CREATE EXTENSION pageinspect SCHEMA fixture_tools;
ANALYZE;
ANALYZE pg_catalog.pg_authid;
"""


@dataclass
class PgCluster:
    root: Path
    datadir: Path
    sockdir: Path
    port: int
    password: str
    run_as: int | None  # uid to run the server as (None: the current user)
    run_gid: int | None
    superuser: str = SUPERUSER
    database: str = DATABASE
    host: str = "127.0.0.1"
    _stopped: bool = field(default=False, repr=False)

    # --- lifecycle ------------------------------------------------------------------------

    @classmethod
    def start(cls, *, user: str = "nobody") -> PgCluster:
        if not pg_available():
            raise RuntimeError(f"PostgreSQL binaries not found in {PG_BINDIR}")
        root = Path(tempfile.mkdtemp(prefix="mcpgw-pg-"))
        run_as = run_gid = None
        if os.geteuid() == 0:
            pw = pwd.getpwnam(user)
            run_as, run_gid = pw.pw_uid, pw.pw_gid
        c = cls(
            root=root,
            datadir=root / "data",
            sockdir=root / "sock",
            port=_free_port(),
            password=secrets.token_urlsafe(18),
            run_as=run_as,
            run_gid=run_gid,
        )
        atexit.register(c.stop)
        try:
            c._init_and_start()
        except BaseException:
            c.stop()
            raise
        return c

    def _run(self, *args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        kw: dict[str, Any] = {}
        if self.run_as is not None:
            kw.update(user=self.run_as, group=self.run_gid, extra_groups=[])
        env = {
            "PATH": "/usr/bin:/bin",
            "LANG": "C.UTF-8",
            "LC_ALL": "C.UTF-8",
            "HOME": str(self.root),
            "TZ": "UTC",
        }
        p = subprocess.run(
            [str(PG_BINDIR / args[0]), *args[1:]],
            cwd=self.root,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            **kw,
        )
        if check and p.returncode != 0:
            raise RuntimeError(
                f"{args[0]} failed ({p.returncode}):\n{p.stdout}\n{p.stderr}\n{self.log_tail()}"
            )
        return p

    def _init_and_start(self) -> None:
        self.sockdir.mkdir()
        pwfile = self.root / "pw"
        pwfile.write_text(self.password + "\n")
        if self.run_as is not None:
            for p in (self.root, self.sockdir, pwfile):
                os.chown(p, self.run_as, self.run_gid or -1)
        os.chmod(pwfile, 0o600)
        self._run(
            "initdb",
            "-D",
            str(self.datadir),
            "-U",
            self.superuser,
            f"--pwfile={pwfile}",
            "--auth-local=trust",
            "--auth-host=scram-sha-256",
            "-E",
            "UTF8",
            "--locale=C",
            "--no-sync",
        )
        pwfile.unlink()
        with open(self.datadir / "postgresql.conf", "a", encoding="utf-8") as f:
            f.write(
                "\n# mcp-gateway test cluster\n"
                f"listen_addresses = '127.0.0.1'\n"
                f"port = {self.port}\n"
                f"unix_socket_directories = '{self.sockdir}'\n"
                "fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n"
                "shared_buffers = 16MB\nmax_connections = 30\nmax_wal_size = 64MB\n"
                "logging_collector = off\nlog_min_messages = warning\n"
                "timezone = 'UTC'\nautovacuum = off\n"
            )
        self._pg_ctl_start()

    def _pg_ctl_start(self) -> None:
        self._run(
            "pg_ctl", "-D", str(self.datadir), "-l", str(self.root / "server.log"), "-w", "-t", "60", "start"
        )
        self.wait_ready()

    def wait_ready(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.execute("SELECT 1")
                return
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def restart(self) -> None:
        self._run(
            "pg_ctl",
            "-D",
            str(self.datadir),
            "-l",
            str(self.root / "server.log"),
            "-w",
            "-t",
            "60",
            "-m",
            "fast",
            "restart",
        )
        self.wait_ready()

    def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        if (self.datadir / "postmaster.pid").exists():
            with contextlib.suppress(Exception):
                self._run(
                    "pg_ctl",
                    "-D",
                    str(self.datadir),
                    "-w",
                    "-t",
                    "30",
                    "-m",
                    "immediate",
                    "stop",
                    check=False,
                )
        shutil.rmtree(self.root, ignore_errors=True)

    def log_tail(self, n: int = 40) -> str:
        try:
            return "\n".join((self.root / "server.log").read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    # --- connecting -----------------------------------------------------------------------

    def conninfo(self) -> dict[str, Any]:
        """TCP + password, as the gateway connects."""
        return {
            "host": self.host,
            "port": self.port,
            "dbname": self.database,
            "user": self.superuser,
            "password": self.password,
            "sslmode": "disable",
        }

    def env(self) -> dict[str, str]:
        """Environment for a gateway process connecting as the superuser."""
        return {"POSTGRES_PASSWORD": self.password}

    def postgres_settings(self, **overrides: Any) -> dict[str, Any]:
        """A `connectors.postgres` config section pointing at this cluster."""
        d: dict[str, Any] = {
            "enabled": True,
            "host": self.host,
            "port": self.port,
            "database": self.database,
            "user": self.superuser,
            "sslmode": "disable",
            "connect_timeout_s": 5,
        }
        d.update(overrides)
        return d

    def execute(self, sql: str, params: Any = None, *, dbname: str | None = None) -> list[tuple[Any, ...]]:
        """Run SQL as the superuser (autocommit; several statements allowed without params)."""
        import psycopg

        info = self.conninfo()
        if dbname:
            info["dbname"] = dbname
        with psycopg.connect(autocommit=True, connect_timeout=10, **info) as conn, conn.cursor() as cur:
            cur.execute(sql, params)
            rows: list[tuple[Any, ...]] = []
            while True:
                if cur.description is not None:
                    rows = list(cur.fetchall())
                if not cur.nextset():
                    break
            return rows

    # --- fixture and snapshots ------------------------------------------------------------

    def load_fixture(self) -> None:
        self.execute(FIXTURE_SQL)

    def snapshot(self) -> dict[str, Any]:
        """Everything an attack could change, in comparable form."""
        tables = self.execute(
            "SELECT n.nspname || '.' || c.relname, c.relkind FROM pg_class c"
            " JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname NOT IN ('pg_catalog', 'information_schema')"
            " AND n.nspname NOT LIKE 'pg\\_toast%'"
            " ORDER BY 1"
        )
        counts = {}
        for name, kind in tables:
            if kind in ("r", "m"):
                schema, rel = name.split(".", 1)
                # names come from pg_class, not from a test input
                rel_sql = f'"{schema}"."{rel}"'
                counts[name] = self.execute(
                    "SELECT count(*), md5(string_agg(t::text, '|' ORDER BY t::text)) FROM " + rel_sql + " t"  # noqa: S608
                )[0]
        sequences = self.execute(
            "SELECT schemaname || '.' || sequencename, last_value FROM pg_sequences ORDER BY 1"
        )
        los = self.execute("SELECT oid, md5(lo_get(oid)) FROM pg_largeobject_metadata ORDER BY oid")
        roles = self.execute("SELECT rolname, rolsuper, rolcanlogin FROM pg_roles ORDER BY 1")
        functions = self.execute(
            "SELECT count(*) FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace"
            " WHERE n.nspname NOT IN ('pg_catalog', 'information_schema')"
        )
        extensions = self.execute("SELECT extname FROM pg_extension ORDER BY 1")
        server = self.server_state()
        auto_conf = (
            (self.datadir / "postgresql.auto.conf").read_bytes() if self._readable(self.datadir) else b""
        )
        top = sorted(p.name for p in self.datadir.iterdir()) if self._readable(self.datadir) else []
        outside = sorted(str(p.relative_to(self.root)) for p in self.root.iterdir() if p.name != "data")
        return {
            "tables": tables,
            "counts": counts,
            "sequences": sequences,
            "large_objects": los,
            "roles": roles,
            "functions": functions,
            "extensions": extensions,
            "server": server,
            "auto_conf": hashlib.sha256(auto_conf).hexdigest(),
            "datadir_top": [n for n in top if n not in ("postmaster.pid", "postmaster.opts")],
            "cluster_dir": outside,
        }

    def server_state(self) -> dict[str, Any]:
        """What a query could leave behind outside the tables: locks, slots, origins, stats
        resets, a config reload, index contents, roles and their passwords, settings, the
        transaction-id counter."""
        q = self.execute
        return {
            # every lock not held by the backend that asks (this snapshot's own connection)
            "locks": q(
                "SELECT locktype, mode, classid, objid, objsubid FROM pg_locks"
                " WHERE pid IS DISTINCT FROM pg_backend_pid() ORDER BY 1, 2, 3, 4, 5"
            ),
            "slots": q(
                "SELECT slot_name, slot_type, active, restart_lsn::text FROM pg_replication_slots ORDER BY 1"
            ),
            "origins": q("SELECT roname FROM pg_replication_origin ORDER BY 1"),
            "stats_reset": q(
                "SELECT (SELECT stats_reset FROM pg_stat_bgwriter),"
                " (SELECT array_agg(stats_reset ORDER BY datid) FROM pg_stat_database),"
                " (SELECT stats_reset FROM pg_stat_wal),"
                " (SELECT stats_reset FROM pg_stat_archiver),"
                " (SELECT array_agg(stats_reset ORDER BY name) FROM pg_stat_slru)"
            ),
            "conf_load_time": q("SELECT pg_conf_load_time()"),
            "index_sizes": q(
                "SELECT c.relname, pg_relation_size(c.oid) FROM pg_class c"
                " JOIN pg_namespace n ON n.oid = c.relnamespace"
                " WHERE c.relkind = 'i' AND n.nspname NOT IN ('pg_catalog', 'pg_toast') ORDER BY 1"
            ),
            # BRIN summaries and the GIN pending list live in index pages: their checksum
            # BRIN summaries and the GIN pending list live in index pages: their bytes (past
            # the page LSN) through pageinspect, installed in a schema of its own
            "index_pages": q(
                "SELECT c.relname, md5(string_agg(md5(substring(fixture_tools.get_raw_page("
                "c.relname::text, b) FROM 9)), '' ORDER BY b))"
                " FROM pg_class c, generate_series(0, (pg_relation_size(c.oid) / 8192)::int - 1) b"
                " WHERE c.relname IN ('big_id_brin', 't_data_gin') GROUP BY 1 ORDER BY 1"
            ),
            "passwords": q("SELECT rolname, md5(coalesce(rolpassword, '')) FROM pg_authid ORDER BY 1"),
            "settings": q("SELECT setdatabase, setrole, setconfig FROM pg_db_role_setting ORDER BY 1, 2"),
            "mappings": q("SELECT umuser, umserver, umoptions FROM pg_user_mapping ORDER BY 1, 2"),
            "subscriptions": q("SELECT subname, subenabled, subconninfo FROM pg_subscription ORDER BY 1"),
            "next_xid": q("SELECT pg_snapshot_xmax(pg_current_snapshot())::text"),
        }

    @staticmethod
    def _readable(p: Path) -> bool:
        return os.access(p, os.R_OK | os.X_OK)
