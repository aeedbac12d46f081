"""``make bench``: accuracy, capacity and meeting benchmarks against Plenary and a peer.

    .venv/bin/python -m bench all --quick
    .venv/bin/python -m bench all --peer ws://127.0.0.1:2799 --peer-pid 1234 --out bench.json
    .venv/bin/python -m bench bridge      # likewise irc, login, sse, metrics, delivery, soak
    .venv/bin/python -m bench soak --duration 120   # the 10-minute soak, shorter
    .venv/bin/python -m bench pool        # 100 participants on 2 captioners behind HAProxy
    .venv/bin/python -m bench lease       # IRC relay failover: kill -9 the lease holder
    .venv/bin/python -m bench nodes       # 10,000 SSE subscribers on 2 nodes; captions/s, 50 rooms

``all`` runs the three captioner benchmarks; ``everything`` adds the others (the Jitsi
bridge meeting, the IRC relay, LDAP logins, SSE fan-out, /metrics scrape cost, captioner →
orchestrator delivery in the split topology), each of which starts the servers it needs
on loopback and writes its own docs/benchmarks-*.md.

Plenary's captioner is started on a free 127.0.0.1 port for each benchmark and stopped after;
the peer (any vosk-protocol server, e.g. vosk-server with the same model) must be running.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import importlib
import json
import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

from bench import accuracy, capacity, meeting
from bench.server import Target, check_local, plenary_server
from plenary.settings import PROJECT_ROOT, load_settings


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    parser.add_argument(
        "benchmark",
        choices=[*MODULES, *OTHERS, "all", "cer", "everything"],
        help="what to measure (cer: accuracy and meeting, with one CER table)",
    )
    parser.add_argument("--peer", help="ws://127.0.0.1:PORT of another vosk-protocol server")
    parser.add_argument("--peer-pid", type=int, help="the peer's process id (RSS, CPU from /proc)")
    parser.add_argument("--peer-name", default="vosk-server", help="the peer's name in tables")
    parser.add_argument("--quick", action="store_true", help="short smoke run")
    parser.add_argument("--out", type=Path, help="write all results as JSON here")
    parser.add_argument(
        "--duration", type=float, help="soak: seconds of load (600; 60 with --quick)"
    )
    parser.add_argument("--config", type=Path, help="Plenary TOML settings (or $PLENARY_CONFIG)")
    parser.add_argument("--streams", type=_ints, help="capacity: stream counts (1,2,4,6,8,12,16)")
    parser.add_argument(
        "--stream-seconds", type=float, help="capacity: seconds of speech per stream (40)"
    )
    parser.add_argument("--participants", type=_ints, help="meeting: M values (4,12,24,48,100)")
    parser.add_argument("--utterances", type=int, help="meeting: turns per run (12)")
    parser.add_argument("--gap", type=float, default=0.3, help="meeting: noise between turns, s")
    parser.add_argument(
        "--tail", type=float, default=4.0, help="meeting: noise after the last turn, s"
    )
    parser.add_argument("--noise-dbfs", type=float, default=-55.0, help="meeting: noise RMS")
    parser.add_argument(
        "--noise-only-dbfs",
        type=float,
        default=-40.0,
        help="meeting: noise RMS of the participant who never speaks",
    )
    parser.add_argument(
        "--repeat", type=int, default=1, help="accuracy, meeting: runs per server, interleaved"
    )
    parser.add_argument(
        "--drain", type=float, default=30.0, help="meeting: wait for the eof's reply, s"
    )
    return parser


def machine() -> dict[str, Any]:
    model = ""
    try:
        out = subprocess.run(
            ["lscpu"], capture_output=True, text=True, timeout=10, check=False
        ).stdout
        model = next(
            (ln.split(":", 1)[1].strip() for ln in out.splitlines() if "Model name" in ln), ""
        )
    except (OSError, subprocess.SubprocessError):
        pass
    commit = subprocess.run(
        ["git", "-C", str(PROJECT_ROOT), "describe", "--always", "--dirty"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    mem = Path("/proc/meminfo").read_text().splitlines()[0].split()[1]
    return {
        "nproc": os.cpu_count(),
        "cpu": model,
        "mem_gib": round(int(mem) / 1024 / 1024, 1),
        "load": os.getloadavg(),
        "python": platform.python_version(),
        "plenary_commit": commit,
    }


def run_one(args: argparse.Namespace, name: str, targets: list[Target]) -> dict[str, Any]:
    settings = load_settings(args.config)
    quick = args.quick
    if name == "accuracy":
        return asyncio.run(accuracy.run(targets, settings, quick, args.repeat))
    if name == "capacity":
        streams = args.streams or ([1, 2] if quick else [1, 2, 4, 6, 8, 12, 16])
        seconds = args.stream_seconds or (8.0 if quick else 40.0)
        return asyncio.run(capacity.run(targets, settings, quick, streams, seconds))
    participants = args.participants or ([4, 12] if quick else [4, 12, 24, 48, 100])
    utterances = args.utterances or (4 if quick else 12)
    return asyncio.run(
        meeting.run(
            targets,
            settings,
            participants,
            utterances,
            gap=args.gap,
            tail=args.tail,
            noise_dbfs=args.noise_dbfs,
            noise_only_dbfs=args.noise_only_dbfs,
            drain=args.drain,
            repeat=args.repeat,
        )
    )


MODULES = {"accuracy": accuracy, "capacity": capacity, "meeting": meeting}
# Benchmarks of the other components: module with ``async def run(quick) -> dict``.
OTHERS = {
    "bridge": "bench.bridge",
    "irc": "bench.irc",
    "login": "bench.login",
    "sse": "bench.sse",
    "metrics": "bench.metrics",
    "delivery": "bench.delivery",
    "soak": "bench.soak",
    "pool": "bench.pool",
    "lease": "bench.lease",
    "nodes": "bench.nodes",
}


def run_other(name: str, quick: bool, duration: float | None = None) -> dict[str, Any]:
    module = importlib.import_module(OTHERS[name])
    if name == "soak":
        data: dict[str, Any] = asyncio.run(module.run(quick, duration))
    else:
        data = asyncio.run(module.run(quick))
    report = getattr(module, "report", None)
    print(report(data) if report else json.dumps(data, indent=2, default=str), flush=True)
    return data


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.config:
        os.environ["PLENARY_CONFIG"] = str(args.config)
    if args.peer:
        check_local(args.peer)
    started = dt.datetime.now(dt.UTC)
    peer = [Target(args.peer_name, args.peer, args.peer_pid)] if args.peer else []
    if args.benchmark == "everything":
        which = [*MODULES, *OTHERS]
    elif args.benchmark == "all":
        which = list(MODULES)
    elif args.benchmark == "cer":
        which = ["accuracy", "meeting"]
    else:
        which = [args.benchmark]
    results: dict[str, Any] = {}
    targets: list[Target] = []
    for name in [n for n in which if n in OTHERS]:
        results[name] = run_other(name, args.quick, args.duration)
    for name in [n for n in which if n in MODULES]:
        # A fresh Plenary per benchmark, so its memory figures are that benchmark's own;
        # the peer runs on as it was started.
        with plenary_server() as (plenary, _proc):
            targets = [plenary, *peer]
            results[name] = run_one(args, name, targets)
        print(MODULES[name].report(results[name]), flush=True)
    summary = [MODULES[name].report(results[name]) for name in results if name in MODULES]
    if "accuracy" in results or "meeting" in results:
        summary.append(accuracy.cer_table(results.get("accuracy"), results.get("meeting")))
    print("\n\n".join(["", *summary]))
    if args.out:
        doc = {
            "started": started.isoformat(timespec="seconds"),
            "finished": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "argv": sys.argv,
            "machine": machine(),
            "targets": [{"name": t.name, "url": t.url, "pid": t.pid} for t in targets],
            **results,
        }
        args.out.write_text(json.dumps(doc, indent=1, ensure_ascii=False, default=str))
        print(f"results written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
