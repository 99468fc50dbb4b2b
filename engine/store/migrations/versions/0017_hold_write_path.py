"""A hold's write path in fewer statements (issue 14): on PostgreSQL the capacity triggers
make the rows they count on, and the per-visitor lock, the expiry and the count are one
call.

* ``consultbook_claim_seats()`` (the ``claims_seats_*`` triggers of 0013): a live claim
  no longer needs its ``claim_sessions`` row made beforehand. Adding a claim's seats is
  an upsert of its session: a new row gets the service's ``seats`` as ``seats_max`` and
  the claim's day, ISO week and month in the expert's zone (else the shop's) as its
  period keys; an existing one gets ``seats_max = greatest(service seats, seats_used)``
  (a capacity lowered below what is taken keeps what is taken) and the seats added. A
  live claim that stays in its session has only the difference of its seats applied
  (the same ``seats_max`` rule), so confirming a hold never meets a lowered capacity.
  ``claim_sessions_seats`` still refuses one seat too many.
* ``consultbook_session_count()`` (``claim_sessions_count``, now also on INSERT): a
  session going from no seats to some upserts its six ``capacity_counters`` with the caps
  the service's and the expert's ``limits`` give now (a cap lowered below what is used
  becomes what is used) and adds itself; going back subtracts itself, as before.
  ``capacity_counters_cap`` still refuses the session too many.
* ``consultbook_hold_begin(key, shop, visitor, now, expert, lo, hi)``: a hold's first
  statement. Takes the visitor's transaction-scoped advisory lock, expires the expert's
  stale claims over ``[lo, hi)`` (what engine.services.claims.expire_stale_holds does;
  no expert: none), then counts the visitor's live holds -- one round trip, each query
  with its own snapshot (a volatile function), so the count is still taken after the
  lock and two requests of one visitor are counted one after the other.

The claim's ``session_key`` is still the application's (engine.domain.capacity); what
used to be ``engine.services.capacity.prepare``'s statements on PostgreSQL is now the
triggers' work, read from the rows in the writing transaction as before. SQLite keeps
0013's triggers (no time zones in SQL there): the application still writes the session
and counters first. Downgrade restores 0013's functions and drops the rest.

Revision ID: 0017
Revises: 0016
Create Date: 2027-02-24
"""

from __future__ import annotations

from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None

# (Literal SQL, all of it: nothing here is built from input.)
PG_CLAIM_SEATS = """CREATE OR REPLACE FUNCTION consultbook_claim_seats() RETURNS trigger
LANGUAGE plpgsql AS $$
    BEGIN
        IF TG_OP = 'UPDATE' AND OLD.status IN ('held', 'pending', 'confirmed')
           AND NEW.status IN ('held', 'pending', 'confirmed')
           AND OLD.session_key = NEW.session_key THEN
            -- Stays in its session: only a change of its seats counts.
            IF OLD.seats <> NEW.seats THEN
                UPDATE claim_sessions
                   SET seats_max = greatest(coalesce((SELECT greatest(1, seats) FROM services
                                                      WHERE id = NEW.service_id), 1),
                                            seats_used),
                       seats_used = seats_used - OLD.seats + NEW.seats
                 WHERE key = NEW.session_key;
            END IF;
            RETURN NULL;
        END IF;
        IF TG_OP IN ('UPDATE', 'DELETE') AND OLD.status IN ('held', 'pending', 'confirmed') THEN
            UPDATE claim_sessions SET seats_used = seats_used - OLD.seats
             WHERE key = OLD.session_key;
        END IF;
        IF TG_OP IN ('INSERT', 'UPDATE') AND NEW.status IN ('held', 'pending', 'confirmed') THEN
            INSERT INTO claim_sessions AS cs (key, shop_id, expert_id, service_id, start_at,
                seats_max, seats_used, day_key, week_key, month_key, created_at)
            SELECT NEW.session_key, NEW.shop_id, NEW.expert_id, NEW.service_id,
                   NEW.start_at, greatest(1, coalesce(s.seats, 1)), NEW.seats,
                   to_char(l.t, 'YYYY-MM-DD'), to_char(l.t, 'IYYY-"W"IW'),
                   to_char(l.t, 'YYYY-MM'), now()
              FROM services s, experts e JOIN shops sh ON sh.id = e.shop_id,
                   LATERAL (SELECT NEW.start_at AT TIME ZONE
                            coalesce(nullif(e.timezone, ''), sh.timezone) AS t) l
             WHERE s.id = NEW.service_id AND e.id = NEW.expert_id
            ON CONFLICT (key) DO UPDATE
               SET seats_max = greatest(excluded.seats_max, cs.seats_used),
                   seats_used = cs.seats_used + excluded.seats_used;
            IF NOT FOUND THEN
                RAISE EXCEPTION 'capacity_session_missing: a live claim without its service'
                      ' or expert' USING ERRCODE = '23514';
            END IF;
        END IF;
        RETURN NULL;
    END $$"""

