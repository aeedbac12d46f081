"""A fake Jitsi videobridge: serves a ``/colibri/stats`` payload, can switch it or go down.

bridge = FakeBridge(load_fixture("jvb-colibri-stats-2.3.63.json"))
await bridge.start()            # bridge.url is its /colibri/stats URL
bridge.payload = other          # next poll sees the new numbers
bridge.down = True              # answers 503 (as a JVB that is shutting down)
await bridge.stop()             # refuses connections altogether
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from aiohttp import web

FIXTURES = Path(__file__).resolve().parents[3] / "shared" / "fixtures" / "jitsi"
CURRENT = "jvb-colibri-stats-2.3.63.json"
LEGACY = "jvb-colibri-stats-legacy-2019.json"


def load_fixture(name: str) -> dict[str, Any]:
    data = json.loads((FIXTURES / name).read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


class FakeBridge:
    def __init__(self, payload: dict[str, Any], *, paths: int = 1) -> None:
        self.payload = payload
        self.down = False
        self.requests = 0
        self._runner: web.AppRunner | None = None
        self.port = 0
        app = web.Application()
        app.router.add_get("/colibri/stats", self._stats)
        for n in range(paths):  # several "bridges" on one server, for the benchmark
            app.router.add_get(f"/{n}/colibri/stats", self._stats)
        self._app = app

    async def _stats(self, request: web.Request) -> web.Response:
        self.requests += 1
        if self.down:
            return web.Response(status=503, text="shutting down")
        return web.json_response(self.payload)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/colibri/stats"

    async def start(self, port: int = 0) -> None:
        self._runner = web.AppRunner(self._app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", port)
        await site.start()
        server = site._server
        assert server is not None and server.sockets  # type: ignore[attr-defined]
        self.port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
