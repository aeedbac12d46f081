"""Reading the settings: the TOML file, PLENARY_* variables, and errors that say where.

``load_settings`` is what programs call. ``load_settings_and_sources`` also returns
``Sources``, which tells for any key whether its value came from the file, a variable
(named) or the default; ``plenary config`` prints it, and every error names the file or
variable its bad value came from. Secrets are never shown in an error.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo
from pydantic_settings import EnvSettingsSource, SettingsError

from plenary.settings.base import fields_along, is_secret
from plenary.settings.root import Settings

ENV_PREFIX = "PLENARY_"
NESTED = "__"

Key = Sequence[str | int]


class ConfigError(Exception):
    """A setting is missing, of the wrong type or out of range; the message names it."""


@dataclass(frozen=True)
class Sources:
    """Where the values of one load came from, highest priority first."""

    environment: dict[str, Any]
    """PLENARY_* variables, nested like the settings (as pydantic-settings reads them)."""
    overrides: dict[str, Any]
    """Keyword arguments of ``load_settings``; each replaces a whole top-level key."""
    file: dict[str, Any]
    """The settings file's values."""
    path: Path | None
    """The settings file (``--config`` or ``$PLENARY_CONFIG``), if any."""

    def origins(self, key: Key) -> list[str]:
        """Each place the value of ``key`` came from, e.g. ['file plenary.toml'].

        One place, unless a table was merged from several (a file's [captions.producers]
        plus a PLENARY_CAPTIONS__PRODUCERS__… variable); empty: the default.
        """
        found: list[str] = []
        layers: list[tuple[dict[str, Any], str]] = [(self.environment, "")]
        if key and key[0] in self.overrides:
            layers.append((self.overrides, "argument to load_settings"))
        else:
            layers.append((self.file, f"file {self.path}"))
        for values, name in layers:
            present, value = _lookup(values, key)
            if not present:
                continue
            found.append(name or f"environment {_variable(key)}")
            if not isinstance(value, dict):
                break  # a scalar or list replaces what lower layers hold
        return found


def load_settings(path: Path | None = None, **overrides: Any) -> Settings:
    """Read the TOML file (``path``, else ``$PLENARY_CONFIG``, else none) and the environment.

    Raises ConfigError naming the bad key and value.
    """
    return load_settings_and_sources(path, **overrides)[0]


def load_settings_and_sources(
    path: Path | None = None, **overrides: Any
) -> tuple[Settings, Sources]:
    """``load_settings``, and where each value came from."""
    if path is None and os.environ.get("PLENARY_CONFIG"):
        path = Path(os.environ["PLENARY_CONFIG"])
    file = _read(path) if path is not None else {}
    _check_environment()
    try:
        # What Settings() reads from the environment, read once more to tell the sources.
        environment = EnvSettingsSource(Settings)()
    except SettingsError as exc:
        # e.g. PLENARY_MODELS=x: a table-valued variable that is not JSON.
        cause = f": {exc.__cause__}" if exc.__cause__ else ""
        raise ConfigError(f"{exc}{cause} (table settings take JSON in the environment)") from exc
    sources = Sources(environment, dict(overrides), file, path)
    try:
        return Settings(**{**file, **overrides}), sources
    except ValidationError as exc:
        raise ConfigError(_describe(exc, sources)) from exc


def _read(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"config file {path} is not UTF-8 text: {exc.reason}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from exc


def _check_environment() -> None:
    """A misspelled PLENARY_* variable is an error, not silently ignored."""
    known = set(Settings.model_fields) | {"config"}
    for name in os.environ:
        if not name.startswith(ENV_PREFIX):
            continue
        head = name.removeprefix(ENV_PREFIX).split(NESTED, 1)[0].lower()
        if head not in known:
            raise ConfigError(f"unknown setting in the environment: {name}")


def _lookup(values: Any, key: Key) -> tuple[bool, Any]:
    for part in key:
        in_table = isinstance(values, dict) and part in values
        in_list = isinstance(values, list) and isinstance(part, int) and part < len(values)
        if in_table or in_list:
            values = values[part]
        else:
            return False, None
    return True, values


def _variable(key: Key) -> str:
    """The PLENARY_* variables that set ``key``: its own, a table's JSON above it, or
    (for a table) those of its entries."""
    by_lower = {name.lower(): name for name in os.environ}
    own = (ENV_PREFIX + NESTED.join(str(part) for part in key)).lower()
    for end in range(len(key), 0, -1):
        name = (ENV_PREFIX + NESTED.join(str(part) for part in key[:end])).lower()
        if name in by_lower:
            return by_lower[name]
    entries = sorted(by_lower[name] for name in by_lower if name.startswith(own + NESTED))
    return ", ".join(entries) or ENV_PREFIX + "*"


def _describe(exc: ValidationError, sources: Sources) -> str:
    lines = []
    for err in exc.errors(include_url=False):
        loc = err["loc"]
        key = ".".join(str(part) for part in loc) or "settings"
        where = " and ".join(sources.origins(loc)) or "default"
        if err["type"] == "extra_forbidden":
            lines.append(f"unknown setting {key!r} (in {where})")
            continue
        shown = _shown_input(fields_along(Settings, loc), err.get("input"))
        lines.append(f"invalid setting {key}{shown} (in {where}): {err['msg']}")
    return "; ".join(lines)


def _shown_input(fields: list[FieldInfo], value: Any) -> str:
    """`` = <value>`` for a plain value; nothing for a secret or a table (it may hold one)."""
    if any(is_secret(field) for field in fields):
        return " = <secret, not shown>"
    if isinstance(value, dict | list | BaseModel):
        return ""
    return f" = {value!r}"
