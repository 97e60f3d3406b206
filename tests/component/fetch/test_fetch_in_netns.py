"""web.fetch's resolver and the SSRF corpus, inside a network namespace with loopback only.

Run by test_fetch_netns.py (which creates the namespaces); conftest.py leaves this file out of
any other run, and the first fixture refuses to run outside a loopback-only namespace. A tiny UDP
DNS server of the test's own answers on 127.0.0.1, so lookups are real DNS over real sockets
(dnspython in the worker code) and every query is counted.
"""

from __future__ import annotations

import ipaddress
import json
import socket
import threading
import time
from ipaddress import IPv4Address

import dns.message
import dns.rcode
import dns.rdatatype
import dns.rrset
import pytest

from mcp_gateway.connectors.http_fetch.resolver import DnsResolver
from mcp_gateway.connectors.http_fetch.tools import FetchArgs
from mcp_gateway.ipc.errors import Refusal
from mcp_gateway.workers.connector import CallLimits
from tests.support.corpus import load_corpus

from .conftest import LIMITS, make_connector


@pytest.fixture(scope="module", autouse=True)
def only_loopback():
    names = sorted(name for _, name in socket.if_nameindex())
    assert names == ["lo"], f"not inside a loopback-only network namespace: {names}"


class DnsServer:
    """Answers A/AAAA from `records`; NXDOMAIN for unknown names; never answers `silent` ones."""

    def __init__(self, records: dict[str, list[str]], silent: frozenset[str] = frozenset(), port: int = 0) -> None:
        self.records = records
        self.silent = silent
        self.queries: list[tuple[str, str]] = []
        self.stopping = False
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", port))
        self.port = self.sock.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                data, peer = self.sock.recvfrom(4096)
            except OSError:
                return
            if self.stopping:
                return
            query = dns.message.from_wire(data)
            question = query.question[0]
            name = question.name.to_text(omit_final_dot=True).lower()
            self.queries.append((name, dns.rdatatype.to_text(question.rdtype)))
            if name in self.silent:
                continue
            response = dns.message.make_response(query)
            if name not in self.records:
                response.set_rcode(dns.rcode.NXDOMAIN)
            else:
                v6 = question.rdtype == dns.rdatatype.AAAA
                addrs = [a for a in self.records[name] if (":" in a) == v6]
                if addrs:
                    response.answer.append(dns.rrset.from_text_list(
                        question.name, 60, "IN", "AAAA" if v6 else "A", addrs))
            self.sock.sendto(response.to_wire(), peer)

    def close(self) -> None:
        # Wake the blocked recvfrom (a close alone would not, and the port would stay bound).
        self.stopping = True
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as waker:
            waker.sendto(b"", ("127.0.0.1", self.port))
        self.thread.join(5)
        self.sock.close()


@pytest.fixture
def dns_env(tmp_path):
    """(start(records, silent, hosts) -> (DnsServer, DnsResolver))"""
    servers: list[DnsServer] = []

    def start(records=None, silent=frozenset(), hosts=""):
        srv = DnsServer(records or {}, silent)
        servers.append(srv)
        (tmp_path / "resolv.conf").write_text("nameserver 127.0.0.1\noptions timeout:1 attempts:5\n")
        (tmp_path / "hosts").write_text("127.0.0.1 localhost\n" + hosts)
        return srv, DnsResolver(hosts_file=str(tmp_path / "hosts"), resolv_conf=str(tmp_path / "resolv.conf"),
                                port=srv.port)
    yield start
    for srv in servers:
        srv.close()


def call(conn, url, limits=LIMITS):
    return conn.call("fetch", FetchArgs(url=url), limits)


def failure(conn, url, limits=LIMITS) -> Refusal:
    with pytest.raises(Refusal) as e:
        call(conn, url, limits)
    return e.value


# --- the resolver -------------------------------------------------------------------------


def test_name_resolved_over_dns_and_fetched_by_name(server, dns_env):
    dns_srv, resolver = dns_env({"www.example.com": ["127.0.0.1"]})
    conn = make_connector(server.port, resolver=resolver, allowed_domains=["*.example.com"])
    r = call(conn, f"http://www.example.com:{server.port}/echo")
    assert r["status"] == 200
    names = {k.lower(): v for k, v in json.loads(r["body"])["headers"]}
    assert names["host"] == f"www.example.com:{server.port}"
    assert ("www.example.com", "A") in dns_srv.queries
    assert conn.last_backend.connects[0].address == "127.0.0.1"


