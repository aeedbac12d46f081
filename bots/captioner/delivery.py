"""Delivery of the captioner's events to the orchestrator (``POST <url>/api/v1/captions``).

Recognition hands every event to ``Delivery.offer``, which never waits: finals join a
bounded queue, the latest partial of each stream waits in a slot. One sender task
posts batches, one at a time, so events reach the orchestrator in the order they
were produced. Each final carries a stable id (this process's uuid + a counter), so
a batch retried after a lost answer is stored once (the orchestrator deduplicates).

While the orchestrator is unreachable or answers 5xx, finals stay queued and the
sender retries with backoff, probing with an empty batch; partials are dropped (they
are live only). When the queue is full the oldest final is dropped; once delivery
resumes each affected stream gets one notice saying how many captions were lost.
A 4xx answer (bad token, refused event) drops that batch, counted and logged.

    delivery = Delivery("http://10.0.0.5:8090", token, queue=10_000)
    await delivery.start()
    delivery.offer(event)  # from the recognition sink, on the event loop
    await delivery.close()
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from collections import deque
from dataclasses import dataclass
from typing import Any

import aiohttp

from bots.captioner import metrics
from plenary.events import CaptionEvent

log = logging.getLogger(__name__)

BATCH = 100  # events per POST
BACKOFF_FIRST = 0.2
BACKOFF_MAX = 2.0
TIMEOUT = aiohttp.ClientTimeout(total=10.0, sock_connect=2.0)
NOTICE_SPEAKER = "Plenary"


def notice_text(lost: int) -> str:
    noun = "caption was" if lost == 1 else "captions were"
    return f"{lost} {noun} lost while the orchestrator was unreachable."


@dataclass(frozen=True, slots=True)
class Outgoing:
    """An event as posted: the caption, its id, and when it was produced (epoch ms)."""

    event: CaptionEvent
    id: str
    timestamp: int
    notice: bool = False

    def to_json(self) -> dict[str, Any]:
        e = self.event
        return {
            "id": self.id,
            "room": e.room,
            "meeting_id": e.meeting_id,
            "endpoint": e.endpoint,
            "speaker": e.speaker,
            "language": e.language,
            "text": e.text,
            "is_final": e.is_final,
            "start": e.start,
            "end": e.end,
            "message_id": e.message_id,
            "timestamp": self.timestamp,
        }


def _stream(event: CaptionEvent) -> tuple[str, str]:
    """Where a notice about lost captions goes: the event's room, else its meeting."""
    return (event.room, event.meeting_id)


def _speaker_stream(event: CaptionEvent) -> tuple[str, str, str, str]:
    return (event.room, event.meeting_id, event.endpoint, event.speaker)


