"""``plenary captioner serve``: the captioner on its own (vosk websocket, /transcribe).
``plenary captioner prepare``: build the models' decoding graphs ahead of the first start.

It delivers its captions to the orchestrator named by ``captioner.orchestrator_url``
(``POST /api/v1/captions``); the IRC relay and every other reader take them from there.
"""

from __future__ import annotations

import argparse
import time

from aiohttp import web

from bots.captioner import graph_map
from bots.captioner.app import RedactingAccessLogger, create_app
from bots.captioner.vosk_models import ModelRegistry
from plenary.settings import Settings


def run(args: argparse.Namespace, settings: Settings) -> int:
    host = args.host or settings.captioner.host
    port = args.port or settings.captioner.port
    app = create_app(settings)
    web.run_app(app, host=host, port=port, print=None, access_log_class=RedactingAccessLogger)
    return 0


def prepare(args: argparse.Namespace, settings: Settings) -> int:
    """Convert each model's decoding graph (captioner.graph) into captioner.graph_cache
    now, as the captioner's first start would: a static graph takes minutes and ~5 GB
    once. Prints one line per language, saying "built" when it built one."""
    registry = ModelRegistry.for_settings(settings)
    cache = settings.captioner.graph_cache.expanduser()
    for language in args.lang or registry.languages:
        before = set(cache.iterdir()) if cache.is_dir() else set()
        started = time.monotonic()
        folder = registry.prepare(language)
        if folder.parent != cache:
            print(f"{language}: decoded as shipped: {folder}")
            continue
        kind = "static" if graph_map.static_graph(folder) else "const"
        took = "ready" if folder in before else f"built in {time.monotonic() - started:.0f} s"
        print(f"{language}: {kind} graph {took}: {folder}")
    return 0
