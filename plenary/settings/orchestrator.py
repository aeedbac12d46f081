"""The orchestrator's web app: address, database, sessions, organizers, login limits."""

from __future__ import annotations

import base64
import binascii
import ipaddress
from pathlib import Path
from typing import Annotated

from pydantic import AfterValidator, Field, field_validator, model_validator

from plenary.settings.base import SECRET, BaseUrl, Port, Secret, Section


def _database_url(value: str) -> str:
    schemes = ("sqlite://", "sqlite+aiosqlite://", "postgresql://", "postgresql+asyncpg://")
    if value and not value.startswith(schemes):
        raise ValueError("must be empty, sqlite:///PATH or postgresql://USER@HOST:PORT/NAME")
    return value


DatabaseUrl = Annotated[str, SECRET, AfterValidator(_database_url)]
"""A database URL (orchestrator/db.py); a secret: it may hold a password."""


class LoginSettings(Section):
    """Limits on failed LDAP logins (orchestrator/access/ratelimit.py)."""

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


class OrchestratorSettings(Section):
    """The orchestrator's web app (plenary serve)."""

    host: str = Field("127.0.0.1", description="Address the orchestrator's web app listens on.")
    port: Port = Field(8080, description="Port of the orchestrator's web app.")
    public_url: BaseUrl = Field(
        "http://127.0.0.1:8080",
        description="The address attendees use (behind a reverse proxy: its https URL); "
        "used in links and to decide whether cookies are Secure.",
    )
    database: Path = Field(
        Path("plenary.sqlite3"),
        description="SQLite database file (relative paths are taken from the working folder); "
        "used when database_url is empty.",
    )
    database_url: DatabaseUrl = Field(
        "",
        description="Database of this orchestrator node: empty for the SQLite file "
        "'database', sqlite:///PATH, or postgresql://USER:PASSWORD@HOST:PORT/NAME (several "
        "orchestrator nodes share one PostgreSQL database). Never printed: it may hold a "
        "password.",
    )
    lease_seconds: float = Field(
        15.0,
        ge=1.0,
        le=300.0,
        description="Lease time of the tasks exactly one node runs (caption retention, the "
        "videobridge poller, each IRC channel's relay): renewed every third of it; another "
        "node takes a task over at most this long after its holder died.",
    )
    admin_token: Secret = Field(
        "",
        description="Bearer token that authorizes writes to /api/v1 (empty: API writes are "
        "refused with 403).",
    )
    secret_key: Secret = Field(
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
            try:
                raw = base64.urlsafe_b64decode(value.encode("ascii"))
            except (binascii.Error, UnicodeEncodeError, ValueError):
                raw = b""
            if len(raw) != 32:
                raise ValueError("must be a Fernet key: urlsafe base64 of 32 bytes")
        return value
