"""Who gets in: LDAP and wiki logins, and the Jitsi join tokens (orchestrator/access)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator

from plenary.settings.base import BaseUrl, Secret, Section


class LdapSettings(Section):
    """The directory that LDAP logins are checked against (orchestrator/access/ldap.py)."""

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
    bind_password: Secret = Field("", description="Password of the service account.")
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


class WikiSettings(Section):
    """The MediaWiki used for OAuth 2.0 login, groups and event registrations."""

    enabled: bool = Field(False, description="Offer wiki (MediaWiki OAuth 2.0) login.")
    url: BaseUrl = Field(
        "https://meta.wikimedia.org",
        description="The wiki's address, without the script path.",
    )
    script_path: str = Field(
        "/w", description="Where rest.php and api.php live on the wiki (MediaWiki's $wgScriptPath)."
    )
    client_id: str = Field(
        "", description="OAuth 2.0 client (consumer) key registered on the wiki."
    )
    client_secret: Secret = Field("", description="OAuth 2.0 client secret.")
    timeout: float = Field(10.0, gt=0, le=120, description="Seconds allowed for each wiki request.")
    event_cache_seconds: float = Field(
        60.0,
        ge=0,
        le=3600,
        description="How long an event's participant list is reused before it is fetched again.",
    )

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


class JitsiSettings(Section):
    """The Jitsi deployment whose prosody checks Plenary's tokens (docs/protocols.md §3)."""

    domain: str = Field(
        "meet.example.org",
        description="Jitsi's public host name; join links go to https://DOMAIN/ROOM.",
    )
    app_id: str = Field(
        "plenary", min_length=1, description="Token issuer (prosody's app_id, 'iss')."
    )
    app_secret: Secret = Field(
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
