"""Live fan-out of captions per room to any number of subscribers.

Each subscriber has a bounded queue. A subscriber given ``alive`` (whether its reader's
connection is still open) is checked every ``WATCH_SECONDS`` by one watcher task per
hub and ended as ``gone`` once its reader left, so an idle stream is let go at once
rather than at the next caption it would fail to write.

One that falls ``maxsize`` captions behind is dropped: it still gets what is queued,
then ``next()`` returns None with a reason the stream sends as its final message,
and the reader resumes from its last id. Nobody ever waits for a slow reader.

    sub = hub.subscribe("keynote", partials=False)
    while (caption := await sub.next()) is not None:
        ...
    sub.reason  # 'too slow: …' or 'server shutting down'
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

from orchestrator.captions.model import Item

SLOW = "too slow: more than {n} captions behind; reconnect with Last-Event-ID to resume"
SHUTDOWN = "server shutting down; reconnect with Last-Event-ID to resume"
GONE = "the reader closed the connection"
WATCH_SECONDS = 1.0


class Subscriber:
    def __init__(
        self,
        hub: Hub,
        room: str,
        partials: bool,
        maxsize: int,
        alive: Callable[[], bool] | None = None,
    ) -> None:
        self.hub = hub
        self.room = room
        self.partials = partials
        self.alive = alive
        self.queue: asyncio.Queue[Item | None] = asyncio.Queue(maxsize)
        self.reason = ""

    def offer(self, caption: Item) -> None:
        if self.reason:
            return
        try:
            self.queue.put_nowait(caption)
        except asyncio.QueueFull:
            self.end(SLOW.format(n=self.queue.maxsize))

    def end(self, reason: str) -> None:
        if not self.reason:
            self.reason = reason
            self.hub.unsubscribe(self)
            # When full, next() sees the reason once the queue is drained.
            with contextlib.suppress(asyncio.QueueFull):
                self.queue.put_nowait(None)

    async def next(self) -> Item | None:
        """The next caption or correction; None when the subscription has ended."""
        if self.reason and self.queue.empty():
            return None
        return await self.queue.get()

    @property
    def gone(self) -> bool:
        """The reader left: nothing more can be written to it."""
        return self.reason == GONE

    @property
    def shutdown(self) -> bool:
        return self.reason == SHUTDOWN

    def close(self) -> None:
        self.hub.unsubscribe(self)


class Hub:
    def __init__(self, maxsize: int) -> None:
        self.maxsize = maxsize
        self._rooms: dict[str, set[Subscriber]] = {}
        self._watcher: asyncio.Task[None] | None = None

    def subscribe(
        self, room: str, partials: bool = False, alive: Callable[[], bool] | None = None
    ) -> Subscriber:
        sub = Subscriber(self, room, partials, self.maxsize, alive)
        self._rooms.setdefault(room, set()).add(sub)
        if alive is not None and (self._watcher is None or self._watcher.done()):
            self._watcher = asyncio.get_running_loop().create_task(self._watch())
        return sub

    async def _watch(self) -> None:
        """End the subscribers whose reader left; stops when none is watched."""
        while True:
            await asyncio.sleep(WATCH_SECONDS)
            watched = [s for subs in self._rooms.values() for s in subs if s.alive is not None]
            if not watched:
                return
            for sub in watched:
                if sub.alive is not None and not sub.alive():
                    sub.end(GONE)

    def unsubscribe(self, sub: Subscriber) -> None:
        subs = self._rooms.get(sub.room)
        if subs is not None:
            subs.discard(sub)
            if not subs:
                del self._rooms[sub.room]

    def publish(self, caption: Item) -> None:
        for sub in tuple(self._rooms.get(caption.room, ())):
            if caption.is_final or sub.partials:
                sub.offer(caption)

    def subscribers(self, room: str) -> int:
        return len(self._rooms.get(room, ()))

    def close_all(self) -> None:
        for subs in tuple(self._rooms.values()):
            for sub in tuple(subs):
                sub.end(SHUTDOWN)
        if self._watcher is not None:
            self._watcher.cancel()
