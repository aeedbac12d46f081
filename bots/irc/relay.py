"""Rooms → channels: read each room's caption events and post the finals on IRC.

One ``IrcClient`` per configured network serves every room whose channel is on it.
``delivered[room]`` is the position of the room's last caption known to have reached
its channel; start a new relay with ``positions=relay.delivered`` to resume without
losing or repeating a caption.

    async with aiohttp.ClientSession() as http:
        source = SseCaptionSource(orchestrator_url, http, token=settings.irc.orchestrator_token)
        relay = Relay(settings.irc, source, channels=OrchestratorChannels(...))
        await relay.run()

``!transcript`` answers with each room's title, time zone and transcript link as the
channel table gives them (``transcript``); ``irc.rooms[].transcript_url`` wins.

Restricted rooms: with ``channels`` (the orchestrator's channel table, bots/irc/keys.py)
the relay reads at start and every ``refresh`` seconds which rooms are restricted and
their keys, sets the key on their channels (a key in ``irc.rooms[].key`` wins) and
reports back whether it could (``protection[room]`` holds the last word). While a room
of ``irc.rooms`` is missing from the table (not created yet), it reads the table every
``refresh_missing`` seconds instead, so that a restricted room's channel is keyed within
seconds of the room's creation, before anyone asks the room page for the key.

Several relays (one per orchestrator node, or standalone ``plenary irc`` processes):
with a ``coordinator`` (the orchestrator, bots/irc/keys.py) a relay joins and posts to a
channel only while it holds the channel's lease (orchestrator/irc_relay_api.py). It
asks for it at start, renews it every third of the lease time, and while another relay
holds it asks again when that lease runs out. On taking a channel it reads each of its
rooms' delivered position and resumes right after it; every delivery IRC confirms
(bots/irc/delivery.py: a PING answered after the line) raises that position in the
orchestrator. When a renewal is refused, or fails until the lease might run out, the
relay stops posting there (before the lease runs out), forgets what was waiting and
parts the channel. So after a relay dies another takes its channels over within the
lease time and posts from the last confirmed caption on: what the dead relay wrote in
its last moments without confirmation yet can be repeated (a few milliseconds' worth
while it keeps up; up to about a second's lines while it is behind and the server
paces the confirming PING).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import secrets
import socket
from dataclasses import dataclass

import aiohttp

from bots.irc.client import CommandAsked, IrcClient
from bots.irc.flood import MergeQueue
from bots.irc.keys import ChannelDirectory, KeysError, Lease, RelayCoordinator, RoomChannel
from bots.irc.lines import correction_line
from bots.irc.source import CaptionSource, CorrectionEvent
from plenary.settings import IrcRoomSettings, IrcSettings

log = logging.getLogger(__name__)

HELP = (
    "I post the live captions of {rooms} here, one line per sentence as <Speaker> text. "
    "Commands: !transcript (link to the full transcript), !help. Nothing else is done."
)
FIRST_ASK = 5.0  # seconds between lease requests before any answer said the lease time
HAND_BACK = 3.0  # seconds a stopping relay waits for confirmations, saves and releases
COORDINATION_ERRORS = (aiohttp.ClientError, OSError, TimeoutError, KeysError, ValueError)


def relay_id() -> str:
    """This relay's lease holder name: host, pid and a random tail (unique per run)."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


@dataclass(frozen=True, slots=True)
class Transcript:
    """Where a room's full transcript is, and what to call it in an answer."""

    room: str
    url: str
    title: str = ""  # the room's title; "" when the orchestrator was not asked
    timezone: str = ""  # the zone the transcript's times are in

    def sentence(self) -> str:
        """``Full transcript of Keynote (times in Europe/Berlin): https://…``."""
        name = self.title or self.room
        if not self.url:
            return f"No transcript link is configured for {name}."
        zone = f" (times in {self.timezone})" if self.timezone else ""
        return f"Full transcript of {name}{zone}: {self.url}"


def answer_command(text: str, rooms: list[Transcript]) -> list[str]:
    """Replies to a line starting with ``!`` about ``rooms``.

    Only read-only commands exist; anything else gets no answer at all.
    """
    command = text.split(maxsplit=1)[0].lower() if text.strip() else ""
    if command == "!transcript":
        return [room.sentence() for room in rooms]
    if command == "!help":
        return [
            HELP.format(rooms=", ".join(room.title or room.room for room in rooms) or "no room")
        ]
    return []


