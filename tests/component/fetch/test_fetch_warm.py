"""warm() must load everything a call needs: after it, a fetch (DNS lookup included) imports no module
and opens no file but the resolver's hosts and resolv.conf."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]

SCRIPT = textwrap.dedent(r'''
    import sys, threading, json, gzip
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class H(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        def log_message(self, *a): pass
        def do_GET(self):
            if self.path == "/r":
                self.send_response(302); self.send_header("Location", "/t")
                self.send_header("Content-Length", "0")
                self.end_headers(); return
            body = "héllo wörld".encode("iso-8859-15") if self.path == "/t" else bytes(range(256))
            ctype = "text/html; charset=ISO-8859-15" if self.path == "/t" else "application/octet-stream"
            self.send_response(200); self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body))); self.end_headers(); self.wfile.write(body)

    srv = ThreadingHTTPServer(("127.0.0.1", 0), H)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    port = srv.server_address[1]

    # A DNS server written with raw bytes (no dnspython here, so that its imports cannot hide
    # the resolver's): every A query gets 127.0.0.1, every other type an empty answer.
    import socket, struct, tempfile, os
    dns_sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    dns_sock.bind(("127.0.0.1", 0))
    def dns_serve():
        while True:
            q, peer = dns_sock.recvfrom(512)
            end = q.index(b"\0", 12) + 5
            qtype = struct.unpack("!H", q[end - 4:end - 2])[0]
            answer = (b"\xc0\x0c" + struct.pack("!HHIH", 1, 1, 60, 4) + bytes([127, 0, 0, 1])) if qtype == 1 else b""
            header = q[:2] + struct.pack("!HHHHH", 0x8180, 1, 1 if answer else 0, 0, 0)
            dns_sock.sendto(header + q[12:end] + answer, peer)
    threading.Thread(target=dns_serve, daemon=True).start()
    conf_dir = tempfile.mkdtemp()
    with open(os.path.join(conf_dir, "resolv.conf"), "w") as f:
        f.write("nameserver 127.0.0.1\n")
    with open(os.path.join(conf_dir, "hosts"), "w") as f:
        f.write("127.0.0.1 localhost\n127.0.0.1 hosts.example.com\n")
    from mcp_gateway.connectors.http_fetch.resolver import DnsResolver
    dns_resolver = DnsResolver(hosts_file=os.path.join(conf_dir, "hosts"),
                               resolv_conf=os.path.join(conf_dir, "resolv.conf"), port=dns_sock.getsockname()[1])

    from mcp_gateway.config import ConnectorsSettings, GatewayConfig
    from mcp_gateway.connectors.http_fetch.settings import HttpFetchSettings
    from mcp_gateway.connectors.http_fetch.tools import FetchArgs
    from mcp_gateway.ipc.errors import Refusal
    from mcp_gateway.workers.connector import CallLimits
    from mcp_gateway.connectors.http_fetch.worker import HttpFetchConnector

    cfg = GatewayConfig(connectors=ConnectorsSettings(http_fetch=HttpFetchSettings(
        enabled=True, allowed_domains=["127.0.0.1", "*.example.com"], allow_internal_cidrs=["127.0.0.1/32"],
        allowed_ports=[80, 443, port])))
    conn = HttpFetchConnector(cfg, resolver=dns_resolver)
    conn.warm()
    conn.sandbox_profile()

    late = []
    class Tripwire:
        def find_spec(self, name, path=None, target=None):
            if name not in sys.modules:
                late.append(name)
            return None
    sys.meta_path.insert(0, Tripwire())
    import builtins, io
    real_open = builtins.open
    opened = []
    def spy_open(file, *a, **k):
        opened.append(str(file)); return real_open(file, *a, **k)
    builtins.open = spy_open
    io.open = spy_open

    lim = CallLimits(5000, 1 << 20)
    r1 = conn.call("fetch", FetchArgs(url=f"http://127.0.0.1:{port}/r", headers={"Accept": "*/*"}), lim)
    r2 = conn.call("fetch", FetchArgs(url=f"http://x.example.com:{port}/b"), lim)  # over DNS
    r3 = conn.call("fetch", FetchArgs(url=f"http://hosts.example.com:{port}/b"), lim)  # from hosts
    errs = []
    for url in ("http://127.0.0.2/", "https://еxample.com/", f"https://127.0.0.1:{port}/t", "http://[::1]/"):
        try:
            conn.call("fetch", FetchArgs(url=url), lim)
        except Refusal as e:
            errs.append(e.code)
    print(json.dumps({"late": late, "opened": opened, "r1": r1["body"], "enc2": r2["encoding"],
                      "enc3": r3["encoding"],
                      "errs": errs}))
''')


def test_no_lazy_imports_after_warm():
    out = subprocess.run([sys.executable, "-c", SCRIPT], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    import json
    res = json.loads(out.stdout.strip().splitlines()[-1])
    assert res["r1"] == "héllo wörld"
    assert res["enc2"] == res["enc3"] == "base64"
    assert res["errs"] == ["SECURITY_ERROR", "SECURITY_ERROR", "UPSTREAM_ERROR", "SECURITY_ERROR"]
    assert res["late"] == [], f"modules imported after warm(): {res['late']}"
    # Only the resolver's two files, which it reads on every lookup (as glibc does).
    assert {Path(p).name for p in res["opened"]} <= {"hosts", "resolv.conf"}, res["opened"]
