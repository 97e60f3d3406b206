"""The worker runtime's one deadline policy: what a connector gets of the time the pool sent."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mcp_gateway.ipc.messages import CallRequest
from mcp_gateway.workers.connector import CallLimits
from mcp_gateway.workers.runtime import call_limits


def request(left_ms: int) -> CallRequest:
    return CallRequest("r", "fs.readFile", {"path": "a"}, left_ms, 1024)


@pytest.mark.parametrize(("left_ms", "budget_ms"), [
    (3000, 2700),     # 10 %
    (200, 150),       # at least 50 ms for the answer
    (60_000, 59_000),  # at most 1 s
    (10, 1),          # never nothing: the connector still gets to say TIMEOUT itself
])
def test_the_margin_is_ten_percent_between_50_ms_and_1_s(left_ms, budget_ms):
    limits = call_limits(request(left_ms), received=100.0)
    assert limits.timeout_ms == budget_ms
    assert limits.deadline == pytest.approx(100.0 + budget_ms / 1000)
    assert limits.max_bytes == 1024


@given(st.integers(1, 10**8), st.floats(0, 10**6))
def test_the_budget_always_ends_before_the_supervisors_deadline(left_ms, received):
    limits = call_limits(request(left_ms), received)
    assert limits.deadline is not None
    assert 0 < limits.deadline - received <= left_ms / 1000
    if left_ms >= 100:  # room for a margin: it is kept, so the answer can travel back in time
        assert received + left_ms / 1000 - limits.deadline >= 0.05 - 1e-9


def test_remaining_time_counts_down_to_the_deadline():
    assert CallLimits(5000, 1).remaining_s() == 5.0  # built by hand: no deadline, the whole timeout
    assert CallLimits(5000, 1, deadline=0.0).remaining_s() < 0  # long past
