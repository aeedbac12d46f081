"""Baseline: the schema the hand-written SQLite migrations 0001-0500 had made.

A SQLite file from before Alembic is stamped at this revision once it has all of them
(orchestrator.db); a new database is created by it. Frozen: later changes are new
revisions, never edits here.

Revision ID: 0001_baseline
Revises:
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0001_baseline"
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None

# Epoch milliseconds: 64-bit on PostgreSQL, plain INTEGER (64-bit) on SQLite.
INT64 = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "caption_corrections",
        sa.Column("room", sa.Text(), nullable=False),
        sa.Column("pos", INT64, nullable=False),
        sa.Column("seq", INT64, nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("at_ms", INT64, nullable=False),
        sa.Column("by", sa.Text(), nullable=False),
        sa.Column("old_text", sa.Text(), nullable=False),
        sa.Column("new_text", sa.Text(), nullable=False),
        sa.Column("old_speaker", sa.Text(), nullable=False),
        sa.Column("new_speaker", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("room", "pos", name=op.f("pk_caption_corrections")),
        sqlite_with_rowid=False,
    )
    op.create_index(
        "caption_corrections_seq", "caption_corrections", ["room", "seq", "revision"], unique=False
    )
    op.create_table(
        "caption_counters",
        sa.Column("room", sa.Text(), nullable=False),
        sa.Column("last_seq", INT64, nullable=False),
        sa.PrimaryKeyConstraint("room", name=op.f("pk_caption_counters")),
    )
    op.create_table(
        "caption_event_ids",
        sa.Column("event_id", sa.Text(), nullable=False),
        sa.Column("room", sa.Text(), nullable=False),
        sa.Column("seq", INT64, nullable=False),
        sa.PrimaryKeyConstraint("event_id", name=op.f("pk_caption_event_ids")),
        sqlite_with_rowid=False,
    )
    op.create_table(
        "caption_sessions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("pid", sa.Text(), nullable=False),
        sa.Column("room", sa.Text(), nullable=False),
        sa.Column("started_at_ms", INT64, nullable=False),
        sa.Column("last_at_ms", INT64, nullable=False),
        sa.Column("ended_at_ms", INT64, nullable=True),
        sa.Column("withdrawn_at_ms", INT64, nullable=True),
        sa.Column("withdrawn_reason", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_caption_sessions")),
        sa.UniqueConstraint("pid", name=op.f("uq_caption_sessions_pid")),
    )
    op.create_index("caption_sessions_room", "caption_sessions", ["room", "id"], unique=False)
    op.create_table(
        "irc_channel_keys",
        sa.Column("room", sa.Text(), nullable=False),
        sa.Column("channel_key", sa.Text(), nullable=False),
        sa.Column("created_at_ms", INT64, nullable=False),
        sa.Column("protected", sa.Integer(), nullable=True),
        sa.Column("detail", sa.Text(), server_default=sa.text("''"), nullable=False),
        sa.Column("reported_at_ms", INT64, nullable=True),
        sa.PrimaryKeyConstraint("room", name=op.f("pk_irc_channel_keys")),
        sqlite_with_rowid=False,
    )
    op.create_table(
        "jitsi_meetings",
        sa.Column("meeting_id", sa.Text(), nullable=False),
        sa.Column("room", sa.Text(), nullable=False),
        sa.Column("room_jid", sa.Text(), nullable=False),
        sa.Column("main_room", sa.Text(), nullable=False),
        sa.Column("breakout_id", sa.Text(), nullable=True),
        sa.Column("breakout_name", sa.Text(), nullable=True),
        sa.Column("created_at_ms", INT64, nullable=False),
        sa.Column("destroyed_at_ms", INT64, nullable=True),
        sa.PrimaryKeyConstraint("meeting_id", name=op.f("pk_jitsi_meetings")),
    )
    op.create_index("jitsi_meetings_room_jid", "jitsi_meetings", ["room_jid"], unique=False)
    op.create_table(
        "jitsi_occupants",
        sa.Column("scope", sa.Text(), nullable=False),
        sa.Column("endpoint", sa.Text(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("user_id", sa.Text(), nullable=False),
        sa.Column("joined_at_ms", INT64, nullable=False),
        sa.Column("left_at_ms", INT64, nullable=True),
        sa.PrimaryKeyConstraint("scope", "endpoint", name=op.f("pk_jitsi_occupants")),
        sqlite_with_rowid=False,
    )
    op.create_table(
        "kv",
        sa.Column("key", sa.Text(), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_kv")),
    )
    op.create_table(
        "logins",
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column("identity", sa.Text(), nullable=False),
        sa.Column("created_at", sa.Text(), nullable=False),
        sa.Column("expires_at", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_logins")),
    )
    op.create_index("logins_expires", "logins", ["expires_at"], unique=False)
    op.create_table(
        "read_tokens",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("hash", sa.Text(), nullable=False),
        sa.Column("room", sa.Text(), nullable=False),
        sa.Column("owner", sa.Text(), nullable=False),
        sa.Column("identity", sa.Text(), nullable=False),
        sa.Column("created_at_ms", INT64, nullable=False),
        sa.Column("expires_at_ms", INT64, nullable=False),
        sa.Column("revoked_at_ms", INT64, nullable=True),
        sa.Column("revoked_by", sa.Text(), nullable=True),
        sa.Column("last_used_at_ms", INT64, nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_read_tokens")),
        sa.UniqueConstraint("hash", name=op.f("uq_read_tokens_hash")),
    )
    op.create_index("read_tokens_room", "read_tokens", ["room", "owner"], unique=False)
    op.create_table(
        "rooms",
        sa.Column("slug", sa.Text(), nullable=False),
        sa.Column("title", sa.Text(), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("created_at", sa.Text(), nullable=False),
        sa.Column("updated_at", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("slug", name=op.f("pk_rooms")),
    )
    op.create_table(
        "caption_events",
        sa.Column("room", sa.Text(), nullable=False),
        sa.Column("seq", INT64, nullable=False),
        sa.Column("session_id", sa.Integer(), nullable=False),
        sa.Column("at_ms", INT64, nullable=False),
        sa.Column("duration_ms", INT64, nullable=False),
        sa.Column("speaker", sa.Text(), nullable=False),
        sa.Column("language", sa.Text(), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("message_id", sa.Text(), nullable=False),
        sa.Column("revision", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.ForeignKeyConstraint(
            ["session_id"],
            ["caption_sessions.id"],
            name=op.f("fk_caption_events_session_id_caption_sessions"),
        ),
        sa.PrimaryKeyConstraint("room", "seq", name=op.f("pk_caption_events")),
        sqlite_with_rowid=False,
    )
    op.create_index("caption_events_session", "caption_events", ["session_id", "seq"], unique=False)


def downgrade() -> None:
    op.drop_index("caption_events_session", table_name="caption_events")
    op.drop_table("caption_events")
    op.drop_table("rooms")
    op.drop_index("read_tokens_room", table_name="read_tokens")
    op.drop_table("read_tokens")
    op.drop_index("logins_expires", table_name="logins")
    op.drop_table("logins")
    op.drop_table("kv")
    op.drop_table("jitsi_occupants")
    op.drop_index("jitsi_meetings_room_jid", table_name="jitsi_meetings")
    op.drop_table("jitsi_meetings")
    op.drop_table("irc_channel_keys")
    op.drop_index("caption_sessions_room", table_name="caption_sessions")
    op.drop_table("caption_sessions")
    op.drop_table("caption_event_ids")
    op.drop_table("caption_counters")
    op.drop_index("caption_corrections_seq", table_name="caption_corrections")
    op.drop_table("caption_corrections")
