"""Plenary's own metrics: names the rules and dashboard use exist, host load, IRC, orchestrator."""

from __future__ import annotations

import json
import re
from pathlib import Path
from types import SimpleNamespace

from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import CollectorRegistry

from bench.harness.caption_feed import BusCaptionSource, caption_bus
from bench.harness.fake_jvb import CURRENT, load_fixture
from bots.captioner import metrics as captioner_metrics
from bots.irc.metrics import RelayCollector
from bots.irc.relay import Relay
from orchestrator import metrics
from orchestrator.app import create_app
from orchestrator.jvb import StatsPoller, parse_colibri, parse_jicofo
from plenary.host_metrics import (
    HostCollector,
    parse_cpu,
    parse_loadavg,
    parse_meminfo,
    parse_net_dev,
)
from plenary.settings import IrcSettings, MetricsSettings, load_settings

MONITORING = Path(__file__).resolve().parent.parent / "deploy" / "monitoring"


def sample_values(registry: CollectorRegistry) -> dict[str, float]:
    text = generate_latest(registry).decode()
    return {
        s.name + json.dumps(s.labels, sort_keys=True): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def every_series_name() -> set[str]:
    """Sample names of every Plenary collector, each fed enough to show all its series."""
    registry = CollectorRegistry()
    for m in (*metrics.METRICS, *captioner_metrics.METRICS):
        registry.register(m)
    poller = StatsPoller(MetricsSettings(bridges=["http://jvb:8080/colibri/stats"], jicofo="x"))
    bridge, jicofo = poller.targets
    bridge.up, bridge.readings = True, parse_colibri(load_fixture(CURRENT))
    jicofo.up, jicofo.readings = True, parse_jicofo({"conferences": 1})
    registry.register(poller)
    engine = SimpleNamespace(
        executor=SimpleNamespace(_work_queue=SimpleNamespace(qsize=lambda: 0)),
        threads=2,
        settings=SimpleNamespace(max_streams=200, max_rss_mb=4096),
        recognizers=SimpleNamespace(idle_count=lambda: 0, created=0, in_use=0),
    )
    registry.register(captioner_metrics.EngineCollector(lambda: engine))  # type: ignore[arg-type,return-value]
    irc = IrcSettings.model_validate(
        {"networks": {"libera": {}}, "rooms": [{"room": "r", "network": "libera", "channel": "#r"}]}
    )
    registry.register(RelayCollector(Relay(irc, BusCaptionSource(caption_bus()))))
    registry.register(metrics.FanOutCollector(caption_bus()))  # plenary_caption_events_total
    text = generate_latest(registry).decode()
    suffixes = {"counter": ["_total"], "histogram": ["_bucket", "_count", "_sum"]}
    return {
        f.name + suffix
        for f in text_string_to_metric_families(text)
        for suffix in suffixes.get(f.type, [""])
    }


def test_rules_and_dashboard_use_only_exported_series() -> None:
    names = every_series_name()
    used = set(re.findall(r"\bplenary_[a-z0-9_]+", (MONITORING / "rules.yml").read_text()))
    dashboard = json.loads((MONITORING / "grafana-dashboard.json").read_text())
    exprs = " ".join(t["expr"] for p in dashboard["panels"] for t in p["targets"])
    used |= set(re.findall(r"\bplenary_[a-z0-9_]+", exprs))
    assert len(used) > 20
    assert used - names == set()


def test_host_parsers() -> None:
    cpu = parse_cpu("cpu  100 5 50 1000 10 0 2 0 0 0\ncpu0 1 2 3 4\n", 100)
    assert cpu["user"] == 1.0 and cpu["idle"] == 10.0 and cpu["softirq"] == 0.02
    mem = parse_meminfo("MemTotal:  2048 kB\nMemAvailable: 1024 kB\nHugePages_Total: 0\n")
    assert mem["MemTotal"] == 2048 * 1024 and mem["HugePages_Total"] == 0
    assert parse_loadavg("1.08 1.09 1.60 6/114 5733\n") == (1.08, 1.09, 1.60)
    net = parse_net_dev(
        "Inter-|   Receive\n face |bytes\n" "    lo: 4170 744 0 0 0 0 0 0 9999 744 0 0 0 0 0 0\n"
    )
    assert net == {"lo": (4170.0, 9999.0)}


def test_host_collector_reads_proc() -> None:
    registry = CollectorRegistry()
    registry.register(HostCollector())
    values = sample_values(registry)
    assert values["plenary_host_memory_total_bytes{}"] > 0
    assert values['plenary_host_cpu_seconds_total{"mode": "idle"}'] > 0
    assert 'plenary_host_network_receive_bytes_total{"device": "lo"}' in values
    assert "plenary_host_load1{}" in values


async def test_orchestrator_metrics_endpoint(tmp_path: Path) -> None:
    settings = load_settings(orchestrator={"database": tmp_path / "db.sqlite3"})
    async with TestClient(TestServer(create_app(settings))) as client:
        before = await (await client.get("/metrics")).text()
        metrics.ATTENDEES_DENIED.labels(reason="not_in_group").inc()
        metrics.JWTS_ISSUED.inc()
        metrics.LOGIN_SECONDS.labels(source="ldap").observe(0.2)
        response = await client.get("/metrics")
        assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        after = await response.text()

    def value(text: str, name: str) -> float:
        for family in text_string_to_metric_families(text):
            for s in family.samples:
                if s.name + json.dumps(s.labels, sort_keys=True) == name:
                    return s.value
        return 0.0

    assert value(after, 'plenary_attendees_denied_total{"reason": "not_in_group"}') == (
        value(before, 'plenary_attendees_denied_total{"reason": "not_in_group"}') + 1
    )
    assert (
        value(after, "plenary_jwts_issued_total{}")
        == value(before, "plenary_jwts_issued_total{}") + 1
    )
    assert value(after, 'plenary_rooms{"state": "live"}') == 0
    assert "process_cpu_seconds_total" in after
    assert "plenary_jvb_up" not in after  # no bridge configured
    assert "plenary_host_" not in after  # host metrics are off by default
