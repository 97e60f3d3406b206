"""Unit tests of the HTTP auth, Host and Origin rules (no process started)."""

import hashlib

import pytest

from mcp_gateway.config import HttpSettings
from mcp_gateway.supervisor import http_auth
from mcp_gateway.supervisor.http import startup_problem
from mcp_gateway.supervisor.http_auth import OriginPolicy, TokenTable, bearer_token, is_loopback_host


def _settings(**kw) -> HttpSettings:
    return HttpSettings.model_validate(kw)


def _tokens(*pairs):
    return {"auth": {"bearer_tokens": [{"actor": a, "sha256": hashlib.sha256(t.encode()).hexdigest()}
                                       for a, t in pairs]}}


def test_every_hash_is_compared_without_early_exit(monkeypatch):
    table = TokenTable(_settings(**_tokens(("a", "ta"), ("b", "tb"), ("c", "tc"))))
    calls = []
    real = http_auth.hmac.compare_digest

    def counting(x, y):
        calls.append(1)
        return real(x, y)

    monkeypatch.setattr(http_auth.hmac, "compare_digest", counting)
    assert table.actor_for("ta") == "a"
    assert len(calls) == 3
    calls.clear()
    assert table.actor_for("nope") is None
    assert len(calls) == 3
    assert table.actor_for("tc") == "c"
    assert table.actor_for("x" * 10_000) is None


def test_bearer_header_parsing():
    assert bearer_token("Bearer abc") == "abc"
    assert bearer_token("bearer   abc ") == "abc"
    assert bearer_token("Basic abc") is None
    assert bearer_token("Bearer") is None
    assert bearer_token("Bearer ") is None
    assert bearer_token(None) is None


@pytest.mark.parametrize("host,loop", [("127.0.0.1", True), ("127.8.9.1", True), ("::1", True),
                                       ("[::1]", True), ("localhost", True), ("0.0.0.0", False),
                                       ("::", False), ("10.0.0.1", False), ("example.com", False),
                                       ("", False)])
def test_loopback_detection(host, loop):
    assert is_loopback_host(host) is loop


def test_host_rules_loopback_bind():
    p = OriginPolicy(_settings(host="127.0.0.1", allowed_hosts=["gw.example:8443", "other.example:*"]))
    for ok in ("127.0.0.1:3000", "localhost:1", "[::1]:3000", "localhost", "gw.example:8443",
               "GW.EXAMPLE:8443", "other.example:1"):
        assert p.host_allowed(ok), ok
    for bad in (None, "", "evil.example", "gw.example:8444", "gw.example", "10.0.0.1:3000", "127.0.0.1:*",
                "localhost.evil.example", "a@127.0.0.1", "127.0.0.1/x", "[::1"):
        assert not p.host_allowed(bad), bad


def test_host_rules_wildcard_bind_accept_ip_literals_and_listed_names_only():
    p = OriginPolicy(_settings(host="0.0.0.0", allowed_hosts=["mcp.example.com"], **_tokens(("a", "t"))))
    for ok in ("10.1.2.3:3000", "[2001:db8::1]:3000", "mcp.example.com", "mcp.example.com.:443"):
        assert p.host_allowed(ok), ok
    for bad in ("localhost:3000", "attacker.example:3000", "mcp.example.com.evil.io"):
        assert not p.host_allowed(bad), bad


def test_origin_rules():
    p = OriginPolicy(_settings(host="127.0.0.1", allowed_origins=["https://app.example.com", "http://dev.example:*"]))
    for ok in (None, "https://app.example.com", "https://app.example.com/", "http://localhost:5173",
               "https://127.0.0.1", "http://[::1]:8080", "http://dev.example:1234"):
        assert p.origin_allowed(ok), ok
    for bad in ("null", "", "https://evil.example", "http://app.example.com", "https://app.example.com:444",
                "file://", "chrome-extension://abc", "http://localhost.evil.example", "http://dev.example"):
        assert not p.origin_allowed(bad), bad
    remote = OriginPolicy(_settings(host="10.0.0.5", **_tokens(("a", "t"))))
    assert not remote.origin_allowed("http://localhost:3000")  # loopback origins only when bound to loopback


def test_startup_refusals(config_factory):
    def cfg(http):
        return config_factory({"server": {"transport": "http", "http": http}})

    assert startup_problem(cfg({"host": "127.0.0.1"})) is None
    assert "bearer_tokens" in startup_problem(cfg({"host": "0.0.0.0"}))
    assert "bearer_tokens" in startup_problem(cfg({"host": "192.0.2.1"}))
    assert startup_problem(cfg({"host": "0.0.0.0", "allow_unauthenticated": True})) is None
    assert startup_problem(cfg({"host": "0.0.0.0", **_tokens(("a", "t"))})) is None
    assert "allowed_hosts" in startup_problem(cfg({"allowed_hosts": ["a b"]}))
    tls = {"certfile": "/nonexistent.pem", "keyfile": "/nonexistent.key"}
    assert "does not exist" in startup_problem(cfg(tls))
    assert startup_problem(cfg({"path": "/healthz"})) is not None
