"""LDAP as an identity source: find the user through a service bind, bind as them.

    directory = LdapDirectory(settings.ldap)
    identity = await directory.authenticate("alice", "s3cret")   # groups resolved
    await directory.close()

python-ldap blocks, so every call runs in a small thread pool whose size is
``ldap.pool_size``; each thread takes an idle connection from one of two pools:
service connections (bound as ``ldap.bind_dn``, used for every read) and bind
connections (used only to check a user's password, never to read anything, so
which user they were last bound as does not matter).

Safety rules kept here:
- the typed name is escaped (``escape_filter_chars``) before it enters a filter,
  a user DN too before it enters a group filter, and a search that finds more
  than one entry logs nobody in;
- an empty password is refused before any bind (RFC 4513 §5.1.2: it would be an
  unauthenticated bind that many servers accept);
- TLS (ldaps:// or StartTLS) always demands a valid certificate;
- anything else that goes wrong with the server is IdentitySourceUnavailable,
  whose message names the directory: login is refused, never let through.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import ldap
import ldap.dn
import ldap.filter

from orchestrator.access.errors import IdentitySourceUnavailable, InvalidCredentials
from orchestrator.access.identity import Identity
from plenary.settings import LdapSettings

log = logging.getLogger(__name__)

T = TypeVar("T")
Conn = Any  # ldap.ldapobject.LDAPObject (python-ldap ships no type hints)
Entry = tuple[str, dict[str, list[bytes]]]

MAX_USERNAME = 256


class _Pool:
    """Idle connections shared by the worker threads."""

    def __init__(self, keep: int) -> None:
        self.keep = keep
        self._idle: list[Conn] = []
        self._lock = threading.Lock()

    def take(self) -> Conn | None:
        with self._lock:
            return self._idle.pop() if self._idle else None

    def give(self, conn: Conn) -> None:
        with self._lock:
            if len(self._idle) < self.keep:
                self._idle.append(conn)
                return
        _unbind(conn)

    def drain(self) -> list[Conn]:
        with self._lock:
            idle, self._idle = self._idle, []
        return idle


def _unbind(conn: Conn) -> None:
    with contextlib.suppress(ldap.LDAPError):
        conn.unbind_s()


def _text(entry: dict[str, list[bytes]], attribute: str) -> str | None:
    for name, values in entry.items():
        if name.lower() == attribute.lower() and values:
            return values[0].decode("utf-8", "replace")
    return None


def _values(entry: dict[str, list[bytes]], attribute: str) -> list[str]:
    for name, values in entry.items():
        if name.lower() == attribute.lower():
            return [v.decode("utf-8", "replace") for v in values]
    return []


def _cn_of(dn: str) -> str | None:
    """'cn=devs,ou=groups,dc=example,dc=org' → 'devs'."""
    try:
        rdn = ldap.dn.str2dn(dn)[0]
    except ldap.DECODING_ERROR:
        return None
    for attribute, value, _ in rdn:
        if attribute.lower() == "cn":
            return str(value)
    return None


class LdapDirectory:
    def __init__(self, settings: LdapSettings) -> None:
        self.settings = settings
        workers = settings.pool_size or 4
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="ldap")
        self._service = _Pool(settings.pool_size)
        self._binders = _Pool(settings.pool_size)
        self._closed = False

    # public, async -----------------------------------------------------------

    async def authenticate(self, username: str, password: str) -> Identity:
        """The person ``username`` if ``password`` is theirs; InvalidCredentials if not."""
        if not _plausible(username) or not password:
            # No search, no bind: an empty password would be an anonymous bind.
            raise InvalidCredentials()
        identity = await self._run(lambda: self._authenticate(username, password))
        log.info(
            "ldap login %s (%s), groups %s",
            identity.username,
            identity.user_id,
            sorted(identity.groups),
        )
        return identity

    async def groups_of(self, username: str) -> frozenset[str]:
        """Group cns of ``username`` now (no password); empty if there is no such user."""
        if not _plausible(username):
            return frozenset()
        return await self._run(lambda: self._groups_of(username))

    async def close(self) -> None:
        self._closed = True
        idle = self._service.drain() + self._binders.drain()
        loop = asyncio.get_running_loop()

        def unbind_all() -> None:
            for conn in idle:
                _unbind(conn)

        await loop.run_in_executor(self._executor, unbind_all)
        self._executor.shutdown(wait=False)

    async def _run(self, job: Callable[[], T]) -> T:
        if self._closed:
            raise IdentitySourceUnavailable(f"the directory ({self.settings.url}) is closed")
        loop = asyncio.get_running_loop()
        # python-ldap's own timeouts bound each step; this bounds the whole job
        # (connect, StartTLS, search, bind, group search) in case one hangs.
        limit = self.settings.timeout * 6 + 1
        try:
            return await asyncio.wait_for(loop.run_in_executor(self._executor, job), limit)
        except TimeoutError as exc:
            raise self._down(f"no answer within {limit:g} s") from exc

    # blocking, in the pool's threads -----------------------------------------------

    def _authenticate(self, username: str, password: str) -> Identity:
        try:
            dn, entry = self._find(username)
        except InvalidCredentials:
            # Spend a bind anyway, so an unknown name answers about as slowly as a
            # wrong password and response times do not tell which names exist. Its
            # outcome is ignored: whatever the server says, the answer is "wrong".
            with contextlib.suppress(InvalidCredentials, IdentitySourceUnavailable):
                self._check_password(f"cn=plenary-no-such-user,{self.settings.user_base}", password)
            raise
        self._check_password(dn, password)
        return self._identity(dn, entry)

    def _groups_of(self, username: str) -> frozenset[str]:
        try:
            dn, entry = self._find(username)
        except InvalidCredentials:
            return frozenset()
        return self._identity(dn, entry).groups

    def _find(self, username: str) -> Entry:
        s = self.settings
        flt = s.user_filter.replace("{username}", ldap.filter.escape_filter_chars(username))
        attrs = [s.username_attribute, s.display_name_attribute, s.email_attribute]
        if s.group_style == "memberOf":
            attrs.append("memberOf")

        def search(conn: Conn) -> list[Entry]:
            try:
                found = conn.search_ext_s(
                    s.user_base,
                    ldap.SCOPE_SUBTREE,
                    flt,
                    attrs,
                    sizelimit=2,
                    timeout=s.timeout,
                )
            except ldap.SIZELIMIT_EXCEEDED:
                return [("", {}), ("", {})]  # more than one: ambiguous
            except ldap.NO_SUCH_OBJECT:
                return []
            return [(dn, e) for dn, e in found if dn is not None]

        entries = self._with_service(search)
        if len(entries) != 1:
            if entries:
                log.warning("ldap: filter %s matches several entries; nobody logged in", flt)
            raise InvalidCredentials()
        return entries[0]

    def _check_password(self, dn: str, password: str) -> None:
        def bind(conn: Conn) -> bool:
            try:
                conn.simple_bind_s(dn, password)
            except (
                ldap.INVALID_CREDENTIALS,
                # e.g. a locked or expired account, or a policy refusing the bind
                ldap.UNWILLING_TO_PERFORM,
                ldap.INAPPROPRIATE_AUTH,
                ldap.CONSTRAINT_VIOLATION,
            ):
                return False
            return True

        if not self._with(self._binders, self._connect, bind):
            raise InvalidCredentials()

    def _identity(self, dn: str, entry: dict[str, list[bytes]]) -> Identity:
        s = self.settings
        username = _text(entry, s.username_attribute) or ""
        return Identity(
            source="ldap",
            user_id=dn,
            username=username,
            display_name=_text(entry, s.display_name_attribute) or username,
            email=_text(entry, s.email_attribute),
            groups=self._groups(dn, username, entry),
        )

    def _groups(self, dn: str, username: str, entry: dict[str, list[bytes]]) -> frozenset[str]:
        s = self.settings
        if s.group_style == "memberOf":
            return frozenset(cn for g in _values(entry, "memberOf") if (cn := _cn_of(g)))
        if s.group_style == "posixGroup":
            if not username:
                return frozenset()
            name = ldap.filter.escape_filter_chars(username)
            flt = f"(&(objectClass=posixGroup)(memberUid={name}))"
        else:
            attribute = "member" if s.group_style == "groupOfNames" else "uniqueMember"
            member = ldap.filter.escape_filter_chars(dn)
            flt = f"(&(objectClass={s.group_style})({attribute}={member}))"

        def search(conn: Conn) -> list[Entry]:
            try:
                found = conn.search_ext_s(
                    s.group_base, ldap.SCOPE_SUBTREE, flt, ["cn"], timeout=s.timeout
                )
            except ldap.NO_SUCH_OBJECT:
                return []
            return [(d, e) for d, e in found if d is not None]

        return frozenset(cn for _, e in self._with_service(search) if (cn := _text(e, "cn")))

    def _with_service(self, work: Callable[[Conn], T]) -> T:
        return self._with(self._service, self._service_connection, work)

    def _with(self, pool: _Pool, connect: Callable[[], Conn], work: Callable[[Conn], T]) -> T:
        """Run ``work`` on a connection from ``pool``; a stale pooled one is replaced once."""
        conn = pool.take()
        pooled = conn is not None
        try:
            if conn is None:
                conn = connect()
            try:
                result = work(conn)
            except ldap.SERVER_DOWN:
                _unbind(conn)
                conn = None
                if not pooled:
                    raise
                # The server restarted or dropped the idle connection: one retry.
                conn = connect()
                result = work(conn)
        except ldap.LDAPError as exc:
            if conn is not None:
                _unbind(conn)
            raise self._error(exc) from None
        pool.give(conn)
        return result

    def _service_connection(self) -> Conn:
        conn = self._connect()
        try:
            conn.simple_bind_s(self.settings.bind_dn, self.settings.bind_password)
        except ldap.INVALID_CREDENTIALS:
            _unbind(conn)
            raise IdentitySourceUnavailable(
                f"the directory ({self.settings.url}) refused Plenary's service account "
                "(check ldap.bind_dn and ldap.bind_password)"
            ) from None
        except ldap.LDAPError:
            _unbind(conn)
            raise
        return conn

    def _connect(self) -> Conn:
        s = self.settings
        conn = ldap.initialize(s.url)
        conn.set_option(ldap.OPT_PROTOCOL_VERSION, ldap.VERSION3)
        conn.set_option(ldap.OPT_REFERRALS, 0)
        conn.set_option(ldap.OPT_NETWORK_TIMEOUT, s.timeout)
        conn.set_option(ldap.OPT_TIMEOUT, s.timeout)
        if s.start_tls or s.url.startswith("ldaps://"):
            conn.set_option(ldap.OPT_X_TLS_REQUIRE_CERT, ldap.OPT_X_TLS_DEMAND)
            if s.ca_file is not None:
                conn.set_option(ldap.OPT_X_TLS_CACERTFILE, str(s.ca_file))
            conn.set_option(ldap.OPT_X_TLS_NEWCTX, 0)  # must come after the TLS options
        if s.start_tls:
            try:
                conn.start_tls_s()
            except ldap.LDAPError as exc:
                _unbind(conn)
                raise IdentitySourceUnavailable(
                    f"the directory ({s.url}) is unavailable: StartTLS failed "
                    f"({_describe(exc)}); check ldap.start_tls, ldap.ca_file and the "
                    "server's TLS certificate"
                ) from None
        return conn

    # errors --------------------------------------------------------------------------

    def _down(self, why: str) -> IdentitySourceUnavailable:
        return IdentitySourceUnavailable(
            f"the directory ({self.settings.url}) is unavailable: {why}; "
            "logins are refused until it answers"
        )

    def _error(self, exc: ldap.LDAPError) -> IdentitySourceUnavailable:
        if isinstance(exc, ldap.SERVER_DOWN):
            why = "cannot connect"
        elif isinstance(exc, ldap.TIMEOUT):
            why = f"no answer within {self.settings.timeout:g} s"
        else:
            why = _describe(exc)
        log.warning("ldap %s: %s", self.settings.url, _describe(exc))
        return self._down(why)


def _describe(exc: ldap.LDAPError) -> str:
    info = exc.args[0] if exc.args and isinstance(exc.args[0], dict) else {}
    parts = [str(info.get("desc") or type(exc).__name__)]
    if info.get("info"):
        parts.append(str(info["info"]))
    return ": ".join(parts)


def _plausible(username: str) -> bool:
    """A name worth asking the directory about (escaping still applies to the rest)."""
    return 0 < len(username) <= MAX_USERNAME and not any(
        ord(c) < 32 or ord(c) == 127 for c in username
    )
