"""SSLKEYLOGFILE is neither honoured by the fetch worker's TLS context nor inherited by workers,
and warm-up leaves no request line in the log."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]

SCRIPT = textwrap.dedent(r'''
    import json, logging, os, sys
    logging.basicConfig(stream=sys.stderr, level=logging.INFO)   # as the supervisor configures it
    from mcp_gateway.config import ConnectorsSettings, GatewayConfig
    from mcp_gateway.connectors.http_fetch.settings import HttpFetchSettings
    from mcp_gateway.connectors.http_fetch.worker import HttpFetchConnector
    conn = HttpFetchConnector(GatewayConfig(connectors=ConnectorsSettings(
        http_fetch=HttpFetchSettings(enabled=True, allowed_domains=["*"]))))
    conn.warm()
    pid = os.fork()
    if pid == 0:  # a worker, forked from the zygote as the real ones are
        os.write(1, json.dumps({"env": os.environ.get("SSLKEYLOGFILE"),
                                "keylog": conn._ssl().keylog_filename}).encode())
        os._exit(0)
    os.waitpid(pid, 0)
''')


def test_keylog_file_ignored_and_not_inherited(tmp_path):
    keylog = tmp_path / "keys.log"
    env = {"PATH": "/usr/bin:/bin", "SSLKEYLOGFILE": str(keylog)}
    out = subprocess.run([sys.executable, "-c", SCRIPT], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    seen = json.loads(out.stdout)
    assert seen == {"env": None, "keylog": None}
    assert not keylog.exists()
    # No misleading "HTTP Request: GET http://warm-up.invalid/..." line at start.
    assert "warm-up" not in out.stderr, out.stderr
