"""``plenary captioner serve``: the captioner on its own (vosk websocket, /transcribe).

It delivers its captions to the orchestrator named by ``captioner.orchestrator_url``
(``POST /api/v1/captions``); the IRC relay and every other reader take them from there.
"""

from __future__ import annotations

import argparse

from aiohttp import web

from bots.captioner.app import RedactingAccessLogger, create_app
from plenary.settings import Settings


def run(args: argparse.Namespace, settings: Settings) -> int:
    host = args.host or settings.captioner.host
    port = args.port or settings.captioner.port
    app = create_app(settings)
    web.run_app(app, host=host, port=port, print=None, access_log_class=RedactingAccessLogger)
    return 0
