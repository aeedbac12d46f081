"""``plenary irc``: the relay on its own.

With ``--orchestrator URL`` the relay reads each room's numbered caption stream from
that orchestrator (``GET URL/r/<room>/captions/stream``, Server-Sent Events) and
reconnects with ``Last-Event-ID`` after any break, so it loses and repeats nothing;
a freshly started relay begins with each room's next caption. It sends
``irc.orchestrator_token`` (one of the orchestrator's ``captions.service_readers``),
reads restricted rooms' channel keys there and sets them on their channels.

Without it the relay reads the in-process caption bus. Without ``--with-captioner``
that bus has no producer: the bot connects to every network in ``irc.networks``,
joins the channels of ``irc.rooms`` and answers ``!transcript`` and ``!help``. With
``--with-captioner`` the captioner's vosk websocket (``captioner.host``/
``captioner.port``) runs in the same process and every final caption it produces for
a configured room is posted to that room's channel.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys

import aiohttp

from bots.irc.client import SaslError
from bots.irc.keys import OrchestratorChannels
from bots.irc.relay import Relay
from bots.irc.source import BusCaptionSource, SseCaptionSource
from plenary.bus import CaptionBus
from plenary.settings import Settings

log = logging.getLogger(__name__)


async def serve(settings: Settings, with_captioner: bool, orchestrator: str | None = None) -> None:
    if orchestrator:
        log.info("irc: reading captions from %s", orchestrator)
        token = settings.irc.orchestrator_token
        if not token:
            log.warning(
                "irc.orchestrator_token is not set: restricted rooms' captions and channel "
                "keys will be refused (give the relay one of captions.service_readers)"
            )
        async with aiohttp.ClientSession() as http:
            sse = SseCaptionSource(orchestrator, http, token=token)
            keys = OrchestratorChannels(orchestrator, token, http)
            await Relay(settings.irc, sse, channels=keys).run()
        return
    bus = CaptionBus()
    runner = None
    if with_captioner:
        from aiohttp import web

        from bots.captioner.app import create_app

        runner = web.AppRunner(create_app(settings, bus))
        await runner.setup()
        site = web.TCPSite(runner, settings.captioner.host, settings.captioner.port)
        await site.start()
        log.info("captioner on ws://%s:%d/", settings.captioner.host, settings.captioner.port)
    try:
        async with BusCaptionSource(bus) as source:
            await Relay(settings.irc, source).run()
    finally:
        if runner is not None:
            await runner.cleanup()


def run(args: argparse.Namespace, settings: Settings) -> int:
    if not settings.irc.rooms:
        print("plenary irc: no rooms configured (irc.rooms); see docs/irc.md", file=sys.stderr)
        return 2
    orchestrator = getattr(args, "orchestrator", None)
    if orchestrator and not orchestrator.startswith(("http://", "https://")):
        print(
            f"plenary irc: --orchestrator must be an http:// or https:// URL, not {orchestrator!r}",
            file=sys.stderr,
        )
        return 2
    try:
        asyncio.run(serve(settings, args.with_captioner, orchestrator))
    except SaslError as exc:
        print(f"plenary irc: {exc}", file=sys.stderr)
        return 2
    return 0
