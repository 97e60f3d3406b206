"""What the work items read: a 1 KiB file, a 4 KiB page on loopback, a 100-row table."""

from __future__ import annotations

import http.server
import os
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

FILE_MARKER = "BENCH-1K-MARKER"
PAGE_MARKER = "BENCH-4K-MARKER"
ROW_MARKER = "bench-row-0100"
TABLE_ROWS = 100
QUERY = "SELECT id, name, amount, created FROM bench_rows ORDER BY id LIMIT 100"


def _filler(marker: str, size: int) -> bytes:
    line = b"The quick brown fox jumps over the lazy dog 0123456789.\n"
    head = (marker + "\n").encode()
    body = (line * (size // len(line) + 1))[: size - len(head)]
    return head + body


class Workspace:
    """A temp dir the gateway's workers can traverse after dropping to uid 65534."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="mcpgw-bench-"))
        self.root.chmod(0o755)
        self.data = self.root / "data"
        (self.data / "secrets").mkdir(parents=True)
        self.data.chmod(0o755)
        self.file = self.data / "file-1k.txt"
        self.file.write_bytes(_filler(FILE_MARKER, 1024))
        self.file.chmod(0o644)
        (self.data / "secrets" / "key.txt").write_text("not for agents\n")

    def subdir(self, name: str) -> Path:
        p = self.root / name
        p.mkdir(exist_ok=True)
        p.chmod(0o755)
        return p

    def cleanup(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


# --- HTTP -------------------------------------------------------------------------------

PAGE = _filler(PAGE_MARKER, 4096)


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:  # noqa: N802
        if self.path.startswith("/slow"):
            time.sleep(2.0)
        if self.path.startswith("/page") or self.path.startswith("/slow"):
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; charset=utf-8")
            self.send_header("Content-Length", str(len(PAGE)))
            self.end_headers()
            try:
                self.wfile.write(PAGE)
            except OSError:
                pass
            return
        self.send_response(404)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass


class PageServer:
    """A threaded HTTP server on 127.0.0.1 serving a 4 KiB text page at /page."""

    def __init__(self) -> None:
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True, name="page-server")
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/page"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


# --- PostgreSQL -------------------------------------------------------------------------


TABLE_SQL = """
CREATE TABLE bench_rows (
    id int PRIMARY KEY,
    name text NOT NULL,
    amount numeric(12, 2) NOT NULL,
    created timestamptz NOT NULL
);
INSERT INTO bench_rows
    SELECT g, 'bench-row-' || lpad(g::text, 4, '0'), g * 1.25,
           timestamptz '2024-01-01 00:00:00+00' + g * interval '1 hour'
    FROM generate_series(1, 200) g;
ANALYZE bench_rows;
"""


@dataclass
class Database:
    cluster: Any  # tests.support.pg_cluster.PgCluster

    @classmethod
    def start(cls) -> Database:
        # The project's own throwaway cluster helper (initdb + pg_ctl, as nobody when root).
        from tests.support.pg_cluster import PgCluster, pg_available

        if not pg_available():
            raise RuntimeError("PostgreSQL binaries not found (set MCPGW_PG_BINDIR)")
        cluster = PgCluster.start()
        cluster.execute(TABLE_SQL)
        return cls(cluster)

    @property
    def password(self) -> str:
        return self.cluster.password

    def gateway_settings(self) -> dict[str, Any]:
        return self.cluster.postgres_settings()

    def uri(self) -> str:
        c = self.cluster
        return f"postgresql://{c.superuser}:{c.password}@{c.host}:{c.port}/{c.database}?sslmode=disable"

    def stop(self) -> None:
        self.cluster.stop()


def world_readable(path: Path) -> bool:
    """Whether uid 65534 can reach `path` (every parent traversable, the file readable)."""
    p = path.resolve()
    for parent in p.parents:
        if not os.stat(parent).st_mode & 0o001:
            return False
    return bool(os.stat(p).st_mode & 0o004)
