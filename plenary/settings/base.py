"""What the settings sections share: the section base, port, URL and secret types.

A secret (token, password, signing key) is a ``str`` like any other to the code that
uses it; the ``SECRET`` marker in its annotation only tells ``plenary config`` and the
error messages never to print its value (``is_secret``).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Annotated, Any, get_args, get_origin

from pydantic import AfterValidator, BaseModel, ConfigDict, Field
from pydantic.fields import FieldInfo


class Section(BaseModel):
    """One table of the settings file; a misspelled key is an error, not ignored."""

    model_config = ConfigDict(extra="forbid")


class _SecretMarker:
    def __repr__(self) -> str:
        return "SECRET"


SECRET = _SecretMarker()

Secret = Annotated[str, SECRET]
"""A token, password or key: used as a plain ``str``, never printed."""

Port = Annotated[int, Field(ge=1, le=65535)]


def _http_url(value: str) -> str:
    if not re.match(r"https?://[^/\s]", value):
        raise ValueError("must be an http:// or https:// URL")
    return value.rstrip("/")


def _http_url_or_empty(value: str) -> str:
    return _http_url(value) if value else value


BaseUrl = Annotated[str, AfterValidator(_http_url)]
"""An http(s) address that paths are appended to; a trailing slash is dropped."""

OptionalBaseUrl = Annotated[str, AfterValidator(_http_url_or_empty)]
"""A ``BaseUrl``, or empty for none."""


def is_secret(field: FieldInfo) -> bool:
    """Whether the field holds a secret, or a table or list of them."""
    return SECRET in field.metadata or _holds_secret(field.annotation)


def _holds_secret(annotation: Any) -> bool:
    if get_origin(annotation) is Annotated:
        return any(m is SECRET for m in annotation.__metadata__)
    return any(_holds_secret(arg) for arg in get_args(annotation))


def fields_along(model: type[BaseModel], key: Sequence[str | int]) -> list[FieldInfo]:
    """The fields a dotted key passes through, e.g. ('irc', 'networks', 'x', 'password')
    gives irc, networks and password; it stops where the key leaves the settings."""
    found: list[FieldInfo] = []
    annotation: Any = model
    for part in key:
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            field = annotation.model_fields.get(str(part))
            if field is None:
                break
            found.append(field)
            annotation = field.annotation
        elif get_origin(annotation) in (dict, list):
            annotation = get_args(annotation)[-1]  # part is a table key or a list index
        else:
            break
    return found
