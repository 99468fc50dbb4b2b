"""The door is wide enough: a plugin package written by this test into a temp dir --
installed the way a wheel installs (module + dist-info with a ``consultbook.plugins``
entry point on ``sys.path``) -- with its own table and Alembic branch, its own periodic
job, its own connect form, its own admin settings and its own route, works end to end
with no edit of the engine: migrate, connect through the admin API, the settings round
trip, the job writes its table, the route answers, and a paid booking's event reaches
its calendar provider through the outbox. On SQLite and PostgreSQL.

The plugin imports only ``engine`` (hookimpl) and ``engine.providers``; it is parsed by
the same rules as tests/test_import_direction.py to prove it.
"""

from __future__ import annotations

import ast
import sys
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path

import falcon.testing
import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from engine.bootstrap import Context, bootstrap
from engine.plugins import reset_discovery
from engine.services.shops import install_shop
from engine.store.migrate import check_schema, current_revisions, upgrade
from engine.tasks import jobs
from tests.conftest import NOW, POSTGRES_URL, Admin, Storefront, make_catalog, make_config
from tests.tasks.helpers import SLOT, book
from web.app import create_app

PLUGIN = '''
"""cbnotes: a calendar kept in its own table, connected by a form."""

from __future__ import annotations

import secrets
from datetime import datetime
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from engine import hookimpl
from engine.providers import (
    CalendarBusy,
    CalendarProvider,
    EventRef,
    FormConnector,
    FormField,
    Grant,
    ProviderRejected,
)
from engine.providers.sql import UTCDateTime, plugin_metadata


class Base(DeclarativeBase):
    metadata = plugin_metadata()
    type_annotation_map = {datetime: UTCDateTime()}


class Ping(Base):
    __tablename__ = "cbnotes_pings"
    id: Mapped[str] = mapped_column(sa.String(40), primary_key=True)
    shop_id: Mapped[str] = mapped_column(sa.String(32))
    at: Mapped[datetime]


class Event(Base):
    __tablename__ = "cbnotes_events"
    booking_id: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    shop_id: Mapped[str] = mapped_column(sa.String(32))
    title: Mapped[str] = mapped_column(sa.Text)
    token: Mapped[str] = mapped_column(sa.Text)


class NotesConnect(FormConnector):
    name = "cbnotes"
    label = "Notes server"
    fields = (FormField("server", "Server URL", kind="url"),
              FormField("token", "API token", kind="password"))

    def connect(self, *, values):
        if values["token"] != "let-me-in":
            raise ProviderRejected("the notes server refused the token")
        return Grant(account=values["server"], credentials={"token": values["token"]})


class NotesCalendar(CalendarProvider):
    name = "cbnotes"
    label = "Notes calendar"
    connection = "cbnotes"
    remote = False
    settings = (FormField("prefix", "Event title prefix", required=False),)

    def calendar_for_expert(self, expert_id, expert_email):
        return expert_id

    def busy(self, calendars, start, end):
        return {c: CalendarBusy(()) for c in calendars}

    def create_event(self, booking, meeting):
        title = (self.ctx.settings.get("prefix") or "") + booking.service_title
        token = self.ctx.connection.credentials()["token"]
        with self.ctx.db.write() as session:
            if session.get(Event, booking.booking_id) is None:
                session.add(Event(booking_id=booking.booking_id, shop_id=self.ctx.shop.id,
                                  title=title, token=token))
        return EventRef(self.name, booking.booking_id, booking.expert_id, None)

    def update_event(self, ref, booking, meeting):
        return ref

    def cancel_event(self, ref, booking):
        return None


def ping(host):
    with host.db.write() as session:
        for shop in host.shops():
            session.add(Ping(id=secrets.token_hex(8), shop_id=shop.id, at=host.clock.now()))
    return {"pinged": 1}


class Pings:
    def __init__(self, host):
        self.host = host

    def on_get(self, req, resp):
        with self.host.db.read() as session:
            count = session.scalar(sa.select(sa.func.count()).select_from(Ping)
                                   .where(Ping.shop_id == req.context.shop.id))
        resp.media = {"pings": count}


@hookimpl
def consultbook_register_providers(registry):
    registry.add_connector(NotesConnect)
    registry.add_calendar(NotesCalendar)


@hookimpl
def consultbook_register_jobs(jobs):
    jobs.add("cbnotes_ping", 300, ping)


@hookimpl
def consultbook_register_routes(routes):
    routes.add("/admin/api/cbnotes/pings", Pings, auth="admin")


@hookimpl
def consultbook_migration_locations():
    return [str(Path(__file__).resolve().parent / "migrations")]
'''

