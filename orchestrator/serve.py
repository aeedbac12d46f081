"""``plenary serve``: the embedded default, one process group on one machine.

The orchestrator's web app, the captioner's websockets and (when rooms are
configured) the IRC relay share one caption bus, so a caption from any audio path
reaches every consumer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from typing import Any

from aiohttp import web

from bots.captioner.app import create_app as create_captioner
from bots.captioner.bus import CaptionBus
from bots.irc.metrics import RelayCollector
from bots.irc.relay import Relay
from bots.irc.source import BusCaptionSource
from orchestrator.app import create_app
from orchestrator.metrics.exposition import registry_key
from orchestrator.settings import Settings

log = logging.getLogger(__name__)


async def serve(settings: Settings, *, captioner: bool = True) -> None:
    bus = CaptionBus()
    runners: list[web.AppRunner] = []
    o = settings.orchestrator
    app = create_app(settings, bus)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, o.host, o.port).start()
    runners.append(runner)
    log.info("orchestrator on http://%s:%d/ (public: %s)", o.host, o.port, o.public_url)
    if captioner:
        c = settings.captioner
        crunner = web.AppRunner(create_captioner(settings, bus))
        await crunner.setup()
        await web.TCPSite(crunner, c.host, c.port).start()
        runners.append(crunner)
        log.info("captioner on ws://%s:%d/ and /transcribe", c.host, c.port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    tasks: list[asyncio.Task[Any]] = [asyncio.create_task(stop.wait())]
    if settings.irc.rooms:
        tasks.append(asyncio.create_task(_relay(settings, bus, app)))
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(*tasks, return_exceptions=True)
        for r in reversed(runners):
            await r.cleanup()


async def _relay(settings: Settings, bus: CaptionBus, app: web.Application) -> None:
    async with BusCaptionSource(bus) as source:
        relay = Relay(settings.irc, source)
        app[registry_key].register(RelayCollector(relay))  # on the orchestrator's /metrics
        await relay.run()