def test_silent_dns_server_ends_in_timeout_inside_the_deadline(dns_env):
    dns_srv, resolver = dns_env(silent=frozenset({"slow.example.com"}))
    conn = make_connector(None, resolver=resolver, allowed_domains=["*.example.com"])
    started = time.monotonic()
    err = failure(conn, "http://slow.example.com/", CallLimits(timeout_ms=1500, max_bytes=1 << 20))
    # The worker's own answer (it would otherwise be killed by the supervisor's deadline).
    assert err.code == "TIMEOUT" and "DNS" in err.reason, err.reason
    assert dns_srv.queries and dns_srv.queries[0] == ("slow.example.com", "A")
    assert time.monotonic() - started < 30  # bounded wait, not a timing assertion


def test_nxdomain_is_not_found(dns_env):
    _, resolver = dns_env({})
    conn = make_connector(None, resolver=resolver, allowed_domains=["*.example.com"])
    assert failure(conn, "http://nx.example.com/").code == "NOT_FOUND"


def test_internal_answer_refused_and_the_agent_is_not_told_the_address(dns_env):
    dns_srv, resolver = dns_env({"intra.example.com": ["10.1.2.3"]})
    conn = make_connector(None, resolver=resolver, allowed_domains=["*.example.com"], allow_internal_cidrs=[])
    err = failure(conn, "http://intra.example.com/")
    assert err.code == "SECURITY_ERROR" and "private" in err.reason
    assert "10.1.2.3" not in err.reason and "10.0.0.0" not in err.reason
    assert "10.1.2.3" in err.log_detail
    assert conn.last_backend.connects[0].address is None


@pytest.mark.parametrize("answer", ["::ffff:169.254.169.254", "::ffff:a9fe:a9fe", "64:ff9b::a9fe:a9fe",
                                    "::ffff:10.0.0.5", "2002:a00:5::1", "::ffff:100.100.100.200"])
def test_aaaa_carrying_internal_ipv4_refused_with_ipv6_all_open(dns_env, answer):
    _, resolver = dns_env({"six.example.com": [answer]})
    conn = make_connector(None, resolver=resolver, allowed_domains=["*.example.com"], allow_internal_cidrs=["::/0"])
    err = failure(conn, "http://six.example.com/")
    assert err.code == "SECURITY_ERROR", err.reason
    assert answer not in err.reason


def test_hosts_file_wins_over_dns(server, dns_env):
    dns_srv, resolver = dns_env({"pinned.example.com": ["10.0.0.9"]},
                                hosts="# an override, as --add-host writes it\n127.0.0.1\tPinned.Example.COM.  alias\n")
    conn = make_connector(server.port, resolver=resolver, allowed_domains=["*.example.com"])
    r = call(conn, f"http://pinned.example.com:{server.port}/echo")
    assert r["status"] == 200
    assert dns_srv.queries == []


def test_hosts_file_address_checked_like_any_other(dns_env):
    dns_srv, resolver = dns_env({}, hosts="10.0.0.5 sink.example.com\n::ffff:169.254.169.254 meta.example.com\n")
    conn = make_connector(None, resolver=resolver, allowed_domains=["*.example.com"],
                          allow_internal_cidrs=["::/0"])
    for name, rule in (("sink.example.com", "private"), ("meta.example.com", "metadata")):
        err = failure(conn, f"http://{name}/")
        assert err.code == "SECURITY_ERROR" and rule in err.reason, err.reason
    assert dns_srv.queries == []


# --- the SSRF corpus: refused without DNS or connection -----------------------------------

CASES = load_corpus("ssrf_block.txt")
ALLOWLIST_ONLY = {"https://example.com.evil.net/"}  # a public name: refused by the allowlist only
SETTINGS = {
    "listed": dict(allowed_domains=["example.com", "*.example.com"], allow_internal_cidrs=[]),
    "star": dict(allowed_domains=["*"], allow_internal_cidrs=[]),
    "star+ipv6-open": dict(allowed_domains=["*"], allow_internal_cidrs=["::/0"]),
}


