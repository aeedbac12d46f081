"""The IRC relay's metrics, read from its clients and queues at scrape time.

The relay already counts what matters (lines sent, captions merged, lines skipped,
registrations); this collector presents them, labelled by network and room:

    registry.register(RelayCollector(relay))
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from bots.irc.relay import Relay


class RelayCollector(Collector):
    def __init__(self, relay: Relay) -> None:
        self._relay = relay

    def collect(self) -> Iterator[Metric]:
        connected = GaugeMetricFamily(
            "plenary_irc_connected",
            "1 while the relay is registered on the IRC network.",
            labels=["network"],
        )
        sent = CounterMetricFamily(
            "plenary_irc_lines_sent", "Caption lines sent to IRC.", labels=["network"]
        )
        reconnects = CounterMetricFamily(
            "plenary_irc_reconnects",
            "Times the relay lost its IRC connection (or failed to connect) and retried.",
            labels=["network"],
        )
        registrations = CounterMetricFamily(
            "plenary_irc_registrations",
            "Successful registrations on the IRC network.",
            labels=["network"],
        )
        backlog = GaugeMetricFamily(
            "plenary_irc_backlog_lines", "Lines waiting to be sent, by room.", labels=["room"]
        )
        merged = CounterMetricFamily(
            "plenary_irc_captions_merged",
            "Captions folded into an earlier waiting line of the same speaker, by room.",
            labels=["room"],
        )
        skipped = CounterMetricFamily(
            "plenary_irc_lines_skipped",
            "Lines dropped because the channel fell too far behind, by room.",
            labels=["room"],
        )
        protected = GaugeMetricFamily(
            "plenary_irc_channel_protected",
            "Restricted rooms' channels: 1 when the relay has set the key, 0 when it could "
            "not (the log and the room page say why).",
            labels=["room"],
        )
        for room, (ok, _) in sorted(self._relay.protection.items()):
            protected.add_metric([room], 1.0 if ok else 0.0)
        for network, client in self._relay.clients.items():
            connected.add_metric([network], 1.0 if client.registered.is_set() else 0.0)
            sent.add_metric([network], float(client.lines_sent))
            reconnects.add_metric([network], float(client.reconnects))
            registrations.add_metric([network], float(client.connections))
        for room, queue in self._relay.queues.items():
            backlog.add_metric([room], float(queue.backlog))
            merged.add_metric([room], float(queue.merged))
            skipped.add_metric([room], float(queue.skipped_lines))
        yield from (connected, sent, reconnects, registrations, backlog, merged, skipped)
        yield protected
