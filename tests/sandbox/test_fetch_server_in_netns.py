"""The real mcp-server-fetch (PyPI) behind a real gateway, under `allowed_domains`: its one way
out is the egress, which refuses the metadata and internal addresses.

Run by test_upstream_netns.py inside a network namespace it creates, with 169.254.169.254 and
10.1.2.3 added to its loopback interface: a listener of the test's own on each of them and on
127.0.0.1, same port. Only 127.0.0.1/32 is in `allow_internal_cidrs`; all three are in
`allowed_domains`, so what refuses the other two is the address rule, not the name list. The
server runs with `--allow-private-ips` (its own address guard off: the egress must hold
without it) and `--ignore-robots-txt` (one request per call); `raw: true` because its HTML
conversion would run `node`, which its Landlock domain does not let it execute.
"""

from __future__ import annotations

import re
import shutil
import tempfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from mcp_gateway.sandbox import namespaces
from tests.e2e.mcp_upstream.support import listed_with, real_server, stopped_log, upstream_config
from tests.sandbox.upstream_support import MODES
from tests.support.gateway_process import RawGateway, audit_lines, error_of, wait_until

pytestmark = pytest.mark.usefixtures("netns_loopback_only")

ALLOWED, METADATA, PRIVATE = "127.0.0.1", "169.254.169.254", "10.1.2.3"
READY_S = 60.0
PAGE = "<html><body><p>the loopback test page</p></body></html>"


class Origin(BaseHTTPRequestHandler):
    """Records every request it is sent: (the address it listens on, request line, headers)."""

    seen: list[tuple[str, str, dict[str, str]]] = []

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        Origin.seen.append((self.server.server_address[0], self.requestline,
                            {k.lower(): v for k, v in self.headers.items()}))
        body = PAGE.encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


class Listener(ThreadingHTTPServer):
    """Records every connection it accepts, by the address it listens on (before any request)."""

    connections: list[str] = []

    def verify_request(self, request, client_address) -> bool:
        Listener.connections.append(self.server_address[0])
        return True


@pytest.fixture(scope="module")
def port():
    """One port, listened on at the three addresses (so the port rule cannot be what refuses)."""
    servers = [Listener((ALLOWED, 0), Origin)]
    number = servers[0].server_address[1]
    servers += [Listener((address, number), Origin) for address in (METADATA, PRIVATE)]
    for server in servers:
        threading.Thread(target=server.serve_forever, daemon=True).start()
    yield number
    for server in servers:
        server.shutdown()


def fetch_config(directory: Path, mode: str, port: int) -> Path:
    server = real_server("fetch", directory)
    server["command"] = [*server["command"], "--ignore-robots-txt", "--allow-private-ips"]
    server["network"] = {"allowed_domains": [ALLOWED, METADATA, PRIVATE], "allow_internal_cidrs": [f"{ALLOWED}/32"],
                         "allowed_ports": [port]}
    server["namespaces"] = "off" if mode == "floor" else "required"
    return upstream_config(directory, {"fetch": server}, allow=["fetch.fetch"])


@pytest.fixture(scope="module", params=MODES)
def session(request, port):
    mode = request.param
    if mode == "namespaces" and (why := namespaces.available()) is not None:
        pytest.skip(f"this host cannot make namespaces here ({why}); the floor mode is tested")
    directory = Path(tempfile.mkdtemp(prefix="mcp-fetch-egress-"))
    Origin.seen.clear()
    Listener.connections.clear()
    gw = RawGateway(fetch_config(directory, mode, port))
    try:
        gw.initialize()
        wait_until(lambda: listed_with(gw, "fetch.fetch"), READY_S, "fetch.fetch was never listed")
        calls = {name: gw.call("fetch.fetch", {"url": f"http://{address}:{port}/{name}", "raw": True}, timeout=40)
                 for name, address in (("allowed", ALLOWED), ("metadata", METADATA), ("private", PRIVATE))}
        log = stopped_log(gw)
    finally:
        gw.close()
    out = {"calls": calls, "log": log, "seen": list(Origin.seen),
           "connections": list(Listener.connections), "audit": audit_lines(directory), "port": port}
    shutil.rmtree(directory, ignore_errors=True)
    return out


def test_the_loopback_page_comes_back_through_the_egress(session):
    allowed = session["calls"]["allowed"]
    assert allowed["isError"] is False, allowed
    assert PAGE in allowed["content"][0]["text"]
    assert [(address, line) for address, line, _ in session["seen"]] == [(ALLOWED, "GET /allowed HTTP/1.1")]
    assert session["connections"] == [ALLOWED]
    headers = session["seen"][0][2]
    # The egress's rewrite: Host the checked target's, the client's keep-alive replaced by close.
    assert headers["host"] == f"{ALLOWED}:{session['port']}"
    assert headers["connection"] == "close"
    assert headers["user-agent"].startswith("ModelContextProtocol/1.0")


@pytest.mark.parametrize("name, rule", [("metadata", "cloud metadata address"), ("private", "private 10.0.0.0/8")])
def test_metadata_and_internal_addresses_are_refused_by_the_egress(session, name, rule):
    refused = error_of(session["calls"][name])
    assert refused["error_code"] == "UPSTREAM_ERROR" and "status code 403" in refused["reason"], refused
    address = METADATA if name == "metadata" else PRIVATE
    assert address not in session["connections"]  # its listener never got a connection
    assert re.search(rf"\[egress fetch\] refused \(403\): .*{re.escape(address)}.*{rule}", session["log"],
                     re.IGNORECASE), session["log"][-3000:]


def test_one_audit_line_per_call(session):
    records = session["audit"]
    assert [(r["tool"], r["decision"]) for r in records] == [("fetch.fetch", "allow")] * 3
    assert [r.get("error_code") for r in records] == [None, "UPSTREAM_ERROR", "UPSTREAM_ERROR"]
