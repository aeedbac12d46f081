"""A restricted room's IRC channel is closed: real ngircd and InspIRCd (with Atheme),
a real slapd, the real orchestrator over HTTP, the relay reading it with its token.

The relay reads the orchestrator's channel table, sets the room's key on the channel
and reports back. An independent client without the key is refused (475); an attendee
admitted by the room's LDAP group logs in on the web, reads the key on the room page,
joins and reads the captions. A public room's channel stays open. A channel someone
else held first cannot be protected: the log and the room page say so. A rotated key
replaces the old one on the channel.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from prometheus_client import CollectorRegistry, generate_latest

from bench.harness.ircservers import (
    HOST,
    IrcServer,
    RawClient,
    binary,
    relay_running,
    start_server,
    until,
)
from bench.harness.rooms_helpers import AUTH, room_json
from bench.harness.rooms_helpers import TOKEN as ADMIN
from bench.harness.slapd import PASSWORDS, Slapd, run_slapd, slapd_binary
from bots.irc.keys import OrchestratorChannels
from bots.irc.metrics import RelayCollector
from bots.irc.relay import Relay
from bots.irc.source import SseCaptionSource
from orchestrator.app import create_app
from plenary.settings import IrcRoomSettings, IrcSettings, load_settings
from tests.test_irc_servers import network
from tests.web_helpers import JITSI_SECRET, csrf_of

pytestmark = pytest.mark.skipif(slapd_binary() is None, reason="slapd is not installed")

PRODUCER = "producer-token"
READER = "relay-reader-token"
DEVS = {"access": [{"kind": "ldap_group", "group": "devs"}], "moderators": []}
ANYONE = {"access": [{"kind": "anyone"}], "moderators": []}
CHANNELS = {"devroom": "#dev", "openroom": "#open", "taken": "#taken"}


@pytest.fixture(scope="module")
def slapd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Slapd]:
    with run_slapd(tmp_path_factory.mktemp("slapd")) as server:
        yield server


@pytest.fixture(params=["ngircd", "inspircd"])
def irc(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[IrcServer]:
    kind = request.param
    if binary(kind) is None or (kind == "inspircd" and binary("atheme-services") is None):
        pytest.skip(f"{kind} (and atheme-services) not installed (make deps installs them)")
    with start_server(kind, tmp_path, services=kind == "inspircd") as server:
        yield server


def irc_settings(port: int) -> IrcSettings:
    rooms = [IrcRoomSettings(room=r, channel=c) for r, c in CHANNELS.items()]
    net = network(port, nick="relay")
    return IrcSettings(networks={"default": net}, rooms=rooms)


@pytest.fixture
async def orchestrator(slapd: Slapd, irc: IrcServer, tmp_path: Path) -> AsyncIterator[str]:
    settings = load_settings(
        orchestrator={"database": tmp_path / "db.sqlite3", "admin_token": ADMIN},
        ldap=slapd.settings().model_dump(mode="json"),
        jitsi={"domain": "meet.example.org", "app_secret": JITSI_SECRET},
        captions={"producer_token": PRODUCER, "service_readers": {"relay": READER},
                  "heartbeat_seconds": 1.0},
        irc=irc_settings(irc.port).model_dump(),
    )  # fmt: skip
    server = TestServer(create_app(settings), host=HOST)
    await server.start_server()
    base = f"http://{HOST}:{server.port}"
    async with aiohttp.ClientSession() as http:
        for slug, policy in (("devroom", DEVS), ("openroom", ANYONE), ("taken", DEVS)):
            body = room_json(slug, policy=policy, irc_channel=CHANNELS[slug])
            r = await http.post(f"{base}/api/v1/rooms", json=body, headers=AUTH)
            assert r.status == 201, await r.text()
    yield base
    await server.close()


async def room_page(base: str, slug: str, user: str = "") -> str:
    """The room page as a browser sees it, logged in over LDAP as ``user`` if given."""
    jar = aiohttp.CookieJar(unsafe=True)  # cookies for an IP address host
    async with aiohttp.ClientSession(base, cookie_jar=jar) as web:
        if user:
            csrf = csrf_of(await (await web.get("/login")).text())
            form = {"username": user, "password": PASSWORDS[user], "csrf_token": csrf,
                    "next": "/"}  # fmt: skip
            r = await web.post("/login/ldap", data=form, allow_redirects=False)
            assert r.status == 303, await r.text()
        r = await web.get(f"/r/{slug}")
        assert r.status == 200
        return await r.text()


def key_on(html: str, channel: str) -> str:
    match = re.search(rf"/join {re.escape(channel)} ([A-Za-z0-9]+)</code>", html)
    assert match, f"no key for {channel} on the page"
    return match.group(1)


async def refused(port: int, nick: str, channel: str, key: str = "") -> list[Any]:
    client = await RawClient.connect(port, nick)
    client.send(f"JOIN {channel} {key}".rstrip())
    await until(lambda: client.numerics("475") or client.numerics("366"), 10, "JOIN answer")
    answer = client.numerics("475")
    await client.close()
    return answer


async def test_restricted_channel_needs_the_key_from_the_room_page(
    irc: IrcServer, orchestrator: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    base = orchestrator
    # Someone holds #taken before the relay comes: the relay is not its operator.
    squatter = await RawClient.connect(irc.port, "squatter", "#taken")
    async with aiohttp.ClientSession() as http:
        source = SseCaptionSource(base, http, token=READER, reconnect_min=0.2)
        keys = OrchestratorChannels(base, READER, http)
        relay = Relay(irc_settings(irc.port), source, channels=keys, refresh=0.5)
        async with relay_running(relay):
            await until(lambda: relay.protection.get("devroom") == (True, ""), 15, "#dev keyed")
            await until(lambda: "taken" in relay.protection, 15, "#taken tried")
            assert relay.protection["taken"][0] is False
            assert "not a channel operator" in relay.protection["taken"][1]
            assert "openroom" not in relay.protection  # public: nothing to protect
            registry = CollectorRegistry()
            registry.register(RelayCollector(relay))
            scraped = generate_latest(registry).decode()
            assert 'plenary_irc_channel_protected{room="devroom"} 1.0' in scraped
            assert 'plenary_irc_channel_protected{room="taken"} 0.0' in scraped

            # Without the key: refused. The public room's channel stays open.
            answer = await refused(irc.port, "intruder", "#dev")
            assert answer and answer[0].param(1) == "#dev"
            assert not await refused(irc.port, "visitor", "#open")

            # The key is on the room page for an admitted attendee only.
            anonymous = await room_page(base, "devroom")
            outsider = await room_page(base, "devroom", "carol")  # not in devs
            member = await room_page(base, "devroom", "bob")
            key = key_on(member, "#dev")
            assert key not in anonymous and key not in outsider
            assert "#dev" in anonymous and "log in" in anonymous
            assert "The relay has set the channel key" in member
            assert await refused(irc.port, "guesser", "#dev", "wrong-key")

            insider = await RawClient.connect(irc.port, "insider")
            await insider.join("#dev", key)
            assert await until_relay_in(relay, "devroom")
            events = [{"speaker": "Alice", "text": "only for devs", "language": "en"}]
            r = await http.post(
                f"{base}/api/v1/rooms/devroom/captions",
                json={"events": events},
                headers={"Authorization": f"Bearer {PRODUCER}"},
            )
            assert r.status == 202, await r.text()
            await until(lambda: "<Alice> only for devs" in insider.texts("relay"), 15, "caption")

            # The channel the relay could not protect: said in the log and on the page.
            taken = await room_page(base, "taken", "bob")
            assert "This IRC channel is not protected" in taken
            assert "not a channel operator" in taken
            assert any(
                "#taken" in r.getMessage() and "NOT protected" in r.getMessage()
                for r in caplog.records
            )
            # ... and its captions are held back: the open channel never reads them.
            secret = [{"speaker": "Alice", "text": "never on an open channel", "language": "en"}]
            r = await http.post(
                f"{base}/api/v1/rooms/taken/captions",
                json={"events": secret},
                headers={"Authorization": f"Bearer {PRODUCER}"},
            )
            assert r.status == 202, await r.text()
            await asyncio.sleep(3)
            assert not any("never on an open channel" in t for t in squatter.texts())

            # A new key: the relay sets it at its next refresh; the old one is refused.
            r = await http.post(f"{base}/api/v1/irc/channels/devroom/key", headers=AUTH)
            assert r.status == 200, await r.text()
            new = (await r.json())["key"]
            assert new != key
            channel = relay.clients["default"].channels["#dev"]
            await until(lambda: (channel.current or {}).get("k") == new, 15, "the new key set")
            assert await refused(irc.port, "oldkey", "#dev", key)
            assert not await refused(irc.port, "newkey", "#dev", new)
            assert key_on(await room_page(base, "devroom", "alice"), "#dev") == new

            # Only the relay's reader token reads the table.
            r = await http.get(f"{base}/api/v1/irc/channels")
            assert r.status == 401
            r = await http.get(
                f"{base}/api/v1/irc/channels", headers={"Authorization": "Bearer nope"}
            )
            assert r.status == 403
            await insider.close()
    await squatter.close()


async def until_relay_in(relay: Relay, room: str) -> bool:
    queue = relay.queues[room]
    client = relay.clients["default"]
    await until(lambda: client.channels[queue.target.lower()].joined, 10, f"relay in {room}")
    return True


async def test_a_room_created_after_the_relay_started_is_keyed_before_its_first_caption(
    irc: IrcServer, orchestrator: str
) -> None:
    """The relay reads the table at start and every ``refresh`` seconds (here: never
    again, even while a configured room is missing); a caption of a room missing from its
    table makes it read the table at once, and it posts nothing into the channel until
    the key is set."""
    base = orchestrator
    settings = irc_settings(irc.port)
    settings.rooms.append(IrcRoomSettings(room="late", channel="#late"))
    async with aiohttp.ClientSession() as http:
        source = SseCaptionSource(base, http, token=READER, reconnect_min=0.2, reconnect_max=1)
        keys = OrchestratorChannels(base, READER, http)
        relay = Relay(settings, source, channels=keys, refresh=3600, refresh_missing=3600)
        async with relay_running(relay):
            await until(lambda: relay.protection.get("devroom") == (True, ""), 15, "#dev keyed")
            body = room_json("late", policy=DEVS, irc_channel="#late")
            r = await http.post(f"{base}/api/v1/rooms", json=body, headers=AUTH)
            assert r.status == 201, await r.text()
            channel = relay.clients["default"].channels["#late"]
            assert not channel.protect  # not in the table read at start
            # Until the relay's stream of the new room is open a caption counts as
            # history: post until one is relayed.
            events = [{"speaker": "Alice", "text": "first words", "language": "en"}]
            deadline = time.monotonic() + 20
            while relay.delivered.get("late", 0) == 0:
                assert time.monotonic() < deadline, "no caption of the late room relayed"
                r = await http.post(
                    f"{base}/api/v1/rooms/late/captions",
                    json={"events": events},
                    headers={"Authorization": f"Bearer {PRODUCER}"},
                )
                assert r.status == 202, await r.text()
                await asyncio.sleep(0.5)
            key = channel.key
            assert key and relay.protection["late"] == (True, "")
            answer = await refused(irc.port, "intruder", "#late")
            assert answer and answer[0].param(1) == "#late"


@pytest.mark.parametrize("irc", ["ngircd"], indirect=True)
async def test_a_room_created_after_the_relay_started_is_keyed_within_seconds(
    irc: IrcServer, orchestrator: str
) -> None:
    """While a room of irc.rooms is missing from the channel table (not created yet) the
    relay reads the table every ``refresh_missing`` seconds: the new restricted room's
    channel is keyed and reported with no caption and no long refresh to wait for."""
    base = orchestrator
    settings = irc_settings(irc.port)
    settings.rooms.append(IrcRoomSettings(room="late", channel="#late"))
    async with aiohttp.ClientSession() as http:
        source = SseCaptionSource(base, http, token=READER, reconnect_min=0.2, reconnect_max=1)
        keys = OrchestratorChannels(base, READER, http)
        relay = Relay(settings, source, channels=keys, refresh=3600, refresh_missing=0.5)
        async with relay_running(relay):
            await until(lambda: relay.protection.get("devroom") == (True, ""), 15, "#dev keyed")
            body = room_json("late", policy=DEVS, irc_channel="#late")
            r = await http.post(f"{base}/api/v1/rooms", json=body, headers=AUTH)
            assert r.status == 201, await r.text()
            await until(lambda: relay.protection.get("late") == (True, ""), 10, "#late keyed")
            assert relay.delivered.get("late", 0) == 0  # no caption was needed
            key = key_on(await room_page(base, "late", "alice"), "#late")
            answer = await refused(irc.port, "intruder", "#late")
            assert answer and answer[0].param(1) == "#late"
            assert not await refused(irc.port, "attendee", "#late", key)


async def test_channel_table_admin_key_and_relay_reports(slapd: Slapd, tmp_path: Path) -> None:
    """An irc.rooms key set by the admin wins over the generated one (table and page);
    the relay's reports are checked; public rooms have no key."""
    settings = load_settings(
        orchestrator={"database": tmp_path / "db.sqlite3", "admin_token": ADMIN},
        ldap=slapd.settings().model_dump(mode="json"),
        jitsi={"domain": "meet.example.org", "app_secret": JITSI_SECRET},
        captions={"service_readers": {"relay": READER}},
        irc={"networks": {"default": {"host": HOST}},
             "rooms": [{"room": "devroom", "channel": "#dev", "key": "AdminKey1"}]},
    )  # fmt: skip
    server = TestServer(create_app(settings), host=HOST)
    await server.start_server()
    base = f"http://{HOST}:{server.port}"
    reader = {"Authorization": f"Bearer {READER}"}
    try:
        async with aiohttp.ClientSession() as http:
            for slug, policy in (("devroom", DEVS), ("openroom", ANYONE), ("taken", DEVS)):
                body = room_json(slug, policy=policy, irc_channel=CHANNELS[slug])
                assert (await http.post(f"{base}/api/v1/rooms", json=body, headers=AUTH)).ok
            r = await http.get(f"{base}/api/v1/irc/channels", headers=reader)
            rows = {row["room"]: row for row in (await r.json())["channels"]}
            assert rows["devroom"] == {"room": "devroom", "channel": "#dev",
                                       "restricted": True, "key": "AdminKey1",
                                       "title": "Keynote", "timezone": "UTC",
                                       "transcript_url": "http://127.0.0.1:8080/r/devroom/"
                                                         "transcripts"}  # fmt: skip
            assert rows["openroom"]["restricted"] is False and rows["openroom"]["key"] == ""
            assert re.fullmatch(r"[A-Za-z0-9]{16}", rows["taken"]["key"])
            again = await (await http.get(f"{base}/api/v1/irc/channels", headers=reader)).json()
            assert {r["room"]: r for r in again["channels"]}["taken"] == rows["taken"]  # kept
            assert key_on(await room_page(base, "devroom", "alice"), "#dev") == "AdminKey1"

            state = f"{base}/api/v1/irc/channels/devroom/state"
            bad = await http.put(state, json={"protected": "yes"}, headers=reader)
            assert bad.status == 400
            assert (await http.put(state, json={"protected": True})).status == 401
            missing = f"{base}/api/v1/irc/channels/nosuch/state"
            assert (await http.put(missing, json={"protected": True}, headers=reader)).status == 404
            rotate = f"{base}/api/v1/irc/channels/taken/key"
            assert (await http.post(rotate, headers=reader)).status == 403  # not the admin
    finally:
        await server.close()