def opened_native_ipv6(url: str) -> bool:
    """A bracketed IPv6 literal that "::/0" legitimately opens: native (no IPv4 inside, judged
    here with the standard library, not the guard under test), neither loopback, multicast nor
    metadata. The operator asked for those; in this namespace a connection to one cannot leave."""
    host = url.partition("//")[2].split("/", 1)[0]
    if not host.startswith("[") or "]" not in host:
        return False
    try:
        addr = ipaddress.IPv6Address(host[1:host.index("]")])
    except ValueError:
        return False
    carries_v4 = (addr.ipv4_mapped or addr.sixtofour or addr.teredo or int(addr) >> 32 == 0
                  or addr in ipaddress.IPv6Network("64:ff9b::/95") or addr in ipaddress.IPv6Network("64:ff9b:1::/48")
                  or addr in ipaddress.IPv6Network("::ffff:0:0:0/96"))
    metadata = addr in (ipaddress.IPv6Address("fd00:ec2::254"), ipaddress.IPv6Address("fd20:ce::254"))
    return not (carries_v4 or addr.is_loopback or addr.is_multicast or metadata)


@pytest.mark.parametrize("name", sorted(SETTINGS))
def test_corpus_refused_without_dns_or_connection(dns_env, name):
    dns_srv, resolver = dns_env({"example.com.evil.net": ["10.9.9.9"]})
    conn = make_connector(None, resolver=resolver, **SETTINGS[name])
    assert len(CASES) >= 100
    for url in CASES:
        asked = len(dns_srv.queries)
        if name == "star+ipv6-open" and opened_native_ipv6(url):
            err = failure(conn, url)  # opened, so tried: the namespace has no route for it
            assert err.code in ("SECURITY_ERROR", "UPSTREAM_ERROR"), (url, err.reason)
            assert dns_srv.queries[asked:] == []
            continue
        err = failure(conn, url)
        assert err.code == "SECURITY_ERROR", (url, err.code, err.reason)
        assert conn.last_backend is None or all(c.address is None for c in conn.last_backend.connects), url
        if name != "listed" and url in ALLOWLIST_ONLY:
            # A public name under "*": refused once it resolved to 10.9.9.9, never connected.
            assert dns_srv.queries[asked:] and "private" in err.reason, (url, err.reason)
            continue
        assert dns_srv.queries[asked:] == [], (url, dns_srv.queries[asked:])


INTERNAL_V4 = ["169.254.169.254", "169.254.170.2", "100.100.100.200", "10.0.0.5", "172.16.0.1", "192.168.1.1",
               "127.0.0.1", "100.64.0.1", "0.0.0.0", "169.254.1.1", "224.0.0.1", "198.18.0.1"]


def _forms(v4: str) -> list[str]:
    n = int(IPv4Address(v4))
    hi, lo = n >> 16, n & 0xFFFF
    return [f"::ffff:{v4}", f"::ffff:{hi:x}:{lo:x}", f"0:0:0:0:0:ffff:{hi:04x}:{lo:04x}", f"::ffff:0:{v4}",
            f"64:ff9b::{v4}", f"64:ff9b::{hi:x}:{lo:x}", f"64:ff9b:1::{hi:x}:{lo:x}", f"2002:{hi:x}:{lo:x}::1",
            f"::{v4}", f"::FFFF:{hi:X}:{lo:X}"]


def test_every_mapped_form_of_internal_ipv4_refused_with_ipv6_all_open(dns_env):
    dns_srv, resolver = dns_env({})
    conn = make_connector(None, resolver=resolver, allowed_domains=["*"], allow_internal_cidrs=["::/0"])
    for v4 in INTERNAL_V4:
        for form in _forms(v4):
            for url in (f"http://[{form}]/", f"https://[{form}]:443/latest/meta-data/"):
                err = failure(conn, url)
                assert err.code == "SECURITY_ERROR", (url, err.reason)
                if v4 in ("169.254.169.254", "169.254.170.2", "100.100.100.200"):
                    assert "metadata" in err.reason, (url, err.reason)
    assert dns_srv.queries == []


# --- the real gateway: sandboxed workers resolving through /etc/resolv.conf and /etc/hosts --


@pytest.fixture
def system_dns(tmp_path):
    """A DNS server on 127.0.0.1:53 named by /etc/resolv.conf, and an /etc/hosts of the test's,
    both bind-mounted in this namespace's own mount table (the host's files are untouched)."""
    import subprocess

    srv = DnsServer({"www.example.com": ["127.0.0.1"], "pinned.example.com": ["10.0.0.9"],
                     "intra.example.com": ["10.1.2.3"]}, silent=frozenset({"slow.example.com"}), port=53)
    files = {"/etc/resolv.conf": "nameserver 127.0.0.1\noptions timeout:1\n",
             "/etc/hosts": "127.0.0.1 localhost\n127.0.0.1 pinned.example.com\n10.0.0.5 sink.example.com\n"}
    mounted = []
    try:
        for target, text in files.items():
            src = tmp_path / target.rsplit("/", 1)[1]
            src.write_text(text)
            src.chmod(0o644)
            run = subprocess.run(["mount", "--bind", str(src), target], capture_output=True, text=True)
            assert run.returncode == 0, f"this test needs its own mount namespace: {run.stderr}"
            mounted.append(target)
        yield srv
    finally:
        for target in mounted:
            subprocess.run(["umount", target], capture_output=True)
        srv.close()


