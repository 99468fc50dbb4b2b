"""Services (what is sold) and experts (who delivers it), per shop.

Deleting either is a soft delete: bookings keep pointing at it, but it disappears from
every listing, from availability, and answers 404 from then on.
"""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from engine.clock import Clock
from engine.errors import NotFound, ValidationError
from engine.services.questions import parse_questions
from engine.services.validation import (
    Field,
    Mode,
    email,
    https_url,
    id_list,
    integer,
    limits,
    one_of,
    parse_document,
    plain_text,
    render_shopify_id,
    shopify_id,
    text,
    timezone,
)
from engine.store import Database, new_id
from engine.store.models import Expert, ExpertService, Service, Shop

DAY = 24 * 60
MAX_SEATS = 1000
ASSIGNMENTS = ("least_booked", "priority")

SERVICE_FIELDS: dict[str, Field] = {
    "title": Field(text(255)),
    "duration_minutes": Field(integer(5, DAY), default=30),
    "interval_minutes": Field(integer(5, DAY), default=None, nullable=True),
    "buffer_before_minutes": Field(integer(0, DAY), default=0),
    "buffer_after_minutes": Field(integer(0, DAY), default=0),
    "min_notice_minutes": Field(integer(0, 365 * DAY), default=0),
    "max_days_ahead": Field(integer(1, 730), default=60),
    "product_id": Field(shopify_id, default=None, nullable=True),
    "variant_id": Field(shopify_id, default=None, nullable=True),
    # Capacity and intake (issue 11): customers per session, sessions per period, how
    # "any expert" picks, and what is asked before the hold (engine.services.questions).
    "seats": Field(integer(1, MAX_SEATS), default=1),
    "limits": Field(limits, default=dict),
    "assignment": Field(one_of(*ASSIGNMENTS), default="least_booked"),
    "questions": Field(parse_questions, default=list),
}

EXPERT_FIELDS: dict[str, Field] = {
    "name": Field(text(255)),
    "email": Field(email, default=None, nullable=True),
    "timezone": Field(timezone, default=None, nullable=True),
    "services": Field(id_list, default=list),
    # Sessions per period across all the expert's services, and how "any expert"
    # weighs them (engine.services.capacity, CONTRACT "Capacity").
    "limits": Field(limits, default=dict),
    "priority": Field(integer(0, 100), default=50),
    "weight": Field(integer(1, 100), default=1),
    # What the storefront shows of the expert (issue 13): an https image and a short bio.
    "photo_url": Field(https_url, default=None, nullable=True),
    "bio": Field(plain_text(500), default=None, nullable=True),
}


# --- services -------------------------------------------------------------------------

_SHOPIFY_NUMBER = re.compile(r"(?:gid://shopify/[A-Za-z]+/)?([0-9]{1,30})")


