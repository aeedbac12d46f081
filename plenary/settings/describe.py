"""Every setting as text: its default and meaning, or its value in effect and its source.

``describe_settings`` feeds ``plenary config --defaults`` and the README's table (a test
keeps the two in step); ``effective_settings`` feeds ``plenary config``. Secrets show
as ``<set>`` or ``""``, never their value.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeGuard, get_args, get_origin

from pydantic import BaseModel
from pydantic.fields import FieldInfo

from plenary.settings.base import is_secret
from plenary.settings.loading import Sources
from plenary.settings.root import PROJECT_ROOT, Settings


@dataclass(frozen=True)
class Effective:
    """One setting in effect."""

    name: str
    value: str
    origin: str  # "default", "file PATH", "environment PLENARY_…", "computed"
    meaning: str


def describe_settings() -> list[tuple[str, str, str]]:
    """(dotted name, default, help) for every setting, for `plenary config` and the README.

    A table of sections (irc.networks) is listed with NAME in place of its keys, a list
    of them (irc.rooms) with [].
    """
    rows: list[tuple[str, str, str]] = []

    def walk(model: type[BaseModel], prefix: str) -> None:
        for name, field in model.model_fields.items():
            annotation = field.annotation
            if _is_section(annotation):
                walk(annotation, f"{prefix}{name}.")
                continue
            rows.append((f"{prefix}{name}", _default(field), field.description or ""))
            kind = get_origin(annotation)
            item = get_args(annotation)[-1] if kind in (dict, list) else None
            if _is_section(item):
                walk(item, f"{prefix}{name}.NAME." if kind is dict else f"{prefix}{name}[].")

    walk(Settings, "")
    return rows


def effective_settings(settings: Settings, sources: Sources) -> list[Effective]:
    """Every setting's value in effect and where it came from; sections in tables and
    lists (irc.networks.NAME, irc.rooms[N]) are listed entry by entry."""
    rows: list[Effective] = []

    def walk(model: BaseModel, key: tuple[str | int, ...]) -> None:
        for name, field in type(model).model_fields.items():
            value = getattr(model, name)
            here = (*key, name)
            if isinstance(value, BaseModel):
                walk(value, here)
                continue
            entries = _section_entries(value)
            if entries:
                for part, entry in entries:
                    walk(entry, (*here, part))
                continue
            origin = " and ".join(sources.origins(here))
            if not origin:
                default = field.get_default(call_default_factory=True)
                origin = "default" if value == default else "computed from other settings"
            shown = _show(value, secret=is_secret(field))
            rows.append(Effective(_dotted(here), shown, origin, field.description or ""))

    walk(settings, ())
    return rows


def _is_section(annotation: Any) -> TypeGuard[type[BaseModel]]:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


def _section_entries(value: Any) -> list[tuple[str | int, BaseModel]]:
    """The sections in a non-empty table or list of them (irc.networks, irc.rooms)."""
    pairs: list[tuple[str | int, Any]]
    if isinstance(value, dict):
        pairs = list(value.items())
    elif isinstance(value, list):
        pairs = list(enumerate(value))
    else:
        return []
    return pairs if pairs and all(isinstance(v, BaseModel) for _, v in pairs) else []


def _default(field: FieldInfo) -> str:
    if field.is_required():
        return "(required)"
    default = field.get_default(call_default_factory=True)
    if isinstance(default, Path) and default.is_relative_to(PROJECT_ROOT.parent):
        # ../shared/speech, not this machine's path
        return f"../{default.relative_to(PROJECT_ROOT.parent)}"
    return _show(default, secret=False)


def _show(value: Any, *, secret: bool) -> str:
    if secret:
        if isinstance(value, dict):
            value = {name: "<set>" if token else "" for name, token in value.items()}
        else:
            return "<set>" if value else '""'
    if isinstance(value, str):
        return value or '""'
    return str(_plain(value))


def _plain(value: Any) -> Any:
    """Paths as text inside tables and lists: {'en': '/srv/vosk'}, not PosixPath(...)."""
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _dotted(key: tuple[str | int, ...]) -> str:
    text = ""
    for part in key:
        text += f"[{part}]" if isinstance(part, int) else f".{part}" if text else part
    return text
