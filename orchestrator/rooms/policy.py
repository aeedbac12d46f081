"""A room's two policies, as typed values.

- Who may join, moderate and caption: the room's ``policy`` JSON, checked and read as
  the access library's ``AccessPolicy`` (``access_policy``); its ``caption_readers``
  are access rules too (``readers_policy``).
- What is kept of its captions: ``CaptionPolicy``, from ``transcript_retention_days``
  (``Room.caption_policy``). The caption layer asks the rooms for it (the rooms
  repository's ``policy_for``) and never reads a room itself.

    CaptionPolicy.of(30)    # CaptionPolicy(transcript='keep', retention_days=30)
    CaptionPolicy.of(None)  # CaptionPolicy(transcript='none', retention_days=0)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from pydantic import ValidationError

from orchestrator.access.policy import AccessPolicy

Transcript = Literal["keep", "none"]


@dataclass(frozen=True, slots=True)
class CaptionPolicy:
    """Whether a room's captions are kept as a transcript, and for how many days after a
    session's last caption (0: forever). ``none``: finals live in memory only, for the
    live resume window, and no text of them is ever written to the database."""

    transcript: Transcript
    retention_days: int = 0

    @classmethod
    def of(cls, retention_days: int | None) -> CaptionPolicy:
        """The policy of a room whose ``transcript_retention_days`` is ``retention_days``
        (None: no transcript)."""
        if retention_days is None:
            return cls("none")
        return cls("keep", retention_days)

    @property
    def keeps_transcript(self) -> bool:
        return self.transcript == "keep"

    @property
    def notice(self) -> str:
        """The one sentence every page (room, captions, transcripts) says about it."""
        if not self.keeps_transcript:
            return (
                "Captions in this room are shown live only: they are not recorded and no "
                "transcript is kept."
            )
        kept = (
            f"kept for {self.retention_days} days"
            if self.retention_days
            else "kept with no time limit"
        )
        return (
            "Captions in this room are recorded: the transcript is "
            f"{kept}, readable by those who may read this room's captions."
        )


NO_TRANSCRIPT = CaptionPolicy("none")


def check_policy(value: dict[str, Any]) -> dict[str, Any]:
    """``value`` normalized if it is a valid AccessPolicy; ValueError naming the problem."""
    try:
        policy = AccessPolicy.model_validate(value)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ValueError(f"invalid policy at {where or 'top'}: {first['msg']}") from exc
    dumped: dict[str, Any] = policy.model_dump(mode="json", by_alias=True)
    return dumped


def check_readers(value: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``value`` normalized if it is a valid list of access rules; ValueError otherwise."""
    rules: list[dict[str, Any]] = check_policy({"access": value})["access"]
    return rules


def access_policy(value: dict[str, Any]) -> AccessPolicy:
    """A room's stored ``policy`` JSON as the access library reads it."""
    return AccessPolicy.model_validate(value)


def readers_policy(value: list[dict[str, Any]]) -> AccessPolicy:
    """Caption readers as an access policy whose access rules are the list (and no
    moderators)."""
    return AccessPolicy.model_validate({"access": value})


def public_captions(policy: dict[str, Any], caption_readers: list[dict[str, Any]]) -> bool:
    """Whether anyone, logged in or not, may read a room's captions: its policy or its
    caption readers hold an ``anyone`` rule."""
    rules = list(policy.get("access", [])) + list(caption_readers)
    return any(isinstance(r, dict) and r.get("kind") == "anyone" for r in rules)
