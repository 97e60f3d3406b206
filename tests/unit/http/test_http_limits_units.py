"""Unit and property tests of the HTTP limits: session book, framing, log throttle, capacity metric."""

import logging
from pathlib import Path

import yaml
from hypothesis import given
from hypothesis import strategies as st

from mcp_gateway.config import GatewayConfig
from mcp_gateway.ipc.errors import ErrorCode
from mcp_gateway.supervisor.gateway import Outcome
from mcp_gateway.supervisor.http_listener import ConnectionLimits, client_key, framing_refusal
from mcp_gateway.supervisor.http_sessions import Reservation, SessionBook, SessionRefused
from mcp_gateway.supervisor.log_throttle import LogThrottle
from mcp_gateway.supervisor.metrics import GatewayMetrics

REPO = Path(__file__).resolve().parents[3]

ACTORS = st.sampled_from(["a", "b", "c"])
OPS = st.lists(st.tuples(st.sampled_from(["reserve", "admit", "finish", "close"]), ACTORS), max_size=200)


@given(OPS, st.integers(1, 6), st.integers(1, 12))
def test_the_session_book_never_passes_a_quota(ops, per_actor, total):
    book = SessionBook(total, min(per_actor, total))
    held: list[Reservation] = []
    opened: list[str] = []
    for i, (op, actor) in enumerate(ops):
        if op == "reserve":
            r = book.reserve(actor)
            if isinstance(r, Reservation):
                held.append(r)
        elif op == "admit" and held:
            book.admitted(held.pop(0), f"s{i}")
            opened.append(f"s{i}")
        elif op == "finish" and held:
            book.finished(held.pop())
        elif op == "close" and opened:
            book.closed(opened.pop(0))
        for a in ("a", "b", "c"):
            assert book.open_per_actor[a] + book.pending_per_actor[a] <= book.per_actor
        assert book.open_count + sum(book.pending_per_actor.values()) <= total
        assert book.open_count == len(opened)


def test_one_actor_at_its_quota_leaves_room_for_another():
    book = SessionBook(max_sessions=10, per_actor=3)
    for i in range(3):
        r = book.reserve("flooder")
        assert isinstance(r, Reservation)
        book.admitted(r, f"f{i}")
    refused = book.reserve("flooder")
    assert isinstance(refused, SessionRefused) and refused.kind == "per_actor"
    assert "max_sessions_per_actor" in refused.reason
    assert isinstance(book.reserve("other"), Reservation)
    book.closed("f0")
    book.closed("f0")  # the SDK may report an end twice (DELETE, then the task's cleanup)
    assert isinstance(book.reserve("flooder"), Reservation)
    assert book.refused["per_actor"] == 1
    full = SessionBook(max_sessions=2, per_actor=2)
    full.reserve("a")
    full.reserve("b")
    assert isinstance(r := full.reserve("c"), SessionRefused) and r.kind == "max_sessions"


HEADER_NAMES = st.sampled_from([b"content-length", b"Content-Length", b"transfer-encoding",
                                b"Transfer-Encoding", b"host", b"expect"])


@given(st.lists(st.tuples(HEADER_NAMES, st.integers(0, 10**9)), max_size=6), st.integers(1024, 10**8))
def test_framing_refusal(headers, limit):
    raw = [(k, b"chunked" if k.lower() == b"transfer-encoding" else str(v).encode()) for k, v in headers]
    lengths = [int(v) for k, v in raw if k.lower() == b"content-length"]
    chunked = any(k.lower() == b"transfer-encoding" for k, _ in raw)
    got = framing_refusal(raw, limit)
    if lengths and chunked:
        assert got is not None and got[0] == 400
    elif lengths and lengths[0] > limit:
        assert got is not None and got[0] == 413
    else:
        assert got is None


def test_connection_limits_total_and_per_client():
    limits = ConnectionLimits(total=3, per_client=2)
    assert limits.admit("10.0.0.1") is None and limits.admit("10.0.0.1") is None
    assert "max_connections_per_client" in (limits.admit("10.0.0.1") or "")
    assert limits.admit("10.0.0.2") is None
    assert "max_connections" in (limits.admit("10.0.0.3") or "")
    limits.release("10.0.0.1")
    assert limits.admit("10.0.0.3") is None
    assert limits.open == 3 and dict(limits.refused) == {"per_client": 1, "max_connections": 1}


def test_the_per_client_cap_counts_an_ipv6_slash_64_as_one_client():
    assert client_key(("2001:db8:1:2::1", 1, 0, 0)) == client_key(("2001:db8:1:2:ffff::9", 2, 0, 0))
    assert client_key(("2001:db8:1:2::1", 1, 0, 0)) == "2001:db8:1:2::/64"
    assert client_key(("2001:db8:1:3::1", 1, 0, 0)) != client_key(("2001:db8:1:2::1", 1, 0, 0))
    assert client_key(("::ffff:10.0.0.1", 1, 0, 0)) == client_key(("10.0.0.1", 1)) == "10.0.0.1"
    assert client_key(("127.0.0.2", 5)) != client_key(("127.0.0.1", 5))
    assert client_key(("fe80::1%eth0", 1, 0, 2)) == "fe80::/64"


def test_the_log_throttle_passes_a_few_lines_per_call_site_and_counts_the_rest():
    records: list[logging.LogRecord] = []
    logger = logging.getLogger("mcp_gateway.test_throttle")
    logger.propagate = False
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[method-assign]
    logger.addHandler(handler)
    throttle = LogThrottle(burst=5, interval_s=3600)
    logger.addFilter(throttle)

    def bad_token(i: int) -> None:
        logger.warning(f"bad token {i}")  # noqa: G004  (an f-string: still one call site)

    try:
        for i in range(100):
            bad_token(i)
        logger.warning("another kind")
        assert len(records) == 6
        for window in throttle._windows.values():
            window[0] -= 3600  # the minute is over
        bad_token(100)
        assert "95 similar line(s) left out" in records[-1].getMessage()
    finally:
        logger.removeHandler(handler)
        logger.removeFilter(throttle)


def test_a_capacity_refusal_is_counted_as_allow_and_unavailable():
    metrics = GatewayMetrics()
    metrics.attach_catalogue(GatewayConfig().catalogue())
    metrics.observe(Outcome.failed("r1", "fs.readFile", ErrorCode.UNAVAILABLE, "full"), 0.001)
    metrics.observe(Outcome.failed("r2", "fs.readFile", ErrorCode.RATE_LIMITED, "rate"), 0.001)
    text = metrics.render().decode()
    assert 'mcp_gateway_calls_total{decision="allow",error_code="UNAVAILABLE",tool="fs.readFile"} 1.0' in text
    assert 'mcp_gateway_unavailable_total{tool="fs.readFile"} 1.0' in text
    assert "mcp_gateway_rate_limited_total 1.0" in text


def test_the_shipped_rules_keep_capacity_out_of_the_denial_alerts():
    rules = yaml.safe_load((REPO / "examples" / "prometheus-rules.yaml").read_text())
    alerts = {r["alert"]: r["expr"] for g in rules["groups"] for r in g["rules"]}
    assert "mcp_gateway_unavailable_total" in alerts["MCPGatewayAtCapacity"]
    for name in ("MCPGatewayHighDenialRate", "MCPGatewayHighDenialRatePerInstance"):
        assert 'decision="deny"' in alerts[name]
    assert "mcp_gateway_http_connections_refused_total" in alerts["MCPGatewayConnectionsRefused"]
    assert "mcp_gateway_http_sessions_refused_total" in alerts["MCPGatewaySessionsRefused"]
