"""Prometheus metrics for the gateway, in a registry of its own (never the global one).

Call metrics are fed by `Gateway`'s observer hook (one observation per audited call); pool
metrics are read from the pools at scrape time by a custom collector, so they are never stale
and cost nothing between scrapes. The `tool` label only takes catalogue names ("unknown"
otherwise), so a client cannot blow up the label cardinality with invented tool names. The
`connector` label of pool metrics is the instance name ("fs", "analytics"): each instance has
its own pool.
"""

from __future__ import annotations

from collections import Counter as Tally
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from mcp_gateway.connectors.base import Catalogue
from mcp_gateway.ipc.errors import ErrorCode
from mcp_gateway.supervisor.gateway import Outcome
from mcp_gateway.supervisor.pool import WorkerPool

__all__ = ["CONTENT_TYPE_LATEST", "GatewayMetrics", "HttpStats"]

DURATION_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


def tool_label(tool: str, catalogue: Catalogue | None) -> str:
    return tool if catalogue is not None and tool in catalogue else "unknown"


class _PoolCollector(Collector):
    def __init__(self, pools: Callable[[], Mapping[str, Any]]) -> None:
        self._pools = pools

    def collect(self) -> Iterable[Any]:
        restarts = CounterMetricFamily("mcp_gateway_worker_restarts", "Workers replaced (after a timeout, "
                                       "crash or exit), per connector instance", labels=["connector"])
        timeouts = CounterMetricFamily("mcp_gateway_worker_timeouts", "Calls that ran past their timeout "
                                       "(worker killed), per connector", labels=["connector"])
        crashes = CounterMetricFamily("mcp_gateway_worker_crashes", "Workers that died during a call, "
                                      "per connector", labels=["connector"])
        sandbox_kills = CounterMetricFamily("mcp_gateway_worker_sandbox_kills", "Workers killed by the sandbox "
                                            "(SIGSYS: a forbidden system call), per connector: a security event",
                                            labels=["connector"])
        recycled = CounterMetricFamily("mcp_gateway_worker_recycled", "Workers retired between calls, per "
                                       "connector and reason (max_calls, cpu_budget, broken_state)",
                                       labels=["connector", "reason"])
        zygote_restarts = CounterMetricFamily("mcp_gateway_zygote_restarts", "Zygotes started again after "
                                              "dying, per connector", labels=["connector"])
        queue = GaugeMetricFamily("mcp_gateway_queue_depth", "Calls waiting for a free worker",
                                  labels=["connector"])
        busy = GaugeMetricFamily("mcp_gateway_workers_busy", "Workers executing a call", labels=["connector"])
        live = GaugeMetricFamily("mcp_gateway_workers_live", "Live workers (started, greeted, not known dead)",
                                 labels=["connector"])
        restarting = GaugeMetricFamily("mcp_gateway_connector_restarting", "1 while the connector's zygote is "
                                       "being started again", labels=["connector"])
        for name, pool in sorted(self._pools().items()):
            if not isinstance(pool, WorkerPool):
                continue  # a kind's own backend: _OwnBackendCollector
            s = pool.stats
            restarts.add_metric([name], s.restarts)
            timeouts.add_metric([name], s.timeouts)
            crashes.add_metric([name], s.crashes)
            sandbox_kills.add_metric([name], s.sandbox_kills)
            for reason in ("max_calls", "cpu_budget", "broken_state"):
                recycled.add_metric([name, reason], s.recycled.get(reason, 0))
            zygote_restarts.add_metric([name], s.zygote_restarts)
            queue.add_metric([name], s.queued)
            busy.add_metric([name], s.busy)
            live.add_metric([name], pool.live_workers)
            restarting.add_metric([name], 1 if pool.restarting else 0)
        yield from (restarts, timeouts, crashes, sandbox_kills, recycled, zygote_restarts, queue, busy, live,
                    restarting)


@dataclass(frozen=True)
class HttpStats:
    """Where the HTTP transport keeps its live numbers (read at scrape time)."""

    sessions: Any  # http_sessions.SessionBook, or None when stateless
    connections: Any  # http_listener.ConnectionLimits
    framing_refused: Tally[str]  # refusals made before the application ran


