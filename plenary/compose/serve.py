"""``plenary serve``: the embedded default, one process group on one machine.

The captioner delivers its captions to the orchestrator the way a captioner on another
host does: ``POST /api/v1/captions`` over HTTP, here on loopback, with a producer token
made up at start-up (unless captioner.orchestrator_token names a configured one). So
there is one path, with its queue, retries and deduplication, in both topologies. The
IRC relay (when rooms are configured) reads the orchestrator's own caption stream over
loopback HTTP, like any other consumer (plenary.compose.relay), so captions posted over
HTTP or by Jigasi reach IRC too and its positions are the orchestrator's caption
numbers; it reads restricted rooms as a service reader (irc.orchestrator_token, made up
at start-up unless set). ``plenary irc --with-captioner`` runs this too.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import secrets
import signal
import sys
from typing import Any

from aiohttp import web
from aiohttp.web_request import BaseRequest

from bots.captioner.app import RedactingAccessLogger
from bots.captioner.app import create_app as create_captioner
from bots.irc.client import SaslError
from orchestrator.app import create_app
from orchestrator.irc_channels import with_relay_reader
from orchestrator.web.proxy import ClientAccessLogger
from plenary.compose.relay import run_relay
from plenary.exposition import registry_key
from plenary.settings import Settings

log = logging.getLogger(__name__)


EMBEDDED = "embedded-captioner"  # the producer name of serve's own captioner


class OrchestratorAccessLogger(ClientAccessLogger):
    """The client's address (behind nginx) and ``?token=`` blanked: read tokens and
    captioner tokens never reach a log in full."""

    def log(self, request: BaseRequest, response: web.StreamResponse, time: float) -> None:
        if "token" in request.query:
            request = request.clone(rel_url=request.rel_url.update_query({"token": "redacted"}))
        super().log(request, response, time)


def embedded(settings: Settings) -> Settings:
    """Settings where the captioner beside the orchestrator delivers to it over loopback."""
    o, c = settings.orchestrator, settings.captioner
    url = c.orchestrator_url or loopback_url(o.host, o.port)
    token = c.orchestrator_token
    producers = dict(settings.captions.producers)
    if not token:
        token = secrets.token_urlsafe(32)  # lives as long as this process
        producers[EMBEDDED] = token
    return settings.model_copy(
        update={
            "captioner": c.model_copy(
                update={"orchestrator_url": url, "orchestrator_token": token}
            ),
            "captions": settings.captions.model_copy(update={"producers": producers}),
        }
    )


async def serve(settings: Settings, *, captioner: bool = True) -> None:
    """Run until SIGINT or SIGTERM; a relay that fails for good (SASL refused) stops it
    with its error."""
    if captioner:
        settings = embedded(settings)
    settings = with_relay_reader(settings)  # the relay reads restricted rooms too
    runners: list[web.AppRunner] = []
    o = settings.orchestrator
    app = create_app(settings)
    runner = web.AppRunner(app, access_log_class=OrchestratorAccessLogger)
    await runner.setup()
    await web.TCPSite(runner, o.host, o.port).start()
    runners.append(runner)
    log.info("orchestrator on http://%s:%d/ (public: %s)", o.host, o.port, o.public_url)
    if captioner:
        c = settings.captioner
        crunner = web.AppRunner(create_captioner(settings), access_log_class=RedactingAccessLogger)
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
        url = loopback_url(o.host, o.port)
        tasks.append(asyncio.create_task(run_relay(settings, url, app[registry_key])))
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            if not task.cancelled() and (error := task.exception()) is not None:
                raise error
    finally:
        for task in tasks:
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(*tasks, return_exceptions=True)
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        for r in reversed(runners):
            await r.cleanup()


def loopback_url(host: str, port: int) -> str:
    """Where this process reaches its own orchestrator (a wildcard address → loopback)."""
    if host in ("", "0.0.0.0"):  # noqa: S104 (an address we connect to, not bind)
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}"


def run(args: argparse.Namespace, settings: Settings) -> int:
    try:
        asyncio.run(serve(settings, captioner=not args.no_captioner))
    except SaslError as exc:
        print(f"plenary serve: {exc}", file=sys.stderr)
        return 2
    return 0
