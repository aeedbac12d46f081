"""The IRC relay as every composition root runs it: reading an orchestrator's stream.

``plenary serve``, ``plenary irc`` (alone, ``--orchestrator URL`` or
``--with-captioner``) and ``plenary demo`` all start the relay here, so it reads
captions one way everywhere: each room's numbered SSE stream
(``GET URL/r/<room>/captions/stream``, ``SseCaptionSource``), whose positions are the
orchestrator's caption numbers. Whoever produced a caption (a captioner in this
process or on another host, an HTTP post, Jigasi), the relay posts it once, and a
relay restarted resumes exactly from the delivered positions the orchestrator keeps for
it. It reads restricted rooms and their channel keys, takes each channel's lease and
saves its positions as a service reader (``irc.orchestrator_token``).
"""

from __future__ import annotations

import aiohttp
from prometheus_client import CollectorRegistry

from bots.irc.keys import OrchestratorChannels
from bots.irc.metrics import RelayCollector
from bots.irc.relay import Relay
from bots.irc.source import SseCaptionSource
from plenary.settings import Settings


async def run_relay(
    settings: Settings, orchestrator: str, registry: CollectorRegistry | None = None
) -> None:
    """Relay the captions of ``orchestrator`` (its base URL) until cancelled; its metrics
    go to ``registry`` when given (the orchestrator's own /metrics under serve)."""
    token = settings.irc.orchestrator_token
    async with aiohttp.ClientSession() as http:
        source = SseCaptionSource(orchestrator, http, token=token)
        channels = OrchestratorChannels(orchestrator, token, http)
        # One relay per channel among several (orchestrator nodes or plenary irc
        # processes): the orchestrator keeps the leases and the delivered positions, for
        # a service reader only; without a token this relay serves every channel alone.
        coordinator = channels if token else None
        relay = Relay(settings.irc, source, channels=channels, coordinator=coordinator)
        if registry is not None:
            registry.register(RelayCollector(relay))
        await relay.run()
