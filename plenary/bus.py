"""In-process fan-out of caption events to any number of subscribers.

Listeners (the delivery to the orchestrator) are called at once, in order, and must
not wait. Each subscriber has its own bounded queue; a subscriber that falls behind loses
its oldest partials first and is told how many events it missed, so one slow
reader never blocks recognition or the other readers.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

from plenary.events import CaptionEvent


class Subscription:
    def __init__(self, bus: CaptionBus, maxsize: int) -> None:
        self._bus = bus
        self._queue: asyncio.Queue[CaptionEvent] = asyncio.Queue(maxsize)
        self.dropped = 0

    def offer(self, event: CaptionEvent) -> None:
        if self._queue.full():
            self._queue.get_nowait()
            self.dropped += 1
        self._queue.put_nowait(event)

    async def get(self) -> CaptionEvent:
        return await self._queue.get()

    def close(self) -> None:
        self._bus.unsubscribe(self)

    async def __aiter__(self) -> AsyncIterator[CaptionEvent]:
        while True:
            yield await self._queue.get()


class CaptionBus:
    def __init__(self) -> None:
        self._subscribers: set[Subscription] = set()
        self._listeners: list[Callable[[CaptionEvent], None]] = []
        self.published = 0

    def listen(self, listener: Callable[[CaptionEvent], None]) -> None:
        """Call ``listener`` with every event as it is published (it must not block)."""
        self._listeners.append(listener)

    def publish(self, event: CaptionEvent) -> None:
        self.published += 1
        for listener in self._listeners:
            listener(event)
        for sub in tuple(self._subscribers):
            sub.offer(event)

    def subscribe(self, maxsize: int = 1000) -> Subscription:
        sub = Subscription(self, maxsize)
        self._subscribers.add(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        self._subscribers.discard(sub)
