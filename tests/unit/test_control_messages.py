"""The zygote control channel's typed messages: strict both ways, and always one packet."""

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from mcp_gateway.ipc.caps import CONTROL_CAP
from mcp_gateway.ipc.control import (
    Spawn,
    Spawned,
    SpawnRefused,
    WorkerExited,
    ZygoteFailed,
    ZygoteReady,
    control_encoder,
    encode_reason,
    from_zygote_decoder,
    to_zygote_decoder,
)

messages = st.one_of(
    st.builds(ZygoteReady),
    st.builds(ZygoteFailed, st.text(max_size=200)),
    st.builds(Spawned, st.integers(1, 2**22)),
    st.builds(SpawnRefused, st.text(max_size=200)),
    st.builds(WorkerExited, st.integers(1, 2**22), st.none() | st.integers(0, 255), st.none() | st.integers(1, 64)),
)


@given(messages)
def test_every_zygote_message_round_trips(msg):
    assert from_zygote_decoder.decode(control_encoder.encode(msg)) == msg


@given(st.text(max_size=20_000) | st.text(alphabet="\U0001f512€é", min_size=1100, max_size=1500))
def test_a_failure_reason_of_any_length_fits_one_packet(reason):
    for kind in (ZygoteFailed, SpawnRefused):
        data = encode_reason(kind, reason)
        assert len(data) <= CONTROL_CAP
        assert reason.startswith(from_zygote_decoder.decode(data).reason)


@pytest.mark.parametrize("payload", [
    {"type": "exited", "pid": 1, "signal": 31, "extra": 1},  # unknown field
    {"type": "exited", "pid": "1"},  # wrong type
    {"type": "spawn"},  # a supervisor message, not the zygote's
    {"type": "reboot"},  # unknown tag
])
def test_the_supervisor_refuses_anything_else(payload):
    with pytest.raises(msgspec.DecodeError):
        from_zygote_decoder.decode(msgspec.msgpack.encode(payload))


def test_the_zygote_takes_only_spawn():
    assert to_zygote_decoder.decode(control_encoder.encode(Spawn())) == Spawn()
    with pytest.raises(msgspec.DecodeError):
        to_zygote_decoder.decode(control_encoder.encode(Spawned(5)))
