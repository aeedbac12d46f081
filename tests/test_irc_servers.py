"""The relay against real servers (ngircd, InspIRCd, Ergo), watched by an independent client."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from bench.harness.caption_feed import BusCaptionSource, caption_bus
from bench.harness.ircservers import (
    HOST,
    IrcServer,
    RawClient,
    binary,
    joined,
    register_account,
    relay_running,
    speaker_pieces,
    start_server,
    until,
)
from bots.irc.client import IrcClient, SaslError
from bots.irc.lines import sanitize
from bots.irc.relay import Relay
from plenary.events import CaptionEvent
from plenary.fanout import FanOut
from plenary.settings import IrcNetworkSettings, IrcRoomSettings, IrcSettings

SERVERS = ["ngircd", "inspircd", "ergo"]


def need(kind: str) -> None:
    if binary(kind) is None:
        if kind == "ergo":
            pytest.skip(
                "the Ergo IRC server is not on PATH: it is not packaged for Debian (Debian's "
                "'ergo' is a chemistry program) nor in any registry this project may use; "
                "install an ergo binary to run the SASL/IRCv3 tests against it"
            )
        pytest.skip(f"{kind} is not installed (make deps installs it)")


@pytest.fixture(params=SERVERS)
def server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[IrcServer]:
    need(request.param)
    with start_server(request.param, tmp_path) as running:
        yield running


def network(port: int, **overrides: Any) -> IrcNetworkSettings:
    values: dict[str, Any] = {
        "host": HOST,
        "port": port,
        "tls": False,
        "nick": "relay",
        "reconnect_min": 0.5,
        "reconnect_max": 4.0,
        "registration_timeout": 5.0,
    }
    values.update(overrides)
    return IrcNetworkSettings(**values)


def irc_settings(port: int, rooms: dict[str, str], **overrides: Any) -> IrcSettings:
    return IrcSettings(
        networks={"default": network(port, **overrides)},
        rooms=[IrcRoomSettings(room=room, channel=channel) for room, channel in rooms.items()],
        transcript_url="https://plenary.example/rooms/{room}/transcript",
    )


def caption(room: str, speaker: str, text: str, *, final: bool = True) -> CaptionEvent:
    return CaptionEvent(room, speaker, "ko", text, final, 0.0, 1.0, f"{speaker}-{text[:8]}")


@contextlib.asynccontextmanager
async def running(settings: IrcSettings, bus: FanOut[CaptionEvent]) -> AsyncIterator[Relay]:
    async with (
        BusCaptionSource(bus) as source,
        relay_running(Relay(settings, source)) as relay,
    ):
        yield relay


def collapse(pairs: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """Consecutive lines of one speaker as one string without spaces.

    Merging and splitting move line boundaries and spaces, never other characters.
    """
    out: list[tuple[str, str]] = []
    for speaker, text in pairs:
        squeezed = "".join(text.split())
        if out and out[-1][0] == speaker:
            out[-1] = (speaker, out[-1][1] + squeezed)
        else:
            out.append((speaker, squeezed))
    return out


def received_pairs(observer: RawClient, nick: str = "relay") -> list[tuple[str, str]]:
    return [pair for text in observer.texts(nick) for pair in speaker_pieces(text)]


KOREAN = "안녕하세요 여러분 오늘은 접근성 회의에 오신 것을 환영합니다 " * 7  # ~650 bytes
SCRIPT = [
    ("Alice", "Good morning, everyone."),
    ("민준", KOREAN.strip()),
    ("Bob", "hello\r\nQUIT :injected"),
    ("Bob", "\x01ACTION waves\x01 and \x00 nul"),
    ("Alice", "x" * 600),
    ("Carol", "👨\u200d👩\u200d👧 family 🇰🇷 flag " * 16),
    ("민준", "마지막 문장입니다."),
]


async def test_captions_arrive_intact(server: IrcServer) -> None:
    observer = await RawClient.connect(server.port, "watcher", "#room")
    bus = caption_bus()
    async with running(irc_settings(server.port, {"talk": "#room"}), bus) as relay:
        await until(lambda: joined(relay), 10, "the relay in #room")
        bus.publish(caption("talk", "Alice", "Good", final=False))  # partials are not posted
        for speaker, text in SCRIPT:
            bus.publish(caption("talk", speaker, text))
        expected = collapse([(s, sanitize(t)) for s, t in SCRIPT])
        await until(lambda: collapse(received_pairs(observer)) == expected, 30, "every caption")
        client = relay.clients["default"]
        await until(lambda: relay.delivered.get("talk") == len(SCRIPT) + 1, 5, "confirmation")
        assert client.connections == 1
    for raw in observer.privmsg_raw:
        assert len(raw) <= 512, raw
        text = raw.decode("utf-8")  # valid UTF-8: no character was cut
        assert not any(ord(c) < 0x20 for c in text.rstrip("\r\n")), text
    korean = " ".join(text for speaker, text in received_pairs(observer) if speaker == "민준")
    assert KOREAN.strip() in korean
    await observer.close()


async def test_commands_answer_links_and_nothing_else(tmp_path: Path) -> None:
    need("ngircd")
    with start_server("ngircd", tmp_path) as srv:
        observer = await RawClient.connect(srv.port, "watcher", "#room")
        async with running(irc_settings(srv.port, {"talk": "#room"}), caption_bus()) as relay:
            await until(lambda: joined(relay), 10, "the relay in #room")
            for command in ("!quit", "!raw QUIT", "\x01VERSION\x01", "!transcript", "!help"):
                observer.send(f"PRIVMSG #room :{command}")
            await until(lambda: len(observer.notices) >= 2, 10, "two answers")
            await asyncio.sleep(0.5)
            texts = [n.param(-1) for n in observer.notices if n.nick == "relay"]
            assert (
                texts[0] == "Full transcript of talk: https://plenary.example/rooms/talk/transcript"
            )
            assert "!transcript" in texts[1] and len(texts) == 2
            assert relay.clients["default"].connections == 1
        await observer.close()


async def test_many_rooms_one_connection_and_a_keyed_channel(tmp_path: Path) -> None:
    need("inspircd")
    with start_server("inspircd", tmp_path) as srv:
        observer = await RawClient.connect(srv.port, "watcher", "#a", "#b")
        await observer.join("#secret")
        observer.send("MODE #secret +k sesame")
        rooms = [
            IrcRoomSettings(room="a", channel="#a"),
            IrcRoomSettings(room="b", channel="#b"),
            IrcRoomSettings(room="s", channel="#secret", key="sesame"),
        ]
        settings = IrcSettings(networks={"default": network(srv.port)}, rooms=rooms)
        bus = caption_bus()
        async with running(settings, bus) as relay:
            await until(lambda: joined(relay), 10, "the relay in three channels")
            assert len(relay.clients) == 1
            for room in ("a", "b", "s"):
                bus.publish(caption(room, "Dana", f"hello from {room}"))
            await until(lambda: len(observer.privmsgs) == 3, 10, "three lines")
            by_channel = {m.param(0): m.param(-1) for m in observer.privmsgs}
            assert by_channel == {
                "#a": "<Dana> hello from a",
                "#b": "<Dana> hello from b",
                "#secret": "<Dana> hello from s",
            }
            assert "B" in relay.clients["default"].user_modes  # InspIRCd offers BOT=B
        await observer.close()


async def test_ergo_sasl_tags_and_bot_mode(tmp_path: Path) -> None:
    need("ergo")
    with start_server("ergo", tmp_path) as srv:
        await register_account(srv.port, "relay", "correct-horse")
        observer = await RawClient.connect(srv.port, "watcher", "#room")
        settings = irc_settings(
            srv.port, {"talk": "#room"}, sasl_username="relay", sasl_password="correct-horse"
        )
        bus = caption_bus()
        async with running(settings, bus) as relay:
            await until(lambda: joined(relay), 10, "the relay in #room")
            client = relay.clients["default"]
            assert {"sasl", "server-time", "message-tags"} <= client.caps
            await until(lambda: "B" in client.user_modes, 5, "bot mode")
            # Ergo cloaks hosts: the relay learned its real hostmask, not a guess.
            assert client.hostmask.startswith("relay!") and client.hostmask.endswith(".irc")
            observer.send("WHOIS relay")
            await until(lambda: any(r.split(b" ")[1] == b"330" for r in observer.raw), 5, "whois")
            assert any(r.split(b" ")[1] == b"335" for r in observer.raw)  # RPL_WHOISBOT
            bus.publish(caption("talk", "Alice", "authenticated hello"))
            await until(lambda: observer.texts() == ["<Alice> authenticated hello"], 10, "line")
        await observer.close()

        bad = IrcClient(network(srv.port, sasl_username="relay", sasl_password="wrong"))
        with pytest.raises(SaslError, match="904"):
            await asyncio.wait_for(bad.run(), 10)


async def test_tls_verified_and_refused(tmp_path: Path) -> None:
    need("ergo")
    with start_server("ergo", tmp_path, tls=True) as srv:
        cert = srv.folder / "cert.pem"
        good = IrcClient(network(srv.tls_port, tls=True, tls_ca_file=cert))
        task = asyncio.create_task(good.run())
        await asyncio.wait_for(good.registered.wait(), 10)
        task.cancel()
        untrusted = IrcClient(network(srv.tls_port, tls=True, reconnect_min=5.0))
        task2 = asyncio.create_task(untrusted.run())
        await until(lambda: bool(untrusted.last_error), 10, "a TLS error")
        assert "CERTIFICATE_VERIFY_FAILED" in untrusted.last_error
        assert not untrusted.registered.is_set()
        task2.cancel()
        await asyncio.gather(task, task2, return_exceptions=True)


async def test_server_restart_loses_and_repeats_nothing(tmp_path: Path) -> None:
    need("ngircd")
    with start_server("ngircd", tmp_path) as srv:
        observer = await RawClient.connect(srv.port, "watcher", "#room")
        # confirm_every=1: a PING behind every line, so no line can be repeated.
        settings = irc_settings(srv.port, {"talk": "#room"}, reconnect_min=2.0, confirm_every=1)
        bus = caption_bus()
        words = [f"w{i:03d}" for i in range(80)]
        async with running(settings, bus) as relay:
            await until(lambda: joined(relay), 10, "the relay in #room")
            client = relay.clients["default"]

            async def publish() -> None:
                for i, word in enumerate(words):
                    bus.publish(caption("talk", "Alice" if (i // 10) % 2 else "Bob", word))
                    await asyncio.sleep(0.08)

            async def keep_watching() -> None:
                while True:
                    if not observer.connected:
                        with contextlib.suppress(OSError, TimeoutError):
                            await observer.open()
                            await observer.join("#room")
                    await asyncio.sleep(0.05)

            publisher = asyncio.create_task(publish())
            watcher = asyncio.create_task(keep_watching())
            await asyncio.sleep(2.0)
            await asyncio.to_thread(srv.restart)
            await publisher
            got = lambda: [w for _, text in received_pairs(observer) for w in text.split()]  # noqa: E731
            await until(lambda: len(got()) >= len(words), 40, "every word after the restart")
            await asyncio.sleep(1.0)  # anything repeated would arrive now
            watcher.cancel()
            assert got() == words
            assert client.connections == 2 and joined(relay)
            assert relay.delivered["talk"] == len(words)
        await observer.close()


async def test_kick_and_ban_then_rejoin(tmp_path: Path) -> None:
    need("ngircd")
    with start_server("ngircd", tmp_path) as srv:
        observer = await RawClient.connect(srv.port, "watcher", "#room")  # first in: operator
        bus = caption_bus()
        settings = irc_settings(srv.port, {"talk": "#room"}, reconnect_min=0.5)
        async with running(settings, bus) as relay:
            await until(lambda: joined(relay), 10, "the relay in #room")
            bus.publish(caption("talk", "Alice", "before"))
            await until(lambda: len(observer.privmsgs) == 1, 10, "first line")
            observer.send("MODE #room +b relay!*@*")
            observer.send("KICK #room relay :testing")
            await until(lambda: not joined(relay), 5, "the kick")
            bus.publish(caption("talk", "Bob", "while banned"))
            await asyncio.sleep(1.5)  # at least one refused JOIN (474)
            observer.send("MODE #room -b relay!*@*")
            await until(lambda: joined(relay), 15, "the rejoin")
            await until(lambda: len(observer.privmsgs) == 2, 10, "the held line")
            assert observer.texts() == ["<Alice> before", "<Bob> while banned"]
            assert relay.clients["default"].connections == 1
        await observer.close()


@pytest.mark.parametrize("kind", ["ngircd"])  # ngircd paces hardest: one command a second
async def test_burst_of_1000_captions_is_merged_without_flooding(kind: str, tmp_path: Path) -> None:
    need(kind)
    with start_server(kind, tmp_path) as srv:  # the server's default flood limits
        observer = await RawClient.connect(srv.port, "watcher", "#room")
        bus = caption_bus()
        async with running(irc_settings(srv.port, {"talk": "#room"}), bus) as relay:
            await until(lambda: joined(relay), 10, "the relay in #room")
            client = relay.clients["default"]
            script = [("Alice" if (i // 250) % 2 else "Bob", f"c{i:04d}") for i in range(1000)]
            for speaker, word in script:
                bus.publish(caption("talk", speaker, word))
            await until(lambda: relay.backlog() > 0, 5, "a backlog")
            assert relay.backlog("talk") < 60  # merged, not 1,000 lines
            expected = collapse([(s, w) for s, w in script])
            await until(lambda: collapse(received_pairs(observer)) == expected, 60, "every word")
            assert client.connections == 1, client.last_error
            assert not client.last_error
            assert len(observer.privmsgs) < 40
            await until(lambda: relay.backlog() == 0, 5, "the last lines confirmed")
        await observer.close()
