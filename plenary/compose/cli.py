"""The ``plenary`` command: one entry point, a subcommand per job.

plenary captioner serve --port 2700
plenary captioner prepare              # build the decoding graphs before the first start
plenary transcribe talk.wav --format vtt -o talk.vtt
plenary demo
plenary --config plenary.toml config   # each value in effect and where it came from
plenary config --defaults              # each setting's default and meaning
plenary irc --orchestrator http://127.0.0.1:8080
plenary rooms create keynote --title Keynote --start 2026-12-01T10:00 --end 2026-12-01T11:00
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from plenary.settings import (
    ConfigError,
    Settings,
    describe_settings,
    effective_settings,
    load_settings,
    load_settings_and_sources,
)


def _captioner_serve(args: argparse.Namespace, settings: Settings) -> int:
    from plenary.compose.captioner import run

    return run(args, settings)


def _captioner_prepare(args: argparse.Namespace, settings: Settings) -> int:
    from plenary.compose.captioner import prepare

    return prepare(args, settings)


def _serve(args: argparse.Namespace, settings: Settings) -> int:
    from plenary.compose.serve import run

    return run(args, settings)


def _transcribe(args: argparse.Namespace, settings: Settings) -> int:
    from bots.captioner.transcribe import run

    return run(args, settings)


def _demo(args: argparse.Namespace, settings: Settings) -> int:
    from plenary.compose.demo import run

    return run(args, settings)


def _irc(args: argparse.Namespace, settings: Settings) -> int:
    from plenary.compose.irc import run

    return run(args, settings)


def _config(args: argparse.Namespace, settings: Settings) -> int:
    if args.defaults:
        for name, default, help_text in describe_settings():
            print(f"{name} = {default}\n    {help_text}")
        return 0
    # main() loaded the same settings already; this load also tells where each came from.
    settings, sources = load_settings_and_sources(args.config)
    read = f"{sources.path}, then " if sources.path else ""
    print(f"# in effect: the defaults, then {read}PLENARY_* variables; secrets show as <set>.")
    print("# `plenary config --defaults` lists every default and its meaning.")
    for row in effective_settings(settings, sources):
        print(f"{row.name} = {row.value}  ({row.origin})")
        if args.verbose:
            print(f"    {row.meaning}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="plenary", description="Accessible remote events: rooms, captions, text channels."
    )
    parser.add_argument("--config", type=Path, help="TOML settings file (or $PLENARY_CONFIG)")
    sub = parser.add_subparsers(dest="command", required=True)

    srv = sub.add_parser(
        "serve", help="orchestrator + captioner (+ IRC relay when configured), one process"
    )
    srv.add_argument(
        "--no-captioner", action="store_true", help="do not run the captioner in this process"
    )
    srv.set_defaults(func=_serve)

    captioner = sub.add_parser("captioner", help="offline speech recognition service")
    csub = captioner.add_subparsers(dest="captioner_command", required=True)
    serve = csub.add_parser("serve", help="serve the vosk websocket protocol")
    serve.add_argument("--host", help="listen address (captioner.host)")
    serve.add_argument("--port", type=int, help="listen port (captioner.port)")
    serve.set_defaults(func=_captioner_serve)
    prep = csub.add_parser(
        "prepare",
        help="build the models' decoding graphs (captioner.graph) now rather than at the "
        "first start: minutes and ~5 GB once for a static graph",
    )
    prep.add_argument(
        "--lang", action="append", help="only this language (repeatable; default: every model)"
    )
    prep.set_defaults(func=_captioner_prepare)

    tr = sub.add_parser("transcribe", help="transcribe audio files offline")
    tr.add_argument("files", nargs="+", type=Path, metavar="FILE")
    tr.add_argument("--lang", help="language of the speech (default: captioner.default_language)")
    tr.add_argument("--model", type=Path, help="Vosk model folder (overrides models.LANG)")
    tr.add_argument("--format", choices=["txt", "vtt", "srt", "jsonl"], default="txt")
    tr.add_argument("-o", "--output", type=Path, help="output file (default: standard output)")
    tr.set_defaults(func=_transcribe)

    demo = sub.add_parser("demo", help="stream real recordings into a local captioner")
    demo.add_argument("--speakers", type=int, default=3, help="speakers taking turns")
    demo.add_argument("--utterances", type=int, default=6, help="utterances to play")
    demo.add_argument("--fast", action="store_true", help="do not pace audio at real time")
    demo.set_defaults(func=_demo)

    irc = sub.add_parser(
        "irc",
        help="IRC relay: join the channels of irc.rooms, answer !transcript and !help, and "
        "post the final captions of an orchestrator's stream (by default the one of "
        "orchestrator.host/port; --orchestrator URL; or, with --with-captioner, an "
        "orchestrator and a captioner in this process, as plenary serve runs them)",
    )
    irc_from = irc.add_mutually_exclusive_group()
    irc_from.add_argument(
        "--orchestrator",
        metavar="URL",
        help="read each room's caption stream from this orchestrator (for example "
        "http://127.0.0.1:8080) and resume after breaks without loss or repeats",
    )
    irc_from.add_argument(
        "--with-captioner",
        action="store_true",
        help="run the orchestrator and the captioner in this process, as plenary serve does "
        "(captioner.host/port, orchestrator.host/port), and relay the orchestrator's captions",
    )
    irc.set_defaults(func=_irc)

    from orchestrator.rooms.cli import add_parser as add_rooms_parser

    add_rooms_parser(sub)

    cfg = sub.add_parser(
        "config",
        help="print every setting's value in effect and where it came from (the default, "
        "the --config file or a PLENARY_* variable); secrets show only as <set>",
    )
    cfg_what = cfg.add_mutually_exclusive_group()
    cfg_what.add_argument(
        "--defaults", action="store_true", help="list every setting's default and meaning instead"
    )
    cfg_what.add_argument(
        "-v", "--verbose", action="store_true", help="print each setting's meaning beneath it"
    )
    cfg.set_defaults(func=_config)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = load_settings(args.config)
    except ConfigError as exc:
        print(f"plenary: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    from bots.captioner.vosk_models import ModelError

    try:
        return int(args.func(args, settings))
    except (ModelError, ConfigError) as exc:
        print(f"plenary: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
