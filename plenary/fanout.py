"""In-process fan-out of items (caption events, stored captions) to any number of readers.

One ``FanOut`` per use, each with its overflow policy named where it is made, because
its readers differ in what they can do about a gap:

- ``Overflow.DROP_OLDEST``: a subscriber that falls ``maxsize`` items behind loses its
  oldest queued items (counted in ``dropped``) and goes on. For readers that cannot
  resume: the captioner's own bus (tests, benchmarks, an in-process relay).
- ``Overflow.DROP_SUBSCRIBER``: a subscriber that falls ``maxsize`` behind is ended
  (``Ending.SLOW``): it still gets what is queued, then ``next()`` returns None and
  ``reason`` says why. For readers that resume from a position of their own: the
  orchestrator's SSE and text streams (``Last-Event-ID``), which must never see a gap.

Either way nobody waits for a slow reader: ``publish`` never blocks.

Listeners (``listen``) are called at once with every item, in order, and must not wait
(the captioner's delivery to the orchestrator). Items go to the subscribers of their
topic (``topic(item)``, the room) and to subscribers of every topic (``topic=None``);
``want`` filters per subscriber (finals only). A subscriber given ``alive`` (whether
its reader's connection is still open) is checked every ``WATCH_SECONDS`` by one
watcher task per fan-out and ended as ``Ending.GONE`` once its reader left, so an idle
stream is let go at once rather than at the next item it would fail to write.

    live = FanOut[Item](maxsize=1000, overflow=Overflow.DROP_SUBSCRIBER, topic=room_of)
    sub = live.subscribe("keynote", want=is_final)
    while (item := await sub.next()) is not None:
        ...
    sub.reason  # 'too slow: …', 'shutting down', …
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Generic, TypeVar

T = TypeVar("T")

WATCH_SECONDS = 1.0


class Overflow(enum.Enum):
    DROP_OLDEST = "drop-oldest"
    DROP_SUBSCRIBER = "drop-subscriber"


class Ending(enum.Enum):
    SLOW = "slow"  # fell maxsize behind under DROP_SUBSCRIBER
    SHUTDOWN = "shutdown"  # close_all()
    GONE = "gone"  # its reader left (alive() said so)


REASONS: Mapping[Ending, str] = {
    Ending.SLOW: "too slow: more than {n} items behind",
    Ending.SHUTDOWN: "shutting down",
    Ending.GONE: "the reader closed the connection",
}


class Closed(Exception):
    """``get()`` on a subscription that has ended and has nothing queued."""


class Subscription(Generic[T]):
    def __init__(
        self,
        fanout: FanOut[T],
        topic: str | None,
        maxsize: int,
        want: Callable[[T], bool] | None,
        alive: Callable[[], bool] | None,
    ) -> None:
        self.fanout = fanout
        self.topic = topic
        self.want = want
        self.alive = alive
        self.queue: asyncio.Queue[T | None] = asyncio.Queue(maxsize)
        self.dropped = 0  # items lost to DROP_OLDEST
        self.ending: Ending | None = None
        self.reason = ""

    def offer(self, item: T) -> None:
        if self.ending is not None or (self.want is not None and not self.want(item)):
            return
        if self.queue.full():
            if self.fanout.overflow is Overflow.DROP_SUBSCRIBER:
                self.end(Ending.SLOW)
                return
            self.queue.get_nowait()
            self.dropped += 1
            self.fanout.dropped += 1
        self.queue.put_nowait(item)

    def end(self, ending: Ending) -> None:
        if self.ending is None:
            self.ending = ending
            self.reason = self.fanout.reasons[ending].format(n=self.queue.maxsize)
            self.fanout.unsubscribe(self)
            # When full, next() sees the ending once the queue is drained.
            with contextlib.suppress(asyncio.QueueFull):
                self.queue.put_nowait(None)

    async def next(self) -> T | None:
        """The next item; None when the subscription has ended and is drained."""
        if self.ending is not None and self.queue.empty():
            return None
        return await self.queue.get()

    async def get(self) -> T:
        """The next item; ``Closed`` once the subscription has ended and is drained."""
        item = await self.next()
        if item is None:
            raise Closed(self.reason)
        return item

    async def __aiter__(self) -> AsyncIterator[T]:
        while (item := await self.next()) is not None:
            yield item

    @property
    def gone(self) -> bool:
        """The reader left: nothing more can be written to it."""
        return self.ending is Ending.GONE

    @property
    def shutdown(self) -> bool:
        return self.ending is Ending.SHUTDOWN

    def close(self) -> None:
        self.fanout.unsubscribe(self)


class FanOut(Generic[T]):
    """Every published item to each listener and subscriber; see the module docstring.

    ``maxsize`` is each subscriber's queue (``subscribe`` may set its own); ``reasons``
    overrides the words ``Subscription.reason`` gets for each ``Ending`` (``{n}`` is the
    queue size). ``published``, ``dropped`` and ``subscribers()`` are for metrics.
    """

    def __init__(
        self,
        *,
        overflow: Overflow,
        maxsize: int = 1000,
        topic: Callable[[T], str] | None = None,
        reasons: Mapping[Ending, str] | None = None,
    ) -> None:
        self.overflow = overflow
        self.maxsize = maxsize
        self.reasons = {**REASONS, **(reasons or {})}
        self._topic = topic
        self._topics: dict[str | None, set[Subscription[T]]] = {}
        self._listeners: list[Callable[[T], None]] = []
        self._watcher: asyncio.Task[None] | None = None
        self.published = 0
        self.dropped = 0  # items any subscriber lost to DROP_OLDEST

    def listen(self, listener: Callable[[T], None]) -> None:
        """Call ``listener`` with every item as it is published (it must not block)."""
        self._listeners.append(listener)

    def publish(self, item: T) -> None:
        self.published += 1
        for listener in self._listeners:
            listener(item)
        subs = tuple(self._topics.get(None, ()))
        if self._topic is not None:
            subs += tuple(self._topics.get(self._topic(item), ()))
        for sub in subs:
            sub.offer(item)

    def subscribe(
        self,
        topic: str | None = None,
        *,
        want: Callable[[T], bool] | None = None,
        alive: Callable[[], bool] | None = None,
        maxsize: int | None = None,
    ) -> Subscription[T]:
        """Items of ``topic`` (None: of every topic) that ``want`` accepts, from now on."""
        sub = Subscription(self, topic, maxsize or self.maxsize, want, alive)
        self._topics.setdefault(topic, set()).add(sub)
        if alive is not None and (self._watcher is None or self._watcher.done()):
            self._watcher = asyncio.get_running_loop().create_task(self._watch())
        return sub

    async def _watch(self) -> None:
        """End the subscribers whose reader left; stops when none is watched."""
        while True:
            await asyncio.sleep(WATCH_SECONDS)
            watched = [s for subs in self._topics.values() for s in subs if s.alive is not None]
            if not watched:
                return
            for sub in watched:
                if sub.alive is not None and not sub.alive():
                    sub.end(Ending.GONE)

    def unsubscribe(self, sub: Subscription[T]) -> None:
        subs = self._topics.get(sub.topic)
        if subs is not None:
            subs.discard(sub)
            if not subs:
                del self._topics[sub.topic]

    def subscribers(self, topic: str | None = None) -> int:
        """Subscribers of ``topic`` (None: those of every topic)."""
        return len(self._topics.get(topic, ()))

    def close_all(self) -> None:
        """End every subscription (``Ending.SHUTDOWN``) and the watcher."""
        for subs in tuple(self._topics.values()):
            for sub in tuple(subs):
                sub.end(Ending.SHUTDOWN)
        if self._watcher is not None:
            self._watcher.cancel()
