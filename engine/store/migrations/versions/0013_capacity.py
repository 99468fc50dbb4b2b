"""Capacity the database enforces (seats, limits), assignment, intake questions, and
what customers manage themselves (manage tokens, policy settings, the waitlist).

Schema (docs/bookings.md explains the design):

* ``claim_sessions``: one row per session (expert, service, start). ``seats_used`` is
  the sum of the live claims' ``seats``; ``CHECK (seats_used <= seats_max)`` is what
  refuses one seat too many. Kept by triggers on ``claims`` (insert, status/seats/
  session change, delete): no application code adds or subtracts seats.
* ``capacity_counters``: one row per (expert, scope, period): scope is a service id
  (that service's limits) or ``*`` (the expert's own limits), period ``D2026-12-01``,
  ``W2026-W49`` or ``M2026-12`` in the expert's timezone. ``used`` counts the sessions
  with at least one live seat; ``CHECK (cap IS NULL OR used <= cap)`` refuses the session
  too many. Kept by a trigger on ``claim_sessions`` (a session's seats going from none to
  some, or back).
* The overlap rule (``claims_no_overlap``) now spares claims of one session: two live
  claims of one expert may overlap only when they carry the same ``session_key``.
* ``claims``: ``session_key`` (``expert|service|epoch``), ``seats`` (the seats it takes),
  ``answers`` (intake answers), ``manage_token_hash`` (sha256 of the manage link's token),
  ``reschedules`` (how often the customer moved it).
* ``services``: ``seats``, ``limits``, ``assignment``, ``questions``; ``experts``:
  ``limits``, ``priority``, ``weight``, ``photo_url``, ``bio``.
* ``shop_settings``: the customer policy (``customer_cancel``, ``customer_reschedule``,
  ``cancel_notice_minutes``, ``reschedule_notice_minutes``, ``max_reschedules``) and
  ``notify_experts``.
* ``waitlist``: who waits for a date of a service.

Data: every claim gets its session key; the live ones get their sessions and counters
(in the expert's timezone; no caps: no limits existed), before the triggers exist.

``claims`` gets plain ``ADD COLUMN`` (a batch copy on SQLite would drop its triggers).

Revision ID: 0013
Revises: 0012
Create Date: 2027-01-20
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from alembic import op

from engine.store.types import UTCDateTime

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

LIVE = "status IN ('held', 'pending', 'confirmed')"

# --- SQLite -------------------------------------------------------------------------

SQLITE_OVERLAP = """
CREATE TRIGGER claims_no_overlap_{event} BEFORE {event_sql} ON claims
WHEN NEW.{live} AND EXISTS (
    SELECT 1 FROM claims AS c
    WHERE c.expert_id = NEW.expert_id AND c.id != NEW.id AND c.{live}
      AND c.session_key != NEW.session_key
      AND c.claim_start < NEW.claim_end AND NEW.claim_start < c.claim_end)
BEGIN
    SELECT RAISE(ABORT, 'claims_no_overlap: two live claims of one expert overlap');
END
"""

OLD_SQLITE_OVERLAP = """
CREATE TRIGGER claims_no_overlap_{event} BEFORE {event_sql} ON claims
WHEN NEW.{live} AND EXISTS (
    SELECT 1 FROM claims AS c
    WHERE c.expert_id = NEW.expert_id AND c.id != NEW.id AND c.{live}
      AND c.claim_start < NEW.claim_end AND NEW.claim_start < c.claim_end)
BEGIN
    SELECT RAISE(ABORT, 'claims_no_overlap: two live claims of one expert overlap');
END
"""

_SQLITE_ADD = """
    UPDATE claim_sessions SET seats_used = seats_used + NEW.seats
     WHERE key = NEW.session_key AND NEW.status IN ('held', 'pending', 'confirmed');
    SELECT RAISE(ABORT, 'capacity_session_missing: a live claim without its session')
     WHERE NEW.status IN ('held', 'pending', 'confirmed')
       AND NOT EXISTS (SELECT 1 FROM claim_sessions WHERE key = NEW.session_key);
