"""Rooms, sessions, read tokens, IRC channel keys and Jitsi meetings on both backends.

Each test runs on a new SQLite file and on a new PostgreSQL database (``database_url``,
tests/pg_fixtures.py), through the repositories' own methods. Where two orchestrator
nodes share a database, two ``Database`` objects on one URL play the nodes: the cookie
key and a room's channel key made by both at once are one key, and a meeting recorded
on one is resolved on the other.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from bench.harness.rooms_helpers import room_json
from orchestrator.access.identity import Identity
from orchestrator.access.read_tokens import ReadTokens
from orchestrator.captions import event_sync
from orchestrator.captions.meetings import KNOWN_FOR, UNKNOWN_FOR, Meetings
from orchestrator.db import Database
from orchestrator.irc_channels import ChannelKeys
from orchestrator.rooms.model import RoomCreate, RoomFields
from orchestrator.rooms.repository import RoomExists, RoomNotFound, RoomRepository
from orchestrator.web.sessions import secret_key
from plenary.events import CaptionEvent
from tests.fake_prosody import FakeProsody
from tests.fake_prosody import Room as MucRoom

OLGA = Identity("ldap", "olga", "olga", "Olga", "olga@example.org", frozenset({"staff"}))


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[Database]:
    opened = await Database.open(database_url)
    yield opened
    await opened.close()


async def test_rooms(db: Database) -> None:
    repo = RoomRepository(db)
    made = await repo.create(RoomCreate.model_validate(room_json("keynote")))
    await repo.create(RoomCreate.model_validate(room_json("alpha", title="Alpha")))
    with pytest.raises(RoomExists):
        await repo.create(RoomCreate.model_validate(room_json("keynote")))
    assert [r.slug for r in await repo.list()] == ["alpha", "keynote"]
    assert await repo.get("keynote") == made
    assert (await repo.policy_for("keynote")) == made.caption_policy
    assert await repo.policy_for("nowhere") is None
    fields = RoomFields.model_validate(
        {
            k: v
            for k, v in room_json(
                "keynote", title="Keynote, moved", transcript_retention_days=3
            ).items()
            if k != "slug"
        }
    )
    replaced = await repo.replace("keynote", fields)
    assert replaced.title == "Keynote, moved" and replaced.created_at == made.created_at
    assert (await repo.get("keynote")).title == "Keynote, moved"
    assert (await repo.policies())["keynote"].retention_days == 3
    with pytest.raises(RoomNotFound):
        await repo.replace("nowhere", fields)
    await repo.delete("keynote")
    with pytest.raises(RoomNotFound):
        await repo.get("keynote")
    with pytest.raises(RoomNotFound):
        await repo.delete("keynote")


async def test_read_tokens(db: Database) -> None:
    tokens = ReadTokens(db)
    secret, row = await tokens.issue("keynote", OLGA, days=7)
    other, _ = await tokens.issue("keynote", OLGA, days=1)
    assert row.room == "keynote" and row.owner == "ldap:olga" and row.state() == "active"
    assert row.identity == OLGA
    assert row.expires_at_ms - row.created_at_ms == 7 * 86_400_000
    checked = await tokens.check(secret)
    assert checked is not None and checked.id == row.id
    used = await tokens.get(row.id)
    assert used is not None and used.last_used_at_ms is not None
    assert await tokens.check("plr_never-issued") is None
    assert await tokens.check("not-even-a-token") is None
    listed = await tokens.list("keynote")
    assert [t.id for t in listed] == sorted((t.id for t in listed), reverse=True)
    assert len(listed) == 2 and await tokens.list("keynote", owner="ldap:bob") == []
    assert await tokens.revoke(row.id, by="ldap:admin")
    assert not await tokens.revoke(row.id, by="ldap:admin")  # once
    revoked = await tokens.check(secret)
    assert revoked is not None and revoked.state() == "revoked"
    assert revoked.revoked_by == "ldap:admin"
    assert (await tokens.check(other)) is not None
    with pytest.raises(ValueError, match="1 to 90 days"):
        await tokens.issue("keynote", OLGA, days=91)


async def test_nodes_sign_with_one_cookie_key(database_url: str) -> None:
    nodes = [await Database.open(database_url) for _ in range(3)]
    try:
        keys = await asyncio.gather(*(secret_key(node, "") for node in nodes for _ in range(3)))
        assert len(set(keys)) == 1 and len(keys[0]) == 44
        assert await secret_key(nodes[0], "") == keys[0]  # kept
        assert await secret_key(nodes[1], "configured") == "configured"
    finally:
        for node in nodes:
            await node.close()


async def test_channel_keys(database_url: str) -> None:
    a, b = await Database.open(database_url), await Database.open(database_url)
    try:
        one, two = ChannelKeys(a), ChannelKeys(b)
        assert await one.state("keynote") is None
        made = await asyncio.gather(one.key("keynote"), two.key("keynote"), one.key("keynote"))
        assert len(set(made)) == 1
        state = await two.state("keynote")
        assert state is not None and state.key == made[0] and state.protected is None
        await one.report("keynote", False, "not a channel operator")
        state = await two.state("keynote")
        assert state is not None and state.protected is False
        assert state.detail == "not a channel operator" and state.reported_at_ms
        await two.report("keynote", True, "")
        assert (await one.state("keynote")) == (await two.state("keynote"))
        assert (await one.state("keynote")).protected is True  # type: ignore[union-attr]
        rotated = await two.rotate("keynote")
        assert rotated != made[0] and await one.key("keynote") == rotated
        state = await one.state("keynote")
        assert state is not None and state.protected is None and state.detail == ""
        await one.report("lobby", True, "")  # a public room's channel: made on report
        assert (await two.state("lobby")) is not None
    finally:
        await a.close()
        await b.close()


class _Record:
    """FakeProsody's client: each post parsed and recorded, as the events API does."""

    def __init__(self, meetings: Meetings) -> None:
        self.meetings = meetings

    async def post(self, path: str, data: bytes, headers: dict[str, str]) -> bool:
        return await self.meetings.record(event_sync.parse(path.lstrip("/"), data))


