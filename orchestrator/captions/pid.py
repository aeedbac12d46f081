"""Persistent identifiers: opaque, three blocks of four characters, easy to read aloud.

    new_pid()            # 'k7m2-9qxd-3hwa'
    normalize("K7M2 9QXD 3HWA")  # 'k7m2-9qxd-3hwa'

The alphabet leaves out 0/o, 1/l/i and u (read as v) so a person copying one by hand or by
ear cannot confuse two. Uniqueness is the database's job (a unique constraint
and a retry); 30**12 ≈ 5e17 identifiers make a retry rare.
"""

from __future__ import annotations

import re
import secrets

ALPHABET = "23456789abcdefghjkmnpqrstvwxyz"
_PID = re.compile(rf"^[{ALPHABET}]{{4}}-[{ALPHABET}]{{4}}-[{ALPHABET}]{{4}}$")


def new_pid() -> str:
    chars = "".join(secrets.choice(ALPHABET) for _ in range(12))
    return f"{chars[0:4]}-{chars[4:8]}-{chars[8:12]}"


def normalize(text: str) -> str | None:
    """The canonical form of a typed identifier, or None when it cannot be one."""
    chars = re.sub(r"[\s-]", "", text.lower())
    if len(chars) != 12:
        return None
    pid = f"{chars[0:4]}-{chars[4:8]}-{chars[8:12]}"
    return pid if _PID.match(pid) else None
