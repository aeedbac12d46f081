"""Videobridge and Jicofo statistics: both fixture payloads, polling, a bridge going down."""

from __future__ import annotations

import asyncio
import time

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import CollectorRegistry

from bench.harness.fake_jvb import CURRENT, LEGACY, FakeBridge, load_fixture
from orchestrator.jvb import (
    Reading,
    StatsPoller,
    bridge_labels,
    parse_colibri,
    parse_jicofo,
    version_of,
)
from plenary.settings import MetricsSettings


def values(readings: list[Reading]) -> dict[str, float]:
    out = {}
    for r in readings:
        key = r.spec.name + "".join(f"{{{k}={v}}}" for k, v in r.spec.labels)
        out[key] = r.value
    return out


def samples(poller: StatsPoller) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    registry = CollectorRegistry()
    registry.register(poller)
    text = generate_latest(registry).decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_current_payload_in_base_units() -> None:
    payload = load_fixture(CURRENT)
    payload.update(bit_rate_download=1234.5, bit_rate_upload=2000, rtt_aggregate=37.5)
    got = values(parse_colibri(payload))
    assert got["download_bytes_per_second"] == 1_234_500.0 / 8
    assert got["upload_bytes_per_second"] == 2_000_000.0 / 8
    assert got["rtt_seconds"] == pytest.approx(0.0375)
    assert got["sent_bytes"] == 1314398151
    assert got["received_bytes"] == 759150207
    assert got["sent_packets"] == 1560207
    assert got["threads"] == 58
    assert got["participants"] == 19  # total_participants, a counter
    assert got["conferences_created"] == 10
    assert got["healthy"] == 1.0 and got["draining"] == 0.0
    assert got["loss_ratio{direction=overall}"] == 0.0
    assert got["receive_only_endpoints"] == 0
    assert version_of(payload) == "2.3.63-g2a4cc2f8"


def test_legacy_payload_maps_old_keys() -> None:
    got = values(parse_colibri(load_fixture(LEGACY)))
    assert got["download_bytes_per_second"] == 62.5  # 0.5 kbps
    assert got["upload_bytes_per_second"] == 62.5
    assert got["loss_ratio{direction=incoming}"] == 0.5  # loss_rate_download
    assert got["loss_ratio{direction=outgoing}"] == 0.5  # loss_rate_upload
    assert "loss_ratio{direction=overall}" not in got  # not in 2019 payloads
    assert got["stress_level"] == 0.6
    assert got["endpoints"] == 0  # "participants" stood for endpoints then
    assert got["endpoints_sending_audio"] == 0  # audiochannels
    assert got["endpoints_sending_video"] == 10  # the modern key wins over videochannels
    assert got["sent_bytes"] == 257754048
    assert "receive_only_endpoints" not in got
    assert version_of(load_fixture(LEGACY)) == "unknown"


def test_odd_values_are_skipped_not_fatal() -> None:
    got = values(parse_colibri({"stress_level": "high", "conferences": None, "endpoints": 3}))
    assert got == {"endpoints": 3.0}


def test_jicofo_payload() -> None:
    got = values(
        parse_jicofo(
            {
                "conferences": 2,
                "participants": 7,
                "largest_conference": 5,
                "total_conferences_created": 40,
                "bridge_selector": {"bridge_count": 3, "operational_bridge_count": 2},
            }
        )
    )
    assert got["bridges"] == 3 and got["operational_bridges"] == 2
    assert got["largest_conference_participants"] == 5
    assert got["conferences_created"] == 40


def test_bridge_labels_are_host_port_unless_ambiguous() -> None:
    urls = ["http://a:8080/colibri/stats", "http://b:8080/x", "http://b:8080/y"]
    assert bridge_labels(urls) == ["a:8080", "http://b:8080/x", "http://b:8080/y"]


async def test_poller_two_bridges_then_one_goes_down() -> None:
    current = FakeBridge(load_fixture(CURRENT) | {"bit_rate_download": 800, "stress_level": 0.9})
    legacy = FakeBridge(load_fixture(LEGACY))
    await current.start()
    await legacy.start()
    jicofo = FakeBridge({"conferences": 1, "participants": 4})
    await jicofo.start()
    settings = MetricsSettings(
        bridges=[current.url, legacy.url], jicofo=jicofo.url, poll_interval=1, poll_timeout=2
    )
    poller = StatsPoller(settings)
    cur = (("bridge", f"127.0.0.1:{current.port}"),)
    leg = (("bridge", f"127.0.0.1:{legacy.port}"),)
    try:
        before = time.time()
        await poller.poll_once()
        s = samples(poller)
        assert s[("plenary_jvb_up", cur)] == 1.0
        assert s[("plenary_jvb_up", leg)] == 1.0
        assert s[("plenary_jvb_download_bytes_per_second", cur)] == 100_000.0
        assert s[("plenary_jvb_download_bytes_per_second", leg)] == 62.5
        assert s[("plenary_jvb_stress_level", cur)] == 0.9
        assert s[("plenary_jvb_stress_level", leg)] == 0.6
        assert s[("plenary_jvb_info", (*cur, ("version", "2.3.63-g2a4cc2f8")))] == 1.0
        assert s[("plenary_jvb_info", (*leg, ("version", "unknown")))] == 1.0
        assert s[("plenary_jvb_loss_ratio", (*leg, ("direction", "incoming")))] == 0.5
        assert s[("plenary_jvb_sent_bytes_total", cur)] == 1314398151
        assert s[("plenary_jicofo_up", ())] == 1.0
        assert s[("plenary_jicofo_participants", ())] == 4
        first_success = s[("plenary_jvb_last_success_timestamp_seconds", cur)]
        assert before <= first_success <= time.time()

        current.down = True  # answers 503
        await legacy.stop()  # refuses connections
        await poller.poll_once()
        s = samples(poller)
        for bridge in (cur, leg):
            assert s[("plenary_jvb_up", bridge)] == 0.0
            assert s[("plenary_jvb_poll_failures_total", bridge)] == 1.0
            # The last success stays, and nothing else of a down bridge is presented.
            assert ("plenary_jvb_last_success_timestamp_seconds", bridge) in s
            leftovers = [k for k in s if bridge[0] in k[1] and k[0].startswith("plenary_jvb_")]
            assert sorted(k[0] for k in leftovers) == [
                "plenary_jvb_last_success_timestamp_seconds",
                "plenary_jvb_poll_failures_total",
                "plenary_jvb_up",
            ]
        assert s[("plenary_jvb_last_success_timestamp_seconds", cur)] == first_success

        current.down = False  # back: fresh values again
        await poller.poll_once()
        s = samples(poller)
        assert s[("plenary_jvb_up", cur)] == 1.0
        assert s[("plenary_jvb_download_bytes_per_second", cur)] == 100_000.0
        assert s[("plenary_jvb_last_success_timestamp_seconds", cur)] > first_success
        assert s[("plenary_jvb_up", leg)] == 0.0
    finally:
        await current.stop()
        await legacy.stop()
        await jicofo.stop()


async def test_poller_runs_on_its_own_schedule_not_on_scrapes() -> None:
    bridge = FakeBridge(load_fixture(CURRENT))
    await bridge.start()
    poller = StatsPoller(MetricsSettings(bridges=[bridge.url], poll_interval=1))
    try:
        for _ in range(20):
            samples(poller)  # scrapes do not poll
        assert bridge.requests == 0
        task = asyncio.create_task(poller.run())
        await asyncio.sleep(1.5)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        assert bridge.requests == 2  # at 0 s and 1 s
    finally:
        await bridge.stop()
