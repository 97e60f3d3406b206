"""Stateful Streamable HTTP sessions: a cap overall and a quota per actor.

The SDK's session manager knows only a global cap, so one token could open every session
there is and lock all other actors out until theirs expire. `SessionBook` decides admission
per actor *before* the SDK sees the opening request, synchronously (no await between the
check and the reservation, so concurrent opening requests cannot overshoot); the SDK's
manager reports which session each reservation became and when sessions end (client DELETE,
idle timeout, a failed opening request), through the two hooks of `GatewaySessionManager`.
"""

from __future__ import annotations

import contextvars
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from mcp.server.streamable_http import StreamableHTTPServerTransport
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager

from mcp_gateway.config import HttpSettings


@dataclass
class Reservation:
    """A place held for one opening request until the SDK has admitted (or refused) it."""

    actor: str
    session_id: str | None = None
    released: bool = False


@dataclass(frozen=True)
class SessionRefused:
    """Why a session may not be opened now: `per_actor` (the actor's quota) or `max_sessions`."""

    kind: str
    reason: str


@dataclass
class SessionBook:
    max_sessions: int
    per_actor: int
    by_session: dict[str, str] = field(default_factory=dict)  # session id -> actor
    open_per_actor: Counter[str] = field(default_factory=Counter)
    pending_per_actor: Counter[str] = field(default_factory=Counter)
    refused: Counter[str] = field(default_factory=Counter)  # reason -> count (metrics)

    @classmethod
    def from_settings(cls, s: HttpSettings) -> SessionBook:
        return cls(s.max_sessions, min(s.max_sessions_per_actor, s.max_sessions))

    @property
    def open_count(self) -> int:
        return len(self.by_session)

    def reserve(self, actor: str) -> Reservation | SessionRefused:
        """A reservation, or why the actor may not open another session now."""
        mine = self.open_per_actor[actor] + self.pending_per_actor[actor]
        if mine >= self.per_actor:
            return self._refuse("per_actor", f"actor {actor} already has {mine} open session(s), its quota "
                                f"(server.http.max_sessions_per_actor = {self.per_actor}); close one "
                                "(HTTP DELETE) or wait for idle ones to expire")
        if self.open_count + sum(self.pending_per_actor.values()) >= self.max_sessions:
            return self._refuse("max_sessions", f"the gateway has {self.max_sessions} open sessions "
                                "(server.http.max_sessions); retry later")
        self.pending_per_actor[actor] += 1
        return Reservation(actor)

    def _refuse(self, kind: str, reason: str) -> SessionRefused:
        self.refused[kind] += 1
        return SessionRefused(kind, reason)

    def admitted(self, reservation: Reservation, session_id: str) -> None:
        """The SDK registered `session_id` for this reservation: it now counts as open."""
        self._release(reservation)
        reservation.session_id = session_id
        self.by_session[session_id] = reservation.actor
        self.open_per_actor[reservation.actor] += 1

    def finished(self, reservation: Reservation) -> None:
        """The opening request is over (admitted or not): drop what it still holds."""
        self._release(reservation)

    def closed(self, session_id: str) -> None:
        actor = self.by_session.pop(session_id, None)
        if actor is not None:
            self.open_per_actor[actor] -= 1
            if self.open_per_actor[actor] <= 0:
                del self.open_per_actor[actor]

    def _release(self, reservation: Reservation) -> None:
        if not reservation.released:
            reservation.released = True
            self.pending_per_actor[reservation.actor] -= 1
            if self.pending_per_actor[reservation.actor] <= 0:
                del self.pending_per_actor[reservation.actor]


# The reservation of the opening request this task is serving (set by the ASGI layer around
# its call into the SDK; the SDK admits the session in that same task).
current_reservation: contextvars.ContextVar[Reservation | None] = contextvars.ContextVar(
    "mcp_gateway_session_reservation", default=None)


class GatewaySessionManager(StreamableHTTPSessionManager):
    """The SDK's manager, reporting session starts and ends to a `SessionBook`.

    `_admit_session` and `_discard_session` are the SDK's own seams for exactly these two
    events (mcp is pinned; tests/e2e/http/test_http_sessions.py fails if they stop being called)."""

    def __init__(self, *args: Any, book: SessionBook, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.book = book

    def _admit_session(self, requestor: Any) -> StreamableHTTPServerTransport | None:
        reservation = current_reservation.get()
        if reservation is None or reservation.released:
            return None  # only an opening request the gateway admitted may create a session
        transport = super()._admit_session(requestor)
        if transport is not None and transport.mcp_session_id is not None:
            self.book.admitted(reservation, transport.mcp_session_id)
        return transport

    async def _discard_session(self, session_id: str, transport: StreamableHTTPServerTransport) -> None:
        self.book.closed(session_id)
        await super()._discard_session(session_id, transport)
