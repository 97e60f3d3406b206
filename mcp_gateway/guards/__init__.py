"""Pure, side-effect-free checks of agent input (paths, URLs, addresses, SQL).

The supervisor runs them for a fast, well-explained denial; the workers run them again next
to their own enforcement (openat2, pinned connections, read-only transactions), which is
the guarantee.
"""


class GuardDenied(Exception):
    """Input refused by a connector guard; becomes SECURITY_ERROR with `reason`."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason
