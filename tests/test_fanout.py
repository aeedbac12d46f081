"""plenary.fanout: each overflow policy, topics, filters, listeners, endings and counts."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import pytest

from plenary import fanout
from plenary.fanout import Closed, Ending, FanOut, Overflow


@dataclass(frozen=True)
class Note:
    room: str
    n: int
    final: bool = True


def notes(room: str, *numbers: int) -> list[Note]:
    return [Note(room, n) for n in numbers]


async def drain(sub: fanout.Subscription[Note]) -> list[int]:
    """What is queued now, without waiting."""
    got = []
    while not sub.queue.empty():
        item = await sub.next()
        if item is None:
            break
        got.append(item.n)
    return got


async def test_drop_oldest_keeps_the_newest_and_counts_what_it_lost() -> None:
    bus = FanOut[Note](overflow=Overflow.DROP_OLDEST, maxsize=3)
    slow, fast = bus.subscribe(), bus.subscribe(maxsize=10)
    for note in notes("a", 1, 2, 3, 4, 5):
        bus.publish(note)
    assert await drain(slow) == [3, 4, 5]
    assert (slow.dropped, slow.ending, slow.reason) == (2, None, "")
    assert await drain(fast) == [1, 2, 3, 4, 5] and fast.dropped == 0
    assert (bus.published, bus.dropped, bus.subscribers()) == (5, 2, 2)
    bus.publish(Note("a", 6))  # the slow reader goes on after its gap
    assert await slow.get() == Note("a", 6)


async def test_drop_subscriber_delivers_what_is_queued_then_ends() -> None:
    hub = FanOut[Note](
        overflow=Overflow.DROP_SUBSCRIBER,
        maxsize=3,
        topic=lambda n: n.room,
        reasons={Ending.SLOW: "more than {n} behind; resume"},
    )
    slow, fast = hub.subscribe("a"), hub.subscribe("a", maxsize=10)
    for note in notes("a", 1, 2, 3, 4, 5):
        hub.publish(note)
    assert slow.ending is Ending.SLOW and slow.reason == "more than 3 behind; resume"
    assert hub.subscribers("a") == 1  # the slow one is gone from the fan-out at once
    assert await drain(slow) == [1, 2, 3]  # nothing after its gap, nothing skipped ahead
    assert await slow.next() is None
    with pytest.raises(Closed):
        await slow.get()
    assert await drain(fast) == [1, 2, 3, 4, 5] and not fast.reason
    assert hub.dropped == 0


async def test_topics_and_filters() -> None:
    hub = FanOut[Note](overflow=Overflow.DROP_SUBSCRIBER, topic=lambda n: n.room)
    room_a = hub.subscribe("a")
    finals_a = hub.subscribe("a", want=lambda n: n.final)
    everything = hub.subscribe()  # every topic
    for note in (Note("a", 1), Note("b", 2), Note("a", 3, final=False)):
        hub.publish(note)
    assert await drain(room_a) == [1, 3]
    assert await drain(finals_a) == [1]
    assert await drain(everything) == [1, 2, 3]
    assert (hub.subscribers("a"), hub.subscribers("b"), hub.subscribers()) == (2, 0, 1)
    room_a.close()
    finals_a.close()
    assert hub.subscribers("a") == 0


async def test_listeners_see_everything_at_once_in_order() -> None:
    bus = FanOut[Note](overflow=Overflow.DROP_OLDEST, maxsize=1)
    heard: list[int] = []
    bus.listen(lambda n: heard.append(n.n))
    for note in notes("a", 1, 2, 3):
        bus.publish(note)
    assert heard == [1, 2, 3]


async def test_close_all_ends_waiting_readers() -> None:
    hub = FanOut[Note](overflow=Overflow.DROP_SUBSCRIBER, topic=lambda n: n.room)
    sub = hub.subscribe("a")
    reader = asyncio.create_task(sub.next())
    await asyncio.sleep(0)
    hub.close_all()
    assert await asyncio.wait_for(reader, 1) is None
    assert sub.shutdown and not sub.gone and sub.reason == fanout.REASONS[Ending.SHUTDOWN]
    assert [n async for n in sub] == []


async def test_a_reader_that_left_is_let_go_without_an_item(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(fanout, "WATCH_SECONDS", 0.01)
    hub = FanOut[Note](overflow=Overflow.DROP_SUBSCRIBER, topic=lambda n: n.room)
    open_ = {"a": True}
    sub = hub.subscribe("a", alive=lambda: open_["a"])
    stays = hub.subscribe("a", alive=lambda: True)
    open_["a"] = False
    assert await asyncio.wait_for(sub.next(), 1) is None
    assert sub.gone and hub.subscribers("a") == 1 and not stays.reason
    hub.close_all()
