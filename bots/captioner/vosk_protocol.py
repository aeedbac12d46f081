"""The vosk-server websocket protocol (docs/protocols.md §1): parse client frames, shape replies.

Pure functions, no I/O. Messages are parsed as JSON and dispatched on their keys,
never detected by substring.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

# Close codes (RFC 6455 §7.4.1) with the reasons we send.
CLOSE_NORMAL = 1000
CLOSE_PROTOCOL = 1002  # broken websocket framing (aiohttp detects it)
CLOSE_UNSUPPORTED = 1003  # a frame of a kind the protocol has no place for
CLOSE_INVALID = 1007  # malformed JSON or an invalid config value
CLOSE_POLICY = 1008  # idle too long, unknown language
CLOSE_TOO_BIG = 1009
CLOSE_INTERNAL = 1011
CLOSE_TRY_AGAIN = 1013  # at capacity

MIN_RATE = 8000.0
MAX_RATE = 192000.0
MAX_ALTERNATIVES = 20


class ProtocolError(Exception):
    """The client broke the protocol; close the socket with ``code`` and this message."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Config:
    """A ``{"config": {...}}`` frame; ``None`` means the key was absent."""

    sample_rate: float | None = None
    words: bool | None = None
    max_alternatives: int | None = None
    phrase_list: tuple[str, ...] | None = None


@dataclass(frozen=True, slots=True)
class Eof:
    pass


@dataclass(frozen=True, slots=True)
class Reset:
    pass


Message = Config | Eof | Reset


def parse_text_frame(frame: str) -> Message:
    try:
        data = json.loads(frame)
    except json.JSONDecodeError as exc:
        raise ProtocolError(CLOSE_INVALID, f"text frame is not JSON: {exc.msg}") from None
    except (ValueError, RecursionError):
        # Valid JSON Python refuses: integers over 4300 digits, absurd nesting.
        raise ProtocolError(CLOSE_INVALID, "text frame is not JSON Plenary can read") from None
    if not isinstance(data, dict) or len(data) != 1:
        raise ProtocolError(
            CLOSE_UNSUPPORTED, 'expected one of {"config": {...}}, {"eof": 1}, {"reset": 1}'
        )
    ((key, value),) = data.items()
    if key == "config":
        return _parse_config(value)
    if key == "eof":
        return Eof()
    if key == "reset":
        return Reset()
    raise ProtocolError(CLOSE_UNSUPPORTED, f"unknown message {_show(key)}")


def _parse_config(value: Any) -> Config:
    if not isinstance(value, dict):
        raise ProtocolError(CLOSE_INVALID, "config must be an object")
    rate = value.get("sample_rate")
    sample_rate: float | None = None
    if rate is not None:
        # Jigasi sends 48000.0, BigBlueButton "16000".
        try:
            sample_rate = float(rate)
        except (TypeError, ValueError):
            raise ProtocolError(
                CLOSE_INVALID, f"sample_rate {_show(rate)} is not a number"
            ) from None
        if not MIN_RATE <= sample_rate <= MAX_RATE:  # also rejects NaN
            raise ProtocolError(
                CLOSE_INVALID,
                f"sample_rate {_show(rate)} out of range {MIN_RATE:.0f}-{MAX_RATE:.0f}",
            )
    words = value.get("words")
    if words is not None and not isinstance(words, bool | int):
        raise ProtocolError(CLOSE_INVALID, "words must be true or false")
    alternatives = value.get("max_alternatives")
    if alternatives is not None:
        if isinstance(alternatives, bool) or not isinstance(alternatives, int | str):
            raise ProtocolError(CLOSE_INVALID, "max_alternatives must be an integer")
        try:
            alternatives = int(alternatives)
        except ValueError:
            raise ProtocolError(CLOSE_INVALID, "max_alternatives must be an integer") from None
        if not 0 <= alternatives <= MAX_ALTERNATIVES:
            raise ProtocolError(CLOSE_INVALID, f"max_alternatives must be 0-{MAX_ALTERNATIVES}")
    phrases = value.get("phrase_list")
    phrase_list: tuple[str, ...] | None = None
    if phrases is not None:
        if not isinstance(phrases, list) or not all(isinstance(p, str) for p in phrases):
            raise ProtocolError(CLOSE_INVALID, "phrase_list must be a list of strings")
        phrase_list = tuple(phrases) or None
    return Config(
        sample_rate=sample_rate,
        words=None if words is None else bool(words),
        max_alternatives=alternatives,
        phrase_list=phrase_list,
    )


def partial_reply(text: str) -> str:
    return _dump({"partial": text})


def empty_reply() -> str:
    return _dump({"text": ""})


def final_reply(results: list[dict[str, Any]], *, words: bool) -> str:
    """One reply for the finals of one frame (usually one; joined when a frame held two).

    ``results`` are Vosk result objects with word timings; they are dropped unless
    the client asked for them, exactly as vosk-server does.
    """
    if not results:
        return empty_reply()
    if "alternatives" in results[-1]:
        # Alternatives were asked for: keep the latest result's list, prefixed by the
        # best text of any earlier final in the same frame.
        before = " ".join(_best(r) for r in results[:-1] if _best(r))
        alternatives = []
        for original in results[-1]["alternatives"]:
            alt = dict(original)
            alt["text"] = f"{before} {alt['text']}".strip()
            if not words:
                alt.pop("result", None)
            alternatives.append(alt)
        return _dump({"alternatives": alternatives})
    merged: dict[str, Any] = {}
    if words:
        merged["result"] = [w for r in results for w in r.get("result", [])]
    merged["text"] = " ".join(r["text"] for r in results if r.get("text"))
    return _dump(merged)


def _best(result: dict[str, Any]) -> str:
    if "alternatives" in result:
        alternatives = result["alternatives"]
        return str(alternatives[0]["text"]) if alternatives else ""
    return str(result.get("text", ""))


def _dump(obj: dict[str, Any]) -> str:
    return json.dumps(obj, ensure_ascii=False)


def _show(value: Any) -> str:
    """A client's value for an error message, short enough for a log line and a close reason."""
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def close_reason(text: str) -> bytes:
    """A close reason fits in 123 bytes (RFC 6455 §5.5); cut on a character boundary."""
    data = text.encode("utf-8", "replace")  # a lone surrogate from a client's JSON becomes "?"
    if len(data) <= 123:
        return data
    return data[:120].decode("utf-8", "ignore").encode("utf-8") + b"..."