async def test_meetings(database_url: str) -> None:
    db = await Database.open(database_url)
    try:
        meetings = Meetings(db)
        prosody = FakeProsody(_Record(meetings), "", prefix="")
        main = MucRoom("keynote")
        breakout = MucRoom("x", breakout_of=main, subject="Q&A")
        assert await prosody.room_created(main)
        assert await prosody.room_created(breakout)
        assert await prosody.occupant_joined(main, "ep1", {"id": "u1", "name": "Ana Kim"})
        assert await prosody.occupant_joined(main, "ep1", None)  # no name: keeps Ana's
        assert await prosody.occupant_joined(breakout, "ep2", {"id": "u2", "name": "Bo"})
        assert await prosody.occupant_left(main, "ep1")
        # a new object reads what the first one wrote (no cache of its own yet)
        fresh = Meetings(db)
        assert await fresh.room_of(main.meeting_id) == "keynote"
        assert await fresh.room_of("unknown") is None
        breakout_room = await fresh.room_of(breakout.meeting_id)
        assert breakout_room is not None and breakout_room.startswith("keynote.breakout-")
        assert await fresh.room_of_jid(breakout.jid.upper()) == breakout_room
        spoken = await fresh.resolve(_spoken(main.meeting_id, "ep1"))
        assert (spoken.room, spoken.speaker) == ("keynote", "Ana Kim")
        spoken = await fresh.resolve(_spoken(breakout.meeting_id, "ep2"))
        assert (spoken.room, spoken.speaker) == (breakout_room, "Bo")
        spoken = await fresh.resolve(_spoken(main.meeting_id, "ep9"))
        assert (spoken.room, spoken.speaker) == ("keynote", "Speaker 1")
        await meetings.jigasi_joined("keynote", "p1", "Caller One", 1)
        await meetings.jigasi_joined("keynote", "p1", "", 2)
        assert await Meetings(db).jigasi_name("keynote", "p1") == "Caller One"
        await meetings.jigasi_left("keynote", "p1", 3)
        assert await Meetings(db).jigasi_name("keynote", "p1") == "Caller One"
        await meetings.jigasi_ended("keynote")
        assert await Meetings(db).jigasi_name("keynote", "p1") == ""
        assert await prosody.room_destroyed(main)
        assert await Meetings(db).room_of(main.meeting_id) == "keynote"  # kept a week
    finally:
        await db.close()


def _spoken(meeting: str, endpoint: str) -> CaptionEvent:
    """A videobridge caption: no room, only the meeting and the speaker's endpoint."""
    return CaptionEvent("", "Speaker 1", "en", "hello", True, 0.0, 1.0, "m1",
                        meeting_id=meeting, endpoint=endpoint)  # fmt: skip


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_meetings_recorded_on_one_node_reach_the_other(database_url: str) -> None:
    """Prosody posts to node A, the captions arrive at node B: B learns the meeting's
    room and the speaker's name within its cache times, even after a miss."""
    a_db, b_db = await Database.open(database_url), await Database.open(database_url)
    try:
        clock = Clock()
        a, b = Meetings(a_db, clock=clock), Meetings(b_db, clock=clock)
        prosody = FakeProsody(_Record(a), "", prefix="")
        main = MucRoom("keynote")
        early = await b.resolve(_spoken(main.meeting_id, "ep1"))  # before any post
        assert (early.room, early.speaker) == (main.meeting_id, "Speaker 1")
        assert await prosody.room_created(main)
        assert await prosody.occupant_joined(main, "ep1", {"id": "u1", "name": "Ana Kim"})
        clock.now += UNKNOWN_FOR
        spoken = await b.resolve(_spoken(main.meeting_id, "ep1"))
        assert (spoken.room, spoken.speaker) == ("keynote", "Ana Kim")
        assert await prosody.occupant_joined(main, "ep1", {"id": "u1", "name": "Ana K. Kim"})
        assert (await a.resolve(_spoken(main.meeting_id, "ep1"))).speaker == "Ana K. Kim"
        clock.now += KNOWN_FOR
        assert (await b.resolve(_spoken(main.meeting_id, "ep1"))).speaker == "Ana K. Kim"
    finally:
        await a_db.close()
        await b_db.close()
