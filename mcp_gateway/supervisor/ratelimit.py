"""Token buckets: one per actor and one global, refilled continuously."""

from __future__ import annotations

import time
from dataclasses import dataclass

from mcp_gateway.config import RateLimit, RateLimitSettings


@dataclass
class TokenBucket:
    rate_per_s: float
    burst: int
    tokens: float
    stamp: float

    @classmethod
    def full(cls, limit: RateLimit) -> TokenBucket:
        return cls(limit.rate_per_s, limit.burst, float(limit.burst), time.monotonic())

    def take(self, now: float) -> bool:
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate_per_s)
        self.stamp = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


class RateLimiter:
    # Idle actor buckets are refilled anyway; cap how many we keep (tokens come from config,
    # so the number of actors is bounded by the auth table, but stay safe).
    MAX_ACTORS = 100_000

    def __init__(self, settings: RateLimitSettings) -> None:
        self.settings = settings
        self._global = TokenBucket.full(settings.global_) if settings.global_ else None
        self._actors: dict[str, TokenBucket] = {}
        self.denials = 0

    def check(self, actor: str) -> str | None:
        """None when the call may proceed, else the reason it is over the rate."""
        per_actor = self.settings.per_actor
        if per_actor is None and self._global is None:
            return None
        now = time.monotonic()
        if per_actor is not None:
            bucket = self._actors.get(actor)
            if bucket is None:
                if len(self._actors) >= self.MAX_ACTORS:
                    self._actors.clear()
                bucket = self._actors[actor] = TokenBucket.full(per_actor)
            if not bucket.take(now):
                self.denials += 1
                return (f"actor {actor} is over its rate of {per_actor.rate_per_s:g} calls/s "
                        f"(burst {per_actor.burst}); retry later")
        if self._global is not None and not self._global.take(now):
            self.denials += 1
            return (f"the gateway is over its global rate of {self._global.rate_per_s:g} calls/s "
                    f"(burst {self._global.burst}); retry later")
        return None
