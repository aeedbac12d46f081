"""The relay keeps up with a conversation, and finds a nick the server takes.

Real servers (ngircd, InspIRCd) on loopback with their default flood limits; captions
are POSTed to the real app and an independent IRC client watches the channel.
"""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path

import pytest

from bench.harness.caption_feed import BusCaptionSource, caption_bus
from bench.harness.irc_conversation import converse
from bench.harness.ircservers import RawClient, relay_running, start_server, until
from bots.irc.protocol import RFC_NICKLEN
from bots.irc.relay import Relay
from plenary.events import CaptionEvent
from plenary.fanout import FanOut
from tests.test_irc_servers import caption, irc_settings, need


# ngircd only here (the server of the probe); the packing test below runs on both.
@pytest.mark.parametrize("kind", ["ngircd"])
async def test_three_speakers_taking_turns_stay_within_seconds(kind: str, tmp_path: Path) -> None:
    """A caption every 1.5 s from 3 alternating speakers at 1 line a second. Before, a
    PING behind every line took a token too, so the relay sent a line every 2 s and the
    delay grew by 0.5 s a caption (p95 ~10 s after 30 s, 58.8 s after 150 s)."""
    need(kind)
    with start_server(kind, tmp_path) as srv:
        result = await converse(srv.port, tmp_path, seconds=30.0, lines_per_second=1.0)
    summary = result.summary()
    print(summary)
    assert result.captions >= 19, summary
    assert result.missing == 0 and result.repeated == 0 and result.in_order, summary
    assert result.p95 <= 5.0, summary
    assert result.longest_line <= 512, summary
    assert result.connections == 1 and not result.last_error, summary


@pytest.mark.parametrize("kind", ["ngircd", "inspircd"])
async def test_captions_faster_than_lines_are_packed_across_speakers(
    kind: str, tmp_path: Path
) -> None:
    """A caption every 0.75 s at 1 line a second: more captions than lines, so the
    speakers waiting share lines (``<A> … · <B> …``) within 512 bytes on the wire, the
    server's prefix included, and the delay stays bounded."""
    need(kind)
    with start_server(kind, tmp_path) as srv:
        result = await converse(
            srv.port, tmp_path, seconds=30.0, interval=0.75, lines_per_second=1.0
        )
    summary = result.summary()
    print(summary)
    assert result.missing == 0 and result.repeated == 0 and result.in_order, summary
    assert result.packed_lines >= 5 and result.lines < result.captions, summary
    assert result.longest_line <= 512, summary
    assert result.p95 <= 5.0, summary
    assert result.connections == 1 and not result.last_error, summary


async def test_nick_too_long_is_shortened_to_nicklen_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """ngircd's NICKLEN is 9: "plenarybot" gets 432, then "plenarybo" is in use (433),
    and the relay registers as a nick of at most 9 characters, saying so at WARNING."""
    need("ngircd")
    caplog.set_level(logging.INFO, "bots.irc")
    with start_server("ngircd", tmp_path) as srv:
        squatter = await RawClient.connect(srv.port, "plenarybo")
        observer = await RawClient.connect(srv.port, "watcher", "#room")
        bus = caption_bus()
        settings = irc_settings(srv.port, {"talk": "#room"}, nick="plenarybot")
        async with BusCaptionSource(bus) as source, relay_running(Relay(settings, source)) as relay:
            client = relay.clients["default"]
            await until(lambda: client.registered.is_set(), 10, "registration")
            assert len(client.nick) <= RFC_NICKLEN and client.nick != "plenarybo", client.nick
            assert client.nicklen == 9
            await until(lambda: all(c.joined for c in client.channels.values()), 10, "join")
            bus.publish(caption("talk", "Alice", "hello"))
            await until(lambda: observer.texts(client.nick) == ["<Alice> hello"], 10, "a line")
            assert client.connections == 1
        await squatter.close()
        await observer.close()
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("'plenarybot'" in w and "432" in w and "'plenarybo'" in w for w in warnings)
    assert any("'plenarybo'" in w and "433" in w and repr(client.nick) in w for w in warnings)


