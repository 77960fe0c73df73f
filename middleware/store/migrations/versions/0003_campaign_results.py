"""campaign results: result_activities, result_recipients, and the `results` run kind

Revision ID: 0003
Revises: 0002
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OLD_KINDS = "kind IN ('incremental', 'full', 'poll', 'sync_now')"
NEW_KINDS = "kind IN ('incremental', 'full', 'poll', 'sync_now', 'results')"


def _kinds(condition: str) -> None:
    with op.batch_alter_table("runs") as batch:
        batch.drop_constraint(op.f("ck_runs_kind"), type_="check")
        batch.create_check_constraint(op.f("ck_runs_kind"), condition)


def upgrade() -> None:
    _kinds(NEW_KINDS)
    op.create_table(
        "result_activities",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("setup_id", sa.Integer(), nullable=False),
        sa.Column("activity_id", sa.String(length=64), nullable=False),
        sa.Column("campaign_id", sa.String(length=64), nullable=False),
        sa.Column("role", sa.String(length=30), nullable=False),
        sa.Column("name", sa.String(length=300), nullable=False),
        sa.Column("subject", sa.Text(), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("state", sa.String(length=12), nullable=False),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("sf_campaign_id", sa.String(length=18), nullable=True),
        sa.Column("statuses_ready", sa.Boolean(), nullable=False),
        sa.Column("html_attached", sa.Boolean(), nullable=False),
        sa.Column("campaign_updated", sa.String(length=40), nullable=True),
        sa.Column("cursors", sa.JSON(), nullable=False),
        sa.Column("counts", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "state IN ('active', 'unsupported', 'gone', 'closed')",
            name=op.f("ck_result_activities_state"),
        ),
        sa.ForeignKeyConstraint(
            ["setup_id"],
            ["setups.id"],
            name=op.f("fk_result_activities_setup_id_setups"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_result_activities")),
    )
    op.create_index(
        "uq_result_activities_setup_activity",
        "result_activities",
        ["setup_id", "activity_id"],
        unique=True,
    )
    op.create_table(
        "result_recipients",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("activity_id", sa.Integer(), nullable=False),
        sa.Column("cc_contact_id", sa.String(length=64), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=False),
        sa.Column("sf_person_id", sa.String(length=18), nullable=True),
        sa.Column("sf_member_id", sa.String(length=18), nullable=True),
        sa.Column("status", sa.String(length=20), nullable=True),
        sa.Column("open_task_id", sa.String(length=18), nullable=True),
        sa.Column("click_tasks", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(
            ["activity_id"],
            ["result_activities.id"],
            name=op.f("fk_result_recipients_activity_id_result_activities"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_result_recipients")),
    )
    op.create_index(
        "uq_result_recipients_activity_contact",
        "result_recipients",
        ["activity_id", "cc_contact_id"],
        unique=True,
    )


def downgrade() -> None:
    op.drop_index("uq_result_recipients_activity_contact", table_name="result_recipients")
    op.drop_table("result_recipients")
    op.drop_index("uq_result_activities_setup_activity", table_name="result_activities")
    op.drop_table("result_activities")
    op.execute("DELETE FROM runs WHERE kind = 'results'")
    _kinds(OLD_KINDS)
