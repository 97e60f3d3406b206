"""Stateful Streamable HTTP sessions: a cap overall and a quota per actor.

The SDK's session manager knows only a global cap, so one token could open every session
there is and lock all other actors out until theirs expire. `SessionBook` decides admission
per actor *before* the SDK sees the opening request, synchronously (no await between the
check and the reservation, so concurrent opening requests cannot overshoot); the SDK's
manager reports which session each reservation became and when sessions end (client DELETE,
idle timeout, a failed opening request), through the two hooks of `GatewaySessionManager`.

Each open session also carries what the hot route (http_hot.py) needs: the SDK's transport (a
hot request holds the session open against its idle timeout the way the SDK's own requests
do) and its `SessionState`, attached by the server middleware once the SDK accepted
`initialize`.
"""

from __future__ import annotations

import contextvars
import math
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import trio
from mcp.server.streamable_http import StreamableHTTPServerTransport
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager

from mcp_gateway.config import HttpSettings
from mcp_gateway.supervisor.fastpath import SessionState


@dataclass
class Reservation:
    """A place held for one opening request until the SDK has admitted (or refused) it."""

    actor: str
    session_id: str | None = None
    released: bool = False


@dataclass
class OpenSession:
    actor: str
    transport: StreamableHTTPServerTransport | None
    state: SessionState = field(default_factory=SessionState)

    @property
    def serving(self) -> bool:
        """False once the SDK ends the session (DELETE, idle timeout): leave its requests to the SDK."""
        t = self.transport
        return t is not None and not t.is_terminated and not (t.idle_scope is not None and t.idle_scope.cancel_called)

    @contextmanager
    def request_in_flight(self) -> Iterator[None]:
        """Hold the session open while a hot request runs, exactly as the SDK's own
        `StreamableHTTPServerTransport.handle_request` does (mcp is pinned; the same counter and
        countdown, so hot and SDK requests of one session count together)."""
        t = self.transport
        timeout = getattr(t, "_idle_timeout", None)
        if t is None or t.idle_scope is None or timeout is None:
            yield
            return
        t._requests_in_flight += 1
        t.idle_scope.deadline = math.inf
        try:
            yield
        finally:
            t._requests_in_flight -= 1
            if not t._requests_in_flight:
                t.idle_scope.deadline = trio.current_time() + timeout


@dataclass(frozen=True)
class SessionRefused:
    """Why a session may not be opened now: `per_actor` (the actor's quota) or `max_sessions`."""

    kind: str
    reason: str


@dataclass
class SessionBook:
    max_sessions: int
    per_actor: int
    by_session: dict[str, OpenSession] = field(default_factory=dict)
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

    def admitted(self, reservation: Reservation, session_id: str,
                 transport: StreamableHTTPServerTransport | None = None) -> None:
        """The SDK registered `session_id` for this reservation: it now counts as open."""
        self._release(reservation)
        reservation.session_id = session_id
        self.by_session[session_id] = OpenSession(reservation.actor, transport)
        self.open_per_actor[reservation.actor] += 1

    def session(self, session_id: str | None, actor: str) -> OpenSession | None:
        """The open session `session_id` if `actor` opened it (else None: the SDK answers 404)."""
        found = self.by_session.get(session_id) if session_id is not None else None
        return found if found is not None and found.actor == actor else None

    def finished(self, reservation: Reservation) -> None:
        """The opening request is over (admitted or not): drop what it still holds."""
        self._release(reservation)

    def closed(self, session_id: str) -> None:
        found = self.by_session.pop(session_id, None)
        if found is not None:
            self.open_per_actor[found.actor] -= 1
            if self.open_per_actor[found.actor] <= 0:
                del self.open_per_actor[found.actor]

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
            self.book.admitted(reservation, transport.mcp_session_id, transport)
        return transport

    async def _discard_session(self, session_id: str, transport: StreamableHTTPServerTransport) -> None:
        self.book.closed(session_id)
        await super()._discard_session(session_id, transport)
