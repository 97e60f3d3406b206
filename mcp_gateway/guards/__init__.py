"""Pure, side-effect-free checks of agent input (paths, URLs, addresses, SQL).

The supervisor runs them for a fast, well-explained denial; the workers run them again next
to their own enforcement (openat2, pinned connections, read-only transactions), which is
the guarantee.
"""

from mcp_gateway.ipc.errors import ErrorCode, Refusal


class GuardDenied(Refusal):
    """Input refused by a connector guard: a SECURITY_ERROR whose reason names the rule broken.

    Its own type because guards are shared by the supervisor, the workers and config validation:
    a caller that gives a guard's refusal another meaning (config: a bad setting; web.fetch
    headers: VALIDATION_ERROR) catches exactly that."""

    def __init__(self, reason: str) -> None:
        super().__init__(ErrorCode.SECURITY_ERROR, reason)