def _real_root() -> bool:
    with open("/proc/self/uid_map") as f:
        return f.read().split()[:3] == ["0", "0", "4294967295"]


def test_sandboxed_worker_resolves_in_the_deadline_and_honours_hosts(tmp_path, server, system_dns):
    from tests.support.gateway_process import audit_lines, fs_config, raw_gateway

    extra = {} if _real_root() else {"sandbox": {"layers": {"user": "off"}}}  # user-namespace root: no uid to drop to
    config = fs_config(tmp_path, policy={"allow_tools": ["web.fetch"],
                                         "per_tool": {"web.fetch": {"timeout_ms": 3000}}},
                       connectors={"http_fetch": {"enabled": True, "allowed_domains": ["*.example.com"],
                                                  "allow_internal_cidrs": ["127.0.0.1/32"],
                                                  "allowed_ports": [80, 443, server.port]}}, **extra)
    with raw_gateway(config) as gw:
        ok = gw.call("web.fetch", {"url": f"http://www.example.com:{server.port}/echo"})
        assert not ok["isError"], ok
        pinned = gw.call("web.fetch", {"url": f"http://pinned.example.com:{server.port}/echo"})
        assert not pinned["isError"], pinned  # /etc/hosts says 127.0.0.1; DNS would say 10.0.0.9
        sink = gw.call("web.fetch", {"url": "http://sink.example.com/"})
        intra = gw.call("web.fetch", {"url": "http://intra.example.com/"})
        slow = gw.call("web.fetch", {"url": "http://slow.example.com/"}, timeout=30)
        after = gw.call("web.fetch", {"url": f"http://www.example.com:{server.port}/echo"})
        gw.proc.stdin.close()  # end of input: the gateway finishes and exits, then its log is read
        gw.proc.wait(20)
        stderr = gw.stderr_tail()
    for refused in (sink, intra):
        text = refused["content"][0]["text"]
        assert refused["isError"] and text.startswith("SECURITY_ERROR") and "private" in text, text
        assert "10.0.0.5" not in text and "10.1.2.3" not in text, text
    # The worker answered TIMEOUT itself, inside the deadline (not killed by the supervisor).
    slow_text = slow["content"][0]["text"]
    assert slow["isError"] and slow_text.startswith("TIMEOUT") and "DNS" in slow_text, (slow_text, stderr[-3000:])
    assert not after["isError"], after
    assert ("pinned.example.com", "A") not in system_dns.queries
    assert ("sink.example.com", "A") not in system_dns.queries
    assert "10.1.2.3" in stderr  # the operator's log has the address
    assert len(audit_lines(tmp_path)) == 6


@pytest.mark.parametrize("name", sorted(SETTINGS))
def test_corpus_through_the_real_gateway(tmp_path, system_dns, name):
    from tests.support.gateway_process import audit_lines, fs_config, raw_gateway

    extra = {} if _real_root() else {"sandbox": {"layers": {"user": "off"}}}
    config = fs_config(tmp_path, policy={"allow_tools": ["web.fetch"]},
                       connectors={"http_fetch": {"enabled": True, **SETTINGS[name]}}, **extra)
    system_dns.records["example.com.evil.net"] = ["10.9.9.9"]
    with raw_gateway(config) as gw:
        for url in CASES:
            asked = len(system_dns.queries)
            result = gw.call("web.fetch", {"url": url})
            text = result["content"][0]["text"]
            assert result["isError"], url
            if name == "star+ipv6-open" and opened_native_ipv6(url):
                assert text.startswith(("SECURITY_ERROR", "UPSTREAM_ERROR")), (url, text)
            else:
                assert text.startswith("SECURITY_ERROR"), (url, text)
            if not (name != "listed" and url in ALLOWLIST_ONLY):
                assert system_dns.queries[asked:] == [], (url, system_dns.queries[asked:])
    lines = audit_lines(tmp_path)
    assert len(lines) == len(CASES)
    assert all(x["decision"] == "deny" for x in lines if x["error_code"] == "SECURITY_ERROR")
