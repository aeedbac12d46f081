"""The login limiter: sliding windows per account and per address."""

from __future__ import annotations

import pytest

from orchestrator.access.ratelimit import LoginLimiter


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_account_limit_slides() -> None:
    clock = Clock()
    limiter = LoginLimiter(per_account=3, per_address=100, window=60, clock=clock)
    for _ in range(3):
        assert limiter.retry_after("alice", "10.0.0.1") == 0
        limiter.failed("alice", "10.0.0.1")
        clock.now += 10
    # 3 failures at t=100,110,120; now t=130: wait until the first ages out at 160.
    assert limiter.retry_after("alice", "10.0.0.2") == pytest.approx(30)
    assert limiter.retry_after("ALICE ", "10.0.0.3") == pytest.approx(30)  # same account
    assert limiter.retry_after("bob", "10.0.0.1") == 0
    clock.now = 160.0
    assert limiter.retry_after("alice", "10.0.0.1") == 0
    limiter.failed("alice", "10.0.0.1")
    assert limiter.retry_after("alice", "10.0.0.1") == pytest.approx(10)  # 110 + 60 - 160


def test_address_limit_across_accounts() -> None:
    clock = Clock()
    limiter = LoginLimiter(per_account=100, per_address=5, window=60, clock=clock)
    for i in range(5):
        limiter.failed(f"user{i}", "192.0.2.7")
    assert limiter.retry_after("someone-new", "192.0.2.7") == pytest.approx(60)
    assert limiter.retry_after("someone-new", "192.0.2.8") == 0


def test_success_clears_the_account_but_not_the_address() -> None:
    clock = Clock()
    limiter = LoginLimiter(per_account=2, per_address=3, window=60, clock=clock)
    limiter.failed("alice", "a")
    limiter.failed("alice", "a")
    assert limiter.retry_after("alice", "b") > 0
    limiter.succeeded("alice", "a")
    assert limiter.retry_after("alice", "b") == 0
    limiter.failed("carol", "a")
    assert limiter.retry_after("dave", "a") > 0  # address a has 3 failures


def test_memory_is_bounded() -> None:
    clock = Clock()
    limiter = LoginLimiter(per_account=1, per_address=1000, window=60, max_keys=10, clock=clock)
    for i in range(100):
        limiter.failed(f"user{i}", f"addr{i}")
    assert len(limiter._accounts._hits) <= 10 and len(limiter._addresses._hits) <= 10
    assert limiter.retry_after("user99", "x") > 0  # the newest are kept
    clock.now += 61
    limiter.failed("late", "late")
    assert limiter.retry_after("user99", "x") == 0


def test_bad_limits() -> None:
    with pytest.raises(ValueError):
        LoginLimiter(per_account=0)
    with pytest.raises(ValueError):
        LoginLimiter(window=0)
