"""The one path of caption events: producer → store (numbered) → live fan-out.

Producers are captioners posting over HTTP (``POST /api/v1/captions``, also the one
beside us under ``plenary serve``, over loopback), the older per-room endpoint and
Jigasi posts; all call ``Captions.accept``. A room's finals are numbered and published
under one lock, so subscribers see them in order; a final whose event id was stored
before comes back as a ``Duplicate`` and is neither stored nor published again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator

from aiohttp import web

from bots.captioner.bus import CaptionBus
from bots.captioner.events import CaptionEvent
from orchestrator import metrics
from orchestrator.captions import jigasi
from orchestrator.captions.hub import Hub
from orchestrator.captions.meetings import Meetings
from orchestrator.captions.model import Caption
from orchestrator.captions.store import CaptionStore, Duplicate, now_ms
from orchestrator.keys import bus_key, db_key, settings_key
from orchestrator.settings import CaptionsSettings

log = logging.getLogger(__name__)


class Captions:
    def __init__(
        self, store: CaptionStore, settings: CaptionsSettings, bus: CaptionBus | None = None
    ) -> None:
        self.store = store
        self.bus = bus or CaptionBus()  # counts what readers were given (plenary_caption_events)
        self.settings = settings
        self.hub = Hub(settings.subscriber_queue)
        self._locks: dict[str, asyncio.Lock] = {}
        # Meeting id → room, endpoint → name (Prosody posts, Jigasi JOINs), in the database.
        self.meetings = Meetings(store.db)

    async def accept(self, event: CaptionEvent, at_ms: int | None = None) -> Caption | None:
        """Number, store and publish a final; publish a partial live only.

        An event with no room but a meeting id is filed under the meeting id.
        """
        event = await self.meetings.resolve(event)
        at = at_ms if at_ms is not None else now_ms()
        room = event.room or event.meeting_id
        if not event.is_final:
            duration = max(0, round((event.end - event.start) * 1000))
            partial = Caption(
                room, 0, "", at, duration, event.speaker, event.language,
                event.text, event.message_id, is_final=False,
            )  # fmt: skip
            self.hub.publish(partial)
            self.bus.publish(event)
            return partial
        if not event.text.strip():
            return None
        started = time.perf_counter()  # waits for the room's lock and the writer count
        async with self._locks.setdefault(room, asyncio.Lock()):
            caption = await self.store.append(room, event, at)
            if isinstance(caption, Duplicate):
                return caption
            self.hub.publish(caption)
        self.bus.publish(event)
        metrics.CAPTION_STORE_SECONDS.observe(time.perf_counter() - started)
        return caption

    async def jigasi(self, post: jigasi.JigasiPost) -> Caption | None:
        # A breakout room's JID is known from Prosody's posts: file it under its own key.
        room = await self.meetings.room_of_jid(post.room_jid) or post.room
        at = post.timestamp_ms or now_ms()
        who = post.participant
        if post.event == "JOIN" and who is not None and who.name != jigasi.FALLBACK_NAME:
            await self.meetings.jigasi_joined(room, who.id, who.name, at)
        elif post.event == "LEAVE" and who is not None:
            await self.meetings.jigasi_left(room, who.id, at)
        elif post.event == "START":
            async with self._locks.setdefault(room, asyncio.Lock()):
                await self.store.start_session(room, at)
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
                expired = await self.store.expire()
                if expired:
                    log.info("retention removed %d caption sessions", len(expired))
            except Exception:
                log.exception("caption retention run failed")
            await asyncio.sleep(self.settings.retention_interval_seconds)

    async def retention_notice(self, room: str) -> str:
        policy = await self.store.policy(room)
        if not policy.keep_transcript:
            return "Captions in this room are shown live only; they are not recorded."
        kept = (
            f"kept for {policy.retention_days} days"
            if policy.retention_days
            else "kept with no time limit"
        )
        return (
            "Captions in this room are recorded: what is said is transcribed and the "
            f"transcript is {kept}, under a link anyone with it can read."
        )


captions_key = web.AppKey("captions", Captions)


async def captions_ctx(app: web.Application) -> AsyncIterator[None]:
    """Needs the database (database_ctx must come first)."""
    settings = app[settings_key].captions
    captions = Captions(CaptionStore(app[db_key], settings), settings, app[bus_key])
    app[captions_key] = captions
    tasks = [asyncio.create_task(captions.retention_loop())]
    yield
    for task in tasks:
        task.cancel()
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def close_streams(app: web.Application) -> None:
    """on_shutdown: end every live stream so the server can stop without waiting."""
    if captions_key in app:
        app[captions_key].hub.close_all()
