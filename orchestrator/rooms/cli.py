"""``plenary rooms create|list|show|delete``: the admin's CLI on the same database.

plenary rooms create keynote --title "Keynote" --start 2026-12-01T10:00 \\
    --end 2026-12-01T11:00 --timezone Asia/Seoul --lang ko --lang en --anyone
plenary rooms create --json '{"slug": "keynote", "title": "Keynote", ...}'
plenary rooms create --json @room.json
generate-room | plenary rooms create --json @-
plenary rooms list
plenary rooms show keynote
plenary rooms delete keynote
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from orchestrator.db import Database, configured
from orchestrator.rooms.model import RoomCreate
from orchestrator.rooms.repository import RoomExists, RoomNotFound, RoomRepository
from plenary.settings import Settings


def add_parser(sub: Any) -> None:
    rooms = sub.add_parser("rooms", help="create, list, show and delete rooms")
    rsub = rooms.add_subparsers(dest="rooms_command", required=True)

    create = rsub.add_parser("create", help="create a room")
    create.add_argument("slug", nargs="?", help="room name (also the Jitsi room name)")
    create.add_argument(
        "--json",
        metavar="JSON|@FILE|@-",
        help="the room as JSON, as POST /api/v1/rooms takes it: the document itself, @FILE to "
        "read it from a file, or @- (or -) from standard input; a SLUG given too replaces its "
        "slug",
    )
    create.add_argument("--title")
    create.add_argument("--description", default="")
    create.add_argument("--start", help="wall time in --timezone, e.g. 2026-12-01T10:00")
    create.add_argument("--end")
    create.add_argument("--timezone", default="UTC", help="IANA zone, e.g. Asia/Seoul")
    create.add_argument("--weekly", action="store_true", help="repeat every week")
    create.add_argument("--until", help="last day of a weekly series (YYYY-MM-DD)")
    create.add_argument("--lang", action="append", help="caption language (repeatable)")
    create.add_argument("--policy", help="access policy as JSON")
    create.add_argument("--anyone", action="store_true", help="let any logged-in person in")
    create.add_argument(
        "--caption-readers",
        help='who else reads captions and transcripts, as JSON rules, e.g. [{"kind": "anyone"}]',
    )
    create.add_argument(
        "--public-captions",
        action="store_true",
        help="anyone may read the captions and transcripts, without logging in",
    )
    create.add_argument("--contact", default="")
    create.add_argument("--irc-channel")
    create.add_argument(
        "--retention-days",
        type=int,
        help="keep transcripts this many days (omitted: no transcript is recorded)",
    )
    create.add_argument("--no-low-bandwidth", action="store_true")
    create.set_defaults(func=run)

    for name, text in (("list", "list rooms"), ("show", "show one room as JSON")):
        p = rsub.add_parser(name, help=text)
        if name == "show":
            p.add_argument("slug")
        p.set_defaults(func=run)
    delete = rsub.add_parser("delete", help="delete a room")
    delete.add_argument("slug")
    delete.set_defaults(func=run)


class RoomInputError(Exception):
    """The room given on the command line cannot be read; the message says why."""


def _room_json(spec: str) -> dict[str, Any]:
    """--json's room: a JSON document, @FILE, or @- / - for standard input (as curl's -d).

    A bare file name that is not JSON is read as a file too, as --json took a path before.
    """
    hint = ""
    if spec in ("-", "@-"):
        text, where = sys.stdin.read(), "standard input"
    elif spec.startswith("@"):
        text, where = _read(Path(spec[1:])), spec[1:]
    elif spec.lstrip().startswith(("{", "[")):
        text, where = spec, "--json"
    elif Path(spec).is_file():
        text, where = _read(Path(spec)), spec
    else:  # neither JSON nor a file: perhaps a file name without its @
        text, where = spec, "--json"
        hint = f"; no file {spec!r} either (a file is given as @FILE)"
    data = _parse_json(text, where, hint)
    if not isinstance(data, dict):
        raise RoomInputError(f"{where}: the room must be a JSON object, not {_kind(data)}")
    return data


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        raise RoomInputError(f"cannot read {path}: {exc.strerror}") from exc
    except UnicodeDecodeError as exc:
        raise RoomInputError(f"{path} is not UTF-8 text: {exc.reason}") from exc


def _parse_json(text: str, where: str, hint: str = "") -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise RoomInputError(
            f"{where} is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}{hint}"
        ) from exc


def _kind(value: Any) -> str:
    names = {list: "an array", str: "a string", bool: "true or false", type(None): "null"}
    return names.get(type(value), "a number")


def _from_args(args: argparse.Namespace) -> dict[str, Any]:
    if args.json is not None:
        data = _room_json(args.json)
        if args.slug:
            data["slug"] = args.slug
        return data
    policy: dict[str, Any] = _parse_json(args.policy, "--policy") if args.policy else {"access": []}
    if args.anyone:
        policy.setdefault("access", []).append({"kind": "anyone"})
    readers: list[Any] = (
        _parse_json(args.caption_readers, "--caption-readers") if args.caption_readers else []
    )
    if args.public_captions:
        readers.append({"kind": "anyone"})
    schedule: dict[str, Any] = {"start": args.start, "end": args.end, "timezone": args.timezone}
    if args.weekly:
        schedule["recurrence"] = "weekly"
        schedule["until"] = args.until
    return {
        "slug": args.slug,
        "title": args.title,
        "description": args.description,
        "languages": args.lang or ["ko"],
        "schedule": schedule,
        "policy": policy,
        "caption_readers": readers,
        "contact": args.contact,
        "low_bandwidth": not args.no_low_bandwidth,
        "irc_channel": args.irc_channel,
        "transcript_retention_days": args.retention_days,
    }


def run(args: argparse.Namespace, settings: Settings) -> int:
    new = None
    if args.rooms_command == "create":
        # Read and check the room before the database is opened: a bad one changes nothing.
        try:
            new = RoomCreate.model_validate(_from_args(args))
        except RoomInputError as exc:
            print(f"plenary rooms: {exc}", file=sys.stderr)
            return 2
        except ValidationError as exc:
            for err in exc.errors(include_url=False):
                where = ".".join(str(p) for p in err["loc"])
                print(f"plenary rooms: {where}: {err['msg']}", file=sys.stderr)
            return 2
    return asyncio.run(_run(args, settings, new))


async def _run(args: argparse.Namespace, settings: Settings, new: RoomCreate | None) -> int:
    # The command's standard error is for its own errors, not the INFO line about
    # bringing the schema up to date (a warning or error still shows).
    logging.getLogger("orchestrator.db").setLevel(logging.WARNING)
    db = await Database.open(configured(settings.orchestrator))
    try:
        return await _command(args, RoomRepository(db), new)
    finally:
        await db.close()


def _error(text: str) -> int:
    print(f"plenary rooms: {text}", file=sys.stderr)
    return 1


async def _command(args: argparse.Namespace, repo: RoomRepository, new: RoomCreate | None) -> int:
    command = args.rooms_command
    if new is not None:
        try:
            room = await repo.create(new)
        except RoomExists:
            return _error(f"a room named {new.slug!r} exists already")
        print(f"created {room.slug}")
        return 0
    if command == "list":
        now = datetime.now(UTC)
        for room in await repo.list():
            nxt = room.next_occurrence(now)
            when = nxt.start.isoformat(timespec="minutes") if nxt else "no upcoming session"
            print(f"{room.slug}\t{when}\t{','.join(room.languages)}\t{room.title}")
        return 0
    try:
        if command == "show":
            print((await repo.get(args.slug)).model_dump_json(indent=2))
        else:
            await repo.delete(args.slug)
            print(f"deleted {args.slug}")
    except RoomNotFound:
        return _error(f"no room named {args.slug!r}")
    return 0
