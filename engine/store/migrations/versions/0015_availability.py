"""Availability that every worker may cache and never serve stale.

* ``availability_versions``: one row per expert (created by the first claim), whose
  ``version`` goes up whenever a claim of that expert is inserted, deleted, or changes
  in a way availability can see (status, range, start, expiry, seats, session, service,
  expert). Kept by triggers on ``claims``; no application code writes it. A process
  that cached an availability answer compares the versions of the answer's experts
  (one indexed read) and recomputes when any moved (engine.services.availability).
  On PostgreSQL the trigger is a deferred constraint trigger: the version row is
  locked only while the claim's transaction commits, not from its first write, so
  holds of one expert do not queue behind each other for longer than a commit.
* ``ix_claims_expert_end`` (``expert_id, claim_end``): the busy query of availability
  reads the claims of an expert that end after the window opens -- the future, not
  the expert's whole history (``ix_claims_expert_range`` leads with ``claim_start``,
  and every past claim starts before the window ends).

Revision ID: 0015
Revises: 0014
Create Date: 2027-02-10
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

# The claim columns whose change can change an availability answer.
_SEEN = "status, claim_start, claim_end, start_at, expires_at, seats, session_key, " \
        "service_id, expert_id"

_PG = [
    """CREATE FUNCTION consultbook_availability_bump() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP <> 'INSERT' THEN
    INSERT INTO availability_versions (expert_id, version) VALUES (OLD.expert_id, 1)
      ON CONFLICT (expert_id) DO UPDATE SET version = availability_versions.version + 1;
  END IF;
  IF TG_OP = 'INSERT' OR (TG_OP = 'UPDATE' AND NEW.expert_id <> OLD.expert_id) THEN
    INSERT INTO availability_versions (expert_id, version) VALUES (NEW.expert_id, 1)
      ON CONFLICT (expert_id) DO UPDATE SET version = availability_versions.version + 1;
  END IF;
  RETURN NULL;
END $$""",
    f"""CREATE CONSTRAINT TRIGGER claims_availability_version
AFTER INSERT OR DELETE OR UPDATE OF {_SEEN} ON claims
DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION consultbook_availability_bump()""",
]


_BUMP_OLD = """INSERT OR IGNORE INTO availability_versions (expert_id, version)
    VALUES (OLD.expert_id, 0);
  UPDATE availability_versions SET version = version + 1 WHERE expert_id = OLD.expert_id;"""
_BUMP_NEW = _BUMP_OLD.replace("OLD.", "NEW.")

_SQLITE = [
    "CREATE TRIGGER claims_availability_insert AFTER INSERT ON claims\n"
    f"BEGIN {_BUMP_NEW} END",
    "CREATE TRIGGER claims_availability_delete AFTER DELETE ON claims\n"
    f"BEGIN {_BUMP_OLD} END",
    # (The text is constant; S608 sees SQL words in a concatenation.)
    "CREATE TRIGGER claims_availability_update AFTER UPDATE OF " + _SEEN + " ON claims\n"  # noqa: S608
    "BEGIN " + _BUMP_OLD + """
  INSERT OR IGNORE INTO availability_versions (expert_id, version)
    SELECT NEW.expert_id, 0 WHERE NEW.expert_id <> OLD.expert_id;
  UPDATE availability_versions SET version = version + 1
    WHERE expert_id = NEW.expert_id AND NEW.expert_id <> OLD.expert_id;
END""",
]


def upgrade() -> None:
    op.create_table(
        "availability_versions",
        sa.Column("expert_id", sa.String(32), primary_key=True),
        sa.Column("version", sa.BigInteger(), nullable=False, server_default="0"),
    )
    # Experts that already have claims start at 1 (any value works: caches are new).
    op.execute("INSERT INTO availability_versions (expert_id, version) "
               "SELECT DISTINCT expert_id, 1 FROM claims")
    for statement in (_PG if op.get_bind().dialect.name == "postgresql" else _SQLITE):
        op.execute(statement)
    op.create_index("ix_claims_expert_end", "claims", ["expert_id", "claim_end"])


def downgrade() -> None:
    op.drop_index("ix_claims_expert_end", table_name="claims")
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS claims_availability_version ON claims")
        op.execute("DROP FUNCTION IF EXISTS consultbook_availability_bump()")
    else:
        for event in ("insert", "delete", "update"):
            op.execute(f"DROP TRIGGER IF EXISTS claims_availability_{event}")
    op.drop_table("availability_versions")
