"""A real headless Chromium driven over the DevTools protocol, with axe-core injected.

Only what the accessibility tests need: open a page, run JavaScript, press Tab,
wait for a navigation, run axe. No driver, no npm at run time except axe.min.js.

    async with Browser.start(tmp_path) as browser:
        page = await browser.new_page()
        await page.goto("http://127.0.0.1:8080/rooms")
        assert await page.axe() == []
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import shutil
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp

from bench.harness.netutil import free_port

AXE = Path(__file__).parent / ".node" / "node_modules" / "axe-core" / "axe.min.js"
CANDIDATES = ("chromium", "chromium-browser", "google-chrome")


def chromium_binary() -> str | None:
    for name in CANDIDATES:
        found = shutil.which(name)
        if found:
            return found
    return None


class Page:
    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self._ws = ws
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._events: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for msg in self._ws:
            data = json.loads(msg.data)
            if "id" in data and data["id"] in self._pending:
                self._pending.pop(data["id"]).set_result(data)
            elif "method" in data:
                await self._events.put(data)

    async def send(self, method: str, **params: Any) -> dict[str, Any]:
        ident = next(self._ids)
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[ident] = future
        await self._ws.send_json({"id": ident, "method": method, "params": params})
        reply = await asyncio.wait_for(future, 30)
        if "error" in reply:
            raise RuntimeError(f"{method}: {reply['error']}")
        result: dict[str, Any] = reply.get("result", {})
        return result

    async def _wait_event(self, method: str, timeout: float = 30) -> dict[str, Any]:
        async def wait() -> dict[str, Any]:
            while True:
                event = await self._events.get()
                if event["method"] == method:
                    return event

        return await asyncio.wait_for(wait(), timeout)

    def _drain(self) -> None:
        while not self._events.empty():
            self._events.get_nowait()

    async def goto(self, url: str) -> None:
        self._drain()
        await self.send("Page.navigate", url=url)
        await self._wait_event("Page.loadEventFired")

    async def evaluate(self, expression: str) -> Any:
        reply = await self.send(
            "Runtime.evaluate", expression=expression, awaitPromise=True, returnByValue=True
        )
        if "exceptionDetails" in reply:
            raise RuntimeError(f"JavaScript failed: {reply['exceptionDetails']}")
        return reply["result"].get("value")

    async def until(self, expression: str, seconds: float = 10) -> Any:
        """The expression's first truthy value, polled every 0.1 s for ``seconds``."""
        for _ in range(int(seconds * 10)):
            value = await self.evaluate(expression)
            if value:
                return value
            await asyncio.sleep(0.1)
        raise AssertionError(f"timed out waiting for {expression}")

    async def submit(self, expression: str) -> None:
        """Run ``expression`` (which submits a form) and wait for the next page."""
        self._drain()
        await self.evaluate(expression)
        await self._wait_event("Page.loadEventFired")

    async def press_tab(self) -> dict[str, Any]:
        """Press Tab like a keyboard user; returns what has focus and how it looks."""
        for kind in ("rawKeyDown", "keyUp"):
            await self.send("Input.dispatchKeyEvent", type=kind, key="Tab", code="Tab",
                            windowsVirtualKeyCode=9)  # fmt: skip
        info: dict[str, Any] = await self.evaluate(
            "(() => { const e = document.activeElement; const s = getComputedStyle(e);"
            " return {tag: e.tagName, text: e.textContent.trim(), href: e.getAttribute('href'),"
            " outline: s.outlineStyle, outlineWidth: s.outlineWidth,"
            " focusVisible: e.matches(':focus-visible')}; })()"
        )
        return info

    async def axe(self) -> list[dict[str, Any]]:
        """axe-core's violations on the current page (every rule axe runs by default)."""
        await self.evaluate(AXE.read_text(encoding="utf-8"))
        violations: list[dict[str, Any]] = await self.evaluate(
            "axe.run(document).then(r => r.violations.map(v => ({id: v.id, impact: v.impact,"
            " help: v.help, nodes: v.nodes.map(n => n.html)})))"
        )
        return violations

    async def close(self) -> None:
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader
        await self._ws.close()


class Browser:
    def __init__(self, process: subprocess.Popen[bytes], port: int) -> None:
        self.process = process
        self.port = port
        self.http = aiohttp.ClientSession()
        self.pages: list[Page] = []

    @classmethod
    @contextlib.asynccontextmanager
    async def start(cls, profile: Path) -> AsyncIterator[Browser]:
        binary = chromium_binary()
        if binary is None:
            raise RuntimeError("chromium is not installed")
        port = free_port()
        process = subprocess.Popen(
            [binary, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
             "--no-first-run", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
             f"--user-data-dir={profile}", f"--remote-debugging-port={port}",
             "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        browser = cls(process, port)
        try:
            await browser._wait_ready()
            yield browser
        finally:
            for page in browser.pages:
                await page.close()
            await browser.http.close()
            process.terminate()
            try:
                await asyncio.to_thread(process.wait, 10)
            except subprocess.TimeoutExpired:
                process.kill()
                await asyncio.to_thread(process.wait)

    async def _wait_ready(self) -> None:
        for _ in range(200):
            if self.process.poll() is not None:
                raise RuntimeError(f"chromium exited with {self.process.returncode}")
            with contextlib.suppress(aiohttp.ClientError):
                async with self.http.get(f"http://127.0.0.1:{self.port}/json/version") as r:
                    if r.status == 200:
                        return
            await asyncio.sleep(0.1)
        raise RuntimeError("chromium's DevTools endpoint did not come up")

    async def new_page(self) -> Page:
        async with self.http.put(f"http://127.0.0.1:{self.port}/json/new?about:blank") as r:
            target = await r.json(content_type=None)
        ws = await self.http.ws_connect(target["webSocketDebuggerUrl"], max_msg_size=0)
        page = Page(ws)
        self.pages.append(page)
        await page.send("Page.enable")
        await page.send("Runtime.enable")
        await page.send("Page.setBypassCSP", enabled=True)  # so axe can be injected
        return page