class Delivery:
    def __init__(self, url: str, token: str, queue: int) -> None:
        self.url = url.rstrip("/") + "/api/v1/captions"
        self._token = token
        self.limit = queue
        self.finals: deque[Outgoing] = deque()
        self._partials: dict[tuple[str, str, str, str], Outgoing] = {}
        self._lost: dict[tuple[str, str], tuple[CaptionEvent, int]] = {}
        self._inflight: set[str] = set()  # ids of the finals in the batch being posted
        self._prefix = uuid.uuid4().hex
        self._counter = 0
        self._wake = asyncio.Event()
        self._empty = asyncio.Event()  # set while no final waits
        self._empty.set()
        self.healthy = True  # the last post reached the orchestrator
        self.refused = False  # the last batch was refused (4xx): logged once per run of them
        self.delivered = 0  # finals the orchestrator took (duplicates included)
        self.produced = 0  # finals offered
        self.last_error = ""  # the orchestrator's last refusal or the connection error
        self._session: aiohttp.ClientSession | None = None
        self._task: asyncio.Task[None] | None = None
        metrics.DELIVERY_QUEUE.set(0)

    def _next_id(self) -> str:
        self._counter += 1
        return f"{self._prefix}-{self._counter}"

    # --- on the recognition side: never waits ---

    def offer(self, event: CaptionEvent) -> None:
        now = time.time_ns() // 1_000_000
        key = _speaker_stream(event)
        if not event.is_final:
            if self.healthy:
                self._partials[key] = Outgoing(event, "", now)
                self._wake.set()
            else:
                metrics.DELIVERY_DROPPED.labels(kind="partial").inc()
            return
        self._partials.pop(key, None)  # the final replaces its partial
        self.produced += 1
        self.finals.append(Outgoing(event, self._next_id(), now))
        self._empty.clear()
        while len(self.finals) > self.limit:
            self._drop_oldest()
        metrics.DELIVERY_QUEUE.set(len(self.finals))
        self._wake.set()

    def _drop_oldest(self) -> None:
        for i, item in enumerate(self.finals):
            # A notice is never dropped (it is the only trace), nor a final being posted.
            if not item.notice and item.id not in self._inflight:
                del self.finals[i]
                stream = _stream(item.event)
                _, lost = self._lost.get(stream, (item.event, 0))
                self._lost[stream] = (item.event, lost + 1)
                metrics.DELIVERY_DROPPED.labels(kind="final").inc()
                return
        self.finals.popleft()

    # --- the sender ---

    async def start(self) -> None:
        self._session = aiohttp.ClientSession(timeout=TIMEOUT)
        self._task = asyncio.create_task(self._run(), name="caption delivery")
        log.info("delivering captions to %s", self.url)

    async def close(self, drain: float = 2.0) -> None:
        """Stop, after up to ``drain`` seconds for what is queued to go out."""
        if self.finals and self.healthy:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._empty.wait(), drain)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._session is not None:
            await self._session.close()
        if self.finals:
            log.warning("%d captions not delivered at shutdown", len(self.finals))

    async def _run(self) -> None:
        backoff = BACKOFF_FIRST
        while True:
            if not (self.finals or self._partials):
                self._wake.clear()
                await self._wake.wait()
            if self.healthy:
                self._add_notices()
                batch = list(self.finals)[:BATCH]
                if len(batch) < BATCH:  # live partials ride along only when nothing waits
                    batch += self._partials.values()
                self._partials.clear()
            else:
                batch = []  # probe: is it back, and does it take our token?
            self._inflight = {o.id for o in batch if o.event.is_final}
            status = await self._post(batch)
            self._inflight = set()
            if status is None or status >= 500:
                self._unreachable(status)
                await asyncio.sleep(backoff)
                backoff = min(BACKOFF_MAX, backoff * 2)
                continue
            backoff = BACKOFF_FIRST
            if not self.healthy:
                self.healthy = True
                log.warning(
                    "orchestrator at %s is reachable again; delivering %d queued captions",
                    self.url, len(self.finals),
                )  # fmt: skip
                continue  # now send the queue, notices first
            self._done(batch, status)

    def _unreachable(self, status: int | None) -> None:
        if self.healthy:
            self.healthy = False
            self._partials.clear()
            why = "no answer" if status is None else f"HTTP {status}"
            log.warning(
                "orchestrator at %s is unreachable (%s); keeping up to %d captions and retrying",
                self.url, why, self.limit,
            )  # fmt: skip

    def _done(self, batch: list[Outgoing], status: int) -> None:
        """The batch was answered (2xx or 4xx): it leaves the queue either way."""
        finals = [o for o in batch if o.event.is_final]
        sent = {o.id for o in finals}
        while self.finals and self.finals[0].id in sent:
            self.finals.popleft()
        if not self.finals:
            self._empty.set()
        metrics.DELIVERY_QUEUE.set(len(self.finals))
        partials = len(batch) - len(finals)
        if status < 300:
            self.delivered += len(finals)
            metrics.DELIVERED.labels(kind="final").inc(len(finals))
            metrics.DELIVERED.labels(kind="partial").inc(partials)
            if self.refused:
                self.refused = False
                log.warning("the orchestrator at %s takes captions again", self.url)
            return
        metrics.DELIVERY_FAILED.inc(len(batch))
        if not self.refused:
            self.refused = True
            log.error(
                "the orchestrator at %s refused %d captions with HTTP %d (%s); dropped. "
                "Check captioner.orchestrator_token against captions.producers.",
                self.url, len(batch), status, self.last_error,
            )  # fmt: skip

    def _add_notices(self) -> None:
        """Once delivery works again: one notice per stream that lost captions, ahead of
        what remains of it."""
        for (room, meeting), (event, lost) in self._lost.items():
            notice = CaptionEvent(
                room=room,
                meeting_id=meeting,
                speaker=NOTICE_SPEAKER,
                language=event.language,
                text=notice_text(lost),
                is_final=True,
                start=event.start,
                end=event.start,
                message_id=f"lost-{uuid.uuid4().hex}",
            )
            now = time.time_ns() // 1_000_000
            self.finals.appendleft(Outgoing(notice, self._next_id(), now, notice=True))
            self._empty.clear()
            log.warning("told room %r (meeting %r) that %d captions were lost", room, meeting, lost)
        self._lost.clear()

    async def _post(self, batch: list[Outgoing]) -> int | None:
        """POST a batch; its HTTP status, or None when the orchestrator did not answer."""
        assert self._session is not None
        body = json.dumps({"events": [o.to_json() for o in batch]}, ensure_ascii=False)
        headers = {"Authorization": f"Bearer {self._token}", "Content-Type": "application/json"}
        try:
            async with self._session.post(self.url, data=body.encode(), headers=headers) as r:
                text = await r.text()
                if r.status >= 300:
                    self.last_error = text[:200]
                return r.status
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            self.last_error = str(exc)
            return None
