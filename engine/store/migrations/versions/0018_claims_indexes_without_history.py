"""What a hold reads before it writes no longer grows with the claims table, and the holds
of one expert no longer deadlock.

A hold's first statement (``consultbook_hold_begin``, 0017) expires the expert's stale
claims over the hold's range and counts the visitor's live holds. Both read more rows the
more claims there are:

* The count used ``ix_claims_shop_visitor`` (shop, visitor) or, when the planner guessed
  otherwise (a young table without statistics does), ``ix_claims_held_expiry`` -- every
  live hold of every visitor, filtered. The index now carries ``expires_at`` as well, so
  all three conditions are index conditions and no other index can look cheaper.
* The expiry compared ``claim_start < hi AND claim_end > lo``: through
  ``ix_claims_expert_range`` (expert, claim_start, claim_end) that visits every claim of
  the expert that starts before ``hi`` -- the expert's whole history -- and without
  statistics the planner took the exclusion constraint's GiST index by the expert alone.
  It now asks for the overlap itself, ``tstzrange(claim_start, claim_end, '[)') &&
  tstzrange(lo, hi, '[)')`` (engine.store.types.overlaps, also in
  engine.services.claims.expire_stale_holds), which that GiST index answers from the
  overlapping rows. ``ix_claims_expert_range`` has no reader left (availability leads with
  ``claim_end > lo``: ``ix_claims_expert_end``), so it goes: one index less to keep up on
  every claim written. SQLite keeps the comparisons, through ``ix_claims_expert_end``.

``consultbook_hold_begin`` also takes a transaction-scoped advisory lock of the expert
(after the visitor's, in a lock space of its own) when it is given one: a one-expert hold
on PostgreSQL is one autocommit statement, so the lock lasts only that statement, and
two holds of one expert inserting overlapping claims no longer each wait for the other's
uncommitted row in the exclusion check -- a deadlock PostgreSQL took a second
(``deadlock_timeout``) to break, and that six processes fighting over one expert's slots
through PgBouncer repeated five times for one request (a 503).

Measured in-process (benchmarks/profile_holds.py, 8,000 holds on 20 experts in four
rounds): PostgreSQL CPU per hold 1.14, 1.59, 1.98, 2.42 ms before, 1.07, 1.04, 1.06,
1.07 ms after.

Revision ID: 0018
Revises: 0017
Create Date: 2027-03-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None

_HELD = sa.text("status = 'held'")

# (Literal SQL: nothing here is built from input.) 0017's function, in which this
# revision changes two places: the expert's lock, and the overlap asked for with the
# range operator. Filled with 0017's text it is 0017's function word for word (the
# downgrade restores it).
_HOLD_BEGIN = """CREATE OR REPLACE FUNCTION consultbook_hold_begin(
        lock_key bigint, shop varchar, who varchar, at timestamptz,
        expert varchar, lo timestamptz, hi timestamptz) RETURNS bigint
LANGUAGE plpgsql VOLATILE AS $$
    BEGIN
        PERFORM pg_advisory_xact_lock(lock_key);
        IF expert IS NOT NULL THEN{expert_lock}
            -- engine.services.claims.expire_stale_holds, for one expert and range
            UPDATE claims SET status = 'expired', updated_at = at
             WHERE status IN ('held', 'pending') AND expires_at <= at
               AND expert_id = expert{overlap};
        END IF;
        RETURN (SELECT count(*) FROM claims
                 WHERE shop_id = shop AND visitor = who AND status = 'held'
                   AND expires_at > at);
    END $$"""

PG_HOLD_BEGIN = _HOLD_BEGIN.format(
    expert_lock="""
            -- The expert's holds one after the other (the two-key lock space: never a
            -- visitor's key), so two overlapping inserts never wait for each other.
            PERFORM pg_advisory_xact_lock(1667, hashtext(expert));""",
    overlap="""
               AND tstzrange(claim_start, claim_end, '[)') && tstzrange(lo, hi, '[)')""")
OLD_HOLD_BEGIN = _HOLD_BEGIN.format(
    expert_lock="", overlap=" AND claim_start < hi AND claim_end > lo")


def _visitor_index(columns: list[str]) -> None:
    op.drop_index("ix_claims_shop_visitor", table_name="claims")
    op.create_index("ix_claims_shop_visitor", "claims", columns,
                    postgresql_where=_HELD, sqlite_where=_HELD)


def upgrade() -> None:
    _visitor_index(["shop_id", "visitor", "expires_at"])
    op.drop_index("ix_claims_expert_range", table_name="claims")
    if op.get_bind().dialect.name == "postgresql":
        op.execute(PG_HOLD_BEGIN)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(OLD_HOLD_BEGIN)
    op.create_index("ix_claims_expert_range", "claims",
                    ["expert_id", "claim_start", "claim_end"])
    _visitor_index(["shop_id", "visitor"])