class _HttpCollector(Collector):
    def __init__(self, stats: Callable[[], HttpStats | None]) -> None:
        self._stats = stats

    def collect(self) -> Iterable[Any]:
        st = self._stats()
        if st is None:
            return
        conns = GaugeMetricFamily("mcp_gateway_http_connections", "Open HTTP connections")
        conns.add_metric([], st.connections.open)
        refused = CounterMetricFamily("mcp_gateway_http_connections_refused", "Connections closed at "
                                      "accept: over a cap, or shed when descriptors ran out", labels=["reason"])
        for reason in ("max_connections", "per_client"):
            refused.add_metric([reason], st.connections.refused[reason])
        refused.add_metric(["descriptors"], st.connections.shed)
        framing = CounterMetricFamily("mcp_gateway_http_framing_rejected", "Requests refused from their "
                                      "headers alone (ambiguous framing, declared body too large)",
                                      labels=["reason"])
        for reason in ("framing", "body_too_large"):
            framing.add_metric([reason], st.framing_refused[reason])
        yield from (conns, refused, framing)
        if st.sessions is not None:
            sessions = GaugeMetricFamily("mcp_gateway_http_sessions", "Open stateful MCP sessions")
            sessions.add_metric([], st.sessions.open_count)
            s_refused = CounterMetricFamily("mcp_gateway_http_sessions_refused", "Requests that would have "
                                            "opened a session, refused", labels=["reason"])
            for reason in ("rate", "per_actor", "max_sessions"):
                s_refused.add_metric([reason], st.sessions.refused[reason])
            yield from (sessions, s_refused)


class _OwnBackendCollector(Collector):
    """The metrics of kinds' own backends (upstream MCP servers): each backend class gives the
    families of all its instances at once (`metric_families`)."""

    def __init__(self, pools: Callable[[], Mapping[str, Any]]) -> None:
        self._pools = pools

    def collect(self) -> Iterable[Any]:
        groups: dict[type, dict[str, Any]] = {}
        for name, backend in self._pools().items():
            if not isinstance(backend, WorkerPool):
                groups.setdefault(type(backend), {})[name] = backend
        for cls, backends in groups.items():
            yield from cls.metric_families(backends)


class GatewayMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.calls = Counter("mcp_gateway_calls", "Audited tools/call requests",
                             ["tool", "decision", "error_code"], registry=self.registry)
        self.duration = Histogram("mcp_gateway_call_duration_seconds", "Time from a call's arrival to its "
                                  "audit record", ["tool"], buckets=DURATION_BUCKETS, registry=self.registry)
        self.rate_limited = Counter("mcp_gateway_rate_limited", "Calls refused with RATE_LIMITED",
                                    registry=self.registry)
        self.unavailable = Counter("mcp_gateway_unavailable", "Calls refused with UNAVAILABLE (capacity, a "
                                   "restarting connector): not denials", ["tool"], registry=self.registry)
        self.http_rejected = Counter("mcp_gateway_http_rejected", "HTTP requests refused before any MCP "
                                     "handling", ["reason"], registry=self.registry)
        self._pools: Mapping[str, Any] = {}
        self._catalogue: Catalogue | None = None
        self._http: HttpStats | None = None
        self.registry.register(_PoolCollector(lambda: self._pools))
        self.registry.register(_OwnBackendCollector(lambda: self._pools))
        self.registry.register(_HttpCollector(lambda: self._http))

    def attach_pools(self, pools: Mapping[str, Any]) -> None:
        self._pools = pools

    def attach_catalogue(self, catalogue: Catalogue) -> None:
        """The tools whose names may be label values (others count as "unknown")."""
        self._catalogue = catalogue

    def attach_http(self, stats: HttpStats) -> None:
        self._http = stats

    def observe(self, outcome: Outcome, seconds: float) -> None:
        """The `Gateway` observer: called once per audited call."""
        code = outcome.error_code
        tool = tool_label(outcome.tool, self._catalogue)
        self.calls.labels(tool, outcome.decision, code or "none").inc()
        self.duration.labels(tool).observe(seconds)
        if code is ErrorCode.RATE_LIMITED:
            self.rate_limited.inc()
        elif code is ErrorCode.UNAVAILABLE:
            self.unavailable.labels(tool).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)