MIGRATION = '''
"""cbnotes tables.

Revision ID: cbnotes_0001
"""

import sqlalchemy as sa
from alembic import op

from engine.providers.sql import UTCDateTime

revision = "cbnotes_0001"
down_revision = None
branch_labels = ("cbnotes",)
depends_on = "0010"


def upgrade():
    op.create_table(
        "cbnotes_pings",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("shop_id", sa.String(32), sa.ForeignKey("shops.id", ondelete="CASCADE"),
                  nullable=False),
        sa.Column("at", UTCDateTime(), nullable=False))
    op.create_table(
        "cbnotes_events",
        sa.Column("booking_id", sa.String(64), primary_key=True),
        sa.Column("shop_id", sa.String(32), sa.ForeignKey("shops.id", ondelete="CASCADE"),
                  nullable=False),
        sa.Column("title", sa.Text(), nullable=False),
        sa.Column("token", sa.Text(), nullable=False))


def downgrade():
    op.drop_table("cbnotes_events")
    op.drop_table("cbnotes_pings")
'''


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Path]:
    """The package and its dist-info, as ``pip install`` leaves them, on sys.path."""
    where = tmp_path / "site"
    package = where / "cbnotes"
    (package / "migrations").mkdir(parents=True)
    (package / "__init__.py").write_text(textwrap.dedent(PLUGIN))
    (package / "migrations" / "cbnotes_0001.py").write_text(textwrap.dedent(MIGRATION))
    info = where / "cbnotes-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: cbnotes\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[consultbook.plugins]\ncbnotes = cbnotes\n")
    sys.path.insert(0, str(where))
    reset_discovery()
    yield where
    sys.path.remove(str(where))
    for name in [m for m in sys.modules if m == "cbnotes" or m.startswith("cbnotes.")]:
        del sys.modules[name]
    reset_discovery()


@pytest.fixture(params=["sqlite", "postgres"])
def fresh_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database of its own (the plugin's branch must not leak into the shared
    test databases)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/third.db"
        return
    if not POSTGRES_URL:
        pytest.skip("CONSULTBOOK_TEST_POSTGRES_URL is not set")
    server = make_url(POSTGRES_URL)
    name = f"consultbook_third_{uuid.uuid4().hex[:10]}"
    admin = create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    yield server.set(database=name).render_as_string(hide_password=False)
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def test_the_plugin_imports_only_the_contract(site: Path) -> None:
    tree = ast.parse((site / "cbnotes" / "__init__.py").read_text())
    engine_imports = {node.module for node in ast.walk(tree)
                      if isinstance(node, ast.ImportFrom) and node.module
                      and node.module.split(".")[0] == "engine"}
    assert engine_imports == {"engine", "engine.providers", "engine.providers.sql"}


def test_a_third_party_plugin_works_end_to_end(site: Path, fresh_url: str) -> None:
    from engine.clock import FixedClock

    ctx: Context = bootstrap(make_config(fresh_url), clock=FixedClock(NOW))
    try:
        assert "cbnotes" in ctx.plugins.plugin_names()
        # migrate: the engine's heads and the plugin's branch, found through the hook.
        upgrade(ctx.db.engine)
        assert "cbnotes_0001" in current_revisions(ctx.db.engine)
        check_schema(ctx.db.engine, ctx.plugins.loaded.migration_locations)
        _end_to_end(ctx)
    finally:
        ctx.db.dispose()


