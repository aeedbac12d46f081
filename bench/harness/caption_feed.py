"""Captions pushed straight to an IRC relay, for tests and benchmarks of the relay alone.

Plenary's relay reads captions one way, the orchestrator's SSE stream
(``bots.irc.source.SseCaptionSource``), whose positions are the orchestrator's caption
numbers. A test or benchmark of the relay's own behaviour (pacing, flood budget,
servers, services) needs no orchestrator: it publishes ``CaptionEvent``s on a
``caption_bus()`` and hands the relay a ``BusCaptionSource``, which numbers each room's
events itself and keeps the last ``keep`` of each room.

    bus = caption_bus()
    async with BusCaptionSource(bus) as source:
        relay = Relay(settings.irc, source)
        bus.publish(CaptionEvent(...))
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import AsyncIterator
from types import TracebackType

from plenary.events import CaptionEvent
from plenary.fanout import FanOut, Overflow, Subscription


def caption_bus(maxsize: int = 1000) -> FanOut[CaptionEvent]:
    """A bus like the captioner's (bots.captioner.app.caption_bus): drop-oldest."""
    return FanOut(overflow=Overflow.DROP_OLDEST, maxsize=maxsize)


class BusCaptionSource:
    """A ``CaptionSource`` over a bus: numbers its events per room, keeps the last ``keep``."""

    def __init__(self, bus: FanOut[CaptionEvent], keep: int = 10_000) -> None:
        self._bus = bus
        self._keep = keep
        self._log: dict[str, deque[tuple[int, CaptionEvent]]] = {}
        self._counts: dict[str, int] = {}
        self._changed = asyncio.Condition()
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> BusCaptionSource:
        subscription = self._bus.subscribe(maxsize=self._keep)
        self._task = asyncio.create_task(self._pump(subscription))
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def last_position(self, room: str) -> int:
        return self._counts.get(room, 0)

    async def _pump(self, subscription: Subscription[CaptionEvent]) -> None:
        try:
            async for event in subscription:
                position = self._counts.get(event.room, 0) + 1
                self._counts[event.room] = position
                log = self._log.setdefault(event.room, deque(maxlen=self._keep))
                log.append((position, event))
                async with self._changed:
                    self._changed.notify_all()
        finally:
            subscription.close()

    async def events(self, room: str, after: int = 0) -> AsyncIterator[tuple[int, CaptionEvent]]:
        while True:
            pending = [item for item in self._log.get(room, ()) if item[0] > after]
            for position, event in pending:
                yield position, event
                after = position
            if not pending:
                async with self._changed:
                    while self.last_position(room) <= after:
                        await self._changed.wait()
