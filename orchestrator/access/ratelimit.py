"""Login rate limiting per account and per address: a sliding window, in memory.

Pure: no I/O, an injectable clock. Failed attempts are counted; a success clears
the account's count (not the address's, so one good password does not reset a
guessing run from the same address at other accounts).

    limiter = LoginLimiter(per_account=5, per_address=20, window=300)
    wait = limiter.retry_after(username, request.remote)
    if wait: refuse, saying "try again in {ceil(wait)} s"
    ... on a wrong password: limiter.failed(username, request.remote)
    ... on success:          limiter.succeeded(username, request.remote)
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable


class _Windows:
    """Timestamps of recent failures per key, bounded in keys and in length."""

    def __init__(self, limit: int, window: float, max_keys: int) -> None:
        self.limit = limit
        self.window = window
        self.max_keys = max_keys
        self._hits: dict[str, deque[float]] = {}

    def _trim(self, key: str, now: float) -> deque[float] | None:
        hits = self._hits.get(key)
        if hits is None:
            return None
        while hits and hits[0] <= now - self.window:
            hits.popleft()
        if not hits:
            del self._hits[key]
            return None
        return hits

    def retry_after(self, key: str, now: float) -> float:
        hits = self._trim(key, now)
        if hits is None or len(hits) < self.limit:
            return 0.0
        # The window opens again when the oldest counted failure ages out.
        return hits[-self.limit] + self.window - now

    def add(self, key: str, now: float) -> None:
        hits = self._trim(key, now)
        if hits is None:
            if len(self._hits) >= self.max_keys:
                self._evict(now)
            hits = self._hits[key] = deque(maxlen=self.limit)
        hits.append(now)

    def clear(self, key: str) -> None:
        self._hits.pop(key, None)

    def _evict(self, now: float) -> None:
        for key in list(self._hits):
            self._trim(key, now)
        while len(self._hits) >= self.max_keys:
            # dicts keep insertion order: drop the key that started counting first.
            del self._hits[next(iter(self._hits))]


class LoginLimiter:
    """At most ``per_account`` failures per account and ``per_address`` per address
    within ``window`` seconds."""

    def __init__(
        self,
        *,
        per_account: int = 5,
        per_address: int = 20,
        window: float = 300.0,
        max_keys: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if per_account < 1 or per_address < 1 or window <= 0:
            raise ValueError("limits must be at least 1 and the window positive")
        self._accounts = _Windows(per_account, window, max_keys)
        self._addresses = _Windows(per_address, window, max_keys)
        self._clock = clock

    @staticmethod
    def _account(name: str) -> str:
        # "Alice", "alice " and "ALICE" are one account to a directory.
        return name.strip().casefold()

    def retry_after(self, account: str, address: str) -> float:
        """Seconds until a login for ``account`` from ``address`` may be tried; 0: now."""
        now = self._clock()
        return max(
            self._accounts.retry_after(self._account(account), now),
            self._addresses.retry_after(address, now),
        )

    def failed(self, account: str, address: str) -> None:
        now = self._clock()
        self._accounts.add(self._account(account), now)
        self._addresses.add(address, now)

    def succeeded(self, account: str, address: str) -> None:
        self._accounts.clear(self._account(account))
