"""Typed messages on a zygote's control socket (SOCK_SEQPACKET: one message per packet).

Supervisor -> zygote: `Spawn`, carrying (SCM_RIGHTS) the new worker's end of a socketpair.
Zygote -> supervisor: `ZygoteReady` or `ZygoteFailed` first, then `Spawned` / `SpawnRefused`
answering each `Spawn` in order, and at any time `WorkerExited` for every worker it reaps:
the zygote is the workers' parent, so only it can read their wait status (the supervisor
needs it to tell a sandbox kill, SIGSYS, from any other death).
"""

from __future__ import annotations

import msgspec

from mcp_gateway.ipc.caps import CONTROL_CAP


class Spawn(msgspec.Struct, tag="spawn", forbid_unknown_fields=True, frozen=True):
    pass


class ZygoteReady(msgspec.Struct, tag="ready", forbid_unknown_fields=True, frozen=True):
    pass


class ZygoteFailed(msgspec.Struct, tag="failed", forbid_unknown_fields=True, frozen=True):
    reason: str


class Spawned(msgspec.Struct, tag="spawned", forbid_unknown_fields=True, frozen=True):
    pid: int


class SpawnRefused(msgspec.Struct, tag="refused", forbid_unknown_fields=True, frozen=True):
    reason: str


class WorkerExited(msgspec.Struct, tag="exited", forbid_unknown_fields=True, frozen=True):
    """Exactly one of `exit_code` (it exited) and `signal` (a signal killed it) is set."""

    pid: int
    exit_code: int | None = None
    signal: int | None = None


ZygoteMessage = ZygoteReady | ZygoteFailed | Spawned | SpawnRefused | WorkerExited

control_encoder = msgspec.msgpack.Encoder()
to_zygote_decoder = msgspec.msgpack.Decoder(Spawn)
from_zygote_decoder = msgspec.msgpack.Decoder(ZygoteMessage)


def encode_reason(struct_type: type[ZygoteFailed] | type[SpawnRefused], reason: str) -> bytes:
    """A failure message that fits one control packet whatever the reason's length."""
    cut = reason.encode("utf-8", "replace")[: CONTROL_CAP // 2].decode("utf-8", "ignore")
    return control_encoder.encode(struct_type(cut))
