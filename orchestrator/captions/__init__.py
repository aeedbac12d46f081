"""Captions: the numbered event store, live streams, the low-bandwidth page, transcripts.

Other concerns use:

    await recording_notice(request.app, "keynote")
    # 'Captions in this room are recorded: the transcript is kept for 90 days, …'
"""

from __future__ import annotations

from aiohttp import web

from orchestrator.captions.service import Captions, captions_ctx, captions_key, close_streams

__all__ = ["Captions", "captions_ctx", "captions_key", "close_streams", "recording_notice"]


async def recording_notice(app: web.Application, room: str) -> str:
    """One plain sentence for a page: whether captions are recorded and for how long."""
    return (await app[captions_key].policy(room)).notice
