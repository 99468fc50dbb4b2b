"""Rows written in the 0012 schema, by plain SQL, for the tests of the migrations after
it (tests/test_capacity_constraint.py, tests/test_no_show_migration.py): a shop, a
30-minute service and an expert (shop ``shop``, service ``svc``, expert ``exp``), then
claims of that expert."""

from __future__ import annotations

from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy import Connection

from engine.store.types import UTCDateTime


def dt_column(name: str) -> sa.ColumnClause[datetime]:
    return sa.column(name, UTCDateTime())


SHOPS = sa.table("shops", sa.column("id"), sa.column("domain"), sa.column("timezone"),
                 sa.column("installed"), dt_column("installed_at"))
SERVICES = sa.table("services", sa.column("id"), sa.column("shop_id"), sa.column("title"),
                    sa.column("duration_minutes"), sa.column("buffer_before_minutes"),
                    sa.column("buffer_after_minutes"), sa.column("min_notice_minutes"),
                    sa.column("max_days_ahead"), dt_column("created_at"))
EXPERTS = sa.table("experts", sa.column("id"), sa.column("shop_id"), sa.column("name"),
                   sa.column("timezone"), dt_column("created_at"))
CLAIMS = sa.table("claims", sa.column("id"), sa.column("shop_id"), sa.column("service_id"),
                  sa.column("expert_id"), dt_column("start_at"), dt_column("end_at"),
                  dt_column("claim_start"), dt_column("claim_end"), sa.column("status"),
                  sa.column("sequence"),
                  dt_column("created_at"), dt_column("updated_at"))


def seed_shop(conn: Connection, at: datetime) -> None:
    """The shop (Europe/Berlin), its service and its expert (no zone of its own)."""
    conn.execute(SHOPS.insert().values(id="shop", domain="a.myshopify.com",
                                       timezone="Europe/Berlin", installed=True,
                                       installed_at=at))
    conn.execute(SERVICES.insert().values(
        id="svc", shop_id="shop", title="x", duration_minutes=30, buffer_before_minutes=0,
        buffer_after_minutes=0, min_notice_minutes=0, max_days_ahead=60, created_at=at))
    conn.execute(EXPERTS.insert().values(id="exp", shop_id="shop", name="E", timezone=None,
                                         created_at=at))


def seed_claim(conn: Connection, claim_id: str, status: str, start: datetime,
               at: datetime) -> None:
    """A 30-minute claim of the expert starting at ``start``, written at ``at``."""
    end = start + timedelta(minutes=30)
    conn.execute(CLAIMS.insert().values(
        id=claim_id, shop_id="shop", service_id="svc", expert_id="exp", start_at=start,
        end_at=end, claim_start=start, claim_end=end, status=status, sequence=0,
        created_at=at, updated_at=at))
