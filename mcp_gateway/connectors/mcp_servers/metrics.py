"""Prometheus metrics of the upstream servers, read from their backends at scrape time."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily


def metric_families(backends: Mapping[str, Any]) -> Iterable[Any]:
    """The families of every upstream backend (UpstreamBackend, by instance name)."""
    up = GaugeMetricFamily("mcp_gateway_upstream_up", "1 while the upstream server is initialized and serving",
                           labels=["instance"])
    restarts = CounterMetricFamily("mcp_gateway_upstream_restarts", "Upstream servers started again (after a "
                                   "failed start, initialize or listing, a crash, garbage or a timeout)",
                                   labels=["instance"])
    timeouts = CounterMetricFamily("mcp_gateway_upstream_timeouts", "Calls past their timeout (the server was "
                                   "killed)", labels=["instance"])
    crashes = CounterMetricFamily("mcp_gateway_upstream_crashes", "Upstream sessions that ended by themselves "
                                  "(exit, crash, protocol break)", labels=["instance"])
    tools = GaugeMetricFamily("mcp_gateway_upstream_tools", "Tools of the upstream server, offered or withheld "
                              "(unusable, or not matching their pins)", labels=["instance", "state"])
    changes = CounterMetricFamily("mcp_gateway_upstream_tool_changes", "Tool definitions seen to differ from "
                                  "their approval (pin_tools): a security event", labels=["instance"])
    for name, backend in sorted(backends.items()):
        s = backend.stats
        up.add_metric([name], 1 if backend.state == "ready" else 0)
        restarts.add_metric([name], s.restarts)
        timeouts.add_metric([name], s.timeouts)
        crashes.add_metric([name], s.crashes)
        tools.add_metric([name, "offered"], s.tools)
        tools.add_metric([name, "withheld"], len(s.withheld))
        changes.add_metric([name], backend.pins.changes if backend.pins is not None else 0)
    yield from (up, restarts, timeouts, crashes, tools, changes)
