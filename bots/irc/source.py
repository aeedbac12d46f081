"""Where the relay reads caption events: one small interface, ``CaptionSource``.

Each room's events are numbered from 1; ``events(room, after=n)`` yields every event
numbered above ``n`` and then waits for more, so a consumer that restarts resumes
where it left off. ``BusCaptionSource`` serves the in-process ``CaptionBus`` (the
captioner in the same process) and keeps the last events of each room for resuming;
the orchestrator's HTTP/SSE stream will be a second implementation.

    async with BusCaptionSource(bus) as source:
        async for position, event in source.events("keynote", after=41):
            ...
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import AsyncIterator
from types import TracebackType
from typing import Protocol

from bots.captioner.bus import CaptionBus, Subscription
from bots.captioner.events import CaptionEvent


class CaptionSource(Protocol):
    def events(self, room: str, after: int = 0) -> AsyncIterator[tuple[int, CaptionEvent]]:
        """(position, event) for every event of ``room`` after ``after``, then live ones."""
        ...


class BusCaptionSource:
    """Numbers the bus's events per room and keeps the last ``keep`` of each room."""

    def __init__(self, bus: CaptionBus, keep: int = 10_000) -> None:
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

    async def _pump(self, subscription: Subscription) -> None:
        try:
            while True:
                event = await subscription.get()
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
