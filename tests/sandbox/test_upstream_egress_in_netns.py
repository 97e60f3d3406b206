"""An upstream server's network under `allowed_domains`: only the gateway's egress, under web.fetch's rules.

Run by test_upstream_netns.py inside a network namespace it creates (loopback only), so the
attempts on blocked addresses cannot send a packet off this machine whatever happens;
conftest.py leaves this file out of any other run. A loopback HTTP server of the test's own
is the "outside": allowed through the proxy by `allow_internal_cidrs: [127.0.0.0/8]`.
"""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import trio

from mcp_gateway.sandbox import namespaces
from tests.sandbox.upstream_support import MODES, Area, Client, make_config, run_session

pytestmark = pytest.mark.usefixtures("netns_loopback_only")


class Origin(BaseHTTPRequestHandler):
    hits: list[str] = []

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        Origin.hits.append(self.path)
        body = f"origin saw {self.path}".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture(scope="module")
def origin():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Origin)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1]
    server.shutdown()


@pytest.fixture(scope="module", params=MODES)
def egress(request, origin):
    mode = request.param
    if mode == "namespaces" and (why := namespaces.available()) is not None:
        pytest.skip(f"this host cannot make namespaces here ({why}); the floor mode is tested")
    area = Area()
    network = {"allowed_domains": ["*"], "allow_internal_cidrs": ["127.0.0.0/8"], "allowed_ports": [80, 443, origin]}
    Origin.hits.clear()

    async def script(client: Client, proc) -> dict:
        proxy = (await client.tool("environ"))["env"]["HTTP_PROXY"]
        attempts = {
            "env": await client.tool("environ"),
            "allowed": await client.tool("proxy_get", url=f"http://127.0.0.1:{origin}/allowed"),
            "metadata": await client.tool("proxy_get", url="http://169.254.169.254/latest/meta-data/"),
            "metadata_mapped": await client.tool("proxy_get", url="http://[::ffff:169.254.169.254]/"),
            "private": await client.tool("proxy_get", url="http://10.1.2.3/"),
            "decimal_loopback_other_port": await client.tool("proxy_get", url="http://2130706433:22/"),
            "loopback_name": await client.tool("proxy_get", url=f"http://localhost:{origin}/"),
            "tunnel": await client.tool("tunnel", target=f"127.0.0.1:{origin}",
                                        request="GET /tunnelled HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"),
            "tunnel_metadata": await client.tool("tunnel", target="169.254.169.254:443"),
            "tunnel_other_port": await client.tool("tunnel", target="127.0.0.1:22"),
            "direct_origin": await client.tool("connect", host="127.0.0.1", port=origin),
            "direct_private": await client.tool("connect", host="10.1.2.3", port=80),
            "direct_metadata": await client.tool("connect", host="169.254.169.254", port=80),
            "direct_v6": await client.tool("connect", host="::1", port=origin),
            "udp_dns": await client.tool("udp", host="127.0.0.1", port=53),
        }
        attempts["proxy"] = proxy
        return attempts

    try:
        out = trio.run(run_session, make_config(area, mode, network=network), script)
    finally:
        area.remove()
    out["hits"] = list(Origin.hits)
    return out


def test_the_server_gets_the_proxy_variables(egress):
    env = egress["env"]["env"]
    assert env["HTTP_PROXY"] == env["HTTPS_PROXY"] == egress["proxy"]
    assert egress["proxy"].startswith("http://127.0.0.1:")
    assert env["NO_PROXY"] == ""


def test_an_allowed_request_through_the_egress_works(egress):
    assert egress["allowed"]["ok"] is True, egress["allowed"]
    assert egress["allowed"]["status"] == 200
    assert egress["allowed"]["body"] == "origin saw /allowed"


@pytest.mark.parametrize("attempt", ["metadata", "metadata_mapped", "private", "decimal_loopback_other_port",
                                     "loopback_name"])
def test_blocked_destinations_are_refused_by_the_egress(egress, attempt):
    outcome = egress[attempt]
    assert outcome["ok"] is False and outcome["status"] == 403, outcome
    assert "refused" in outcome["body"]


def test_a_connect_tunnel_to_an_allowed_target_carries_bytes(egress):
    assert egress["tunnel"]["ok"] is True, egress["tunnel"]
    assert egress["tunnel"]["reply"].endswith("origin saw /tunnelled")


@pytest.mark.parametrize("attempt", ["tunnel_metadata", "tunnel_other_port"])
def test_a_connect_tunnel_to_a_blocked_target_is_refused(egress, attempt):
    assert egress[attempt]["ok"] is False and " 403 " in egress[attempt]["status"] + " ", egress[attempt]


def test_the_origin_saw_only_the_allowed_requests(egress):
    assert egress["hits"] == ["/allowed", "/tunnelled"]


@pytest.mark.parametrize("attempt", ["direct_origin", "direct_private", "direct_metadata", "direct_v6"])
def test_no_direct_connection_is_possible(egress, attempt):
    outcome = egress[attempt]
    assert outcome["ok"] is False, outcome
    assert outcome["error"] in ("EACCES", "ENETUNREACH", "EPERM", "EADDRNOTAVAIL"), outcome


def test_no_udp_no_dns(egress):
    assert egress["udp_dns"] == {"ok": False, "error": "EPERM"}
