"""Login benchmark: LDAP bind + group lookup + policy decision + Jitsi JWT, against a
local slapd started as the tests start it (tests/slapd.py).

- pooled: one LdapDirectory with ldap.pool_size connections kept open;
- cold: ldap.pool_size = 0, so every search and bind opens a new TCP connection.

Each login picks one of the directory's users, checks the password, resolves the
groupOfNames groups, decides a policy ``{"access": [ldap_group devs], "moderators":
[user alice]}`` and mints a token. Reported per mode and concurrency: logins a
second and latency percentiles of one whole login.

    .venv/bin/python -m bench.login [--quick] [--out login.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.harness.slapd import run_slapd
from bench.stats import summary
from orchestrator.access.jitsi_jwt import mint
from orchestrator.access.ldap import LdapDirectory
from orchestrator.access.policy import AccessPolicy, decide
from plenary.settings import JitsiSettings

USERS = 200
POLICY = AccessPolicy.model_validate(
    {
        "access": [{"kind": "ldap_group", "group": "devs"}],
        "moderators": [{"kind": "user", "source": "ldap", "name": "user0"}],
    }
)
JITSI = JitsiSettings(app_secret="bench-secret-0123456789abcdef0123456789")


async def _one(directory: LdapDirectory, rng: random.Random) -> float:
    i = rng.randrange(USERS)
    started = time.perf_counter()
    identity = await directory.authenticate(f"user{i}", f"user{i}-pw")
    decision = await decide(POLICY, identity, None, room="bench")
    assert decision.allowed, decision.reason
    mint(JITSI, room="bench", identity=identity, moderator=decision.moderator)
    return time.perf_counter() - started


async def _run_mode(
    directory: LdapDirectory, logins: int, concurrency: int, seed: int
) -> dict[str, Any]:
    rng = random.Random(seed)
    latencies: list[float] = []
    queue = iter(range(logins))

    async def worker() -> None:
        for _ in queue:
            latencies.append(await _one(directory, rng))

    for _ in range(min(20, logins // 10)):  # warm-up: pools filled, code paths hot
        await _one(directory, rng)
    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    stats = summary([x * 1000 for x in latencies])
    return {
        "logins": len(latencies),
        "concurrency": concurrency,
        "seconds": elapsed,
        "logins_per_second": len(latencies) / elapsed,
        "p50_ms": stats["p50"],
        "p95_ms": stats["p95"],
        "max_ms": stats["max"],
    }


async def run(quick: bool) -> dict[str, Any]:
    logins = 200 if quick else 2000
    results: dict[str, Any] = {
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "load_before": os.getloadavg(),
        },
        "users": USERS,
        "logins_per_run": logins,
        "runs": [],
    }
    with (
        tempfile.TemporaryDirectory(prefix="plenary-bench-slapd-") as folder,
        run_slapd(Path(folder), extra_users=USERS) as server,
    ):
        for mode, pool_size in (("pooled", 4), ("cold", 0)):
            for concurrency in (1, 8):
                settings = server.settings(pool_size=pool_size, timeout=5.0)
                directory = LdapDirectory(settings)
                try:
                    row = await _run_mode(directory, logins, concurrency, seed=concurrency)
                finally:
                    await directory.close()
                row.update(mode=mode, pool_size=pool_size)
                results["runs"].append(row)
                print(
                    f"{mode:6} pool={pool_size} c={concurrency}: "
                    f"{row['logins_per_second']:.0f} logins/s, "
                    f"p50 {row['p50_ms']:.1f} ms, p95 {row['p95_ms']:.1f} ms, "
                    f"max {row['max_ms']:.1f} ms",
                    flush=True,
                )
    results["machine"]["load_after"] = os.getloadavg()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.login", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--quick", action="store_true", help="200 logins per run instead of 2000")
    parser.add_argument("--out", type=Path, help="write the results as JSON here")
    args = parser.parse_args()
    results = asyncio.run(run(args.quick))
    text = json.dumps(results, indent=2)
    if args.out:
        args.out.write_text(text + "\n", encoding="utf-8")
    else:
        print(text)


if __name__ == "__main__":
    main()
