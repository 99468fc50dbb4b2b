"""A catalog version per shop, so every process's cached catalog is exact, not 1 s old.

* ``catalog_versions``: one row per shop (created by the first catalog write after this
  migration; no row reads as version 0), whose ``version`` goes up in the same
  transaction as every insert, update or delete of what the storefront's read cache
  holds of the shop's catalog: ``services``, ``experts``, ``expert_services``,
  ``weekly_hours``, ``date_overrides``, ``shop_settings``, and a change of
  ``shops.timezone`` (an expert without a zone of their own uses the shop's). Kept by
  triggers; no application code writes it. The App Proxy reads it with the shop in one
  statement (engine.services.shops.installed_shop), and the process read cache keeps a
  catalog entry only while the version it was read at is still the shop's
  (engine.store.db.ReadCache, engine.services.availability).
* A table of its own rather than a column of ``shops``: the bump locks only its own
  row, so it never queues behind (or ahead of) another update of the shop row -- a
  token saved, an uninstall, shop/redact's ``FOR UPDATE`` -- and readers are never
  blocked at all. Versions only go up; nothing deletes a row (shop ids are never
  reused, and a shop's redaction leaves one small row behind).
* PostgreSQL: statement-level ``AFTER`` triggers with transition tables, one bump per
  shop per statement (not per row), the shops in id order, at the end of the
  statement -- after the statement took its own row locks, so a catalog write holds
  the version row only from its first catalog statement to its commit. SQLite: row
  triggers (writers are serialized by the database lock anyway). No existing table is
  altered: the ``claims`` triggers of 0013 and 0015 are untouched.

Revision ID: 0016
Revises: 0015
Create Date: 2027-02-17
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None

# Each catalog table, and how a set of its rows ("{rows}") names its shops.
_BY_SHOP = "SELECT shop_id FROM {rows}"
_BY_EXPERT = "SELECT e.shop_id FROM {rows} r JOIN experts e ON e.id = r.expert_id"
# An expert's link to a service: through the expert, or through the service (a hard
# delete of an expert cascades here after the expert row is gone; its own bump counts).
# (All text here is constant; S608 sees SQL words in a concatenation.)
_BY_LINK = _BY_EXPERT + " UNION SELECT s.shop_id FROM {rows} r JOIN services s " \
                        "ON s.id = r.service_id"  # noqa: S608
TABLES = {
    "services": _BY_SHOP,
    "experts": _BY_SHOP,
    "expert_services": _BY_LINK,
    "weekly_hours": _BY_EXPERT,
    "date_overrides": _BY_EXPERT,
    "shop_settings": _BY_SHOP,
}

_PG_UPSERT = """INSERT INTO catalog_versions (shop_id, version)
      SELECT DISTINCT shop_id, 1 FROM ({shops}) AS bumped (shop_id)
      WHERE shop_id IS NOT NULL ORDER BY shop_id
      ON CONFLICT (shop_id) DO UPDATE SET version = catalog_versions.version + 1"""


def _pg(name: str, shops: str) -> list[str]:
    new = _PG_UPSERT.format(shops=shops.format(rows="new_rows"))
    old = _PG_UPSERT.format(shops=shops.format(rows="old_rows"))
    both = _PG_UPSERT.format(shops=f"{shops.format(rows='new_rows')} UNION "
                                   f"{shops.format(rows='old_rows')}")
    out = [f"""CREATE FUNCTION consultbook_catalog_bump_{name}() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'INSERT' THEN
    {new};
  ELSIF TG_OP = 'DELETE' THEN
    {old};
  ELSE
    {both};
  END IF;
  RETURN NULL;
