"""Login limits shared by orchestrator nodes (orchestrator/access/login_limits.py).

Failed LDAP logins per scope and key while they count, and each address's run of
failures, so nodes on one PostgreSQL database limit logins together. (SQLite keeps
the limits in memory; the tables exist there too, empty.)

Revision ID: 0002_login_limits
Revises: 0001_baseline
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0002_login_limits"
down_revision: str | None = "0001_baseline"
branch_labels: str | None = None
depends_on: str | None = None

INT64 = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "login_failures",
        sa.Column("id", INT64, nullable=False),
        sa.Column("scope", sa.Text(), nullable=False),
        sa.Column("key", sa.Text(), nullable=False),
        sa.Column("at_ms", INT64, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_login_failures")),
    )
    op.create_index("login_failures_key", "login_failures", ["scope", "key", "at_ms"])
    op.create_index("login_failures_at", "login_failures", ["at_ms"])
    op.create_table(
        "login_delays",
        sa.Column("address", sa.Text(), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("last_at_ms", INT64, nullable=False),
        sa.PrimaryKeyConstraint("address", name=op.f("pk_login_delays")),
    )


def downgrade() -> None:
    op.drop_table("login_delays")
    op.drop_index("login_failures_at", table_name="login_failures")
    op.drop_index("login_failures_key", table_name="login_failures")
    op.drop_table("login_failures")
