"""The one path of caption events: producer → store (numbered) → live fan-out.

Producers are captioners posting over HTTP (``POST /api/v1/captions``, also the one
beside us under ``plenary serve``, over loopback), the older per-room endpoint and
Jigasi posts; all call ``Captions.accept``. A room's finals are numbered and published
under one lock, so subscribers see them in order; a final whose event id was stored
before comes back as a ``Duplicate`` and is neither stored nor published again.

Rooms own the caption policy: every final asks the rooms (``RoomPolicies``, the rooms
repository) for its room's ``CaptionPolicy`` (``captions.live_only_rooms`` forces live
only); nothing here reads a room itself, so a change takes effect with the next caption.
A room that keeps no transcript has its finals in memory only, the last ``LIVE_WINDOW``
per room, so live readers can resume (SSE Last-Event-ID, JSON poll ``after``); turning
recording on drops that window, so what was said before is never shown as part of a
transcript. Captions for a room
Plenary does not know raise ``UnknownRoom`` unless ``captions.accept_unknown_rooms``.

A captioner's correction (``correct``, docs/corrections.md) is a revision of a final: it
takes the room's next number as its own stream position and is published like a final,
so ``stream_after`` (what SSE, captions.txt and the JSON poll replay after a position)
holds captions and corrections in one order; a room without transcript keeps its
corrections in memory beside its live window.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections import deque
from collections.abc import AsyncIterator
from typing import Protocol

from aiohttp import web

from orchestrator import metrics
from orchestrator.app_keys import db_key, live_key, settings_key
from orchestrator.captions import jigasi
from orchestrator.captions.livebus import InProcessBus, LiveBus, live_bus
from orchestrator.captions.meetings import Meetings
from orchestrator.captions.model import Caption, Correction, Item
from orchestrator.captions.store import CaptionStore, Duplicate, NoSuchCaption, TooLate, now_ms
from orchestrator.leases import run_while_held
from orchestrator.rooms.policy import NO_TRANSCRIPT, CaptionPolicy
from orchestrator.rooms.repository import RoomRepository
from plenary.events import CaptionEvent
from plenary.fanout import Ending, FanOut, Overflow
from plenary.settings import CaptionsSettings

log = logging.getLogger(__name__)

LIVE_WINDOW = 1000  # finals of a room without transcript kept in memory for resuming


class UnknownRoom(Exception):
    """Captions for a room Plenary does not know (and captions.accept_unknown_rooms is off)."""

    def __init__(self, room: str) -> None:
        super().__init__(f"no room named {room!r}" if room else "the caption names no room")
        self.room = room


class RoomPolicies(Protocol):
    """What the caption layer asks the rooms (orchestrator.rooms.repository implements it)."""

    async def policy_for(self, slug: str) -> CaptionPolicy | None:
        """Room ``slug``'s caption policy as it is now; None: no such room."""

    async def policies(self) -> dict[str, CaptionPolicy]:
        """Every room's caption policy, by slug."""


def main_room(key: str) -> str:
    """The room whose policy governs a caption key (a breakout key is ``<slug>.breakout-…``)."""
    return key.split(".", 1)[0]


# What a live reader's stream says last (SSE ``event: end``, captions.txt's last line).
ENDINGS = {
    Ending.SLOW: "too slow: more than {n} captions behind; "
    "reconnect with Last-Event-ID to resume",
    Ending.SHUTDOWN: "server shutting down; reconnect with Last-Event-ID to resume",
}


def live_fanout(maxsize: int) -> FanOut[Item]:
    """Each room's captions, corrections and partials to its live readers. A reader
    ``maxsize`` behind is dropped rather than skipped ahead: it resumes from its last
    position, so no reader misses a caption in silence."""
    return FanOut(
        overflow=Overflow.DROP_SUBSCRIBER, maxsize=maxsize, topic=lambda i: i.room, reasons=ENDINGS
    )


def is_final(item: Item) -> bool:
    """What a reader that asked for no partials is given."""
    return item.is_final


