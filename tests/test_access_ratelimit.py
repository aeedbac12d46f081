"""The login limiter: per account, per (address, account), and the delay per address.

Against a real slapd and through the login form: tests/test_login_limits.py.
"""

# ruff: noqa: RUF001, RUF002  (look-alike letters are what these tests are about)

from __future__ import annotations

import pytest

from orchestrator.access.ratelimit import LoginLimiter, Wait, account_key


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def limiter(clock: Clock, **limits: float) -> LoginLimiter:
    values: dict[str, float] = {"per_account": 100, "per_address_account": 100,
                                "per_address": 1000, "window": 60}  # fmt: skip
    values.update(limits)
    return LoginLimiter(**values, clock=clock)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "variant",
    ["bob", "BOB", " bob ", "ｂｏｂ", "𝐛𝐨𝐛", "ⓑⓞⓑ", "\u3000bob", "b\u00adob", "b\u200bob"],
)
def test_account_key_folds_what_the_directory_folds(variant: str) -> None:
    assert account_key(variant) == "bob"


def test_account_key_keeps_other_names_apart() -> None:
    assert account_key("alİce") == account_key("ALICE") == "alice"  # slapd: İ is i
    assert account_key("rene\u0301") == account_key("RENÉ")
    assert account_key("a  b") == account_key("a\u00a0b") == "a b"
    assert len({account_key(n) for n in ("bob", "bób", "b0b", "bobby", "alice")}) == 5


def test_account_limit_slides_across_addresses() -> None:
    clock = Clock()
    lim = limiter(clock, per_account=3)
    for i in range(3):
        assert lim.wait("alice", f"10.0.0.{i}") is None
        lim.failed("alice", f"10.0.0.{i}")
        clock.now += 10
    # 3 failures at t=100,110,120; now t=130: wait until the first ages out at 160.
    assert lim.wait("alice", "10.0.0.9") == Wait(pytest.approx(30), "account")
    assert lim.retry_after("ALICE ", "10.0.0.3") == pytest.approx(30)  # same account
    assert lim.retry_after("ａｌｉｃｅ", "10.0.0.3") == pytest.approx(30)
    assert lim.retry_after("bob", "10.0.0.1") == 0
    clock.now = 160.0
    assert lim.retry_after("alice", "10.0.0.1") == 0
    lim.failed("alice", "10.0.0.1")
    assert lim.retry_after("alice", "10.0.0.1") == pytest.approx(10)  # 110 + 60 - 160


def test_address_account_limit_spares_the_owner_elsewhere() -> None:
    clock = Clock()
    lim = limiter(clock, per_account=10, per_address_account=3)
    for _ in range(3):
        lim.failed("bob", "203.0.113.9")
    assert lim.wait("ｂｏｂ", "203.0.113.9") == Wait(pytest.approx(60), "address_account")
    assert lim.wait("bob", "198.51.100.1") is None  # bob at home
    assert lim.wait("carol", "203.0.113.9") is None  # others from that address


def test_address_delay_grows_is_capped_and_never_locks_out() -> None:
    clock = Clock()
    lim = limiter(clock, per_address=4, address_delay=1, address_delay_max=8)
    for i in range(4):  # free
        assert lim.wait(f"nobody{i}", "192.0.2.7") is None
        lim.failed(f"nobody{i}", "192.0.2.7")
    delays = []
    for i in range(4, 10):
        wait = lim.wait("someone-new", "192.0.2.7")
        assert wait is not None and wait.limit == "address"
        delays.append(wait.seconds)
        clock.now += wait.seconds  # the attacker waits as told, then fails again
        assert lim.wait("someone-new", "192.0.2.7") is None
        lim.failed(f"nobody{i}", "192.0.2.7")
    assert delays == [1, 2, 4, 8, 8, 8]
    assert lim.wait("someone-new", "192.0.2.8") is None  # other addresses untouched
    # refusals are not failures: asking again does not lengthen the delay
    for _ in range(20):
        assert lim.retry_after("alice", "192.0.2.7") == 8
    clock.now += 8
    assert lim.wait("alice", "192.0.2.7") is None
    # the run ends after a quiet window
    clock.now += 60
    lim.failed("x", "192.0.2.7")
    assert lim.wait("x2", "192.0.2.7") is None


def test_account_check_without_the_address_delay() -> None:
    clock = Clock()
    lim = limiter(clock, per_account=2, per_address=1)
    lim.failed("bob", "a")
    lim.failed("bob", "a")
    assert lim.wait("bob", "b", per_address=False) == Wait(pytest.approx(60), "account")
    assert lim.wait("carol", "a", per_address=False) is None
    assert lim.wait("carol", "a") is not None  # address a is delayed


def test_success_clears_the_account_but_not_the_address() -> None:
    clock = Clock()
    lim = limiter(clock, per_account=2, per_address_account=2, per_address=3)
    lim.failed("alice", "a")
    lim.failed("alice", "a")
    assert lim.retry_after("alice", "b") > 0
    lim.succeeded("ALICE", "a")
    assert lim.retry_after("alice", "a") == 0
    lim.failed("carol", "a")
    assert lim.retry_after("dave", "a") > 0  # address a has 3 failures


def test_memory_is_bounded() -> None:
    clock = Clock()
    lim = LoginLimiter(per_account=1, per_address_account=1, per_address=1000, window=60,
                       max_keys=10, clock=clock)  # fmt: skip
    for i in range(100):
        lim.failed(f"user{i}", f"addr{i}")
    assert len(lim._accounts._hits) <= 10 and len(lim._pairs._hits) <= 10
    assert len(lim._addresses._runs) <= 10
    assert lim.retry_after("user99", "x") > 0  # the newest are kept
    clock.now += 61
    lim.failed("late", "late")
    assert lim.retry_after("user99", "x") == 0


def test_bad_limits() -> None:
    with pytest.raises(ValueError):
        LoginLimiter(per_account=0)
    with pytest.raises(ValueError):
        LoginLimiter(per_address_account=0)
    with pytest.raises(ValueError):
        LoginLimiter(window=0)
    with pytest.raises(ValueError):
        LoginLimiter(address_delay=5, address_delay_max=1)
