"""Every size cap of the supervisor <-> zygote <-> worker protocol, in one place.

Both ends read their caps from here, so a frame one side may send is never over the other's
cap, and the supervisor never allocates more than a cap for what a worker sends.
"""

from __future__ import annotations

# The frame header's 4-byte length field: no frame can be larger.
MAX_FRAME = 2**31 - 1
# A request carries validated arguments of bounded size; 8 MiB leaves room for the largest.
REQUEST_CAP = 8 * 1024 * 1024
# A worker's first frame (WorkerReady: pid and sandbox layer statuses, or WorkerAbort's reason).
HELLO_CAP = 64 * 1024
# Room for the envelope and JSON structure around a result of max_bytes.
REPLY_OVERHEAD = 64 * 1024
# One zygote control packet (reasons are cut to fit, see ipc.control.encode_reason).
CONTROL_CAP = 8192
# A Spawn request as the zygote reads it (the message itself is a few bytes; its fd travels aside).
SPAWN_CAP = 256


def reply_cap(max_bytes: int) -> int:
    """Largest reply frame the supervisor accepts for a call capped at max_bytes.

    Text results travel once as UTF-8; base64 and JSON escaping can grow a result of
    max_bytes raw bytes to at most about twice that.
    """
    return 2 * max_bytes + REPLY_OVERHEAD
