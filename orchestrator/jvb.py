"""Videobridge and Jicofo statistics, polled on a schedule and re-exported in base units.

``parse_colibri`` and ``parse_jicofo`` turn a ``/colibri/stats`` or Jicofo ``/stats``
JSON object into readings and do no I/O; ``StatsPoller`` fetches every configured URL
each ``metrics.poll_interval`` seconds (never on a Prometheus scrape, so a slow bridge
cannot stall a scrape) and is the collector that presents the latest readings:

    poller = StatsPoller(settings.metrics)
    registry.register(poller)
    task = asyncio.create_task(poller.run())  # or, one node of several polling:
    task = asyncio.create_task(poller.run_held(db, settings.orchestrator.lease_seconds))

Units follow Prometheus naming, whose base unit of data is the byte (``promtool check
metrics`` refuses bits): the bridge reports bitrates in kbps (times 125 → bytes per
second) and RTT in ms (→ seconds); loss is already a ratio. Both the current payload
(2.3.x) and the 2019 one (``loss_rate_download``, ``audiochannels``, ``videochannels``)
are understood. A target that fails a poll reports ``up 0`` and its last successful
poll time only: its other values are dropped, never shown as fresh.

Where several orchestrator nodes share one database, ``run_held`` polls on the node
holding the lease ``jvb-poller`` only (orchestrator/leases.py); the others export no
bridge series until they take the lease over, rather than ``up 0`` for bridges that are
fine.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from orchestrator.db import Database
from orchestrator.leases import run_while_held
from plenary.settings import MetricsSettings

log = logging.getLogger(__name__)

GAUGE, COUNTER = "gauge", "counter"


@dataclass(frozen=True, slots=True)
class Spec:
    """One exported series: where its value is in the payload and how to convert it."""

    name: str  # without prefix; counters without _total
    help: str
    keys: tuple[str, ...]  # first key present wins (current name first, legacy after)
    kind: str = GAUGE
    scale: float = 1.0
    labels: tuple[tuple[str, str], ...] = ()


JVB_SPECS: tuple[Spec, ...] = (
    Spec(
        "download_bytes_per_second",
        "Rate the bridge receives media at (bit_rate_download kbps / 8 * 1000).",
        ("bit_rate_download",),
        scale=125.0,
    ),
    Spec(
        "upload_bytes_per_second",
        "Rate the bridge sends media at (bit_rate_upload kbps / 8 * 1000).",
        ("bit_rate_upload",),
        scale=125.0,
    ),
    Spec(
        "download_packets_per_second",
        "RTP packets a second the bridge receives.",
        ("packet_rate_download",),
    ),
    Spec(
        "upload_packets_per_second",
        "RTP packets a second the bridge sends.",
        ("packet_rate_upload",),
    ),
    Spec("rtt_seconds", "Mean round-trip time to the endpoints.", ("rtt_aggregate",), scale=0.001),
    Spec(
        "loss_ratio",
        "Packet loss ratio (0-1) by direction as the bridge sees it.",
        ("incoming_loss", "loss_rate_download"),
        labels=(("direction", "incoming"),),
    ),
    Spec(
        "loss_ratio",
        "",
        ("outgoing_loss", "loss_rate_upload"),
        labels=(("direction", "outgoing"),),
    ),
    Spec("loss_ratio", "", ("overall_loss",), labels=(("direction", "overall"),)),
    Spec(
        "stress_level",
        "The bridge's own load estimate (1 means at its configured capacity).",
        ("stress_level",),
    ),
    Spec("conferences", "Conferences on the bridge.", ("conferences",)),
    Spec("endpoints", "Endpoints (participants) on the bridge.", ("endpoints", "participants")),
    Spec(
        "largest_conference_endpoints",
        "Endpoints in the largest conference on the bridge.",
        ("largest_conference",),
    ),
    Spec(
        "endpoints_sending_audio",
        "Endpoints sending audio.",
        ("endpoints_sending_audio", "audiochannels"),
    ),
    Spec(
        "endpoints_sending_video",
        "Endpoints sending video.",
        ("endpoints_sending_video", "videochannels"),
    ),
    Spec(
        "receive_only_endpoints",
        "Endpoints that send neither audio nor video.",
        ("receive_only_endpoints",),
    ),
    Spec("threads", "Java threads of the bridge.", ("threads",)),
    Spec("healthy", "1 when the bridge reports itself healthy.", ("healthy",)),
    Spec("draining", "1 when the bridge is draining (takes no new conferences).", ("drain",)),
    Spec(
        "received_bytes",
        "Bytes received by the bridge since it started.",
        ("total_bytes_received",),
        kind=COUNTER,
    ),
    Spec(
        "sent_bytes",
        "Bytes sent by the bridge since it started.",
        ("total_bytes_sent",),
        kind=COUNTER,
    ),
    Spec(
        "received_packets",
        "Packets received by the bridge since it started.",
        ("total_packets_received",),
        kind=COUNTER,
    ),
    Spec(
        "sent_packets",
        "Packets sent by the bridge since it started.",
        ("total_packets_sent",),
        kind=COUNTER,
    ),
    Spec(
        "conferences_created",
        "Conferences created on the bridge since it started.",
        ("total_conferences_created",),
        kind=COUNTER,
    ),
    Spec(
        "participants",
        "Participants that joined the bridge since it started.",
        ("total_participants",),
        kind=COUNTER,
    ),
)

JICOFO_SPECS: tuple[Spec, ...] = (
    Spec("conferences", "Conferences Jicofo manages.", ("conferences",)),
    Spec("participants", "Participants in Jicofo's conferences.", ("participants",)),
    Spec(
        "largest_conference_participants",
        "Participants in Jicofo's largest conference.",
        ("largest_conference",),
    ),
    Spec("bridges", "Videobridges Jicofo knows.", ("bridge_selector.bridge_count",)),
    Spec(
        "operational_bridges",
        "Videobridges Jicofo considers operational.",
        ("bridge_selector.operational_bridge_count",),
    ),
    Spec(
        "conferences_created",
        "Conferences created since Jicofo started.",
        ("total_conferences_created",),
        kind=COUNTER,
    ),
    Spec(
        "participants_joined",
        "Participants that joined since Jicofo started.",
        ("total_participants",),
        kind=COUNTER,
    ),
)


@dataclass(frozen=True, slots=True)
class Reading:
    spec: Spec
    value: float


def _lookup(payload: Mapping[str, Any], key: str) -> Any:
    value: Any = payload
    for part in key.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return None
        value = value[part]
    return value


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return 1.0 if value else 0.0
    if isinstance(value, int | float) and math.isfinite(value):
        return float(value)
    return None


def parse(payload: Mapping[str, Any], specs: Sequence[Spec]) -> list[Reading]:
    """The readings a payload holds, converted to base units; absent or odd keys are skipped."""
    out: list[Reading] = []
    for spec in specs:
        for key in spec.keys:
            number = _number(_lookup(payload, key))
            if number is not None:
                out.append(Reading(spec, number * spec.scale))
                break
    return out


def parse_colibri(payload: Mapping[str, Any]) -> list[Reading]:
    return parse(payload, JVB_SPECS)


def parse_jicofo(payload: Mapping[str, Any]) -> list[Reading]:
    return parse(payload, JICOFO_SPECS)


def version_of(payload: Mapping[str, Any]) -> str:
    version = payload.get("version")
    return version if isinstance(version, str) and version else "unknown"


@dataclass(slots=True)
class Target:
    """One polled URL and what its last poll left."""

    kind: str  # "jvb" or "jicofo"
    label: str
    url: str
    up: bool = False
    last_success: float | None = None
    readings: list[Reading] = field(default_factory=list)
    version: str = "unknown"
    failures: int = 0
    last_error: str = ""


def bridge_labels(urls: Sequence[str]) -> list[str]:
    """``host:port`` of each URL, or the whole URL where two bridges share a host and port."""
    netlocs = [urlsplit(url).netloc or url for url in urls]
    return [n if netlocs.count(n) == 1 else url for n, url in zip(netlocs, urls, strict=True)]


class StatsPoller(Collector):
    """Polls every configured bridge and Jicofo; a prometheus_client collector of the results."""

    def __init__(
        self, settings: MetricsSettings, *, session: aiohttp.ClientSession | None = None
    ) -> None:
        self.settings = settings
        self.targets = [
            Target("jvb", label, url)
            for label, url in zip(bridge_labels(settings.bridges), settings.bridges, strict=True)
        ]
        if settings.jicofo:
            self.targets.append(Target("jicofo", "jicofo", settings.jicofo))
        self._session = session
        self.polls = 0
        self.standing_by = False  # another node polls (run_held): nothing to present

    async def run_held(self, db: Database, lease_seconds: float) -> None:
        """Poll while this node holds the lease ``jvb-poller``, until cancelled."""
        self.standing_by = True

        async def polling() -> None:
            self.standing_by = False
            try:
                await self.run()
            finally:
                self.standing_by = True
                for target in self.targets:  # the next holder's values, not these
                    target.up, target.readings, target.failures = False, [], 0

        await run_while_held(db, "jvb-poller", polling, ttl=lease_seconds)

    async def run(self) -> None:
        """Poll until cancelled."""
        owned = self._session is None
        if self._session is None:
            self._session = aiohttp.ClientSession()
        try:
            while True:
                started = time.monotonic()
                await self.poll_once()
                elapsed = time.monotonic() - started
                await asyncio.sleep(max(0.0, self.settings.poll_interval - elapsed))
        finally:
            if owned:
                await self._session.close()
                self._session = None

    async def poll_once(self) -> None:
        """Poll every target once, concurrently."""
        if not self.targets:
            return
        if self._session is None:
            async with aiohttp.ClientSession() as session:
                await asyncio.gather(*(self._poll(session, t) for t in self.targets))
        else:
            await asyncio.gather(*(self._poll(self._session, t) for t in self.targets))
        self.polls += 1

    async def _poll(self, session: aiohttp.ClientSession, target: Target) -> None:
        timeout = aiohttp.ClientTimeout(total=self.settings.poll_timeout)
        try:
            async with session.get(target.url, timeout=timeout) as response:
                response.raise_for_status()
                payload = await response.json(content_type=None)
            if not isinstance(payload, dict):
                raise ValueError("statistics are not a JSON object")
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            self._failed(target, f"{type(exc).__name__}: {exc}")
            return
        target.readings = parse_colibri(payload) if target.kind == "jvb" else parse_jicofo(payload)
        target.version = version_of(payload)
        target.up = True
        target.last_success = time.time()
        target.last_error = ""

    def _failed(self, target: Target, error: str) -> None:
        if target.up or not target.failures:
            log.warning("metrics: %s %s unreachable: %s", target.kind, target.url, error)
        target.up = False
        target.readings = []  # never present a down target's old values as fresh
        target.failures += 1
        target.last_error = error

    def collect(self) -> Iterator[Metric]:
        if self.standing_by:
            return
        bridges = [t for t in self.targets if t.kind == "jvb"]
        if bridges:
            yield from _families("plenary_jvb", bridges, JVB_SPECS, "bridge", "videobridge")
        jicofo = [t for t in self.targets if t.kind == "jicofo"]
        if jicofo:
            yield from _families("plenary_jicofo", jicofo, JICOFO_SPECS, None, "Jicofo")


def _families(
    prefix: str, targets: Sequence[Target], specs: Sequence[Spec], label: str | None, what: str
) -> Iterator[Metric]:
    base = [label] if label else []

    def values(t: Target) -> list[str]:
        return [t.label] if label else []

    up = GaugeMetricFamily(
        f"{prefix}_up", f"1 when the last poll of the {what} succeeded.", labels=base
    )
    last = GaugeMetricFamily(
        f"{prefix}_last_success_timestamp_seconds",
        f"Unix time of the last successful poll of the {what}.",
        labels=base,
    )
    failures = CounterMetricFamily(
        f"{prefix}_poll_failures", f"Failed polls of the {what}.", labels=base
    )
    info = GaugeMetricFamily(
        f"{prefix}_info",
        f"Version of the {what} (always 1; absent while it is down).",
        labels=[*base, "version"],
    )
    for t in targets:
        up.add_metric(values(t), 1.0 if t.up else 0.0)
        if t.last_success is not None:
            last.add_metric(values(t), t.last_success)
        failures.add_metric(values(t), float(t.failures))
        if t.up:
            info.add_metric([*values(t), t.version], 1.0)
    yield up
    yield last
    yield failures
    yield info
    families: dict[str, GaugeMetricFamily | CounterMetricFamily] = {}
    for spec in specs:
        if spec.name in families:
            continue
        labels = [*base, *(k for k, _ in spec.labels)]
        family_type = CounterMetricFamily if spec.kind == COUNTER else GaugeMetricFamily
        families[spec.name] = family_type(f"{prefix}_{spec.name}", spec.help, labels=labels)
    for t in targets:
        for reading in t.readings:
            extra = [v for _, v in reading.spec.labels]
            families[reading.spec.name].add_metric([*values(t), *extra], reading.value)
    yield from families.values()
