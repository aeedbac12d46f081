"""A real Prometheus scrapes a running orchestrator and captioner; promtool checks our output.

The orchestrator and the captioner run in-process on loopback ports, a Korean utterance
is decoded through the captioner's vosk websocket, and a Prometheus (Debian package
``prometheus``) started here with a temporary config and storage answers PromQL about
it. ``promtool`` lints the live ``/metrics`` of both apps and unit-tests the alert rules.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from bench.harness import procs
from bench.harness.audio import read_pcm
from bench.harness.fake_jvb import CURRENT, FakeBridge, load_fixture
from bench.harness.netutil import free_port
from bots.captioner.app import create_app as create_captioner
from bots.captioner.engine import Engine
from orchestrator.app import create_app as create_orchestrator
from plenary.corpus import Utterance
from plenary.settings import Settings, load_settings

MONITORING = Path(__file__).resolve().parent.parent / "deploy" / "monitoring"
PROMETHEUS = shutil.which("prometheus")
PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(PROMTOOL is None, reason="promtool not installed")


def promtool(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    assert PROMTOOL is not None
    return subprocess.run(
        [PROMTOOL, *args], input=stdin, capture_output=True, text=True, timeout=60, check=False
    )


@needs_promtool
def test_alert_rules_pass_promtool_check_and_unit_tests() -> None:
    checked = promtool("check", "rules", str(MONITORING / "rules.yml"))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS: 10 rules found" in checked.stdout
    tested = subprocess.run(
        [str(PROMTOOL), "test", "rules", "rules.test.yml"],
        cwd=MONITORING,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "SUCCESS" in tested.stdout


@needs_promtool
def test_scrape_config_is_valid() -> None:
    checked = promtool("check", "config", str(MONITORING / "prometheus.yml"))
    assert checked.returncode == 0, checked.stdout + checked.stderr


# --- live apps ---


async def speak(port: int, utt: Utterance) -> list[dict[str, Any]]:
    """Send one utterance over the vosk protocol; the replies."""
    pcm, rate = read_pcm(utt.path, 16000)
    replies = []
    async with (
        aiohttp.ClientSession() as session,
        session.ws_connect(f"http://127.0.0.1:{port}/?room=metrics&speaker=ana") as ws,
    ):
        await ws.send_str(json.dumps({"config": {"sample_rate": rate}}))
        step = 16000  # 0.5 s frames, as Jigasi sends
        for i in range(0, len(pcm), step):
            await ws.send_bytes(pcm[i : i + step])
            replies.append(await reply(ws))
        await ws.send_str('{"eof" : 1}')
        replies.append(await reply(ws))
    return replies


async def reply(ws: aiohttp.ClientWebSocketResponse) -> dict[str, Any]:
    """The captioner's next JSON reply; a close (e.g. a refused stream) fails with its reason."""
    message = await ws.receive(timeout=60)
    assert (
        message.type == aiohttp.WSMsgType.TEXT
    ), f"no reply: {message.type.name} {message.data} {message.extra}"
    reply: dict[str, Any] = json.loads(message.data)
    return reply


@pytest.fixture
async def live_apps(
    settings: Settings, engine: Engine, tmp_path: Path
) -> AsyncIterator[tuple[TestServer, TestServer, FakeBridge]]:
    bridge = FakeBridge(load_fixture(CURRENT) | {"bit_rate_download": 1500})
    await bridge.start()
    s = load_settings(
        orchestrator={"database": tmp_path / "plenary.sqlite3"},
        metrics={"bridges": [bridge.url], "poll_interval": 1},
    )
    orchestrator = TestServer(create_orchestrator(s), host="127.0.0.1", port=free_port())
    captioner = TestServer(create_captioner(s, engine=engine), host="127.0.0.1", port=free_port())
    await orchestrator.start_server()
    await captioner.start_server()
    try:
        yield orchestrator, captioner, bridge
    finally:
        await captioner.close()
        await orchestrator.close()
        await bridge.stop()


async def fetch(url: str) -> str:
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        return await response.text()


@pytest.mark.speech
@needs_promtool
@pytest.mark.skipif(PROMETHEUS is None, reason="prometheus not installed")
async def test_real_prometheus_scrapes_both_apps(
    live_apps: tuple[TestServer, TestServer, FakeBridge],
    ko_corpus: list[Utterance],
    tmp_path: Path,
) -> None:
    orchestrator, captioner, _ = live_apps
    replies = await speak(captioner.port or 0, ko_corpus[0])
    assert any(r.get("text") for r in replies), "the utterance produced no final"

    # promtool lints the live output of both apps (names, units, help, label sets).
    for server in (orchestrator, captioner):
        text = await fetch(f"http://127.0.0.1:{server.port}/metrics")
        linted = await asyncio.to_thread(promtool, "check", "metrics", stdin=text)
        assert linted.returncode == 0, f"{server.port}: {linted.stdout}{linted.stderr}"
    captioner_text = await fetch(f"http://127.0.0.1:{captioner.port}/metrics")
    assert "process_resident_memory_bytes" in captioner_text
    assert "plenary_captioner_queue_depth" in captioner_text

    port = free_port()
    config = tmp_path / "prometheus.yml"
    config.write_text(
        f"""
global: {{scrape_interval: 1s, evaluation_interval: 1s}}
scrape_configs:
  - job_name: plenary-orchestrator
    static_configs: [{{targets: ["127.0.0.1:{orchestrator.port}"]}}]
  - job_name: plenary-captioner
    static_configs: [{{targets: ["127.0.0.1:{captioner.port}"]}}]
""",
        encoding="utf-8",
    )
    assert PROMETHEUS is not None
    proc = subprocess.Popen(
        [
            PROMETHEUS,
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=(tmp_path / "prometheus.log").open("w"),
    )
    api = f"http://127.0.0.1:{port}/api/v1/query"

    async def query(expr: str) -> list[dict[str, Any]]:
        async with (
            aiohttp.ClientSession() as session,
            session.get(api, params={"query": expr}) as response,
        ):
            body = await response.json()
        assert body["status"] == "success", body
        result: list[dict[str, Any]] = body["data"]["result"]
        return result

    try:
        deadline = time.monotonic() + 60
        decoded: list[dict[str, Any]] = []
        latency: list[dict[str, Any]] = []
        bridge: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            try:
                decoded = await query(
                    'plenary_captioner_audio_decoded_seconds_total{job="plenary-captioner"}'
                )
                latency = await query(
                    'sum(plenary_caption_latency_seconds_count{job="plenary-captioner"})'
                )
                bridge = await query("plenary_jvb_download_bytes_per_second")
            except (aiohttp.ClientError, AssertionError):
                pass
            if decoded and latency and bridge:
                break
            await asyncio.sleep(0.5)
        log = (tmp_path / "prometheus.log").read_text(encoding="utf-8")[-2000:]
        assert decoded, f"no caption metric in Prometheus after 60 s; its log: {log}"
        assert float(decoded[0]["value"][1]) > 1.0  # seconds of speech run through Vosk
        assert float(latency[0]["value"][1]) >= 1  # at least one final's latency observed
        assert bridge and float(bridge[0]["value"][1]) == 1_500_000.0 / 8
        up = await query("up")
        assert {r["metric"]["job"]: r["value"][1] for r in up} == {
            "plenary-orchestrator": "1",
            "plenary-captioner": "1",
        }
    finally:
        procs.stop(proc, grace=20)