def shopify_number(value: Any) -> str | None:
    """A Shopify id reduced to its number, as a decimal string without leading zeros:
    ``808950810``, ``"808950810"`` and ``"gid://shopify/ProductVariant/808950810"`` are
    all ``"808950810"``. Anything else (bools, floats, negative numbers, other text,
    more than 30 digits) is None. What a webhook's line names and what the service
    sells are compared in this form (engine.services.orders)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return str(value) if 0 <= value < 10 ** 30 else None
    if isinstance(value, str):
        m = _SHOPIFY_NUMBER.fullmatch(value.strip())
        if m is not None:
            return m.group(1).lstrip("0") or "0"
    return None



def render_service(s: Service) -> dict[str, Any]:
    return {
        "id": s.id,
        "title": s.title,
        "duration_minutes": s.duration_minutes,
        "interval_minutes": s.interval_minutes or s.duration_minutes,
        "buffer_before_minutes": s.buffer_before_minutes,
        "buffer_after_minutes": s.buffer_after_minutes,
        "min_notice_minutes": s.min_notice_minutes,
        "max_days_ahead": s.max_days_ahead,
        "product_id": render_shopify_id(s.product_id),
        "variant_id": render_shopify_id(s.variant_id),
        "seats": s.seats or 1,
        "limits": dict(s.limits or {}),
        "assignment": s.assignment or "least_booked",
        "questions": list(s.questions or []),
    }


def live_service(session: Session, shop_id: str, service_id: str) -> Service:
    """The shop's service, else NotFound (another shop's id too)."""
    s = session.get(Service, service_id) if isinstance(service_id, str) else None
    if s is None or s.shop_id != shop_id or s.deleted_at is not None:
        raise NotFound(f"no service {service_id!r}")
    return s


def list_services(db: Database, shop_id: str) -> list[dict[str, Any]]:
    with db.read() as session:
        rows = session.scalars(
            select(Service).where(Service.shop_id == shop_id, Service.deleted_at.is_(None))
            .order_by(Service.created_at, Service.id))
        return [render_service(s) for s in rows]


def get_service(db: Database, shop_id: str, service_id: str) -> dict[str, Any]:
    with db.read() as session:
        return render_service(live_service(session, shop_id, service_id))


def create_service(db: Database, clock: Clock, shop_id: str, doc: Any) -> dict[str, Any]:
    values = parse_document(doc, SERVICE_FIELDS, "create")
    with db.write() as session:
        s = Service(id=new_id("svc"), shop_id=shop_id, created_at=clock.now(), **values)
        session.add(s)
        session.flush()
        return render_service(s)


def update_service(db: Database, shop_id: str, service_id: str, doc: Any,
                   mode: Mode) -> dict[str, Any]:
    values = parse_document(doc, SERVICE_FIELDS, mode)
    with db.write() as session:
        s = live_service(session, shop_id, service_id)
        for name, value in values.items():
            setattr(s, name, value)
        session.flush()
        return render_service(s)


def delete_service(db: Database, clock: Clock, shop_id: str, service_id: str) -> None:
    with db.write() as session:
        s = live_service(session, shop_id, service_id)
        s.deleted_at = clock.now()
        session.execute(delete(ExpertService).where(ExpertService.service_id == s.id))


# --- experts --------------------------------------------------------------------------


def live_expert(session: Session, shop_id: str, expert_id: str) -> Expert:
    e = session.get(Expert, expert_id) if isinstance(expert_id, str) else None
    if e is None or e.shop_id != shop_id or e.deleted_at is not None:
        raise NotFound(f"no expert {expert_id!r}")
    return e


def expert_timezone(session: Session, expert: Expert) -> str:
    if expert.timezone:
        return expert.timezone
    shop = session.get(Shop, expert.shop_id)
    assert shop is not None
    return shop.timezone


def _render_expert(session: Session, e: Expert, shop_tz: str) -> dict[str, Any]:
    services = session.scalars(
        select(ExpertService.service_id).where(ExpertService.expert_id == e.id)
        .order_by(ExpertService.service_id)).all()
    return {"id": e.id, "name": e.name, "email": e.email, "timezone": e.timezone or shop_tz,
            "services": list(services), "limits": dict(e.limits or {}),
            "priority": e.priority if e.priority is not None else 50,
            "weight": e.weight or 1, "photo_url": e.photo_url, "bio": e.bio}


def _shop_tz(session: Session, shop_id: str) -> str:
    shop = session.get(Shop, shop_id)
    if shop is None:
        raise NotFound("no such shop")
    return shop.timezone


def _set_services(session: Session, shop_id: str, expert: Expert, ids: list[str]) -> None:
    if ids:
        found = set(session.scalars(select(Service.id).where(
            Service.id.in_(ids), Service.shop_id == shop_id, Service.deleted_at.is_(None))))
        missing = [i for i in ids if i not in found]
        if missing:
            raise ValidationError(f"services: no service {missing[0]!r}", field="services")
    session.execute(delete(ExpertService).where(ExpertService.expert_id == expert.id))
    session.add_all(ExpertService(expert_id=expert.id, service_id=i) for i in ids)


def list_experts(db: Database, shop_id: str) -> list[dict[str, Any]]:
    with db.read() as session:
        tz = _shop_tz(session, shop_id)
        rows = session.scalars(
            select(Expert).where(Expert.shop_id == shop_id, Expert.deleted_at.is_(None))
            .order_by(Expert.created_at, Expert.id)).all()
        return [_render_expert(session, e, tz) for e in rows]


def get_expert(db: Database, shop_id: str, expert_id: str) -> dict[str, Any]:
    with db.read() as session:
        return _render_expert(session, live_expert(session, shop_id, expert_id),
                              _shop_tz(session, shop_id))


def create_expert(db: Database, clock: Clock, shop_id: str, doc: Any) -> dict[str, Any]:
    values = parse_document(doc, EXPERT_FIELDS, "create")
    services = values.pop("services")
    with db.write() as session:
        e = Expert(id=new_id("exp"), shop_id=shop_id, created_at=clock.now(), **values)
        session.add(e)
        session.flush()
        _set_services(session, shop_id, e, services)
        session.flush()
        return _render_expert(session, e, _shop_tz(session, shop_id))


def update_expert(db: Database, shop_id: str, expert_id: str, doc: Any,
                  mode: Mode) -> dict[str, Any]:
    values = parse_document(doc, EXPERT_FIELDS, mode)
    services = values.pop("services", None)
    with db.write() as session:
        e = live_expert(session, shop_id, expert_id)
        for name, value in values.items():
            setattr(e, name, value)
        if services is not None:
            _set_services(session, shop_id, e, services)
        session.flush()
        return _render_expert(session, e, _shop_tz(session, shop_id))


def delete_expert(db: Database, clock: Clock, shop_id: str, expert_id: str) -> None:
    with db.write() as session:
        e = live_expert(session, shop_id, expert_id)
        e.deleted_at = clock.now()
        session.execute(delete(ExpertService).where(ExpertService.expert_id == e.id))
