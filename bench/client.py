"""A vosk-protocol websocket client (docs/protocols.md §1) that times every reply.

Both servers answer every binary frame and the eof with exactly one text frame and
never answer a config frame, so the i-th reply belongs to the i-th message sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import aiohttp

EOF = '{"eof" : 1}'  # exactly what stock clients send; vosk-server compares the string


def config_frame(rate: float) -> str:
    # Jigasi's spelling for 48 kHz; test.py sends an integer.
    value = f"{rate:.1f}" if rate == 48000 else f"{int(rate)}"
    return '{"config" : {"sample_rate" : ' + value + " }}"


@dataclass(slots=True)
class StreamResult:
    """One websocket's exchange; times are time.monotonic() seconds.

    ``sent`` holds one entry per binary frame, then the eof."""

    scheduled: list[float] = field(default_factory=list)  # when a real-time source has the frame
    sent: list[float] = field(default_factory=list)
    replies: list[tuple[float, dict[str, Any]]] = field(default_factory=list)
    audio_seconds: float = 0.0
    eof_sent: float | None = None
    error: str | None = None

    @property
    def final(self) -> dict[str, Any] | None:
        """The reply to the eof, if it came."""
        n = len(self.sent)
        return (
            self.replies[n - 1][1] if self.eof_sent is not None and len(self.replies) >= n else None
        )

    def eof_latency(self) -> float | None:
        n = len(self.sent)
        if self.eof_sent is None or len(self.replies) < n:
            return None
        return self.replies[n - 1][0] - self.eof_sent

    def reply_lags(self) -> list[float]:
        """Frame sent → its reply, binary frames only."""
        frames = len(self.sent) - (1 if self.eof_sent is not None else 0)
        return [self.replies[i][0] - self.sent[i] for i in range(min(frames, len(self.replies)))]

    def texts(self) -> list[str]:
        """Every non-empty ``text`` final, in order (including the eof's)."""
        return [r["text"] for _, r in self.replies if r.get("text")]

    def missing_replies(self) -> int:
        return len(self.sent) - len(self.replies)


async def connect(session: aiohttp.ClientSession, url: str) -> aiohttp.ClientWebSocketResponse:
    return await session.ws_connect(
        url,
        autoping=True,
        heartbeat=None,
        max_msg_size=0,
        compress=0,
        timeout=aiohttp.ClientWSTimeout(ws_receive=None, ws_close=5.0),
    )


async def _reader(ws: aiohttp.ClientWebSocketResponse, result: StreamResult) -> None:
    async for msg in ws:
        if msg.type == aiohttp.WSMsgType.TEXT:
            result.replies.append((time.monotonic(), json.loads(msg.data)))
        elif msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.ERROR):
            break


async def stream_sync(
    session: aiohttp.ClientSession,
    url: str,
    rate: float,
    frames: Iterable[bytes],
    *,
    reply_timeout: float = 60.0,
) -> StreamResult:
    """Like vosk-server's test.py: send a frame, wait for its reply, repeat; eof; final."""
    result = StreamResult()
    try:
        ws = await asyncio.wait_for(connect(session, url), reply_timeout)
    except (aiohttp.ClientError, OSError, TimeoutError) as exc:
        result.error = f"connect: {exc!r}"
        return result
    try:
        await ws.send_str(config_frame(rate))
        for data in frames:
            result.audio_seconds += len(data) / 2 / rate
            if not await _exchange(ws, result, data, reply_timeout):
                return result
        result.eof_sent = time.monotonic()
        await _exchange(ws, result, EOF, reply_timeout)
    except (aiohttp.ClientError, OSError) as exc:
        result.error = f"{type(exc).__name__}: {exc}"
    finally:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(ws.close(), 5)
    return result


async def _exchange(
    ws: aiohttp.ClientWebSocketResponse, result: StreamResult, data: bytes | str, limit: float
) -> bool:
    now = time.monotonic()
    result.scheduled.append(now)
    result.sent.append(now)
    if isinstance(data, bytes):
        await ws.send_bytes(data)
    else:
        await ws.send_str(data)
    try:
        msg = await ws.receive(limit)
    except TimeoutError:
        result.error = f"no reply within {limit:.0f} s"
        return False
    if msg.type != aiohttp.WSMsgType.TEXT:
        result.error = f"connection ended: {msg.type.name} {msg.data!r}"
        return False
    result.replies.append((time.monotonic(), json.loads(msg.data)))
    return True


async def stream_paced(
    session: aiohttp.ClientSession,
    url: str,
    rate: float,
    frames: Iterable[bytes],
    *,
    frame_seconds: float,
    start_at: float | None = None,
    drain: float = 30.0,
    ws: aiohttp.ClientWebSocketResponse | None = None,
) -> StreamResult:
    """Real-time sender: frame k goes at ``start_at + k * frame_seconds`` whatever the replies;
    replies are read concurrently. After the eof, wait at most ``drain`` s for its reply."""
    result = StreamResult()
    if ws is None:
        try:
            ws = await asyncio.wait_for(connect(session, url), 30)
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            result.error = f"connect: {exc!r}"
            return result
    reader = asyncio.create_task(_reader(ws, result))
    try:
        await ws.send_str(config_frame(rate))
        t0 = time.monotonic() if start_at is None else start_at
        for k, data in enumerate(frames):
            due = t0 + k * frame_seconds
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            result.scheduled.append(due)
            result.sent.append(time.monotonic())
            result.audio_seconds += len(data) / 2 / rate
            await ws.send_bytes(data)
            if reader.done():
                result.error = "server closed the stream"
                break
        else:
            result.eof_sent = time.monotonic()
            result.scheduled.append(result.eof_sent)
            result.sent.append(result.eof_sent)
            await ws.send_str(EOF)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(reader), drain)
            if result.eof_latency() is None and result.error is None:
                result.error = f"no final within {drain:.0f} s of eof"
    except (aiohttp.ClientError, OSError) as exc:
        result.error = f"{type(exc).__name__}: {exc}"
    finally:
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await reader
        with contextlib.suppress(Exception):
            await asyncio.wait_for(ws.close(), 5)
    return result
