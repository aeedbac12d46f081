"""Host load from /proc, for machines without node_exporter (``metrics.host``, off by default).

The parsers take the files' text and do no I/O; ``HostCollector`` reads the files on
each scrape (a few hundred microseconds). Names follow node_exporter's with a
``plenary_host_`` prefix, so dashboards translate one to one:

    registry.register(HostCollector())
    # plenary_host_cpu_seconds_total{mode="idle"} 3004.2
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

CPU_MODES = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal")
MEMINFO = {
    "MemTotal": ("memory_total_bytes", "Physical memory of the host."),
    "MemAvailable": (
        "memory_available_bytes",
        "Memory available for new work without swapping (MemAvailable).",
    ),
    "SwapTotal": ("swap_total_bytes", "Swap space of the host."),
    "SwapFree": ("swap_free_bytes", "Unused swap space of the host."),
}


def parse_cpu(stat: str, ticks_per_second: float) -> dict[str, float]:
    """Seconds spent in each mode over all CPUs, from /proc/stat's ``cpu`` line."""
    for line in stat.splitlines():
        fields = line.split()
        if fields and fields[0] == "cpu":
            values = [int(v) / ticks_per_second for v in fields[1 : 1 + len(CPU_MODES)]]
            return dict(zip(CPU_MODES, values, strict=False))
    return {}


def parse_meminfo(text: str) -> dict[str, float]:
    """/proc/meminfo fields in bytes (the file says kB and means KiB)."""
    out: dict[str, float] = {}
    for line in text.splitlines():
        key, _, rest = line.partition(":")
        parts = rest.split()
        if parts:
            out[key] = float(parts[0]) * (1024 if parts[1:] == ["kB"] else 1)
    return out


def parse_loadavg(text: str) -> tuple[float, float, float]:
    one, five, fifteen = (float(v) for v in text.split()[:3])
    return one, five, fifteen


def parse_net_dev(text: str) -> dict[str, tuple[float, float]]:
    """(received bytes, transmitted bytes) per interface from /proc/net/dev."""
    out: dict[str, tuple[float, float]] = {}
    for line in text.splitlines()[2:]:
        name, _, rest = line.partition(":")
        fields = rest.split()
        if len(fields) >= 9:
            out[name.strip()] = (float(fields[0]), float(fields[8]))
    return out


class HostCollector(Collector):
    """CPU, memory, load average and network bytes of the host, read at scrape time."""

    def __init__(self, proc: Path = Path("/proc")) -> None:
        self._proc = proc
        self._ticks = float(os.sysconf("SC_CLK_TCK"))

    def _read(self, name: str) -> str | None:
        try:
            return (self._proc / name).read_text(encoding="ascii", errors="replace")
        except OSError:
            return None

    def collect(self) -> Iterator[Metric]:
        stat = self._read("stat")
        if stat is not None:
            cpu = CounterMetricFamily(
                "plenary_host_cpu_seconds",
                "Seconds all CPUs of the host spent in each mode.",
                labels=["mode"],
            )
            for mode, seconds in parse_cpu(stat, self._ticks).items():
                cpu.add_metric([mode], seconds)
            yield cpu
            yield GaugeMetricFamily(
                "plenary_host_cpus", "CPUs of the host.", value=float(os.cpu_count() or 1)
            )
        meminfo = self._read("meminfo")
        if meminfo is not None:
            values = parse_meminfo(meminfo)
            for key, (suffix, help_text) in MEMINFO.items():
                if key in values:
                    yield GaugeMetricFamily(f"plenary_host_{suffix}", help_text, value=values[key])
        loadavg = self._read("loadavg")
        if loadavg is not None:
            for minutes, value in zip((1, 5, 15), parse_loadavg(loadavg), strict=True):
                yield GaugeMetricFamily(
                    f"plenary_host_load{minutes}",
                    f"Load average of the host over {minutes} minute(s).",
                    value=value,
                )
        net = self._read("net/dev")
        if net is not None:
            received = CounterMetricFamily(
                "plenary_host_network_receive_bytes",
                "Bytes received by each network interface of the host.",
                labels=["device"],
            )
            sent = CounterMetricFamily(
                "plenary_host_network_transmit_bytes",
                "Bytes sent by each network interface of the host.",
                labels=["device"],
            )
            for device, (rx, tx) in parse_net_dev(net).items():
                received.add_metric([device], rx)
                sent.add_metric([device], tx)
            yield received
            yield sent
