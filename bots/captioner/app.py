"""The captioner's aiohttp application: factory and routes table."""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
from collections.abc import AsyncIterator

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger
from aiohttp.typedefs import Handler
from aiohttp.web_log import AccessLogger

from bots.captioner.bridge_ws import bridge_sessions_ctx, bridge_sessions_key, bridge_stream
from bots.captioner.captioner_keys import captioner_bus_key, captioner_settings_key, engine_key
from bots.captioner.delivery import Delivery
from bots.captioner.engine import Engine
from bots.captioner.metrics import new_captioner_registry
from bots.captioner.vosk_models import ModelRegistry
from bots.captioner.vosk_ws import vosk_stream
from plenary.events import CaptionEvent
from plenary.exposition import metrics_view, registry_key
from plenary.fanout import FanOut, Overflow
from plenary.settings import Settings

log = logging.getLogger(__name__)

PROTECTED = ("/", "/transcribe")  # the websockets; /healthz and /metrics stay open
delivery_key = web.AppKey("delivery", Delivery)


@web.middleware
async def access_token(request: web.Request, handler: Handler) -> web.StreamResponse:
    """With captioner.access_token set, the websockets need it (?token= or Bearer)."""
    expected = request.app[captioner_settings_key].captioner.access_token
    if expected and request.path in PROTECTED:
        scheme, _, bearer = request.headers.get("Authorization", "").partition(" ")
        given = request.query.get("token") or (bearer.strip() if scheme.lower() == "bearer" else "")
        if not given:
            log.warning("refused a stream from %s: no access token", request.remote)
            raise web.HTTPUnauthorized(
                text="This captioner needs an access token: add ?token=<token> to the URL "
                "or send Authorization: Bearer <token>.\n",
                headers={"WWW-Authenticate": "Bearer"},
            )
        if not hmac.compare_digest(given.encode(), expected.encode()):
            log.warning("refused a stream from %s: wrong access token", request.remote)
            raise web.HTTPUnauthorized(
                text="Wrong access token for this captioner.\n",
                headers={"WWW-Authenticate": "Bearer"},
            )
    return await handler(request)


async def health(request: web.Request) -> web.Response:
    """200 while the captioner takes new streams; 503 with the reason once it is full.

    A load balancer (HAProxy's ``http-check expect status 200``, deploy/haproxy) stops
    choosing a full captioner; the body is the same either way, for people and monitors.
    """
    engine = request.app[engine_key]
    sessions = request.app.get(bridge_sessions_key)
    reason = engine.full_reason()
    return web.json_response(
        {
            "status": "full" if reason else "ok",
            **({"reason": reason} if reason else {}),
            "languages": engine.models.languages,
            "streams": engine.active_streams,
            "max_streams": engine.settings.max_streams,
            "bridge_sessions": len(sessions.sessions) if sessions is not None else 0,
            "threads": engine.threads,
            "recognizers": engine.recognizers.stats(),
            "rss_mb": round(engine.memory.rss_mb(), 1),
            "max_rss_mb": engine.settings.max_rss_mb,
        },
        status=503 if reason else 200,
    )


def routes() -> list[web.RouteDef]:
    return [
        web.get("/", vosk_stream),  # vosk-server protocol, docs/protocols.md §1
        web.get("/transcribe", bridge_stream),  # Jitsi videobridge MediaJson, §1b
        web.get("/healthz", health),
        web.get("/metrics", metrics_view),
    ]


async def engine_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[captioner_settings_key]
    engine = Engine(settings.captioner, ModelRegistry.for_settings(settings))
    # Load the default language's model before accepting streams, so the first
    # speaker does not wait seconds and a broken model stops start-up at once.
    await engine.preload([settings.captioner.default_language])
    app[engine_key] = engine
    yield
    # The models go now, not with the app: aiohttp's middleware cache keeps a stopped
    # Application (and so this engine) referenced, which in a process that runs the
    # captioner more than once (the demo, tests) would keep ~600 MB per run.
    engine.close()
    engine.models.close()


class RedactingAccessLogger(AbstractAccessLogger):
    """aiohttp's access log with ``?token=`` blanked: the access token never reaches a log;
    ``/healthz`` only when it answers 503 (full).

    Pass it as ``access_log_class`` wherever the captioner app is served.
    """

    def __init__(self, logger: logging.Logger, log_format: str) -> None:
        super().__init__(logger, log_format)
        self._inner = AccessLogger(logger, log_format)

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        if request.path == "/healthz" and response.status == 200:
            return  # a load balancer asks every second; a full captioner's 503 is logged
        if "token" in request.query:
            request = request.clone(rel_url=request.rel_url.update_query({"token": "redacted"}))
        self._inner.log(request, response, time)


async def delivery_ctx(app: web.Application) -> AsyncIterator[None]:
    """Deliver every caption to the orchestrator, when captioner.orchestrator_url names one."""
    c = app[captioner_settings_key].captioner
    if not c.orchestrator_url:
        log.warning(
            "captioner.orchestrator_url is not set: captions go back to Jitsi only "
            "(sendBack) and reach no captions page, transcript or IRC channel"
        )
        yield
        return
    if not c.orchestrator_token:
        log.warning("captioner.orchestrator_token is not set: the orchestrator will refuse")
    delivery = Delivery(c.orchestrator_url, c.orchestrator_token, c.delivery_queue)
    await delivery.start()
    app[delivery_key] = delivery
    app[captioner_bus_key].listen(delivery.offer)
    yield
    await delivery.close()


def caption_bus(maxsize: int = 1000) -> FanOut[CaptionEvent]:
    """Every caption the captioner makes, to the delivery (a listener) and to in-process
    readers. Those cannot resume, so one that falls behind loses its oldest events
    (``dropped``) rather than being cut off; recognition never waits for it."""
    return FanOut(overflow=Overflow.DROP_OLDEST, maxsize=maxsize)


async def pool_upkeep_ctx(app: web.Application) -> AsyncIterator[None]:
    """Let idle recognizers beyond the recent peak go (``Engine.upkeep``) while it runs."""
    task = asyncio.create_task(app[engine_key].upkeep())
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def create_app(
    settings: Settings, bus: FanOut[CaptionEvent] | None = None, engine: Engine | None = None
) -> web.Application:
    """The captioner app. Pass ``engine`` to share an already loaded one (its owner closes it)."""
    app = web.Application(middlewares=[access_token])
    app[captioner_settings_key] = settings
    app[captioner_bus_key] = bus or caption_bus()
    if engine is None:
        app.cleanup_ctx.append(engine_ctx)
    else:
        app[engine_key] = engine
    # The recognizer pool gives back what a peak took, for as long as the app serves.
    app.cleanup_ctx.append(pool_upkeep_ctx)
    # Delivery outlives the bridge sessions, so their last finals still go out.
    app.cleanup_ctx.append(delivery_ctx)
    # Bridge sessions are closed before the engine they use (cleanup runs in reverse).
    app.cleanup_ctx.append(bridge_sessions_ctx)
    app[registry_key] = new_captioner_registry(
        lambda: app.get(engine_key), host=settings.metrics.host
    )
    app.add_routes(routes())
    return app