# The six counters of a session: (scope, period, cap) of the service's and the
# expert's limits, in the order 0013's trigger and the application take them.
PG_SESSION_COUNT = """CREATE OR REPLACE FUNCTION consultbook_session_count() RETURNS trigger
LANGUAGE plpgsql AS $$
    DECLARE
        n integer;
    BEGIN
        IF (TG_OP = 'UPDATE' AND OLD.seats_used > 0) = (NEW.seats_used > 0) THEN
            RETURN NULL;
        END IF;
        IF NEW.seats_used > 0 THEN
            INSERT INTO capacity_counters AS cc (expert_id, scope, period, used, cap)
            SELECT NEW.expert_id, v.scope, v.period, 1, v.cap
              FROM services s, experts e, LATERAL (VALUES
                    (NEW.service_id, 'D' || NEW.day_key, (s.limits ->> 'day')::integer),
                    (NEW.service_id, 'W' || NEW.week_key, (s.limits ->> 'week')::integer),
                    (NEW.service_id, 'M' || NEW.month_key, (s.limits ->> 'month')::integer),
                    ('*', 'D' || NEW.day_key, (e.limits ->> 'day')::integer),
                    ('*', 'W' || NEW.week_key, (e.limits ->> 'week')::integer),
                    ('*', 'M' || NEW.month_key, (e.limits ->> 'month')::integer)
                   ) AS v (scope, period, cap)
             WHERE s.id = NEW.service_id AND e.id = NEW.expert_id
            ON CONFLICT (expert_id, scope, period) DO UPDATE
               SET cap = CASE WHEN excluded.cap IS NULL THEN NULL
                              ELSE greatest(excluded.cap, cc.used) END,
                   used = cc.used + 1;
            GET DIAGNOSTICS n = ROW_COUNT;
            IF n != 6 THEN
                RAISE EXCEPTION 'capacity_counters_missing: a session without its counters'
                      USING ERRCODE = '23514';
            END IF;
        ELSE
            UPDATE capacity_counters SET used = used - 1
             WHERE expert_id = NEW.expert_id AND scope IN (NEW.service_id, '*')
               AND period IN ('D' || NEW.day_key, 'W' || NEW.week_key,
                              'M' || NEW.month_key);
        END IF;
        RETURN NULL;
    END $$"""

PG_HOLD_BEGIN = """CREATE FUNCTION consultbook_hold_begin(
        lock_key bigint, shop varchar, who varchar, at timestamptz,
        expert varchar, lo timestamptz, hi timestamptz) RETURNS bigint
LANGUAGE plpgsql VOLATILE AS $$
    BEGIN
        PERFORM pg_advisory_xact_lock(lock_key);
        IF expert IS NOT NULL THEN
            -- engine.services.claims.expire_stale_holds, for one expert and range
            UPDATE claims SET status = 'expired', updated_at = at
             WHERE status IN ('held', 'pending') AND expires_at <= at
               AND expert_id = expert AND claim_start < hi AND claim_end > lo;
        END IF;
        RETURN (SELECT count(*) FROM claims
                 WHERE shop_id = shop AND visitor = who AND status = 'held'
                   AND expires_at > at);
    END $$"""

PG_INSERT_TRIGGER = """CREATE TRIGGER claim_sessions_count_insert AFTER INSERT ON claim_sessions
       FOR EACH ROW WHEN (NEW.seats_used > 0) EXECUTE FUNCTION consultbook_session_count()"""

# 0013's functions, for the downgrade.
OLD_CLAIM_SEATS = """CREATE OR REPLACE FUNCTION consultbook_claim_seats() RETURNS trigger
LANGUAGE plpgsql AS $$
    BEGIN
        IF TG_OP IN ('UPDATE', 'DELETE')
           AND OLD.status IN ('held', 'pending', 'confirmed') THEN
            UPDATE claim_sessions SET seats_used = seats_used - OLD.seats
             WHERE key = OLD.session_key;
        END IF;
        IF TG_OP IN ('INSERT', 'UPDATE')
           AND NEW.status IN ('held', 'pending', 'confirmed') THEN
            UPDATE claim_sessions SET seats_used = seats_used + NEW.seats
             WHERE key = NEW.session_key;
            IF NOT FOUND THEN
                RAISE EXCEPTION 'capacity_session_missing: a live claim without its session'
                      USING ERRCODE = '23514';
            END IF;
        END IF;
        RETURN NULL;
    END $$"""

OLD_SESSION_COUNT = """CREATE OR REPLACE FUNCTION consultbook_session_count() RETURNS trigger
LANGUAGE plpgsql AS $$
    DECLARE
        n integer;
    BEGIN
        IF (OLD.seats_used > 0) = (NEW.seats_used > 0) THEN
            RETURN NULL;
        END IF;
        UPDATE capacity_counters
           SET used = used + (CASE WHEN NEW.seats_used > 0 THEN 1 ELSE -1 END)
         WHERE expert_id = NEW.expert_id AND scope IN (NEW.service_id, '*')
           AND period IN ('D' || NEW.day_key, 'W' || NEW.week_key, 'M' || NEW.month_key);
        GET DIAGNOSTICS n = ROW_COUNT;
        IF NEW.seats_used > 0 AND n != 6 THEN
            RAISE EXCEPTION 'capacity_counters_missing: a session without its counters'
                  USING ERRCODE = '23514';
        END IF;
        RETURN NULL;
    END $$"""


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return  # SQLite: 0013's triggers stay; the application prepares the rows
    for statement in (PG_CLAIM_SEATS, PG_SESSION_COUNT, PG_INSERT_TRIGGER, PG_HOLD_BEGIN):
        op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("DROP FUNCTION consultbook_hold_begin(bigint, varchar, varchar, timestamptz, "
               "varchar, timestamptz, timestamptz)")
    op.execute("DROP TRIGGER claim_sessions_count_insert ON claim_sessions")
    op.execute(OLD_SESSION_COUNT)
    op.execute(OLD_CLAIM_SEATS)