NGIRCD_PERSISTENT = """
[Options]
    OperCanUseMode = yes
[Operator]
    Name = relayop
    Password = oper-secret
[Channel]
    Name = #dev
    Modes = +tnP
"""


@pytest.mark.parametrize("oper", [True, False])
async def test_persistent_channel_is_keyed_by_an_irc_operator(
    slapd: Slapd, tmp_path: Path, oper: bool
) -> None:
    """A channel ngircd.conf makes persistent (as the irc role does) has no operator
    the relay could be: with OPER rights and OperCanUseMode the relay keys it anyway;
    without them it says it cannot."""
    if binary("ngircd") is None:
        pytest.skip("ngircd is not installed")
    with start_server("ngircd", tmp_path, extra=NGIRCD_PERSISTENT) as srv:
        settings = load_settings(
            orchestrator={"database": tmp_path / "db.sqlite3", "admin_token": ADMIN},
            ldap=slapd.settings().model_dump(mode="json"),
            captions={"service_readers": {"relay": READER}},
        )
        server = TestServer(create_app(settings), host=HOST)
        await server.start_server()
        base = f"http://{HOST}:{server.port}"
        irc = IrcSettings(
            networks={"default": network(srv.port, nick="relay",
                                         oper_name="relayop" if oper else "",
                                         oper_password="oper-secret")},
            rooms=[IrcRoomSettings(room="devroom", channel="#dev")],
        )  # fmt: skip
        try:
            async with aiohttp.ClientSession() as http:
                body = room_json("devroom", policy=DEVS, irc_channel="#dev")
                assert (await http.post(f"{base}/api/v1/rooms", json=body, headers=AUTH)).ok
                keys = OrchestratorChannels(base, READER, http)
                source = SseCaptionSource(base, http, token=READER)
                relay = Relay(irc, source, channels=keys)
                async with relay_running(relay):
                    await until(lambda: "devroom" in relay.protection, 10, "a report")
                    answer = await refused(srv.port, "intruder", "#dev")
                    if oper:
                        assert relay.protection["devroom"] == (True, "")
                        assert answer and answer[0].param(1) == "#dev"
                    else:
                        ok, why = relay.protection["devroom"]
                        assert not ok and "not a channel operator" in why and "oper_name" in why
                        assert not answer  # open: the page and the log say so
        finally:
            await server.close()
