"""Errors of the access library.

AccessError                   anything that keeps someone out
├── InvalidCredentials        wrong user name or password (never says which)
├── IdentitySourceUnavailable the directory or wiki cannot be asked: fail closed
├── OAuthError                the wiki refused the OAuth exchange (bad code, PKCE, state)
└── UnknownEvent              a wiki event that does not exist
"""

from __future__ import annotations


class AccessError(Exception):
    """Someone cannot be identified or let in; the message is safe to show them."""


class InvalidCredentials(AccessError):
    """User name or password wrong, or the account cannot log in."""

    def __init__(self, message: str = "wrong user name or password") -> None:
        super().__init__(message)


class IdentitySourceUnavailable(AccessError):
    """The directory or the wiki could not answer; the message names which one."""


class OAuthError(AccessError):
    """The wiki refused the authorization code, the PKCE verifier or the client."""


class UnknownEvent(AccessError):
    """The wiki has no event registration with that id."""