class Captions:
    def __init__(
        self,
        store: CaptionStore,
        settings: CaptionsSettings,
        rooms: RoomPolicies,
        hub: FanOut[Item] | None = None,
        live: LiveBus | None = None,
    ) -> None:
        self.store = store
        self.rooms = rooms
        self.settings = settings
        # Its published count is plenary_caption_events.
        self.hub = hub or live_fanout(settings.subscriber_queue)
        # Stored captions and corrections reach every node's hub through it (livebus.py).
        self.live = live or InProcessBus(self.hub)
        self._locks: dict[str, asyncio.Lock] = {}
        self._live: dict[str, deque[Caption]] = {}  # rooms keeping no transcript
        self._live_fixes: dict[str, deque[Correction]] = {}  # their corrections
        self._sent: dict[str, deque[float]] = {}  # captioners' recent actions (rate limit)
        # Meeting id → room, endpoint → name (Prosody posts, Jigasi JOINs), in the database.
        self.meetings = Meetings(store.db)
        self.retention_passes = 0  # retention runs done by this node (health, tests)

    async def policy(self, key: str, known: CaptionPolicy | None = None) -> CaptionPolicy:
        """What the room of caption key ``key`` keeps, as the rooms say now (``known``
        when already asked)."""
        if main_room(key) in self.settings.live_only_rooms:
            return NO_TRANSCRIPT
        policy = known or await self.rooms.policy_for(main_room(key))
        if policy is None:  # only kept with captions.accept_unknown_rooms
            return CaptionPolicy("keep", self.settings.retention_days)
        return policy

    async def _known(self, key: str) -> CaptionPolicy | None:
        """The room's policy; UnknownRoom when Plenary has no such room and accepts none."""
        policy = await self.rooms.policy_for(main_room(key)) if key else None
        if policy is None and not (key and self.settings.accept_unknown_rooms):
            raise UnknownRoom(key)
        return policy

    # ---- reads that follow the room's recording ---------------------------------

    async def after(self, room: str, after: int, limit: int) -> list[Caption]:
        """Finals numbered after ``after``: stored ones, or the live window of a room
        that keeps no transcript."""
        if (await self.policy(room)).keeps_transcript:
            return await self.store.after(room, after, limit)
        return [c for c in self._live.get(room, ()) if c.seq > after][:limit]

    async def stream_after(self, room: str, after: int, limit: int) -> list[Item]:
        """Captions and corrections whose position is after ``after``, in stream order
        (what a reader resuming from SSE id ``after`` is owed)."""
        items: list[Item] = list(await self.after(room, after, limit))
        if (await self.policy(room)).keeps_transcript:
            items += await self.store.corrections_after(room, after, limit)
        else:
            items += [f for f in self._live_fixes.get(room, ()) if f.pos > after][:limit]
        return sorted(items, key=lambda i: i.position)[:limit]

    async def corrections_after(self, room: str, after: int, limit: int) -> list[Correction]:
        if (await self.policy(room)).keeps_transcript:
            return await self.store.corrections_after(room, after, limit)
        return [f for f in self._live_fixes.get(room, ()) if f.pos > after][:limit]

    async def last_fix_pos(self, room: str) -> int:
        """The stream position of the room's latest correction (0: none)."""
        if (await self.policy(room)).keeps_transcript:
            return await self.store.last_fix_pos(room)
        fixes = self._live_fixes.get(room)
        return fixes[-1].pos if fixes else 0

    async def last_correction(self, room: str, by: str) -> Correction | None:
        """Captioner ``by``'s latest correction in ``room`` (what undo reverts)."""
        if (await self.policy(room)).keeps_transcript:
            return await self.store.last_correction(room, by)
        return next((f for f in reversed(self._live_fixes.get(room, ())) if f.by == by), None)

    def allow(self, who: str, per_minute: int, now: float | None = None) -> bool:
        """Whether captioner ``who`` may act again (``per_minute`` a sliding minute)."""
        now = time.monotonic() if now is None else now
        if len(self._sent) > 10_000:
            self._sent.clear()
        recent = self._sent.setdefault(who, deque())
        while recent and recent[0] <= now - 60:
            recent.popleft()
        if len(recent) >= per_minute:
            return False
        recent.append(now)
        return True

    async def correct(
        self, room: str, seq: int, text: str | None, speaker: str | None, by: str
    ) -> Correction:
        """Revise caption ``seq`` (None: that field unchanged) and publish the correction;
        ``NoSuchCaption`` or ``TooLate`` otherwise (docs/corrections.md)."""
        window_ms = round(self.settings.correction_window_hours * 3_600_000)
        at = now_ms()
        async with self._locks.setdefault(room, asyncio.Lock()):
            if (await self.policy(room)).keeps_transcript:
                fix = await self.store.correct(room, seq, text, speaker, by, at, window_ms)
                await self.live.delivered(fix)
            else:
                fix = await self._correct_live(room, seq, text, speaker, by, at, window_ms)
                self.hub.publish(fix)  # kept in this node's memory only
        return fix

    async def _correct_live(
        self, room: str, seq: int, text: str | None, speaker: str | None, by: str,
        at: int, window_ms: int,
    ) -> Correction:  # fmt: skip
        window = self._live.get(room, deque())
        found = next((i for i, c in enumerate(window) if c.seq == seq), None)
        if found is None:
            raise NoSuchCaption(f"caption {seq} of room {room!r} is no longer in the live window")
        old = window[found]
        if at > window[-1].at_ms + window_ms:
            raise TooLate("the room's last caption is older than the correction window")
        fix = Correction(
            room, await self.store.number(room), seq, old.revision + 1, at, by,
            old.text if text is None else text, old.speaker if speaker is None else speaker,
            old.text, old.speaker,
        )  # fmt: skip
        window[found] = dataclasses.replace(
            old, text=fix.text, speaker=fix.speaker, revision=fix.revision
        )
        self._live_fixes.setdefault(room, deque(maxlen=LIVE_WINDOW)).append(fix)
        return fix

    async def latest(self, room: str, count: int) -> list[Caption]:
        if (await self.policy(room)).keeps_transcript:
            return await self.store.latest(room, count)
        return list(self._live.get(room, ()))[-count:] if count > 0 else []

    async def accept(self, event: CaptionEvent, at_ms: int | None = None) -> Caption | None:
        """Number, store and publish a final; publish a partial live only.

        An event with no room but a meeting id is filed under the meeting id (only with
        captions.accept_unknown_rooms: else it is an ``UnknownRoom``, like any caption for
        a room Plenary does not know).
        """
        event = await self.meetings.resolve(event)
        at = at_ms if at_ms is not None else now_ms()
        room = event.room or event.meeting_id
        known = await self._known(room)
        if not event.is_final:
            duration = max(0, round((event.end - event.start) * 1000))
            partial = Caption(
                room, 0, "", at, duration, event.speaker, event.language,
                event.text, event.message_id, is_final=False,
            )  # fmt: skip
            self.hub.publish(partial)
            return partial
        if not event.text.strip():
            return None
        started = time.perf_counter()  # waits for the room's lock and the writer count
        async with self._locks.setdefault(room, asyncio.Lock()):
            keep = (await self.policy(room, known)).keeps_transcript
            caption = await self.store.append(room, event, at, keep)
            if isinstance(caption, Duplicate):
                return caption
            if keep:
                self._live.pop(room, None)  # recording on: the live-only past stays unsaid
                self._live_fixes.pop(room, None)
                await self.live.delivered(caption)
            else:  # kept in this node's memory only
                self._live.setdefault(room, deque(maxlen=LIVE_WINDOW)).append(caption)
                self.hub.publish(caption)
        metrics.CAPTION_STORE_SECONDS.observe(time.perf_counter() - started)
        return caption

    async def jigasi(self, post: jigasi.JigasiPost) -> Caption | None:
        # A breakout room's JID is known from Prosody's posts: file it under its own key.
        room = await self.meetings.room_of_jid(post.room_jid) or post.room
        known = await self._known(room)
        at = post.timestamp_ms or now_ms()
        who = post.participant
        if post.event == "JOIN" and who is not None and who.name != jigasi.FALLBACK_NAME:
            await self.meetings.jigasi_joined(room, who.id, who.name, at)
        elif post.event == "LEAVE" and who is not None:
            await self.meetings.jigasi_left(room, who.id, at)
        elif post.event == "START":
            async with self._locks.setdefault(room, asyncio.Lock()):
                keep = (await self.policy(room, known)).keeps_transcript
                await self.store.start_session(room, at, keep)
        elif post.event == "END":
            async with self._locks.setdefault(room, asyncio.Lock()):
                await self.store.end_session(room, at)
            await self.meetings.jigasi_ended(room)
        elif post.event == "SPEECH" and who is not None:
            name = who.name
            if name == jigasi.FALLBACK_NAME:
                name = await self.meetings.jigasi_name(room, who.id) or name
            event = CaptionEvent(
                room=room,
                speaker=name,
                language=post.language,
                text=post.text,
                is_final=not post.is_interim,
                start=0.0,
                end=0.0,
                message_id=post.message_id,
            )
            return await self.accept(event, at)
        return None  # RAISE_HAND, WILL_END: nothing to caption

    async def retention_loop(self) -> None:
        while True:
            try:
                expired = await self.store.expire(await self.retention())
                if expired:
                    log.info("retention removed %d caption sessions", len(expired))
            except Exception:
                log.exception("caption retention run failed")
            self.retention_passes += 1
            await asyncio.sleep(self.settings.retention_interval_seconds)

    async def retention(self) -> dict[str, int]:
        """Days each room's transcripts are kept; a room that records no more keeps what
        it recorded before for captions.retention_days."""
        return {
            slug: policy.retention_days if policy.keeps_transcript else self.settings.retention_days
            for slug, policy in (await self.rooms.policies()).items()
        }


