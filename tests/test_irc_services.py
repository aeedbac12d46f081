"""IRCv3 against Debian's own servers: InspIRCd linked with Atheme services.

One InspIRCd (with a TLS port) and one Atheme per test, on loopback. The account
is made by the test through NickServ, as a user would; Plenary's IRC client then logs
in with SASL PLAIN (903), is refused with a wrong password (904), gets server-time
and message-tags, sets bot mode from ``BOT=`` and connects over verified TLS.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from bench.harness.caption_feed import BusCaptionSource, caption_bus
from bench.harness.ircservers import (
    HOST,
    RawClient,
    binary,
    joined,
    register_account,
    relay_running,
    start_server,
    until,
)
from bench.harness.rooms_helpers import AUTH, room_json
from bench.harness.rooms_helpers import TOKEN as ADMIN
from bots.irc.client import IrcClient, SaslError
from bots.irc.keys import OrchestratorChannels
from bots.irc.relay import Relay
from bots.irc.source import SseCaptionSource
from orchestrator.app import create_app
from plenary.settings import IrcRoomSettings, IrcSettings, load_settings
from tests.test_irc_servers import caption, irc_settings, network

READER = "relay-reader-token"

pytestmark = pytest.mark.skipif(
    binary("inspircd") is None or binary("atheme-services") is None,
    reason="inspircd and atheme-services are not installed (make deps installs them)",
)


async def test_sasl_tags_bot_mode_and_tls_on_inspircd_with_atheme(tmp_path: Path) -> None:
    with start_server("inspircd", tmp_path, tls=True, services=True) as srv:
        await register_account(srv.port, "relay", "correct-horse", "relay@example.org")
        tags = ("server-time", "message-tags")
        observer = await RawClient.connect(srv.port, "watcher", "#room", caps=tags)
        settings = irc_settings(
            srv.port, {"talk": "#room"}, sasl_username="relay", sasl_password="correct-horse"
        )
        bus = caption_bus()
        async with BusCaptionSource(bus) as source:
            relay = Relay(settings, source)
            async with relay_running(relay):
                await until(lambda: joined(relay), 10, "the relay in #room")
                client = relay.clients["default"]
                assert {"sasl", "server-time", "message-tags"} <= client.caps
                await until(lambda: "B" in client.user_modes, 5, "bot mode from BOT=B")
                observer.send("WHOIS relay")
                await until(lambda: observer.numerics("318"), 5, "end of WHOIS")
                account = observer.numerics("330")  # RPL_WHOISACCOUNT: logged in by SASL
                assert account and account[0].param(2) == "relay"
                assert observer.numerics("335")  # RPL_WHOISBOT

                bus.publish(caption("talk", "Alice", "authenticated hello"))
                await until(lambda: observer.texts() == ["<Alice> authenticated hello"], 10, "line")
                line = observer.privmsg_raw[0]
                # server-time: the server stamps what it relays to a client that asked.
                assert line.startswith(b"@") and b"time=" in line.split(b" ", 1)[0]

                # message-tags: a client-tagged line reaches the relay, which parses the
                # tags away and answers the command as usual.
                observer.send("@+example.org/hello=1 PRIVMSG #room :!help")
                await until(lambda: len(observer.notices) >= 1, 10, "the !help answer")
                assert "talk" in observer.notices[-1].param(-1)
        await observer.close()

        bad = IrcClient(network(srv.port, sasl_username="relay", sasl_password="wrong"))
        with pytest.raises(SaslError, match="904"):
            await asyncio.wait_for(bad.run(), 15)
        nobody = IrcClient(network(srv.port, sasl_username="nobody", sasl_password="x"))
        with pytest.raises(SaslError, match="904"):
            await asyncio.wait_for(nobody.run(), 15)

        cert = srv.folder / "cert.pem"
        good = IrcClient(
            network(srv.tls_port, tls=True, tls_ca_file=cert, nick="tlsrelay",
                    sasl_username="relay", sasl_password="correct-horse")
        )  # fmt: skip
        task = asyncio.create_task(good.run())
        await asyncio.wait_for(good.registered.wait(), 10)
        assert "sasl" in good.caps
        untrusted = IrcClient(network(srv.tls_port, tls=True, reconnect_min=5.0, nick="x"))
        task2 = asyncio.create_task(untrusted.run())
        await until(lambda: bool(untrusted.last_error), 10, "a TLS error")
        assert "CERTIFICATE_VERIFY_FAILED" in untrusted.last_error
        assert not untrusted.registered.is_set()
        task.cancel()
        task2.cancel()
        await asyncio.gather(task, task2, return_exceptions=True)


async def test_registered_only_channel_of_a_restricted_room(tmp_path: Path) -> None:
    """With ``registered_only`` the relay sets +k and +R: the key alone is not enough,
    an account logged in through SASL with the key is. The key comes from the
    orchestrator's table (read with the relay's service reader token)."""
    settings = load_settings(
        orchestrator={"database": tmp_path / "db.sqlite3", "admin_token": ADMIN},
        captions={"producer_token": "p", "service_readers": {"relay": READER}},
        irc={"networks": {"default": {"host": HOST, "port": 6667}},
             "rooms": [{"room": "board", "channel": "#board"}]},
    )  # fmt: skip
    server = TestServer(create_app(settings), host=HOST)
    await server.start_server()
    base = f"http://{HOST}:{server.port}"
    policy = {"access": [{"kind": "ldap_group", "group": "board"}], "moderators": []}
    with start_server("inspircd", tmp_path, services=True) as srv:
        await register_account(srv.port, "relay", "correct-horse", "relay@example.org")
        await register_account(srv.port, "member", "member-pw", "member@example.org")
        async with aiohttp.ClientSession() as http:
            body = room_json("board", policy=policy, irc_channel="#board")
            r = await http.post(f"{base}/api/v1/rooms", json=body, headers=AUTH)
            assert r.status == 201, await r.text()
            keys = OrchestratorChannels(base, READER, http)
            table = await keys.fetch()
            assert table["board"].restricted and table["board"].key
            key = table["board"].key
            irc = IrcSettings(
                networks={"default": network(srv.port, registered_only=True,
                                             sasl_username="relay",
                                             sasl_password="correct-horse")},
                rooms=[IrcRoomSettings(room="board", channel="#board")],
            )  # fmt: skip
            source = SseCaptionSource(base, http, token=READER)
            relay = Relay(irc, source, channels=keys)
            async with relay_running(relay):
                await until(lambda: relay.protection.get("board", (False,))[0], 10, "+kR")
                assert "+R" in relay.protection["board"][1]
                channel = relay.clients["default"].channels["#board"]
                assert channel.current is not None and {"k", "R"} <= set(channel.current)

                # The key without an account: refused (477 needs a registered nick).
                anonymous = await RawClient.connect(srv.port, "anon")
                anonymous.send(f"JOIN #board {key}")
                await until(lambda: anonymous.numerics("477"), 10, "477")
                await anonymous.close()

                # An account logged in with SASL, with the key: in.
                member = IrcClient(
                    network(srv.port, nick="member", sasl_username="member",
                            sasl_password="member-pw")
                )  # fmt: skip
                member.add_room("board", "#board", key=key)
                task = asyncio.create_task(member.run())
                await until(lambda: member.channels["#board"].joined, 10, "member in #board")
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
                await member.close()

                # The room page says an account is needed (as the relay reported).
                page = await (await http.get(f"{base}/r/board")).text()
                assert "registered users only" in page
    await server.close()
