"""Every table of the orchestrator's database, as SQLAlchemy Core tables.

One ``MetaData`` with a naming convention, so constraints have the same names on SQLite
and PostgreSQL and later Alembic revisions can name what they change. The baseline
revision (orchestrator/alembic/versions/) creates exactly these tables; each later
schema change is a new revision and an edit here.

Rooms are referred to by slug text, never by foreign key: a transcript outlives its
room and keeps resolving under its persistent identifier. Times are epoch milliseconds
in BIGINT columns (``*_ms``); the older text times (``created_at``…) are ISO 8601.
SQLite tables that were ``WITHOUT ROWID`` in the hand-written schema stay so
(``sqlite_with_rowid=False``), so a database migrated from it and a new one agree.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    Table,
    Text,
    text,
)

# 64-bit on PostgreSQL; on SQLite plain INTEGER (64-bit there too), as the hand-written
# schema had it.
Int64 = BigInteger().with_variant(Integer(), "sqlite")

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_N_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

# Core key/value state of the orchestrator (e.g. the generated cookie key).
kv = Table(
    "kv",
    metadata,
    Column("key", Text, primary_key=True),
    Column("value", Text, nullable=False),
)

# Rooms: the searchable columns plus the whole validated room as JSON (rooms.model.Room).
rooms = Table(
    "rooms",
    metadata,
    Column("slug", Text, primary_key=True),
    Column("title", Text, nullable=False),
    Column("body", Text, nullable=False),
    Column("created_at", Text, nullable=False),
    Column("updated_at", Text, nullable=False),
)

# Logged-in identities, server side: the session cookie holds only the login id.
logins = Table(
    "logins",
    metadata,
    Column("id", Text, primary_key=True),
    Column("identity", Text, nullable=False),
    Column("created_at", Text, nullable=False),
    Column("expires_at", Text, nullable=False),
    Index("logins_expires", "expires_at"),
)

# Personal read tokens (only the token's sha256 is kept) and their owner's identity.
read_tokens = Table(
    "read_tokens",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("hash", Text, nullable=False, unique=True),
    Column("room", Text, nullable=False),
    Column("owner", Text, nullable=False),
    Column("identity", Text, nullable=False),
    Column("created_at_ms", Int64, nullable=False),
    Column("expires_at_ms", Int64, nullable=False),
    Column("revoked_at_ms", Int64),
    Column("revoked_by", Text),
    Column("last_used_at_ms", Int64),
    Index("read_tokens_room", "room", "owner"),
)

# The last number given to a room's captions and corrections; never reused, even after
# retention deletes captions or when a room is live only. Taking a number locks the row
# until the transaction ends, so nodes sharing one database number without gaps.
caption_counters = Table(
    "caption_counters",
    metadata,
    Column("room", Text, primary_key=True),
    Column("last_seq", Int64, nullable=False),
)

# One row per session, kept forever: a withdrawn or expired session is a tombstone so
# its identifier is never reused and answers 410.
caption_sessions = Table(
    "caption_sessions",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("pid", Text, nullable=False, unique=True),
    Column("room", Text, nullable=False),
    Column("started_at_ms", Int64, nullable=False),
    Column("last_at_ms", Int64, nullable=False),
    Column("ended_at_ms", Int64),
    Column("withdrawn_at_ms", Int64),
    Column("withdrawn_reason", Text),
    Index("caption_sessions_room", "room", "id"),
)

# Stored finals; the row holds the caption's latest revision (caption_corrections).
caption_events = Table(
    "caption_events",
    metadata,
    Column("room", Text, nullable=False),
    Column("seq", Int64, nullable=False),
    Column("session_id", Integer, ForeignKey("caption_sessions.id"), nullable=False),
    Column("at_ms", Int64, nullable=False),
    Column("duration_ms", Int64, nullable=False),
    Column("speaker", Text, nullable=False),
    Column("language", Text, nullable=False),
    Column("text", Text, nullable=False),
    Column("message_id", Text, nullable=False),
    Column("revision", Integer, nullable=False, server_default=text("0")),
    PrimaryKeyConstraint("room", "seq"),
    Index("caption_events_session", "session_id", "seq"),
    sqlite_with_rowid=False,
)

# Producers' event ids of stored finals, so a retried final is numbered and stored once;
# kept when retention or a withdrawal deletes the caption.
caption_event_ids = Table(
    "caption_event_ids",
    metadata,
    Column("event_id", Text, primary_key=True),
    Column("room", Text, nullable=False),
    Column("seq", Int64, nullable=False),
    sqlite_with_rowid=False,
)

# Jitsi meetings (the videobridge's sessionId) and the room their captions are filed in.
jitsi_meetings = Table(
    "jitsi_meetings",
    metadata,
    Column("meeting_id", Text, primary_key=True),
    Column("room", Text, nullable=False),
    Column("room_jid", Text, nullable=False),
    Column("main_room", Text, nullable=False),
    Column("breakout_id", Text),
    Column("breakout_name", Text),
    Column("created_at_ms", Int64, nullable=False),
    Column("destroyed_at_ms", Int64),
    Index("jitsi_meetings_room_jid", "room_jid"),
)

# Who spoke under an endpoint id ('meeting:<id>' or 'jigasi:<room>' scope).
jitsi_occupants = Table(
    "jitsi_occupants",
    metadata,
    Column("scope", Text, nullable=False),
    Column("endpoint", Text, nullable=False),
    Column("name", Text, nullable=False),
    Column("user_id", Text, nullable=False),
    Column("joined_at_ms", Int64, nullable=False),
    Column("left_at_ms", Int64),
    PrimaryKeyConstraint("scope", "endpoint"),
    sqlite_with_rowid=False,
)

# IRC channel keys of restricted rooms and what the relay last said about protecting them
# (protected: NULL until the relay reports, 1 set, 0 could not).
irc_channel_keys = Table(
    "irc_channel_keys",
    metadata,
    Column("room", Text, primary_key=True),
    Column("channel_key", Text, nullable=False),
    Column("created_at_ms", Int64, nullable=False),
    Column("protected", Integer),
    Column("detail", Text, nullable=False, server_default=text("''")),
    Column("reported_at_ms", Int64),
    sqlite_with_rowid=False,
)

# Corrections by a human captioner, append-only, each at its own position (pos) in the
# room's ordered stream (docs/corrections.md).
caption_corrections = Table(
    "caption_corrections",
    metadata,
    Column("room", Text, nullable=False),
    Column("pos", Int64, nullable=False),
    Column("seq", Int64, nullable=False),
    Column("revision", Integer, nullable=False),
    Column("at_ms", Int64, nullable=False),
    Column("by", Text, nullable=False),
    Column("old_text", Text, nullable=False),
    Column("new_text", Text, nullable=False),
    Column("old_speaker", Text, nullable=False),
    Column("new_speaker", Text, nullable=False),
    PrimaryKeyConstraint("room", "pos"),
    Index("caption_corrections_seq", "room", "seq", "revision"),
    sqlite_with_rowid=False,
)

# Failed LDAP logins when orchestrator nodes share one database
# (orchestrator/access/login_limits.py): one row per failure and scope ('account' or
# 'address_account') while it counts (the window), and each address's run of failures.
login_failures = Table(
    "login_failures",
    metadata,
    Column("id", Int64, primary_key=True),
    Column("scope", Text, nullable=False),
    Column("key", Text, nullable=False),
    Column("at_ms", Int64, nullable=False),
    Index("login_failures_key", "scope", "key", "at_ms"),
    Index("login_failures_at", "at_ms"),
)
login_delays = Table(
    "login_delays",
    metadata,
    Column("address", Text, primary_key=True),
    Column("failures", Integer, nullable=False),
    Column("last_at_ms", Int64, nullable=False),
)

# Leases of the tasks exactly one node runs (orchestrator/leases.py): the caption
# retention, the videobridge poller, each IRC channel's relay. Times are the database's
# clock, so nodes with skewed clocks agree on when a lease ran out.
leases = Table(
    "leases",
    metadata,
    Column("name", Text, primary_key=True),
    Column("holder", Text, nullable=False),
    Column("expires_at_ms", Int64, nullable=False),
)

# The IRC relay's delivered position per room (orchestrator/irc_relay_api.py): the last
# caption position known to have reached the room's channel; only ever raised.
irc_relay_positions = Table(
    "irc_relay_positions",
    metadata,
    Column("room", Text, primary_key=True),
    Column("position", Int64, nullable=False),
    Column("updated_at_ms", Int64, nullable=False),
)