captions_key = web.AppKey("captions", Captions)
STOP_SECONDS = 10


async def captions_ctx(app: web.Application) -> AsyncIterator[None]:
    """Needs the database (database_ctx must come first)."""
    settings = app[settings_key].captions
    db = app[db_key]
    store = CaptionStore(db, settings)
    live = live_bus(app[live_key], db, store)
    store.announce = live.announce
    captions = Captions(store, settings, RoomRepository(db), app[live_key], live)
    app[captions_key] = captions
    await live.start()
    # One node of several removes expired transcripts: the one holding the lease.
    lease = app[settings_key].orchestrator.lease_seconds
    retention = run_while_held(db, "caption-retention", captions.retention_loop, ttl=lease)
    tasks = [asyncio.create_task(retention)]
    yield
    for task in tasks:
        task.cancel()
    # A stop never hangs on the database: what has not ended in 10 s is left behind
    # (the lease then simply runs out) and said so.
    _, pending = await asyncio.wait(tasks, timeout=STOP_SECONDS)
    if pending:
        log.warning("stopping: the retention task did not end within %d s", STOP_SECONDS)
    try:
        await asyncio.wait_for(live.close(), STOP_SECONDS)
    except TimeoutError:
        log.warning("stopping: the live bus did not close within %d s", STOP_SECONDS)


async def close_streams(app: web.Application) -> None:
    """on_shutdown: end every live stream so the server can stop without waiting."""
    if captions_key in app:
        app[captions_key].hub.close_all()