END $$"""]
    # (PostgreSQL allows transition tables only on a trigger of one event.)
    for event, refs in (("INSERT", "NEW TABLE AS new_rows"),
                        ("UPDATE", "NEW TABLE AS new_rows OLD TABLE AS old_rows"),
                        ("DELETE", "OLD TABLE AS old_rows")):
        out.append(f"CREATE TRIGGER {name}_catalog_{event.lower()} AFTER {event} ON {name}\n"
                   f"REFERENCING {refs} FOR EACH STATEMENT\n"
                   f"EXECUTE FUNCTION consultbook_catalog_bump_{name}()")
    return out


# shops: a changed timezone only (UPDATE OF with a column list cannot have transition
# tables; an update of the one shop row is one row anyway).
_PG_SHOPS = [
    """CREATE FUNCTION consultbook_catalog_bump_shops() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO catalog_versions (shop_id, version) VALUES (NEW.id, 1)
    ON CONFLICT (shop_id) DO UPDATE SET version = catalog_versions.version + 1;
  RETURN NULL;
END $$""",
    """CREATE TRIGGER shops_catalog_update AFTER UPDATE OF timezone ON shops
FOR EACH ROW WHEN (OLD.timezone IS DISTINCT FROM NEW.timezone)
EXECUTE FUNCTION consultbook_catalog_bump_shops()""",
]


def _sqlite_bump(shops: str) -> str:
    # The pattern of 0015: make the row, then bump it (each shop once per row change).
    return (f"INSERT OR IGNORE INTO catalog_versions (shop_id, version)\n"  # noqa: S608
            f"    SELECT shop_id, 0 FROM ({shops}) WHERE shop_id IS NOT NULL;\n"
            f"  UPDATE catalog_versions SET version = version + 1\n"
            f"    WHERE shop_id IN ({shops});")


def _sqlite_rows(shops: str, which: str) -> str:
    """``shops`` over the one row ``which`` (NEW or OLD) of a row trigger."""
    row = f"(SELECT {which}.shop_id AS shop_id)" if shops == _BY_SHOP else \
        f"(SELECT {which}.expert_id AS expert_id" + (
            f", {which}.service_id AS service_id)" if shops == _BY_LINK else ")")
    return shops.format(rows=row)


def _sqlite(name: str, shops: str) -> list[str]:
    new, old = _sqlite_rows(shops, "NEW"), _sqlite_rows(shops, "OLD")
    return [
        f"CREATE TRIGGER {name}_catalog_insert AFTER INSERT ON {name}\n"
        f"BEGIN {_sqlite_bump(new)} END",
        f"CREATE TRIGGER {name}_catalog_update AFTER UPDATE ON {name}\n"
        f"BEGIN {_sqlite_bump(f'{new} UNION {old}')} END",
        f"CREATE TRIGGER {name}_catalog_delete AFTER DELETE ON {name}\n"
        f"BEGIN {_sqlite_bump(old)} END",
    ]


_SQLITE_SHOPS = [
    "CREATE TRIGGER shops_catalog_update AFTER UPDATE OF timezone ON shops\n"
    "WHEN OLD.timezone IS NOT NEW.timezone\n"
    f"BEGIN {_sqlite_bump('SELECT NEW.id AS shop_id')} END",
]


def upgrade() -> None:
    op.create_table(
        "catalog_versions",
        sa.Column("shop_id", sa.String(32), primary_key=True),
        sa.Column("version", sa.BigInteger(), nullable=False, server_default="0"),
    )
    postgres = op.get_bind().dialect.name == "postgresql"
    for name, shops in TABLES.items():
        for statement in (_pg(name, shops) if postgres else _sqlite(name, shops)):
            op.execute(statement)
    for statement in (_PG_SHOPS if postgres else _SQLITE_SHOPS):
        op.execute(statement)


def downgrade() -> None:
    postgres = op.get_bind().dialect.name == "postgresql"
    for name in (*TABLES, "shops"):
        for event in ("insert", "update", "delete"):
            op.execute(f"DROP TRIGGER IF EXISTS {name}_catalog_{event}"
                       + (f" ON {name}" if postgres else ""))
        if postgres:
            op.execute(f"DROP FUNCTION IF EXISTS consultbook_catalog_bump_{name}()")
    op.drop_table("catalog_versions")
