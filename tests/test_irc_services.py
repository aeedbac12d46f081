"""IRCv3 against Debian's own servers: InspIRCd linked with Atheme services.

One InspIRCd (with a TLS port) and one Atheme per test, on loopback. The account
is made by the test through NickServ, as a user would; Plenary's IRC client then logs
in with SASL PLAIN (903), is refused with a wrong password (904), gets server-time
and message-tags, sets bot mode from ``BOT=`` and connects over verified TLS.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from bots.captioner.bus import CaptionBus
from bots.irc.client import IrcClient, SaslError
from bots.irc.relay import Relay
from bots.irc.source import BusCaptionSource
from tests.ircservers import (
    RawClient,
    binary,
    joined,
    register_account,
    relay_running,
    start_server,
    until,
)
from tests.test_irc_servers import caption, irc_settings, network

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
        bus = CaptionBus()
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
