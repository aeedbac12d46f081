"""Which streams the captioner takes: the stream budget, bridge fair shares, memory.

``StreamBudget`` counts the streams held, by path (vosk, bridge, file) and by Jitsi
bridge session, and refuses a new one past ``captioner.max_streams``, past a session's
``captioner.bridge_max_sources`` or fair share, or near ``captioner.max_rss_mb``.
Streams are opened and given back through ``engine.StreamLease``, never counted by hand.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from typing import Literal

from bots.captioner import metrics

StreamPath = Literal["vosk", "bridge", "file"]  # the ``path`` label of the streams gauge
SHED_FRACTION = 0.9  # new streams are refused from this fraction of captioner.max_rss_mb
IDLE_FRACTION = 0.75  # idle recognizers are kept warm only below this fraction of it
RSS_EVERY = 1.0  # seconds between two reads of /proc/self/statm


class Refused(Exception):
    """The engine takes no new stream or recognizer now; the message says why.

    ``kind`` is the label of ``plenary_captioner_streams_refused``."""

    def __init__(self, reason: str, kind: str = "capacity") -> None:
        super().__init__(reason)
        self.kind = kind


class MemoryGuard:
    """The process's resident memory against ``captioner.max_rss_mb`` (0: no limit).

    Read from /proc/self/statm at most once a second: callers ask on every new stream.
    """

    def __init__(self, limit_mb: Callable[[], int]) -> None:
        self._limit = limit_mb
        self._read_at = -RSS_EVERY
        self._rss_mb = 0.0

    def rss_mb(self) -> float:
        now = time.monotonic()
        if now - self._read_at >= RSS_EVERY:
            self._read_at = now
            self._rss_mb = metrics.rss_bytes() / 2**20
        return self._rss_mb

    def shed_reason(self) -> str | None:
        """Why a new stream is refused: RSS within 10 % of the limit; None to take it."""
        limit = self._limit()
        if limit and self.rss_mb() >= limit * SHED_FRACTION:
            return (f"memory: RSS {self.rss_mb():.0f} MB is near the limit of {limit} MB "
                    "(captioner.max_rss_mb)")  # fmt: skip
        return None

    def idle_over_budget(self) -> str | None:
        """Why no idle recognizer is kept warm: RSS at 75 % of the limit, leaving the
        rest for recognizers in use."""
        limit = self._limit()
        if limit and self.rss_mb() >= limit * IDLE_FRACTION:
            return f"memory: RSS {self.rss_mb():.0f} MB is over the idle recognizers' budget"
        return None

    def over_limit(self) -> str | None:
        """Why no new recognizer is built: RSS at the limit itself."""
        limit = self._limit()
        if limit and self.rss_mb() >= limit:
            return f"memory: RSS {self.rss_mb():.0f} MB reached captioner.max_rss_mb ({limit})"
        return None


class StreamBudget:
    """Streams held now, against ``captioner.max_streams`` (read at every admission).

    Streams, the ``plenary_captioner_streams`` gauge and recognizers in use (at most one
    per stream, and the pool refuses more than ``max_streams``) can never run past
    ``captioner.max_streams``, however fast sockets come and go, because a stream is
    given back only once its transcriber is closed (``engine.StreamLease.close``).
    """

    def __init__(self, max_streams: Callable[[], int], memory: MemoryGuard) -> None:
        self._max_streams = max_streams
        self._memory = memory
        self._paths: Counter[str] = Counter()
        self._groups: Counter[str] = Counter()

    @property
    def active(self) -> int:
        return sum(self._paths.values())

    def admit(self, path: StreamPath, group: str = "", group_limit: int = 0) -> None:
        """Count a stream for ``path``, or raise Refused saying why.

        ``group`` is a Jitsi bridge session: it holds at most ``group_limit`` streams and
        no more than a fair share of ``max_streams``, the machine divided between the
        sessions holding streams and the vosk endpoint, so a session with hundreds of
        tags leaves room for vosk clients and other meetings. Vosk clients are refused
        only when every stream is taken, or memory is short.
        """
        limit = self._max_streams()
        if self.active >= limit:
            raise _refused(f"at capacity ({limit} streams, captioner.max_streams)", "capacity")
        if reason := self._memory.shed_reason():
            raise _refused(reason, "memory")
        if group:
            held = self._groups[group]
            if group_limit and held >= group_limit:
                raise _refused(
                    f"the session has {held} sources (captioner.bridge_max_sources)", "session"
                )
            sessions = len(self._groups) + (0 if held else 1)
            share = max(1, limit // (sessions + 1))  # +1: the vosk endpoint's share
            if held >= share:
                raise _refused(
                    f"the session has its fair share of the captioner: {held} of {limit} "
                    f"streams with {sessions} bridge session(s) and the vosk endpoint",
                    "share",
                )
            self._groups[group] += 1
        self._paths[path] += 1
        metrics.STREAMS.labels(path=path).inc()

    def release(self, path: StreamPath, group: str = "") -> None:
        """Give back one stream admitted with the same ``path`` and ``group``."""
        self._paths[path] -= 1
        metrics.STREAMS.labels(path=path).dec()
        if group:
            self._groups[group] -= 1
            if self._groups[group] <= 0:
                del self._groups[group]


def _refused(reason: str, kind: str) -> Refused:
    metrics.STREAMS_REFUSED.labels(kind=kind).inc()
    return Refused(reason, kind)