"""

_SQLITE_SUB = """
    UPDATE claim_sessions SET seats_used = seats_used - OLD.seats
     WHERE key = OLD.session_key AND OLD.status IN ('held', 'pending', 'confirmed');
"""

SQLITE_TRIGGERS = [
    f"""CREATE TRIGGER claims_seats_insert AFTER INSERT ON claims
    BEGIN {_SQLITE_ADD} END""",
    f"""CREATE TRIGGER claims_seats_update AFTER UPDATE OF status, seats, session_key ON claims
    BEGIN {_SQLITE_SUB} {_SQLITE_ADD} END""",
    f"""CREATE TRIGGER claims_seats_delete AFTER DELETE ON claims
    BEGIN {_SQLITE_SUB} END""",
    """CREATE TRIGGER claim_sessions_count AFTER UPDATE OF seats_used ON claim_sessions
    WHEN (OLD.seats_used > 0) != (NEW.seats_used > 0)
    BEGIN
        SELECT RAISE(ABORT, 'capacity_counters_missing: a session without its counters')
         WHERE NEW.seats_used > 0 AND (
            SELECT count(*) FROM capacity_counters
             WHERE expert_id = NEW.expert_id AND scope IN (NEW.service_id, '*')
               AND period IN ('D' || NEW.day_key, 'W' || NEW.week_key, 'M' || NEW.month_key)
         ) != 6;
        UPDATE capacity_counters
           SET used = used + (CASE WHEN NEW.seats_used > 0 THEN 1 ELSE -1 END)
         WHERE expert_id = NEW.expert_id AND scope IN (NEW.service_id, '*')
           AND period IN ('D' || NEW.day_key, 'W' || NEW.week_key, 'M' || NEW.month_key);
    END""",
]

SQLITE_DROP = ["claims_seats_insert", "claims_seats_update", "claims_seats_delete",
               "claim_sessions_count"]

# --- PostgreSQL ---------------------------------------------------------------------

PG_FUNCTIONS = [
    """CREATE FUNCTION consultbook_claim_seats() RETURNS trigger LANGUAGE plpgsql AS $$
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
    END $$""",
    """CREATE FUNCTION consultbook_session_count() RETURNS trigger LANGUAGE plpgsql AS $$
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
    END $$""",
]

PG_TRIGGERS = [
    """CREATE TRIGGER claims_seats_insert AFTER INSERT ON claims
       FOR EACH ROW EXECUTE FUNCTION consultbook_claim_seats()""",
    """CREATE TRIGGER claims_seats_update AFTER UPDATE OF status, seats, session_key
       ON claims FOR EACH ROW EXECUTE FUNCTION consultbook_claim_seats()""",
    """CREATE TRIGGER claims_seats_delete AFTER DELETE ON claims
       FOR EACH ROW EXECUTE FUNCTION consultbook_claim_seats()""",
    """CREATE TRIGGER claim_sessions_count AFTER UPDATE OF seats_used ON claim_sessions
       FOR EACH ROW EXECUTE FUNCTION consultbook_session_count()""",
]


def period_keys(start: datetime, tz: ZoneInfo) -> tuple[str, str, str]:
    """(day, ISO week, month) of ``start`` in ``tz`` -- frozen here as it was at 0013
    (engine.domain.capacity is the live copy)."""
    local = start.astimezone(tz)
    year, week, _ = local.isocalendar()
    return (local.strftime("%Y-%m-%d"), f"{year:04d}-W{week:02d}", local.strftime("%Y-%m"))


_COLUMNS: list[tuple[str, Callable[[], sa.Column[Any]]]] = [
    ("services", lambda: sa.Column("seats", sa.Integer(), nullable=False, server_default="1")),
    ("services", lambda: sa.Column("limits", sa.JSON(), nullable=True)),
    ("services", lambda: sa.Column("assignment", sa.String(16), nullable=False,
                                   server_default="least_booked")),
    ("services", lambda: sa.Column("questions", sa.JSON(), nullable=True)),
    ("experts", lambda: sa.Column("limits", sa.JSON(), nullable=True)),
    ("experts", lambda: sa.Column("priority", sa.Integer(), nullable=False,
                                  server_default="50")),
    ("experts", lambda: sa.Column("weight", sa.Integer(), nullable=False, server_default="1")),
    ("experts", lambda: sa.Column("photo_url", sa.Text(), nullable=True)),
    ("experts", lambda: sa.Column("bio", sa.Text(), nullable=True)),
    ("shop_settings", lambda: sa.Column("customer_cancel", sa.Boolean(), nullable=False,
                                        server_default=sa.true())),
    ("shop_settings", lambda: sa.Column("customer_reschedule", sa.Boolean(), nullable=False,
                                        server_default=sa.true())),
    ("shop_settings", lambda: sa.Column("cancel_notice_minutes", sa.Integer(),
                                        nullable=False, server_default="1440")),
    ("shop_settings", lambda: sa.Column("reschedule_notice_minutes", sa.Integer(),
                                        nullable=False, server_default="1440")),
    ("shop_settings", lambda: sa.Column("max_reschedules", sa.Integer(), nullable=False,
                                        server_default="2")),
    ("shop_settings", lambda: sa.Column("notify_experts", sa.Boolean(), nullable=False,
                                        server_default=sa.true())),
]


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def upgrade() -> None:
    bind = op.get_bind()
    pg = bind.dialect.name == "postgresql"

    # --- catalog, settings (plain ADD COLUMN: a batch copy of a parent table would
    # cascade its deletes on SQLite) ---
    for table, make in _COLUMNS:
        op.add_column(table, make())

    # --- claims ---
    op.add_column("claims", sa.Column("session_key", sa.String(96), nullable=False,
                                      server_default=""))
    op.add_column("claims", sa.Column("seats", sa.Integer(), nullable=False,
                                      server_default="1"))
    op.add_column("claims", sa.Column("answers", sa.JSON(), nullable=True))
    op.add_column("claims", sa.Column("manage_token_hash", sa.String(64), nullable=True))
    op.add_column("claims", sa.Column("reschedules", sa.Integer(), nullable=False,
                                      server_default="0"))
    op.create_index("ix_claims_session_key", "claims", ["session_key"])
    op.create_index("ix_claims_shop_customer", "claims", ["shop_id", "customer_id"])

    op.create_table(
        "claim_sessions",
        sa.Column("key", sa.String(96), nullable=False),
        sa.Column("shop_id", sa.String(32), nullable=False),
        sa.Column("expert_id", sa.String(32), nullable=False),
        sa.Column("service_id", sa.String(32), nullable=False),
        sa.Column("start_at", UTCDateTime(), nullable=False),
        sa.Column("seats_max", sa.Integer(), nullable=False),
        sa.Column("seats_used", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("day_key", sa.String(10), nullable=False),
        sa.Column("week_key", sa.String(8), nullable=False),
        sa.Column("month_key", sa.String(7), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.CheckConstraint("seats_used >= 0 AND seats_used <= seats_max",
                           name="claim_sessions_seats"),
        sa.ForeignKeyConstraint(["shop_id"], ["shops.id"], ondelete="CASCADE",
                                name=op.f("fk_claim_sessions_shop_id_shops")),
        sa.ForeignKeyConstraint(["expert_id"], ["experts.id"], ondelete="CASCADE",
                                name=op.f("fk_claim_sessions_expert_id_experts")),
        sa.ForeignKeyConstraint(["service_id"], ["services.id"], ondelete="CASCADE",
                                name=op.f("fk_claim_sessions_service_id_services")),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_claim_sessions")),
    )
    op.create_index("ix_claim_sessions_expert_start", "claim_sessions",
                    ["expert_id", "start_at"])
    op.create_table(
        "capacity_counters",
        sa.Column("expert_id", sa.String(32), nullable=False),
        sa.Column("scope", sa.String(32), nullable=False),
        sa.Column("period", sa.String(12), nullable=False),
        sa.Column("used", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("cap", sa.Integer(), nullable=True),
        sa.CheckConstraint("used >= 0 AND (cap IS NULL OR used <= cap)",
                           name="capacity_counters_cap"),
        sa.ForeignKeyConstraint(["expert_id"], ["experts.id"], ondelete="CASCADE",
                                name=op.f("fk_capacity_counters_expert_id_experts")),
        sa.PrimaryKeyConstraint("expert_id", "scope", "period",
                                name=op.f("pk_capacity_counters")),
    )
    op.create_table(
        "waitlist",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("shop_id", sa.String(32), nullable=False),
        sa.Column("service_id", sa.String(32), nullable=False),
        sa.Column("expert_id", sa.String(32), nullable=True),  # None: any expert
        sa.Column("date", sa.Date(), nullable=False),  # in the shop's timezone
        sa.Column("email", sa.String(320), nullable=True),  # None once redacted
        sa.Column("visitor", sa.String(128), nullable=True),
        sa.Column("customer_tz", sa.String(64), nullable=True),
        # waiting -> notified | lapsed
        sa.Column("status", sa.String(16), nullable=False, server_default="waiting"),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("notified_at", UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(["shop_id"], ["shops.id"], ondelete="CASCADE",
                                name=op.f("fk_waitlist_shop_id_shops")),
        sa.ForeignKeyConstraint(["service_id"], ["services.id"], ondelete="CASCADE",
                                name=op.f("fk_waitlist_service_id_services")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_waitlist")),
    )
    op.create_index("ix_waitlist_shop_service_date", "waitlist",
                    ["shop_id", "service_id", "date", "status"])
    op.create_index("ix_waitlist_shop_visitor", "waitlist", ["shop_id", "visitor"])

    # --- data: session keys, and the live claims' sessions and counters ---
    claims = sa.table("claims", sa.column("id"), sa.column("expert_id"),
                      sa.column("service_id"), sa.column("shop_id"),
                      sa.column("start_at", UTCDateTime()), sa.column("status"),
                      sa.column("session_key"))
    experts = sa.table("experts", sa.column("id"), sa.column("timezone"), sa.column("shop_id"))
    shops = sa.table("shops", sa.column("id"), sa.column("timezone"))
    rows = bind.execute(
        sa.select(claims.c.id, claims.c.expert_id, claims.c.service_id, claims.c.shop_id,
                  claims.c.start_at, claims.c.status, experts.c.timezone,
                  shops.c.timezone.label("shop_tz"))
        .join(experts, experts.c.id == claims.c.expert_id)
        .join(shops, shops.c.id == claims.c.shop_id)).all()
    sessions: dict[str, dict[str, object]] = {}
    counters: dict[tuple[str, str, str], int] = {}
    for r in rows:
        start = _aware(r.start_at)
        key = f"{r.expert_id}|{r.service_id}|{int(start.timestamp())}"
        bind.execute(sa.update(claims).where(claims.c.id == r.id).values(session_key=key))
        if r.status not in ("held", "pending", "confirmed"):
            continue
        if key in sessions:
            used = int(sessions[key]["seats_used"]) + 1  # type: ignore[call-overload]
            sessions[key]["seats_used"] = sessions[key]["seats_max"] = used
            continue
        day, week, month = period_keys(start, ZoneInfo(r.timezone or r.shop_tz))
        sessions[key] = {"key": key, "shop_id": r.shop_id, "expert_id": r.expert_id,
                         "service_id": r.service_id, "start_at": start, "seats_max": 1,
                         "seats_used": 1, "day_key": day, "week_key": week,
                         "month_key": month, "created_at": datetime.now(UTC)}
        for scope in (r.service_id, "*"):
            for period in (f"D{day}", f"W{week}", f"M{month}"):
                counters[(r.expert_id, scope, period)] = counters.get(
                    (r.expert_id, scope, period), 0) + 1
    if sessions:
        op.bulk_insert(sa.table("claim_sessions", *(sa.column(c) for c in (
            "key", "shop_id", "expert_id", "service_id", "seats_max", "seats_used",
            "day_key", "week_key", "month_key")), sa.column("start_at", UTCDateTime()),
            sa.column("created_at", UTCDateTime())), list(sessions.values()))
    if counters:
        op.bulk_insert(sa.table("capacity_counters", sa.column("expert_id"),
                                sa.column("scope"), sa.column("period"), sa.column("used")),
                       [{"expert_id": e, "scope": s, "period": p, "used": n}
                        for (e, s, p), n in counters.items()])

    # --- the rules ---
    if pg:
        op.execute("ALTER TABLE claims DROP CONSTRAINT claims_no_overlap")
        op.execute(
            "ALTER TABLE claims ADD CONSTRAINT claims_no_overlap EXCLUDE USING gist "
            "(expert_id WITH =, tstzrange(claim_start, claim_end, '[)') WITH &&, "
            f"session_key WITH <>) WHERE ({LIVE})")
        for stmt in PG_FUNCTIONS + PG_TRIGGERS:
            op.execute(stmt)
    else:
        op.execute("DROP TRIGGER claims_no_overlap_insert")
        op.execute("DROP TRIGGER claims_no_overlap_update")
        op.execute(SQLITE_OVERLAP.format(event="insert", event_sql="INSERT", live=LIVE))
        op.execute(SQLITE_OVERLAP.format(
            event="update",
            event_sql="UPDATE OF status, claim_start, claim_end, expert_id, session_key",
            live=LIVE))
        for stmt in SQLITE_TRIGGERS:
            op.execute(stmt)


def downgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        for name, table in (("claims_seats_insert", "claims"), ("claims_seats_update", "claims"),
                            ("claims_seats_delete", "claims"),
                            ("claim_sessions_count", "claim_sessions")):
            op.execute(f"DROP TRIGGER {name} ON {table}")
        op.execute("DROP FUNCTION consultbook_claim_seats()")
        op.execute("DROP FUNCTION consultbook_session_count()")
        op.execute("ALTER TABLE claims DROP CONSTRAINT claims_no_overlap")
        op.execute(
            "ALTER TABLE claims ADD CONSTRAINT claims_no_overlap EXCLUDE USING gist "
            "(expert_id WITH =, tstzrange(claim_start, claim_end, '[)') WITH &&) "
            f"WHERE ({LIVE})")
    else:
        for name in SQLITE_DROP:
            op.execute(f"DROP TRIGGER {name}")
        op.execute("DROP TRIGGER claims_no_overlap_insert")
        op.execute("DROP TRIGGER claims_no_overlap_update")
    op.drop_table("waitlist")
    op.drop_table("capacity_counters")
    op.drop_table("claim_sessions")
    op.drop_index("ix_claims_shop_customer", table_name="claims")
    op.drop_index("ix_claims_session_key", table_name="claims")
    for column in ("reschedules", "manage_token_hash", "answers", "seats", "session_key"):
        op.drop_column("claims", column)
    if bind.dialect.name != "postgresql":
        # SQLite's DROP COLUMN leaves triggers alone, but ours named session_key: they
        # were dropped above; the old overlap triggers come back now.
        op.execute(OLD_SQLITE_OVERLAP.format(event="insert", event_sql="INSERT", live=LIVE))
        op.execute(OLD_SQLITE_OVERLAP.format(
            event="update", event_sql="UPDATE OF status, claim_start, claim_end, expert_id",
            live=LIVE))
    for table, make in reversed(_COLUMNS):
        op.drop_column(table, make().name)