class Relay:
    def __init__(
        self,
        settings: IrcSettings,
        source: CaptionSource,
        *,
        positions: dict[str, int] | None = None,
        channels: ChannelDirectory | None = None,
        refresh: float = 60.0,
        refresh_missing: float = 5.0,
        coordinator: RelayCoordinator | None = None,
        holder: str = "",
        lease_ttl: float | None = None,
    ) -> None:
        self.settings = settings
        self.source = source
        self.channels = channels
        # Leases and delivered positions (None: this relay serves every channel alone).
        self.coordinator = coordinator
        self.holder = holder or relay_id()
        self.lease_ttl = lease_ttl  # None: the orchestrator's orchestrator.lease_seconds
        self.held: set[str] = set()  # lease names (channels) this relay serves now
        self.takeovers = 0  # channels taken, all time
        self._saved: dict[str, int] = {}  # room → position the orchestrator has
        self._unsaved: dict[str, asyncio.Event] = {}
        self.refresh = refresh
        self.refresh_missing = refresh_missing
        self.protection: dict[str, tuple[bool, str]] = {}  # room → (protected, why not)
        self._listed: set[str] = set()  # rooms in the last channel table
        self._last_refresh = 0.0
        self._reports: set[asyncio.Task[None]] = set()
        self.delivered: dict[str, int] = dict(positions or {})
        self.clients: dict[str, IrcClient] = {}
        self.queues: dict[str, MergeQueue] = {}
        self._links: dict[str, str] = {}  # room → transcript link configured here
        self._about: dict[str, RoomChannel] = {}  # room → the orchestrator's row
        for entry in settings.rooms:
            self._add(entry)

    def _add(self, entry: IrcRoomSettings) -> None:
        client = self.clients.get(entry.network)
        if client is None:
            client = IrcClient(
                self.settings.networks[entry.network],
                on_delivered=self._delivered,
                on_command=self._command,
                on_protection=functools.partial(self._protected, entry.network),
            )
            self.clients[entry.network] = client
        self._links[entry.room] = entry.transcript_url
        self.queues[entry.room] = client.add_room(
            entry.room, entry.channel, key=entry.key, transcript_url=self.transcript(entry.room).url
        )

    def transcript(self, room: str) -> Transcript:
        """The room's transcript link: ``irc.rooms[].transcript_url`` if set, else the
        one the orchestrator's channel table gives (its own public address), else
        ``irc.transcript_url`` with ``{room}`` filled in; with the room's title and
        time zone when the table has them."""
        about = self._about.get(room, RoomChannel(False, ""))
        template = self.settings.transcript_url.replace("{room}", room)
        url = self._links.get(room) or about.transcript_url or template
        return Transcript(room, url, about.title, about.timezone)

    def backlog(self, room: str | None = None) -> int:
        """Lines waiting for IRC: of one room, or of all rooms."""
        if room is not None:
            return self.queues[room].backlog
        return sum(client.backlog for client in self.clients.values())

    def _delivered(self, room: str, position: int) -> None:
        self.delivered[room] = max(position, self.delivered.get(room, 0))
        if room in self._unsaved:
            self._unsaved[room].set()

    def _command(self, asked: CommandAsked) -> list[str]:
        """``asked.rooms`` are the rooms of the channel asked in; in private: all rooms."""
        rooms = [self.transcript(room) for room in (asked.rooms or tuple(self.queues))]
        log.info("irc: %s asked %s: %s", asked.sender, asked.target, asked.text[:40])
        return answer_command(asked.text, rooms)

    async def refresh_keys(self) -> bool:
        """Read the orchestrator's channel table and apply it; False if it failed."""
        if self.channels is None:
            return True
        try:
            table = await self.channels.fetch()
        except (aiohttp.ClientError, OSError, TimeoutError, KeysError, ValueError) as exc:
            log.warning("irc: cannot read the channel keys: %s", exc)
            return False
        self._listed = set(table)
        self._about = table
        for entry in self.settings.rooms:
            self.queues[entry.room].transcript_url = self.transcript(entry.room).url
            known = table.get(entry.room)
            restricted = known is not None and known.restricted
            key = entry.key or (known.key if known is not None else "")
            modes = "R" if self.settings.networks[entry.network].registered_only else ""
            client = self.clients[entry.network]
            client.protect(entry.channel, key, restricted=restricted, modes=modes)
        return True

    def _protected(self, network: str, channel: str, ok: bool, why: str) -> None:
        client = self.clients[network]
        for entry in self.settings.rooms:
            if entry.network == network and client.ident(entry.channel) == channel:
                self.protection[entry.room] = (ok, why)
                if self.channels is not None:
                    task = asyncio.create_task(self._report(entry.room, ok, why))
                    self._reports.add(task)
                    task.add_done_callback(self._reports.discard)

    async def _report(self, room: str, ok: bool, why: str) -> None:
        assert self.channels is not None
        try:
            await self.channels.report(room, ok, why)
        except (aiohttp.ClientError, OSError, TimeoutError, KeysError) as exc:
            log.warning("irc: cannot tell the orchestrator about %s's channel: %s", room, exc)

    async def _refresh_soon(self) -> None:
        """Read the table now unless that was done in the last two seconds, so that a
        restricted room created after the last refresh gets its key before its first
        caption goes out (the MODE line is sent before any caption)."""
        now = asyncio.get_running_loop().time()
        if now - self._last_refresh >= 2.0:
            self._last_refresh = now
            await self.refresh_keys()

    async def _refresh_loop(self) -> None:
        while True:
            # A configured room the table lacks is about to be created: look again soon.
            missing = any(entry.room not in self._listed for entry in self.settings.rooms)
            wait = min(self.refresh, self.refresh_missing) if missing else self.refresh
            await asyncio.sleep(wait)
            await self.refresh_keys()

    async def run(self) -> None:
        """Serve until cancelled; raises SaslError when a network refuses our account."""
        if self.channels is not None:
            await self.refresh_keys()  # join with the keys from the start
        tasks = [asyncio.create_task(client.run()) for client in self.clients.values()]
        if self.channels is not None:
            tasks.append(asyncio.create_task(self._refresh_loop()))
        if self.coordinator is None:
            tasks += [asyncio.create_task(self._pump(room)) for room in self.queues]
        else:
            for room in self.queues:
                self._unsaved[room] = asyncio.Event()
                tasks.append(asyncio.create_task(self._save_loop(room)))
            for name in self._leased():
                tasks.append(asyncio.create_task(self._serve_channel(name)))
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
            for task in done:
                task.result()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            if self.coordinator is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(self._hand_back(), HAND_BACK)
            for client in self.clients.values():
                with contextlib.suppress(Exception):
                    await client.close()

    async def _pump(self, room: str) -> None:
        queue = self.queues[room]
        client = self.clients[next(e.network for e in self.settings.rooms if e.room == room)]
        after = self.delivered.get(room, 0)
        failures = 0
        while True:
            try:
                async for position, event in self.source.events(room, after=after):
                    after = position
                    failures = 0
                    if room not in self._listed and self.channels is not None:
                        await self._refresh_soon()  # a room made after the last refresh
                    if isinstance(event, CorrectionEvent):  # docs/corrections.md
                        line = correction_line(event.speaker, event.text)
                        client.post_line(queue, line, position)
                    elif event.is_final and event.text.strip():
                        client.post(queue, event.speaker, event.text, position)
            except (OSError, ConnectionError, TimeoutError) as exc:
                failures += 1
                log.warning("irc: caption stream of %s failed: %s", room, exc)
                await asyncio.sleep(min(30.0, 0.5 * 2**failures))

    # -- one relay per channel (leases) -----------------------------------------------

    def _leased(self) -> dict[str, list[IrcRoomSettings]]:
        """Lease name (the channel, as IRC compares it loosely) → its rooms."""
        by_name: dict[str, list[IrcRoomSettings]] = {}
        for entry in self.settings.rooms:
            by_name.setdefault(entry.channel.lower(), []).append(entry)
        return by_name

    async def _ask(self, name: str, within: float) -> Lease | None:
        assert self.coordinator is not None
        try:
            return await asyncio.wait_for(
                self.coordinator.lease(name, self.holder, self.lease_ttl), within
            )
        except COORDINATION_ERRORS as exc:
            log.warning("irc: cannot ask for the lease of %s: %s", name, exc)
            return None

    async def _serve_channel(self, name: str) -> None:
        """Serve channel ``name`` whenever this relay holds its lease, until cancelled."""
        loop = asyncio.get_running_loop()
        period = (self.lease_ttl or FIRST_ASK * 3) / 3
        entries = self._leased()[name]
        for entry in entries:  # not before the lease is ours
            self.clients[entry.network].hold(entry.channel, False)
        while True:
            asked = loop.time()
            lease = await self._ask(name, period)
            if lease is None or not lease.held:
                if lease is not None:
                    period = lease.ttl / 3
                    # Ask again right when the holder's lease runs out, if sooner.
                    wait = min(period, lease.expires_in + 0.05)
                else:
                    wait = period
                await asyncio.sleep(max(0.05, wait - (loop.time() - asked)))
                continue
            try:
                pumps = await self._take_over(name, entries)
            except COORDINATION_ERRORS as exc:
                log.warning("irc: cannot read where %s stands: %s", name, exc)
                await self._release(name)
                await asyncio.sleep(period)
                continue
            try:
                await self._keep(name, lease, asked)
            finally:
                await self._give_up(name, entries, pumps)

    async def _take_over(
        self, name: str, entries: list[IrcRoomSettings]
    ) -> list[asyncio.Task[None]]:
        """Resume each room of channel ``name`` after its delivered position; join."""
        assert self.coordinator is not None
        for entry in entries:
            saved = await self.coordinator.position(entry.room)
            self._saved[entry.room] = saved
            self.delivered[entry.room] = max(saved, self.delivered.get(entry.room, 0))
        for entry in entries:
            self.queues[entry.room].clear()  # anything left from an earlier turn is stale
            self.clients[entry.network].hold(entry.channel, True)
        self.held.add(name)
        self.takeovers += 1
        log.info(
            "irc: serving %s (%s) from %s",
            name,
            self.holder,
            ", ".join(f"{e.room} after {self.delivered[e.room]}" for e in entries),
        )
        return [asyncio.create_task(self._pump(entry.room)) for entry in entries]

    async def _keep(self, name: str, lease: Lease, asked: float) -> None:
        """Renew every third of the lease time; return when it is lost or might run out
        before the next renewal (so this relay stops before another can start)."""
        loop = asyncio.get_running_loop()
        deadline = asked + lease.ttl
        period = lease.ttl / 3
        while True:
            await asyncio.sleep(max(0.0, asked + period - loop.time()))
            asked = loop.time()
            renewed = await self._ask(name, period)
            if renewed is not None and renewed.held:
                deadline, period = asked + renewed.ttl, renewed.ttl / 3
            elif renewed is not None:
                log.warning("irc: %s is now served by %s; leaving it", name, renewed.holder)
                return
            elif loop.time() + period >= deadline:
                log.warning("irc: lease of %s not renewed in time; leaving it", name)
                return

    async def _give_up(
        self, name: str, entries: list[IrcRoomSettings], pumps: list[asyncio.Task[None]]
    ) -> None:
        for pump in pumps:
            pump.cancel()
        await asyncio.gather(*pumps, return_exceptions=True)
        for entry in entries:
            self.queues[entry.room].clear()
            self.clients[entry.network].hold(entry.channel, False)
        self.held.discard(name)

    async def _release(self, name: str) -> None:
        assert self.coordinator is not None
        try:
            await self.coordinator.release(name, self.holder)
        except COORDINATION_ERRORS as exc:
            log.warning("irc: cannot release the lease of %s: %s", name, exc)

    async def _save_loop(self, room: str) -> None:
        """Raise the room's position in the orchestrator after each confirmed delivery
        (one request at a time; deliveries meanwhile are saved by the next)."""
        assert self.coordinator is not None
        unsaved = self._unsaved[room]
        while True:
            await unsaved.wait()
            unsaved.clear()
            position = self.delivered.get(room, 0)
            if position <= self._saved.get(room, 0):
                continue
            try:
                self._saved[room] = await self.coordinator.save_position(room, position)
            except COORDINATION_ERRORS as exc:
                log.warning("irc: cannot save where %s stands: %s", room, exc)
                await asyncio.sleep(1.0)
                unsaved.set()

    async def _hand_back(self) -> None:
        """Stopping: let IRC confirm what was sent, save the positions, release."""
        assert self.coordinator is not None
        loop = asyncio.get_running_loop()
        until = loop.time() + HAND_BACK / 2
        while any(c.session.delivery.inflight for c in self.clients.values()):
            if loop.time() >= until:
                break
            await asyncio.sleep(0.05)  # polled: confirmations have no event of their own
        for room, position in self.delivered.items():
            if position > self._saved.get(room, 0):
                with contextlib.suppress(*COORDINATION_ERRORS):
                    self._saved[room] = await self.coordinator.save_position(room, position)
        for name in list(self.held):
            await self._release(name)
        self.held.clear()
