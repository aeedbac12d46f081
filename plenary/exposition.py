"""A registry per app and the aiohttp ``/metrics`` view, shared by the orchestrator and captioner.

Each app gets its own ``CollectorRegistry`` (never prometheus_client's global one), so
two apps in one process (``plenary serve``, tests) each expose only their own series
plus the standard process, platform and GC collectors:

    app[registry_key] = new_registry([*CAPTIONER_METRICS, EngineCollector(...)])
    app.router.add_get("/metrics", metrics_view)
"""

from __future__ import annotations

from collections.abc import Iterable

from aiohttp import web
from prometheus_client import (
    CONTENT_TYPE_PLAIN_0_0_4,
    GCCollector,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.registry import Collector, CollectorRegistry

from plenary.host_metrics import HostCollector

registry_key = web.AppKey("metrics_registry", CollectorRegistry)


def new_registry(collectors: Iterable[Collector], *, host: bool = False) -> CollectorRegistry:
    """A registry with the standard process collectors, ``collectors`` and, if asked, host load."""
    registry = CollectorRegistry(auto_describe=True)
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)
    for collector in collectors:
        registry.register(collector)
    if host:
        registry.register(HostCollector())
    return registry


async def metrics_view(request: web.Request) -> web.Response:
    """The app's series in the Prometheus text format 0.0.4 (what Prometheus 2.x expects)."""
    body = generate_latest(request.app[registry_key])
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_PLAIN_0_0_4})
