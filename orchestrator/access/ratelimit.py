"""Login limits: per account, per (address, account), and a delay per address, in memory.

(orchestrator/access/login_limits.py puts these limits behind one interface and keeps
them in the database when several orchestrator nodes share PostgreSQL.)

Pure: no I/O, an injectable clock. Only failed attempts are counted.

- **Account** (``per_account`` failures within ``window`` seconds, from any address):
  the account is refused everywhere until the window slides; this bounds guessing
  one password from many addresses.
- **Address and account** (``per_address_account``): one client guessing one account
  is stopped sooner, without refusing the same account to its owner elsewhere.
- **Address**: the first ``per_address`` failures are answered at once; each further
  one makes the address wait ``address_delay`` seconds, doubling, at most
  ``address_delay_max``, until it has been quiet (no failure) for ``window`` seconds.
  That slows one address spraying many names, yet never locks out everyone behind it
  (behind nginx without trusted proxies every client shares one address): a real
  user waits at most ``address_delay_max`` seconds.

Account names are compared as the directory compares them (``account_key``): an LDAP
``uid`` is matched case-insensitively after Unicode normalisation, so ``bob`` in
fullwidth letters, ``BOB`` and ``bob`` are one account to slapd and to the limiter.

    limiter = LoginLimiter(per_account=10, per_address_account=5, per_address=100)
    wait = limiter.wait(username, request.remote)
    if wait: refuse, saying "try again in {ceil(wait.seconds)} s" (wait.limit says which)
    ... on a wrong password: limiter.failed(username, request.remote)
    ... on success:          limiter.succeeded(username, request.remote)
"""

from __future__ import annotations

import time
import unicodedata
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

Limit = Literal["account", "address_account", "address"]


def account_key(name: str) -> str:
    """The account ``name`` means to a directory: NFKC, case-folded, spaces collapsed.

    It may merge names the directory keeps apart (``ß`` and ``ss``), which only makes
    the limits stricter; it must never split names the directory takes as one.
    """
    # slapd folds İ to i; Unicode's full case folding gives i + combining dot above.
    text = name.replace("\u0130", "i")
    text = unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", text).casefold())
    # Invisible format characters (soft hyphen, zero-width joiners, marks) are mapped
    # to nothing by LDAP string preparation (RFC 4518 §2.2).
    text = "".join(c for c in text if unicodedata.category(c) != "Cf")
    return " ".join(text.split())


@dataclass(frozen=True)
class Wait:
    """Why and for how long a login attempt is refused."""

    seconds: float
    limit: Limit


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


def backoff_delay(failures: int, free: int, delay: float, cap: float) -> float:
    """Seconds an address waits after its last failure, ``failures`` into a run: none
    for the first ``free``, then ``delay`` doubling with each, at most ``cap``."""
    if failures < free:
        return 0.0
    return min(cap, delay * 2.0 ** min(failures - free, 62))


class _Backoff:
    """Per key: failures in the current run (ended by ``quiet`` seconds without one)."""

    def __init__(self, free: int, delay: float, cap: float, quiet: float, max_keys: int) -> None:
        self.free, self.delay, self.cap, self.quiet = free, delay, cap, quiet
        self.max_keys = max_keys
        self._runs: dict[str, tuple[int, float]] = {}  # key -> (failures, last failure)

    def _run(self, key: str, now: float) -> tuple[int, float] | None:
        run = self._runs.get(key)
        if run is not None and now - run[1] >= self.quiet:
            del self._runs[key]
            return None
        return run

    def retry_after(self, key: str, now: float) -> float:
        run = self._run(key, now)
        if run is None:
            return 0.0
        return max(0.0, run[1] + backoff_delay(run[0], self.free, self.delay, self.cap) - now)

    def add(self, key: str, now: float) -> None:
        run = self._run(key, now)
        count = run[0] if run else 0
        self._runs.pop(key, None)  # re-inserted last: eviction drops the longest quiet
        if len(self._runs) >= self.max_keys:
            for old in list(self._runs):
                self._run(old, now)
            while len(self._runs) >= self.max_keys:
                del self._runs[next(iter(self._runs))]
        self._runs[key] = (count + 1, now)


class LoginLimiter:
    """The three limits of the module docstring; refusals are not counted as failures."""

    def __init__(
        self,
        *,
        per_account: int = 10,
        per_address_account: int = 5,
        per_address: int = 100,
        window: float = 300.0,
        address_delay: float = 1.0,
        address_delay_max: float = 30.0,
        max_keys: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if min(per_account, per_address_account, per_address) < 1 or window <= 0:
            raise ValueError("limits must be at least 1 and the window positive")
        if address_delay <= 0 or address_delay_max < address_delay:
            raise ValueError("the address delay must be positive and at most its maximum")
        self._accounts = _Windows(per_account, window, max_keys)
        self._pairs = _Windows(per_address_account, window, max_keys)
        self._addresses = _Backoff(per_address, address_delay, address_delay_max, window,
                                   max_keys)  # fmt: skip
        self._clock = clock

    def wait(self, account: str, address: str, *, per_address: bool = True) -> Wait | None:
        """The longest limit in force for ``account`` from ``address``; None: try now.
        ``per_address=False`` asks about the account's limits only."""
        now = self._clock()
        key = account_key(account)
        waits = [
            Wait(self._accounts.retry_after(key, now), "account"),
            Wait(self._pairs.retry_after(f"{address} {key}", now), "address_account"),
        ]
        if per_address:
            waits.append(Wait(self._addresses.retry_after(address, now), "address"))
        longest = max(waits, key=lambda w: w.seconds)
        return longest if longest.seconds > 0 else None

    def retry_after(self, account: str, address: str) -> float:
        """Seconds until a login for ``account`` from ``address`` may be tried; 0: now."""
        wait = self.wait(account, address)
        return wait.seconds if wait else 0.0

    def failed(self, account: str, address: str) -> None:
        now = self._clock()
        key = account_key(account)
        self._accounts.add(key, now)
        self._pairs.add(f"{address} {key}", now)
        self._addresses.add(address, now)

    def succeeded(self, account: str, address: str) -> None:
        """Forget the account's failures (not the address's: one good password must not
        reset a guessing run from the same address at other accounts)."""
        key = account_key(account)
        self._accounts.clear(key)
        self._pairs.clear(f"{address} {key}")