def _end_to_end(ctx: Context) -> None:
    shop = install_shop(ctx.db, ctx.clock, ctx.keyring, "gamma.myshopify.com",
                        "Europe/Berlin", access_token="shpat_gamma")
    client = falcon.testing.TestClient(create_app(ctx))
    admin, store = Admin(client, ctx, shop.domain), Storefront(client, ctx, shop.domain)

    # The admin renders a connector it has never heard of, from what the plugin declares.
    overview = admin("GET", "/connections").json
    (notes,) = [c for c in overview["connections"] if c["provider"] == "cbnotes"]
    assert notes["connect"] == "form" and notes["label"] == "Notes server"
    assert [f["name"] for f in notes["fields"]] == ["server", "token"]
    assert notes["fields"][1]["kind"] == "password"

    # Connect through the form: wrong values are a 4xx naming why; nothing is stored.
    refused = admin("POST", "/connections/cbnotes", {"values": {
        "server": "https://notes.example", "token": "wrong"}})
    assert refused.status_code == 400 and "refused" in refused.json["error"]["message"]
    missing = admin("POST", "/connections/cbnotes", {"values": {"server": "x"}})
    assert missing.status_code == 400 and "API token" in missing.json["error"]["message"]
    r = admin("POST", "/connections/cbnotes", {"values": {
        "server": "https://notes.example", "token": "let-me-in"}})
    assert r.status_code == 201, r.text
    assert r.json == {"provider": "cbnotes", "status": "connected",
                      "account": "https://notes.example"}
    (notes,) = [c for c in admin("GET", "/connections").json["connections"]
                if c["provider"] == "cbnotes"]
    assert notes["status"] == "connected"
    # The grant is stored encrypted: the token is nowhere in the row as written.
    with ctx.db.read() as session:
        stored = session.execute(text(
            "SELECT account, credentials FROM provider_connections WHERE provider = 'cbnotes'"
        )).one()
    assert stored.account == "https://notes.example"
    assert stored.credentials and "let-me-in" not in stored.credentials

    # Its admin fields: the settings round trip.
    r = admin("GET", "/providers/calendar/cbnotes/settings")
    assert r.status_code == 200 and r.json["values"] == {"prefix": ""}
    assert r.json["fields"][0]["label"] == "Event title prefix"
    bad = admin("PUT", "/providers/calendar/cbnotes/settings", {"values": {"nope": "x"}})
    assert bad.status_code == 400 and "nope" in bad.json["error"]["message"]
    r = admin("PUT", "/providers/calendar/cbnotes/settings", {"values": {"prefix": "N-"}})
    assert r.status_code == 200 and r.json["values"] == {"prefix": "N-"}
    assert admin("GET", "/providers/calendar/cbnotes/settings").json["values"] == {
        "prefix": "N-"}

    # Its periodic job runs (once per period) and writes its own table; its route answers.
    deps = jobs.Deps(config=ctx.config, db=ctx.db, clock=ctx.clock, plugins=ctx.plugins)
    assert jobs.plugin_schedule(deps)["plugin:cbnotes_ping"] == 300
    assert jobs.run_plugin_job(deps, "cbnotes_ping", "one") == {"pinged": 1}
    assert jobs.run_plugin_job(deps, "cbnotes_ping", "two") == {"skipped": 1}
    r = admin("GET", "/cbnotes/pings")
    assert r.status_code == 200 and r.json == {"pings": 1}
    assert client.simulate_get("/admin/api/cbnotes/pings").status_code == 401

    # A paid booking's event reaches the plugin's calendar, with its settings and its
    # (decrypted) connection, through the engine's outbox.
    # The merchant chooses it in the admin's settings, among the registered calendars.
    offered = admin("GET", "/settings").json["choices"]["calendar_provider"]
    assert {"name": "cbnotes", "label": "Notes calendar"} in offered
    r = admin("PATCH", "/settings", {"calendar_provider": "cbnotes", "video_provider": "none"})
    assert r.status_code == 200 and r.json["calendar_provider"] == "cbnotes", r.text
    catalog = make_catalog(admin)
    booking = book(admin, store, start=SLOT, catalog=catalog)
    jobs.relay_outbox(deps, "third-party")
    module = sys.modules["cbnotes"]
    with ctx.db.read() as session:
        event = session.get(module.Event, booking)
        assert event is not None
        assert event.title == "N-Consultation" and event.token == "let-me-in"
