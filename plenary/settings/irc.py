"""The IRC relay: its server connections and the room → channel table (bots/irc)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator, model_validator

from plenary.settings.base import Port, Secret, Section


class IrcNetworkSettings(Section):
    """One IRC server connection; it serves every room whose channel is on it."""

    host: str = Field("127.0.0.1", description="IRC server address.")
    port: Port = Field(6697, description="IRC server port (6697: TLS, 6667: plain).")
    tls: bool = Field(True, description="Connect with TLS.")
    tls_verify: bool = Field(
        True, description="Verify the server's certificate and name (turn off only for tests)."
    )
    tls_ca_file: Path | None = Field(
        None, description="CA bundle to verify the server with, instead of the system's."
    )
    nick: str = Field("plenary", min_length=1, max_length=30, description="Nick of the relay bot.")
    username: str = Field("plenary", min_length=1, max_length=10, description="IRC user name.")
    realname: str = Field("Plenary caption relay", description="IRC real name (GECOS).")
    password: Secret = Field("", description="Server password (PASS), if the server wants one.")
    sasl_username: str = Field("", description="SASL PLAIN account; empty: no SASL.")
    sasl_password: Secret = Field("", description="SASL PLAIN password.")
    oper_name: str = Field(
        "",
        description="IRC operator name (OPER) of the relay; on ngircd with OperCanUseMode it "
        "lets the relay key a channel it is not operator of, such as a persistent channel "
        "from ngircd.conf. Empty: no OPER.",
    )
    oper_password: Secret = Field("", description="IRC operator password (OPER).")
    burst: int = Field(4, ge=1, le=20, description="Lines sent at once before pacing.")
    lines_per_second: float = Field(
        1.0, gt=0, le=20, description="Lines a second after the burst (servers' flood limits)."
    )
    lines_per_second_exempt: float = Field(
        5.0,
        ge=0,
        le=50,
        description="Lines a second while the server exempts the relay from flood limits: on "
        "ngircd an IRC operator (oper_name) sets user mode +F on itself. 0: lines_per_second "
        "always. On InspIRCd give the relay a <connect> class with a higher threshold and "
        "commandrate and raise lines_per_second instead (docs/irc.md).",
    )
    confirm_every: int = Field(
        4,
        ge=1,
        le=20,
        description="While captions wait, lines sent before a PING confirms them (the PING "
        "costs a flood token like a line). Lines not confirmed when the server dies are "
        "sent again after the reconnect, so up to this many may be seen twice; 1 repeats "
        "none but halves the line rate while behind.",
    )
    max_backlog_lines: int = Field(
        120,
        ge=5,
        description="Lines a channel may fall behind; older captions are then skipped with "
        "one notice naming the transcript link.",
    )
    registration_timeout: float = Field(
        30.0, gt=0, description="Seconds to wait for the server's welcome before reconnecting."
    )
    ping_interval: float = Field(
        60.0, gt=0, description="Idle seconds before the bot pings the server."
    )
    ping_timeout: float = Field(
        60.0, gt=0, description="Seconds without any reply to a ping before reconnecting."
    )
    reconnect_min: float = Field(
        2.0, gt=0, description="First reconnect delay in seconds (doubles, with jitter)."
    )
    reconnect_max: float = Field(300.0, gt=0, description="Longest reconnect delay in seconds.")
    formatting: bool = Field(
        False, description="Let IRC bold/colour codes through from caption text."
    )
    registered_only: bool = Field(
        False,
        description="Also make restricted rooms' channels registered-only (+R): only users "
        "logged in to a network account may join. For networks with services; the relay "
        "should log in itself (SASL).",
    )


class IrcRoomSettings(Section):
    """Where one room's captions go."""

    room: str = Field(min_length=1, description="Room name (as in caption events).")
    network: str = Field("default", description="Key into irc.networks.")
    channel: str = Field(description="Channel to post into, e.g. '#plenary-keynote'.")
    key: Secret = Field("", description="Channel key (+k), if the channel has one.")
    transcript_url: str = Field(
        "", description="Full transcript link; empty: irc.transcript_url with {room} filled in."
    )

    @field_validator("channel")
    @classmethod
    def _channel_name(cls, value: str) -> str:
        if not value or value[0] not in "#&+!" or any(c in value for c in " ,\x07\r\n\0"):
            raise ValueError("must start with # (or &, +, !) and hold no space, comma or control")
        return value


class IrcSettings(Section):
    """The IRC relay bot (plenary irc, or inside plenary serve)."""

    networks: dict[str, IrcNetworkSettings] = Field(
        default_factory=dict,
        description="IRC connections by name, e.g. [irc.networks.default] host = "
        "'irc.example.org'.",
    )
    rooms: list[IrcRoomSettings] = Field(
        default_factory=list,
        description="Room → channel table, e.g. [[irc.rooms]] room = 'keynote' "
        "channel = '#keynote'.",
    )
    transcript_url: str = Field(
        "",
        description="Transcript link answered by !transcript; {room} is replaced. Empty: "
        "the room's transcripts page, <orchestrator.public_url>/r/{room}/transcripts.",
    )
    orchestrator_token: Secret = Field(
        "",
        description="Bearer token the relay sends to the orchestrator (one of "
        "captions.service_readers): it reads restricted rooms' captions and their channel keys.",
    )

    @model_validator(mode="after")
    def _rooms_name_networks(self) -> IrcSettings:
        seen: set[str] = set()
        for entry in self.rooms:
            if entry.room in seen:
                raise ValueError(f"room {entry.room!r} is listed twice in irc.rooms")
            seen.add(entry.room)
            if entry.network not in self.networks:
                raise ValueError(
                    f"room {entry.room!r} names network {entry.network!r}, "
                    "which irc.networks does not define"
                )
        return self
