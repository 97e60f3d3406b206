"""web.fetch through the real gateway: a sandboxed fetch on loopback, the answer's bound.

The SSRF corpus through the real gateway runs in tests/fetch/test_fetch_in_netns.py, inside a
network namespace of its own (so a regression cannot send a packet off the machine).
"""

import base64
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import yaml

from tests.support.gateway_process import error_of, fs_config, raw_gateway


def _fetch_config(gw_dir, domains, **fetch):
    return fs_config(gw_dir, policy={"allow_tools": ["web.fetch"]},
                     connectors={"http_fetch": {"enabled": True, "allowed_domains": domains, **fetch}})


class _Page(BaseHTTPRequestHandler):
    seen: list[dict] = []

    def log_message(self, *a):
        pass

    def do_GET(self):
        _Page.seen.append({k.lower(): v for k, v in self.headers.items()})
        if self.path == "/redirect-metadata":
            self.send_response(302)
            self.send_header("Location", "http://169.254.169.254/latest/meta-data/")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        body = b"x" * 4096
        if self.path == "/controls":
            body = bytes(range(1, 32)) * (10_000_000 // 31)
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def page_server():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Page)
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def test_sandboxed_fetch_on_loopback_strips_credentials_and_rechecks_redirects(gw_dir, page_server):
    port = page_server
    config = _fetch_config(gw_dir, ["*"], allow_internal_cidrs=["127.0.0.1/32"], allowed_ports=[port])
    with raw_gateway(config) as gw:
        ok = gw.call("web.fetch", {"url": f"http://127.0.0.1:{port}/page",
                                   "headers": {"AuthoriZation": "Bearer s3cret", "X-Api-KEY": "k", "Accept": "*/*"}})
        assert not ok["isError"], ok
        # The body is carried once: as the text content, not again in the structured content.
        assert ok["structuredContent"]["status"] == 200 and ok["structuredContent"]["size"] == 4096
        assert ok["content"][0]["text"] == "x" * 4096 and "body" not in ok["structuredContent"]
        headers = _Page.seen[-1]
        assert "authorization" not in headers and "x-api-key" not in headers and headers["accept"] == "*/*"
        redirected = gw.call("web.fetch", {"url": f"http://127.0.0.1:{port}/redirect-metadata"})
        assert error_of(redirected)["error_code"] == "SECURITY_ERROR"
        other_port = gw.call("web.fetch", {"url": f"http://127.0.0.1:{port + 1 if port < 65535 else 1}/"})
        assert error_of(other_port)["error_code"] == "SECURITY_ERROR"


def test_ten_megabyte_control_character_body_answer_within_the_cap(gw_dir, page_server):
    port = page_server
    cap = 16 * 1024 * 1024
    config = _fetch_config(gw_dir, ["*"], allow_internal_cidrs=["127.0.0.1/32"], allowed_ports=[port])
    doc = yaml.safe_load(config.read_text())
    doc["policy"].setdefault("per_tool", {})["web.fetch"] = {"max_bytes": cap, "timeout_ms": 30000}
    config.write_text(yaml.safe_dump(doc))
    with raw_gateway(config) as gw:
        result = gw.call("web.fetch", {"url": f"http://127.0.0.1:{port}/controls"}, timeout=60)
    assert not result["isError"], str(result)[:500]
    assert result["structuredContent"]["encoding"] == "base64"
    assert result["structuredContent"]["size"] == 31 * (10_000_000 // 31)
    assert "body" not in result["structuredContent"]
    assert base64.b64decode(result["content"][0]["text"])[:31] == bytes(range(1, 32))
    # What went over the wire (the JSON-RPC result) is within the cap (it was 120 MB).
    assert len(json.dumps(result, separators=(",", ":"), ensure_ascii=False).encode()) <= cap
