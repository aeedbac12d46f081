"""``plenary irc``: the IRC relay, reading each room's caption stream from an orchestrator.

The relay always reads the orchestrator's numbered SSE stream (plenary.compose.relay),
so its positions are the orchestrator's caption numbers wherever it runs:

- ``plenary irc --orchestrator URL``: the relay on its own host against that
  orchestrator (``irc.orchestrator_token`` is one of its ``captions.service_readers``
  and reads restricted rooms and their channel keys). After any break it reconnects
  with ``Last-Event-ID``, losing and repeating nothing; a freshly started relay begins
  with each room's next caption.
- ``plenary irc``: the same against the orchestrator of these settings
  (``orchestrator.host``/``port`` over loopback), e.g. a ``plenary serve`` without
  ``irc.rooms`` or one on this host.
- ``plenary irc --with-captioner``: the captioner, the orchestrator and the relay in
  this process, exactly as ``plenary serve`` runs them: the captioner delivers to the
  orchestrator over loopback HTTP, the orchestrator stores and numbers each final
  (for rooms it knows: ``plenary rooms create``) and the relay reads its stream.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys

from bots.irc.client import SaslError
from plenary.compose.relay import run_relay
from plenary.compose.serve import loopback_url
from plenary.compose.serve import serve as serve_all
from plenary.settings import Settings

log = logging.getLogger(__name__)


async def serve(settings: Settings, with_captioner: bool, orchestrator: str | None = None) -> None:
    if with_captioner:
        await serve_all(settings, captioner=True)
        return
    url = orchestrator or loopback_url(settings.orchestrator.host, settings.orchestrator.port)
    log.info("irc: reading captions from %s", url)
    if not settings.irc.orchestrator_token:
        log.warning(
            "irc.orchestrator_token is not set: restricted rooms' captions and channel "
            "keys will be refused (give the relay one of captions.service_readers)"
        )
    await run_relay(settings, url)


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
        asyncio.run(serve(settings, getattr(args, "with_captioner", False), orchestrator))
    except SaslError as exc:
        print(f"plenary irc: {exc}", file=sys.stderr)
        return 2
    return 0
