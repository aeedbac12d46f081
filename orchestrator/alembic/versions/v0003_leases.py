"""Leases of single-node tasks and the IRC relay's delivered positions.

``leases``: one row per task exactly one node runs (orchestrator/leases.py).
``irc_relay_positions``: per room, the last caption position the IRC relay confirmed
delivered (orchestrator/irc_relay_api.py), so a relay resumes after failover or restart.

Revision ID: 0003_leases
Revises: 0002_login_limits
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0003_leases"
down_revision: str | None = "0002_login_limits"
branch_labels: str | None = None
depends_on: str | None = None

INT64 = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "leases",
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("holder", sa.Text(), nullable=False),
        sa.Column("expires_at_ms", INT64, nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_leases")),
    )
    op.create_table(
        "irc_relay_positions",
        sa.Column("room", sa.Text(), nullable=False),
        sa.Column("position", INT64, nullable=False),
        sa.Column("updated_at_ms", INT64, nullable=False),
        sa.PrimaryKeyConstraint("room", name=op.f("pk_irc_relay_positions")),
    )


def downgrade() -> None:
    op.drop_table("irc_relay_positions")
    op.drop_table("leases")
