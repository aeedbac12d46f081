"""One settings object for every Plenary process.

Values come from, highest priority first: ``PLENARY_*`` environment variables
(nested keys joined with ``__``, e.g. ``PLENARY_CAPTIONER__PORT=2701``), the TOML
file named by ``--config`` or ``PLENARY_CONFIG``, then the defaults. Every setting
carries its help text; ``plenary config`` prints each value in effect and where it came
from, ``plenary config --defaults`` the defaults, and the README lists them (a test
keeps the two in step).

    settings = load_settings(Path("plenary.toml"))
    settings.captioner.port  # 2700 unless overridden

One module per section: captioner, orchestrator (and its login limits), captions, irc,
metrics, access (LDAP, wiki, Jitsi); root holds ``Settings``, loading reads them,
describe prints them, base holds what the sections share.
"""

from plenary.settings.access import JitsiSettings, LdapSettings, WikiSettings
from plenary.settings.base import BaseUrl, OptionalBaseUrl, Port, Secret, Section, is_secret
from plenary.settings.captioner import CaptionerSettings
from plenary.settings.captions import CaptionsSettings
from plenary.settings.describe import Effective, describe_settings, effective_settings
from plenary.settings.irc import IrcNetworkSettings, IrcRoomSettings, IrcSettings
from plenary.settings.loading import (
    ConfigError,
    Sources,
    load_settings,
    load_settings_and_sources,
)
from plenary.settings.metrics import MetricsSettings
from plenary.settings.orchestrator import LoginSettings, OrchestratorSettings
from plenary.settings.root import PROJECT_ROOT, Settings

__all__ = [
    "PROJECT_ROOT",
    "BaseUrl",
    "CaptionerSettings",
    "CaptionsSettings",
    "ConfigError",
    "Effective",
    "IrcNetworkSettings",
    "IrcRoomSettings",
    "IrcSettings",
    "JitsiSettings",
    "LdapSettings",
    "LoginSettings",
    "MetricsSettings",
    "OptionalBaseUrl",
    "OrchestratorSettings",
    "Port",
    "Secret",
    "Section",
    "Settings",
    "Sources",
    "WikiSettings",
    "describe_settings",
    "effective_settings",
    "is_secret",
    "load_settings",
    "load_settings_and_sources",
]
