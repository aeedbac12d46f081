"""Nicks and channel names compared the way the server compares them.

IRC names are case-insensitive, and what counts as a case pair depends on the server's
ISUPPORT ``CASEMAPPING`` (modern.ircdocs.horse, "Casemapping"):

- ``ascii``: A-Z ↔ a-z only;
- ``rfc1459`` (the default when the server names none): also ``[]\\^`` ↔ ``{}|~``;
- ``strict-rfc1459``: also ``[]\\`` ↔ ``{}|``, but not ``^`` ↔ ``~``.

Any other mapping (``rfc7613``, ``utf8`` …) is treated as ``ascii``: only ASCII
letters fold, which is what those servers do for every nick the relay uses.

    nick = Identifier("Relay[1]", "rfc1459")
    nick == "relay{1}"  # True
    {nick: 1}["RELAY{1}".lower()]  # 1: hashed by the folded form
"""

from __future__ import annotations

from enum import StrEnum


class Casemapping(StrEnum):
    ASCII = "ascii"
    RFC1459 = "rfc1459"
    STRICT_RFC1459 = "strict-rfc1459"

    @classmethod
    def of(cls, token: str | None) -> Casemapping:
        """The mapping an ISUPPORT ``CASEMAPPING`` value names (None: not announced)."""
        if token is None or token == "":
            return cls.RFC1459
        try:
            return cls(token.lower())
        except ValueError:
            return cls.ASCII


# Hand-written: three fixed translation tables are simpler than a dependency.
_ASCII = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")
_TABLES = {
    Casemapping.ASCII: _ASCII,
    Casemapping.RFC1459: {**_ASCII, **str.maketrans("[]\\^", "{}|~")},
    Casemapping.STRICT_RFC1459: {**_ASCII, **str.maketrans("[]\\", "{}|")},
}


def fold(name: str, casemapping: str | None = Casemapping.RFC1459) -> str:
    """``name`` in the lower case of ``casemapping``: equal names fold equal."""
    return name.translate(_TABLES[Casemapping.of(casemapping)])


class Identifier(str):
    """A nick or channel name: a ``str`` as written (it goes on the wire unchanged)
    that compares and hashes by its folded form under its casemapping."""

    casemapping: Casemapping
    folded: str

    def __new__(cls, name: str, casemapping: str | None = Casemapping.RFC1459) -> Identifier:
        self = super().__new__(cls, name)
        self.casemapping = Casemapping.of(casemapping)
        self.folded = fold(name, self.casemapping)
        return self

    def __eq__(self, other: object) -> bool:
        if isinstance(other, str):
            return self.folded == fold(other, self.casemapping)
        return NotImplemented

    def __ne__(self, other: object) -> bool:
        equal = self.__eq__(other)
        return equal if equal is NotImplemented else not equal

    def __hash__(self) -> int:
        return hash(self.folded)

    def __repr__(self) -> str:
        return f"Identifier({str.__repr__(self)}, {self.casemapping.value!r})"

    def under(self, casemapping: str | None) -> Identifier:
        """The same name compared under another casemapping."""
        return Identifier(str(self), casemapping)