async def test_nick_refused_for_its_characters_and_in_use_on_inspircd(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    need("inspircd")
    with start_server("inspircd", tmp_path) as srv:
        squatter = await RawClient.connect(srv.port, "relay")
        bus = caption_bus()
        settings = irc_settings(srv.port, {"talk": "#room"}, nick="9relay")
        async with BusCaptionSource(bus) as source, relay_running(Relay(settings, source)) as relay:
            client = relay.clients["default"]
            await until(lambda: client.registered.is_set(), 10, "registration")
            assert client.nick == "relay_"
        await squatter.close()
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("'9relay'" in w and "432" in w and "'relay'" in w for w in warnings), warnings
    assert any("'relay'" in w and "433" in w and "'relay_'" in w for w in warnings), warnings


async def burst_time(
    relay: Relay, bus: FanOut[CaptionEvent], observer: RawClient, count: int
) -> float:
    """Seconds until ``count`` captions of a line each (no space: none is packed behind
    another) published at once are all in the channel."""
    client = relay.clients["default"]
    await until(lambda: all(c.joined for c in client.channels.values()), 10, "join")
    await asyncio.sleep(1.0)
    start = time.monotonic()
    for i in range(count):
        bus.publish(caption("talk", "Alice" if i % 2 else "Bob", f"n{i:03d}-" + "x" * 300))
    await until(lambda: len(observer.texts(client.nick)) >= count, 60, "every line")
    elapsed = time.monotonic() - start
    await asyncio.sleep(1.0)
    assert len(observer.texts(client.nick)) == count
    assert client.connections == 1 and not client.last_error, client.last_error
    return elapsed


async def test_ngircd_operator_with_mode_f_sends_faster_and_stays(tmp_path: Path) -> None:
    """ngircd exempts users with mode +F (only IRC operators may set it) from its flood
    throttling: opered, the relay sets +F and sends at lines_per_second_exempt."""
    need("ngircd")
    extra = "\n[Operator]\n    Name = relayop\n    Password = oper-secret\n"
    with start_server("ngircd", tmp_path, extra=extra) as srv:
        observer = await RawClient.connect(srv.port, "watcher", "#room")
        bus = caption_bus()
        settings = irc_settings(
            srv.port,
            {"talk": "#room"},
            oper_name="relayop",
            oper_password="oper-secret",
            lines_per_second_exempt=10.0,
        )
        async with BusCaptionSource(bus) as source, relay_running(Relay(settings, source)) as relay:
            client = relay.clients["default"]
            await until(lambda: client.exempt, 10, "user mode +F")
            assert "F" in client.user_modes and client.bucket.rate == 10.0
            elapsed = await burst_time(relay, bus, observer, 60)
        await observer.close()
    assert elapsed < 15.0, elapsed  # at 1 line a second: over 55 s


async def test_inspircd_connect_class_lets_the_relay_send_faster(tmp_path: Path) -> None:
    """The docs/irc.md <connect> class for the relay (matched by its server password):
    a higher threshold and commandrate; the relay's lines_per_second raised to match."""
    need("inspircd")
    connect = (
        '<connect name="relay" allow="127.0.0.1" password="relay-class-secret" '
        'hash="plaintext" threshold="60" commandrate="12000" recvq="65536" '
        'localmax="100" globalmax="100" resolvehostnames="no">'
    )
    with start_server("inspircd", tmp_path, connect=connect) as srv:
        observer = await RawClient.connect(srv.port, "watcher", "#room")
        bus = caption_bus()
        settings = irc_settings(
            srv.port,
            {"talk": "#room"},
            password="relay-class-secret",
            lines_per_second=10.0,
            burst=10,
        )
        async with BusCaptionSource(bus) as source, relay_running(Relay(settings, source)) as relay:
            elapsed = await burst_time(relay, bus, observer, 60)
        await observer.close()
    assert elapsed < 15.0, elapsed
