"""``GET /openapi.json``: the OpenAPI 3.1 document of the HTTP surface (docs/api.md).

The document is built from the definitions the app itself runs on, so that it cannot
drift from the code:

* request and response bodies of services, experts and settings come from the
  validation tables (``engine.services.catalog.SERVICE_FIELDS`` / ``EXPERT_FIELDS``,
  ``engine.services.shops.settings_fields`` with this process's provider registry): each
  field's JSON Schema is read off its parser (``integer(lo, hi)`` gives its bounds,
  ``text(n)`` its length, a provider field its choices...). A parser this module does
  not know stops the build (:class:`UndocumentedField`), so a new kind of field cannot
  go out undocumented;
* limits come from the modules that enforce them (``availability.MAX_DAYS``,
  ``holds.MAX_SEATS``, ``web.guard.MAX_BODY``, the schedule's ``DAYS``...);
* routes that plugins register (``consultbook_register_routes``) are listed from the
  plugin registry, each under the documented extension ``x-consultbook-plugin`` with
  the security of its registered ``auth`` and generic JSON bodies (a plugin's own
  documents are its own: docs/plugins.md);
* tests/test_openapi.py walks the Falcon router and fails when the app serves a
  route or method the document does not name, or the other way round; and
  tests/test_schemathesis.py checks that the running app answers as documented.

What the document leaves out, by rule: Falcon's own responders (``OPTIONS`` on every
route, ``405`` for a method a route does not take), and the routes ``web.demo`` adds
when ``CONSULTBOOK_DEMO`` is on (the simulated storefront and Shopify, under ``/demo``).

:func:`install` adds the route; ``web.app.create_app`` calls it.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import falcon
import falcon.inspect

from engine.bootstrap import Context
from engine.domain import schedule as schedule_domain
from engine.services import availability, catalog, holds, questions, shops, validation
from engine.services.validation import MISSING, Field, Mode
from web import guard

OPENAPI_VERSION = "3.1.0"
PATH = "/openapi.json"

#: The documented extension a plugin's operations carry: the registering plugin's name.
PLUGIN_EXTENSION = "x-consultbook-plugin"

#: Prefixes of the routes ``web.demo`` adds under ``demo`` (excluded by rule).
DEMO_PREFIXES = ("/demo",)

ISO_INSTANT = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z$"
DATE = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$"
NO_CONTROL = r"^[^\u0000-\u001f\u007f]*$"


class UndocumentedField(RuntimeError):
    """A validation field whose parser this module cannot describe: teach
    :func:`field_schema` about it (the document must say what the app accepts)."""


# --------------------------------------------------------------------------- fields


def _ref(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{name}"}


def _closure(parse: Callable[..., Any]) -> dict[str, Any]:
    return dict(inspect.getclosurevars(parse).nonlocals)


def _is(parse: Callable[..., Any], factory: Callable[..., Any]) -> bool:
    """Whether ``parse`` is the closure ``factory(...)`` returns."""
    return getattr(parse, "__qualname__", "") == f"{factory.__qualname__}.<locals>.parse" \
        and getattr(parse, "__module__", "") == factory.__module__


def text_schema(max_length: int, min_length: int = 1) -> dict[str, Any]:
    """What ``validation.text(max_length, min_length=...)`` accepts: a string without
    control characters whose stripped length lies in the bounds (so, with a minimum, at
    least one character that is not white space)."""
    schema: dict[str, Any] = {"type": "string", "maxLength": max_length}
    if min_length > 0:
        schema["minLength"] = min_length
        schema["pattern"] = ("^[^\\u0000-\\u001f\\u007f]*[^\\s\\u0000-\\u001f\\u007f]"
                             "[^\\u0000-\\u001f\\u007f]*$")
    else:
        schema["pattern"] = NO_CONTROL
    return schema


def shopify_id_schema() -> dict[str, Any]:
    digits = validation.SHOPIFY_ID_DIGITS
    pattern = (f"^(?:{validation._SHOPIFY_NUMBER.pattern}|"
               f"{validation._SHOPIFY_GID.pattern})$")
    # A positive JSON integer below 10**20 is accepted too, but not documented: JSON
    # Schema cannot tell 1 from 1.0 (which the app refuses), and the string is the form
    # the app answers with.
    return {"type": "string", "pattern": pattern,
            "description": "a Shopify id: a decimal string of at most "
                           f"{digits} digits or a gid://shopify/<Type>/<digits> id"}


def questions_schema() -> dict[str, Any]:
    """What ``questions.parse_questions`` accepts (ids and labels unique, labels not
    ``Appointment``/``Expert``/``_...``: said in the description, JSON Schema cannot)."""
    q = questions
    line = text_schema(q.MAX_LABEL)
    return {"type": "array", "maxItems": q.MAX_QUESTIONS,
            "description": "intake questions; ids and labels unique within the service",
            "items": {"type": "object", "additionalProperties": False,
                      "required": ["id", "label", "type"],
                      "properties": {
                          "id": {"type": "string", "pattern": "^[a-z0-9_]{1,32}$"},
                          "label": line,
                          "type": {"type": "string", "enum": list(q.TYPES)},
                          "required": {"type": "boolean", "default": False},
                          "choices": {"type": "array", "minItems": 1,
                                      "maxItems": q.MAX_CHOICES, "uniqueItems": True,
                                      "items": text_schema(q.MAX_CHOICE),
                                      "description": "for type choice only"}}}}


def field_schema(name: str, field: Field) -> dict[str, Any]:
    """The JSON Schema of one validation field's accepted values (see module docstring)."""
    parse = field.parse
    schema: dict[str, Any]
    if _is(parse, validation.integer):
        bounds = _closure(parse)
        schema = {"type": "integer", "minimum": bounds["lo"], "maximum": bounds["hi"]}
    elif _is(parse, validation.text):
        bounds = _closure(parse)
        schema = text_schema(bounds["max_length"], bounds["min_length"])
    elif parse is validation.email:
        schema = {"type": "string", "format": "email", "maxLength": 320,
                  "pattern": validation.EMAIL.pattern}
    elif parse is validation.timezone:
        schema = _ref("Timezone")
    elif parse is validation.shopify_id:
        schema = shopify_id_schema()
    elif parse is validation.id_list:
        schema = {"type": "array", "items": {"type": "string"}, "maxItems": 500,
                  "description": "ids (duplicates count once)"}
    elif _is(parse, shops._provider):
        schema = {"type": "string", "enum": list(_closure(parse)["choices"])}
    elif parse is shops._reminders:
        schema = {"type": "array", "maxItems": 10, "uniqueItems": False,
                  "items": {"type": "integer", "minimum": 1, "maximum": 60 * 24 * 60},
                  "description": "minutes before the start; answered sorted, largest first"}
    elif parse is shops._boolean:
        schema = {"type": "boolean"}
    elif _is(parse, validation.one_of):
        schema = {"type": "string", "enum": list(_closure(parse)["choices"])}
    elif parse is validation.limits:
        count = {"type": "integer", "minimum": 1, "maximum": validation.MAX_LIMIT}
        schema = {"type": "object", "additionalProperties": False,
                  "properties": {p: count for p in validation.PERIODS},
                  "description": "sessions per local day, ISO week, calendar month"}
    elif parse is validation.https_url:
        schema = {"type": "string", "format": "uri", "maxLength": validation.MAX_URL,
                  "pattern": validation.URL_PATTERN}
    elif _is(parse, validation.plain_text):
        schema = {"type": "string", "maxLength": _closure(parse)["max_length"],
                  "pattern": validation.MULTILINE_PATTERN}
    elif parse is questions.parse_questions:
        schema = questions_schema()
    else:
        raise UndocumentedField(f"field {name!r}: no schema for its parser {parse!r}")
    if field.nullable:
        schema = {"anyOf": [schema, {"type": "null"}]}
    default = field.default
    if default is not MISSING:
        value = default() if callable(default) else default
        if value is not None or field.nullable:
            schema = {**schema, "default": value}
    return schema


def request_schema(fields: Mapping[str, Field], mode: Mode, *,
                   extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The body ``validation.parse_document(doc, fields, mode)`` accepts: no unknown
    field; on ``create``/``replace`` every field without a default is required."""
    properties = {name: field_schema(name, f) for name, f in fields.items()}
    properties.update(extra or {})
    schema: dict[str, Any] = {"type": "object", "properties": properties,
                              "additionalProperties": False}
    required = [n for n, f in fields.items() if f.default is MISSING]
    if mode != "update" and required:
        schema["required"] = required
    return schema


def _strip_request_only(schema: dict[str, Any]) -> dict[str, Any]:
    """A field's schema as a response shows it: without the request's defaults."""
    if "anyOf" in schema and schema["anyOf"][-1] == {"type": "null"}:
        inner = _strip_request_only(schema["anyOf"][0])
        return {"anyOf": [inner, {"type": "null"}]}
    return {k: v for k, v in schema.items() if k != "default"}


def response_schema(fields: Mapping[str, Field], *, not_null: Iterable[str] = (),
                    extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The rendered document: every field present; ``not_null`` names fields the
    renderer always fills in (a default resolved: the shop's timezone, the duration)."""
    keep = set(not_null)
    properties: dict[str, Any] = {}
    for name, f in fields.items():
        schema = field_schema(name, f)
        if name in keep and "anyOf" in schema and schema["anyOf"][-1] == {"type": "null"}:
            schema = schema["anyOf"][0]
        properties[name] = _strip_request_only(schema)
    properties.update(extra or {})
    return {"type": "object", "properties": properties, "required": sorted(properties),
            "additionalProperties": False}


# --------------------------------------------------------------------------- helpers


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


def ok(description: str, schema: dict[str, Any] | None = None,
       content: dict[str, Any] | None = None, headers: dict[str, Any] | None = None
       ) -> dict[str, Any]:
    out: dict[str, Any] = {"description": description}
    if schema is not None:
        out["content"] = _json(schema)
    if content is not None:
        out["content"] = content
    if headers:
        out["headers"] = headers
    return out


ERROR_TEXT = {
    400: "Bad request: a malformed parameter or body (the message names it).",
    401: "Not authenticated (missing or invalid signature or session token).",
    403: "Forbidden.",
    404: "Not found (another shop's ids too, as if they did not exist).",
    409: "Conflict with the current state.",
    413: "The body is larger than the route takes (payload_too_large); read no further.",
    414: "The query string is too long (uri_too_long).",
    422: "Well-formed but not acceptable.",
    429: "Too many requests.",
    502: "An upstream provider (Shopify, a calendar) failed.",
    503: "A dependency is unreachable (service_unavailable); retry after Retry-After.",
}


def errors(*statuses: int) -> dict[str, Any]:
    """Responses for these error statuses, each a ``$ref`` to ``components/responses``."""
    return {str(s): {"$ref": f"#/components/responses/E{s}"} for s in statuses}


def op(summary: str, *, tags: list[str], responses: dict[str, Any],
       security: list[dict[str, list[str]]] | None = None,
       parameters: list[dict[str, Any]] | None = None,
       body: dict[str, Any] | None = None, body_required: bool = True,
       description: str | None = None, operation_id: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"summary": summary, "tags": tags, "responses": responses}
    if description:
        out["description"] = description
    if operation_id:
        out["operationId"] = operation_id
    if security is not None:
        out["security"] = security
    if parameters:
        out["parameters"] = parameters
    if body is not None:
        out["requestBody"] = {"required": body_required, "content": body}
    return out


def q(name: str, schema: dict[str, Any], *, required: bool = False,
      description: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"name": name, "in": "query", "required": required,
                           "schema": schema}
    if description:
        out["description"] = description
    return out


def p(name: str, description: str = "an id", max_length: int = guard.MAX_PATH_FIELD
      ) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "description": description,
            "schema": {"type": "string", "minLength": 1, "maxLength": max_length}}


def h(name: str, *, required: bool = False, description: str | None = None
      ) -> dict[str, Any]:
    out: dict[str, Any] = {"name": name, "in": "header", "required": required,
                           "schema": {"type": "string"}}
    if description:
        out["description"] = description
    return out


PROXY: list[dict[str, list[str]]] = [{"appProxySignature": []}]
ADMIN: list[dict[str, list[str]]] = [{"sessionToken": []}]
WEBHOOK: list[dict[str, list[str]]] = [{"webhookHmac": []}]
OAUTH: list[dict[str, list[str]]] = [{"oauthQueryHmac": []}]
PUBLIC: list[dict[str, list[str]]] = []

#: The signed App Proxy parameters Shopify adds (the signature is the security scheme).
PROXY_PARAMS = [
    q("shop", {"type": "string", "minLength": 1}, required=True,
      description="the shop's myshopify domain (signed; the only source of the shop)"),
    q("timestamp", {"type": "string", "pattern": "^[0-9]{1,12}$"}, required=True,
      description="Unix seconds (signed); at most CONSULTBOOK_PROXY_MAX_AGE_SECONDS "
                  "from now, either way"),
    q("path_prefix", {"type": "string"}, description="the App Proxy prefix (signed)"),
    q("logged_in_customer_id", {"type": "string"},
      description="the logged-in customer, if any (signed)"),
]

PROXY_ERRORS = (400, 401, 404, 414, 503)
ADMIN_ERRORS = (400, 401, 403, 404, 409, 414, 503)
ADMIN_BODY_ERRORS = (*ADMIN_ERRORS, 413)


# --------------------------------------------------------------------------- schemas


def _schemas(ctx: Context | None) -> dict[str, Any]:
    providers = _providers(ctx)
    settings = shops.settings_fields(providers)
    choice = {"type": "object", "required": ["name", "label"], "additionalProperties": False,
              "properties": {"name": {"type": "string"}, "label": {"type": "string"}}}
    hhmm = schedule_domain._HHMM.pattern
    # One item schema, not prefixItems (start and end told apart): schemathesis
    # rewrites prefixItems into a form its own validator then refuses.
    time = f"^(?:{hhmm.strip('^$')}|24:00)$"
    window = {"type": "array", "minItems": 2, "maxItems": 2,
              "items": {"type": "string", "pattern": time},
              "description": "[start, end] wall-clock HH:MM in the expert's timezone; "
                             "\"24:00\" is allowed only as an end (the end of the day); "
                             "start before end"}
    windows = {"type": "array", "items": window, "maxItems": 48,
               "description": "windows of one day; they may not overlap"}
    instant = {"type": "string", "pattern": ISO_INSTANT, "description": "ISO-8601 UTC"}
    nullable_instant = {"anyOf": [instant, {"type": "null"}]}
    nstr = {"type": ["string", "null"]}
    delivery = {"anyOf": [{"type": "null"}, {
        "type": "object", "required": ["status", "last_error", "attempts",
                                       "next_attempt_at", "unconfirmed_messages"],
        "properties": {"status": {"type": "string",
                                  "enum": ["pending", "retrying", "done", "failed"]},
                       "last_error": nstr, "attempts": {"type": "integer", "minimum": 0},
                       "next_attempt_at": nullable_instant,
                       "unconfirmed_messages": {"type": "array",
                                                "items": {"type": "string"}}}}],
        "description": "what became of the calendar event and the messages"}
    booking = {
        "type": "object",
        "required": ["id", "service", "service_title", "expert", "expert_name", "start",
                     "end", "status", "order_id", "line_item_id", "customer",
                     "customer_timezone", "seats", "answers", "amount", "currency",
                     "meeting_url", "cancelled_by", "reschedules", "no_show", "no_show_at",
                     "delivery"],
        "properties": {
            "id": {"type": "string"}, "service": {"type": "string"},
            "service_title": nstr, "expert": {"type": "string"}, "expert_name": nstr,
            "start": instant, "end": instant,
            "status": {"type": "string", "enum": ["pending", "confirmed", "cancelled"]},
            "order_id": nstr, "line_item_id": nstr,
            "customer": {"type": "object", "required": ["name", "email"],
                         "properties": {"name": nstr, "email": nstr}},
            "customer_timezone": nstr,
            "seats": {"type": "integer", "minimum": 1},
            "answers": {"type": "object", "additionalProperties": {"type": "string"},
                        "description": "intake answers by question id ({} when none)"},
            "amount": {"anyOf": [_ref("Decimal"), {"type": "null"}],
                       "description": "what the line paid for these seats"},
            "currency": nstr, "meeting_url": nstr,
            "cancelled_by": {"anyOf": [{"type": "null"}, {
                "type": "string", "enum": ["merchant", "customer", "order"]}],
                "description": "who cancelled: the shop, the customer (manage link) or "
                               "the order (orders/cancelled); null while not cancelled"},
            "reschedules": {"type": "integer", "minimum": 0,
                            "description": "times the customer moved it"},
            "no_show": {"type": "boolean",
                        "description": "a confirmed booking the merchant marked a no-show "
                                       "(its status stays confirmed)"},
            "no_show_at": {**nullable_instant, "description": "when it was marked"},
            "delivery": delivery,
        },
    }
    refund_outcome = {"anyOf": [{"type": "null"}, {
        "type": "object", "required": ["reason", "amount", "currency", "shopify"],
        "properties": {"reason": _ref("RefundReason"), "amount": _ref("Decimal"),
                       "currency": nstr, "shopify": nstr}}],
        "description": "the cancel's refund entry: null when nothing was paid; shopify is "
                       "queued, off, refunded, failed or skipped"}
    return {
        "Error": {
            "type": "object", "required": ["error"],
            "properties": {"error": {
                "type": "object", "required": ["code", "message"],
                "properties": {
                    "code": {"type": "string", "pattern": "^[a-z][a-z0-9_]*$",
                             "description": "snake_case, stable: what a client switches on"},
                    "message": {"type": "string", "description": "a human sentence"}}}},
        },
        "NotReady": {
            "type": "object", "required": ["error", "unavailable", "checks"],
            "properties": {
                "error": {"$ref": "#/components/schemas/Error/properties/error"},
                "unavailable": {"type": "array", "minItems": 1, "items": {
                    "type": "string", "enum": ["database", "broker"]},
                    "description": "the failing parts"},
                "checks": _ref("ReadyChecks")},
        },
        "ReadyChecks": {"type": "object", "required": ["database", "broker"],
                        "properties": {"database": {"type": "string"},
                                       "broker": {"type": "string"}},
                        "description": "ok, embedded (no broker configured) or "
                                       "unavailable: <why>"},
        "Timezone": {"type": "string", "enum": sorted(validation.iana_zones()),
                     "description": "an IANA timezone name"},
        "Decimal": {"type": "string", "pattern": "^-?[0-9]+(\\.[0-9]+)?$",
                    "description": "a decimal amount as a string"},
        "RefundReason": {"type": "string", "enum": [
            "slot_unavailable", "hold_unknown", "wrong_product", "extra_quantity",
            "slot_passed", "shop_uninstalled", "customer_cancelled", "merchant_cancelled"]},
        "Instant": instant,
        "Slot": {"type": "object", "required": ["start", "end", "expert", "local"],
                 "properties": {"start": instant, "end": instant,
                                "expert": {"type": "string"},
                                "local": {"type": "string",
                                          "description": "the start with the offset of "
                                                         "tz (else the shop's zone)"},
                                "seats_left": {"type": "integer", "minimum": 0},
                                "experts_free": {"type": "integer", "minimum": 1}}},
        "Availability": {"type": "object", "required": ["shop_timezone", "slots"],
                         "additionalProperties": False,
                         "properties": {"shop_timezone": {"type": "string"},
                                        "slots": {"type": "array",
                                                  "items": _ref("Slot")}}},
        "HoldRequest": {
            "type": "object", "required": ["service", "expert", "start"],
            "additionalProperties": False,
            "properties": {
                "service": {"type": "string", "pattern": "\\S"},
                "expert": {"type": "string", "pattern": "\\S",
                           "description": "an expert id, or any"},
                "start": {"type": "string", "format": "date-time",
                          "description": "ISO-8601 instant (2026-12-01T08:00:00Z)"},
                "seats": {"type": "integer", "minimum": 1, "maximum": holds.MAX_SEATS,
                          "default": 1},
                "answers": {"type": "object",
                            "additionalProperties": {"type": ["string", "boolean"]},
                            "description": "question id -> answer"},
                "tz": _ref("Timezone")}},
        "Hold": {
            "type": "object",
            "required": ["hold", "expert", "seats", "expires_at", "start", "end",
                         "line_item_properties"],
            "properties": {
                "hold": {"type": "string"}, "expert": {"type": "string"},
                "seats": {"type": "integer", "minimum": 1}, "expires_at": instant,
                "start": instant, "end": instant,
                "line_item_properties": {
                    "type": "object", "required": ["_hold", "Appointment", "Expert"],
                    "additionalProperties": {"type": "string"},
                    "description": "for /cart/add.js, unchanged"}}},
        "BookPageConfig": {
            "type": "object",
            "required": ["service", "variant_id", "shop_timezone", "experts",
                         "hold_ttl_seconds"],
            "properties": {
                "service": {"type": "object", "required": ["id", "title",
                                                           "duration_minutes"],
                            "properties": {"seats": {"type": "integer"},
                                           "questions": {"type": "array"}}},
                "variant_id": {"type": "string"}, "shop_timezone": {"type": "string"},
                "experts": {"type": "array", "items": {
                    "type": "object", "required": ["id", "name", "timezone"]}},
                "hold_ttl_seconds": {"type": "integer"}}},
        "ServiceCreate": request_schema(catalog.SERVICE_FIELDS, "create"),
        "ServicePatch": request_schema(catalog.SERVICE_FIELDS, "update"),
        "Service": response_schema(catalog.SERVICE_FIELDS, not_null=["interval_minutes"],
                                   extra={"id": {"type": "string"}}),
        "ExpertCreate": request_schema(catalog.EXPERT_FIELDS, "create"),
        "ExpertPatch": request_schema(catalog.EXPERT_FIELDS, "update"),
        "Expert": response_schema(catalog.EXPERT_FIELDS, not_null=["timezone", "services"],
                                  extra={"id": {"type": "string"}}),
        "Schedule": {
            "type": "object", "additionalProperties": False,
            "properties": {
                "weekly": {"type": "object", "additionalProperties": False,
                           "properties": {d: windows for d in schedule_domain.DAYS}},
                "overrides": {"type": "array", "maxItems": 1000, "items": {
                    "type": "object", "required": ["date"], "additionalProperties": False,
                    "properties": {"date": {"type": "string", "pattern": DATE},
                                   "windows": windows}},
                    "description": "dates in the expert's timezone, each at most once"}}},
        "SettingsWrite": request_schema(
            settings, "replace",
            extra={"choices": {"description": "read-only (from GET); ignored when sent "
                                              "back"}}),
        "Settings": response_schema(settings, not_null=["timezone"]),
        "SettingsRead": response_schema(settings, not_null=["timezone"], extra={
            "choices": {"type": "object", "readOnly": True,
                        "required": ["calendar_provider", "video_provider",
                                     "mail_provider"],
                        "additionalProperties": {"type": "array", "items": choice},
                        "description": "every registered provider per field, by label"}}),
        "Booking": booking,
        # The booking as its customer sees it through the manage link (engine.services.
        # manage.render_customer_booking).
        "CustomerBooking": {
            "type": "object",
            "required": ["id", "service", "expert", "start", "end", "local", "status",
                         "seats", "can_cancel", "can_reschedule", "cancel_until",
                         "reschedule_until"],
            "properties": {
                "id": {"type": "string"}, "service": {"type": "string"},
                "service_title": nstr, "expert": {"type": "string"}, "expert_name": nstr,
                "start": instant, "end": instant,
                "local": {"type": "string", "description": "the start with the offset of "
                                                          "the customer's zone"},
                "timezone": {"type": "string", "description": "the customer's zone (the "
                                                             "hold's tz, else the shop's)"},
                "shop_timezone": {"type": "string"},
                "shop_local": {"type": "string", "description": "the start in the shop's "
                                                               "zone"},
                "status": {"type": "string", "enum": ["pending", "confirmed", "cancelled"]},
                "seats": {"type": "integer", "minimum": 1},
                "can_cancel": {"type": "boolean"}, "can_reschedule": {"type": "boolean"},
                "cancel_until": {**nullable_instant, "description": "the last instant the "
                                 "customer may cancel (null: not at all)"},
                "reschedule_until": {**nullable_instant, "description": "the last instant "
                                     "the customer may reschedule (null: not at all)"}}},
        "CancelledBooking": {"allOf": [booking, {
            "type": "object", "required": ["refund"],
            "properties": {"refund": refund_outcome}}]},
        "Refund": {
            "type": "object",
            "required": ["id", "order_id", "line_item_id", "hold", "reason", "amount",
                         "quantity", "currency", "created_at", "shopify_refund"],
            "properties": {
                "id": {"type": "string"}, "order_id": nstr, "line_item_id": nstr,
                "hold": nstr, "reason": _ref("RefundReason"),
                "amount": {"anyOf": [_ref("Decimal"), {"type": "null"}]},
                "quantity": {"type": ["integer", "null"]}, "currency": nstr,
                "created_at": instant,
                "shopify_refund": {"anyOf": [{"type": "null"}, {
                    "type": "object", "required": ["status", "id", "error"]}]}}},
        "PrivacyRequest": {
            "type": "object",
            "required": ["id", "topic", "customer_id", "customer_email", "orders",
                         "received_at", "completed_at"],
            "properties": {"id": {"type": "string"}, "topic": {"type": "string"},
                           "customer_id": nstr, "customer_email": nstr,
                           "orders": {"type": "array"}, "received_at": instant,
                           "completed_at": nullable_instant}},
        "Connections": {
            "type": "object",
            "required": ["calendar_provider", "video_provider", "mail_provider",
                         "connections", "problems", "experts"],
            "properties": {"connections": {"type": "array", "items": {
                "type": "object", "required": ["provider", "label", "status", "connect"]}},
                "problems": {"type": "array"}, "experts": {"type": "array"}}},
        "StartUrl": {"type": "object", "required": ["start_url", "expires_at"],
                     "properties": {"start_url": {"type": "string"},
                                    "expires_at": instant}},
        "FormValues": {"type": "object", "properties": {"values": {
            "type": "object", "additionalProperties": {"type": "string"}}}},
        "ProviderSettings": {"type": "object",
                             "required": ["kind", "provider", "label", "fields", "values"]},
        "PluginDocument": {"description": "a JSON document the plugin defines "
                                          "(docs/plugins.md)"},
    }


def _providers(ctx: Context | None) -> dict[str, list[str]] | None:
    """The registered provider names per kind, as the settings resource passes them."""
    plugins = getattr(ctx, "plugins", None) if ctx is not None else None
    if plugins is None:
        return None
    return {k: list(plugins.registry.names(k)) for k in ("calendar", "video", "mail")}


def _responses() -> dict[str, Any]:
    out: dict[str, Any] = {}
    for status, text in ERROR_TEXT.items():
        response: dict[str, Any] = {"description": text, "content": _json(_ref("Error"))}
        if status == 503:
            response["headers"] = {"Retry-After": {
                "description": "seconds to wait", "required": True,
                "schema": {"type": "string", "pattern": "^[0-9]+$"}}}
        if status == 401:
            response["headers"] = {"WWW-Authenticate": {
                "description": "Bearer, on the admin API", "schema": {"type": "string"}}}
        out[f"E{status}"] = response
    return out


def _checklist_schema() -> dict[str, Any]:
    """``GET /admin/api/checklist`` (engine.services.checklist)."""
    step = {"type": "object", "required": ["id", "done", "title", "detail", "section", "url"],
            "properties": {
                "id": {"type": "string",
                       "enum": ["service", "expert", "hours", "product", "theme_block"]},
                "done": {"type": ["boolean", "null"],
                         "description": "null: could not be checked (detail says why)"},
                "title": {"type": "string"}, "detail": {"type": "string"},
                "section": {"type": ["string", "null"],
                            "enum": ["services", "experts", "hours", "settings", None]},
                "url": {"type": ["string", "null"]}}}
    count = {"type": "integer", "minimum": 0}
    return {"type": "object", "required": ["checklist"], "properties": {"checklist": {
        "type": "object", "required": ["steps", "done", "total"],
        "properties": {"steps": {"type": "array", "items": step, "minItems": 5,
                                 "maxItems": 5},
                       "done": count, "total": count}}}}


def _stats_schema() -> dict[str, Any]:
    """``GET /admin/api/stats`` (engine.services.stats)."""
    count = {"type": "integer", "minimum": 0}
    day = {"type": "string", "pattern": DATE}
    nstr = {"type": ["string", "null"]}
    week = {"type": "object", "required": ["week", "start", "bookings", "revenue",
                                           "cancelled"],
            "properties": {"week": {"type": "string", "pattern": "^[0-9]{4}-W[0-9]{2}$"},
                           "start": day, "bookings": count, "cancelled": count,
                           "revenue": {"type": "object",
                                       "description": "currency -> amount",
                                       "additionalProperties": _ref("Decimal")}}}
    expert = {"type": "object", "required": ["id", "name", "booked_minutes",
                                             "offered_minutes", "fill_rate"],
              "properties": {"id": {"type": "string"}, "name": {"type": "string"},
                             "booked_minutes": count, "offered_minutes": count,
                             "fill_rate": {"type": ["number", "null"], "minimum": 0}}}
    today = {"type": "object",
             "required": ["id", "start", "end", "status", "service_title", "expert_name",
                          "customer_name", "seats"],
             "properties": {"id": {"type": "string"},
                            "start": {"type": "string", "pattern": ISO_INSTANT},
                            "end": {"type": "string", "pattern": ISO_INSTANT},
                            "status": {"type": "string", "enum": ["pending", "confirmed"]},
                            "service_title": nstr, "expert_name": nstr,
                            "customer_name": nstr, "seats": {"type": "integer",
                                                             "minimum": 1}}}
    return {"type": "object",
            "required": ["timezone", "from", "to", "weeks", "experts", "refunds_waiting",
                         "refunds", "cancellations", "today"],
            "properties": {
                "timezone": {"type": "string"}, "from": day, "to": day,
                "weeks": {"type": "array", "items": week, "maxItems": 53},
                "experts": {"type": "array", "items": expert},
                "refunds_waiting": count,
                "refunds": {"type": "object", "required": ["queued", "failed", "by_hand"],
                            "properties": {"queued": count, "failed": count,
                                           "by_hand": count}},
                "cancellations": count,
                "today": {"type": "array", "items": today}}}


# --------------------------------------------------------------------------- paths


def _core_paths() -> dict[str, dict[str, Any]]:
    storefront, admin_tag = ["storefront"], ["admin"]
    liquid = "application/liquid"
    redirect = {"description": "a redirect", "headers": {"Location": {
        "required": True, "schema": {"type": "string"}}}}
    item = [p("item_id")]
    paths: dict[str, dict[str, Any]] = {}

    # -- operations
    paths["/healthz"] = {"get": op(
        "Liveness: the process answers", tags=["operations"], security=PUBLIC,
        responses={"200": ok("up", {"type": "object", "required": ["status"],
                                    "properties": {"status": {"const": "ok"}}}),
                   **errors(400, 414)})}
    paths["/readyz"] = {"get": op(
        "Readiness: the database and the broker answer", tags=["operations"],
        security=PUBLIC,
        responses={"200": ok("ready", {"type": "object", "required": ["status", "checks"],
                                       "properties": {"status": {"const": "ready"},
                                                      "checks": _ref("ReadyChecks")}}),
                   **errors(400, 414),
                   "503": {"description": "not ready: the failing parts named in the "
                                          "message and listed in unavailable",
                           "headers": {"Retry-After": {"required": True,
                                                       "schema": {"type": "string"}}},
                           "content": _json(_ref("NotReady"))}})}
    paths["/metrics"] = {"get": op(
        "Prometheus metrics (text format)", tags=["operations"],
        security=[{"metricsToken": []}],
        responses={"200": ok("the metrics", content={
            "text/plain": {"schema": {"type": "string"}}}),
            **errors(400, 401, 404, 414)})}
    paths[PATH] = {"get": op(
        "This document", tags=["operations"], security=PUBLIC,
        responses={"200": ok("the OpenAPI 3.1 document", {"type": "object"}),
                   **errors(400, 414)})}
    paths["/static/{file}"] = {"get": op(
        "The storefront's and admin's scripts and styles", tags=["pages"], security=PUBLIC,
        parameters=[p("file", "a file name such as booking.js")],
        responses={"200": ok("the file", content={
            "text/css": {"schema": {"type": "string"}},
            "text/javascript": {"schema": {"type": "string"}},
            "application/javascript": {"schema": {"type": "string"}},
            "application/octet-stream": {"schema": {"type": "string"}}}),
            **errors(400, 404, 414)})}

    # -- storefront (App Proxy)
    paths["/proxy/availability"] = {"get": op(
        "Open slots of a service", tags=storefront, security=PROXY,
        parameters=[*PROXY_PARAMS,
                    q("service", {"type": "string", "minLength": 1,
                                  "maxLength": availability.MAX_ID_LENGTH}, required=True),
                    q("start", {"type": "string", "pattern": DATE}, required=True,
                      description="a date in the shop's timezone"),
                    q("days", {"type": "integer", "minimum": 1,
                               "maximum": availability.MAX_DAYS}, required=True),
                    q("expert", {"type": "string", "maxLength": availability.MAX_ID_LENGTH},
                      description="an expert id, or any (each start once, with "
                                  "experts_free)"),
                    q("tz", _ref("Timezone"), description="the zone of local")],
        responses={"200": ok("slots sorted by start then expert", _ref("Availability")),
                   **errors(*PROXY_ERRORS)})}
    paths["/proxy/holds"] = {"post": op(
        "Hold a slot while the customer checks out", tags=storefront, security=PROXY,
        parameters=PROXY_PARAMS, body=_json(_ref("HoldRequest")),
        description="Checked in the order 422, 429, 409: not_a_slot / invalid_answers, "
                    "too_many_holds, slot_unavailable / limit_reached.",
        responses={"201": ok("held", _ref("Hold")),
                   **errors(*PROXY_ERRORS, 409, 413, 422, 429)})}
    paths["/proxy/holds/{hold_id}"] = {"delete": op(
        "Release a hold: the slot is free at once", tags=storefront, security=PROXY,
        parameters=[*PROXY_PARAMS, p("hold_id")],
        responses={"204": ok("released (again: still 204)"),
                   **errors(*PROXY_ERRORS, 409)})}
    # -- customers manage their bookings (web/manage.py)
    one_booking = {"type": "object", "required": ["booking"],
                   "properties": {"booking": _ref("CustomerBooking")}}
    booking_id = p("booking_id")
    token_field = {"type": "string", "minLength": 1, "maxLength": 128,
                   "description": "the token of the manage link"}
    not_found = ("A wrong or missing token, another shop's booking, a redacted one: the "
                 "same 404 not_found.")
    paths["/proxy/bookings/{booking_id}"] = {"get": op(
        "A booking, opened with its manage link's token", tags=storefront, security=PROXY,
        parameters=[*PROXY_PARAMS, booking_id, q("token", token_field)],
        description=not_found,
        responses={"200": ok("the booking", one_booking), **errors(*PROXY_ERRORS)})}
    paths["/proxy/bookings/{booking_id}/reschedule"] = {"post": op(
        "Move a booking to another start (the same booking id)", tags=storefront,
        security=PROXY, parameters=[*PROXY_PARAMS, booking_id],
        body=_json({"type": "object", "required": ["token", "start"],
                    "additionalProperties": False,
                    "properties": {"token": token_field,
                                   "start": {"type": "string", "format": "date-time"},
                                   "expert": {"type": "string", "pattern": "\\S",
                                              "maxLength": 64,
                                              "description": "an expert id, or any; left "
                                                             "out: the booking's expert"}}}),
        description=f"{not_found} Past reschedule_notice_minutes before the current "
                    "start, after max_reschedules, or with customer_reschedule off: 403 "
                    "policy_closed; not a slot: 422 not_a_slot; taken: 409 "
                    "slot_unavailable / limit_reached (the booking keeps its time).",
        responses={"200": ok("the booking at its new time", one_booking),
                   **errors(*PROXY_ERRORS, 403, 409, 413, 422)})}
    paths["/proxy/bookings/{booking_id}/cancel"] = {"post": op(
        "Cancel a booking within the shop's policy", tags=storefront, security=PROXY,
        parameters=[*PROXY_PARAMS, booking_id],
        body=_json({"type": "object", "required": ["token"], "additionalProperties": False,
                    "properties": {"token": token_field}}),
        description=f"{not_found} Closed by cancel_notice_minutes or customer_cancel: 403 "
                    "policy_closed. Cancelling again: 200, nothing more happens.",
        responses={"200": ok("the cancelled booking", one_booking),
                   **errors(*PROXY_ERRORS, 403, 413)})}
    paths["/proxy/my-bookings"] = {"get": op(
        "The logged-in customer's bookings from 30 days ago on, with their manage links",
        tags=storefront, security=PROXY, parameters=PROXY_PARAMS,
        description="No logged_in_customer_id: 401 login_required.",
        responses={"200": ok("bookings", {
            "type": "object", "required": ["bookings"],
            "properties": {"bookings": {"type": "array", "items": {"allOf": [
                _ref("CustomerBooking"),
                {"type": "object", "required": ["manage_url"],
                 "properties": {"manage_url": {"type": "string"}}}]}}}}),
            **errors(*PROXY_ERRORS)})}
    paths["/proxy/waitlist"] = {"post": op(
        "Wait for a free time of a service on a date", tags=storefront, security=PROXY,
        parameters=PROXY_PARAMS, body=_json({
            "type": "object", "required": ["service", "date", "email"],
            "additionalProperties": False,
            "properties": {
                "service": {"type": "string", "pattern": "\\S",
                            "maxLength": availability.MAX_ID_LENGTH},
                "date": {"type": "string", "pattern": DATE,
                         "description": "a date in the shop's timezone: not past, within "
                                        "the service's horizon"},
                "email": {"type": "string", "format": "email", "maxLength": 320},
                "expert": {"type": "string", "pattern": "\\S",
                           "maxLength": availability.MAX_ID_LENGTH,
                           "description": "an expert id, or any (the default)"},
                "tz": {**_ref("Timezone"),
                       "description": "the customer's zone, for the times in the mail"}}}),
        description="When a slot of that service on that date becomes free (a "
                    "cancellation, a reschedule, a hold that expires or is released, new "
                    "hours) the entry is mailed once, with a link to book that date; "
                    "entries for past dates lapse. The same address waiting for the same "
                    "date gets its entry back. At most 3 live entries per visitor: 429 "
                    "too_many_entries.",
        responses={"201": ok("on the waitlist", {
            "type": "object", "required": ["waitlist"], "additionalProperties": False,
            "properties": {"waitlist": {"type": "string"}}}),
            **errors(*PROXY_ERRORS, 413, 429)})}
    paths["/proxy/book"] = {"get": op(
        "The storefront booking calendar page", tags=storefront, security=PROXY,
        parameters=[*PROXY_PARAMS, q("service", {"type": "string"}),
                    q("expert", {"type": "string"}),
                    q("format", {"type": "string", "enum": ["json"]},
                      description="json: the page's configuration, for the theme block")],
        description="A page rendered inside the shop's theme: without a service, or for "
                    "an unknown one, the answer is a page too (400 / 404 as Liquid); "
                    "errors of the request itself (signature, shop) are JSON.",
        responses={
            "200": ok("the page (application/liquid), or with format=json its "
                      "configuration", content={
                          liquid: {"schema": {"type": "string"}},
                          "application/json": {"schema": _ref("BookPageConfig")}}),
            "400": {"description": "no service: a page saying so, or a JSON error",
                    "content": {liquid: {"schema": {"type": "string"}},
                                **_json(_ref("Error"))}},
            "404": {"description": "an unknown service (a page), or an unknown shop",
                    "content": {liquid: {"schema": {"type": "string"}},
                                **_json(_ref("Error"))}},
            **errors(401, 414, 503)})}

    page_only = {"200": ok("the page (application/liquid)", content={
        liquid: {"schema": {"type": "string"}}}), **errors(400, 401, 404, 414, 503)}
    paths["/proxy/manage"] = {"get": op(
        "The customer's manage page (the link in every confirmation mail)", tags=storefront,
        security=PROXY,
        parameters=[*PROXY_PARAMS, q("booking", {"type": "string"}),
                    q("token", {"type": "string"})],
        description="A page rendered inside the shop's theme; its script reads the booking "
                    "with GET /proxy/bookings/{booking_id}?token=T (a wrong link is said "
                    "there). 404 only for an unknown shop.",
        responses=dict(page_only))}
    paths["/proxy/my-bookings/page"] = {"get": op(
        "The logged-in customer's bookings as a page (its script reads "
        "GET /proxy/my-bookings)", tags=storefront, security=PROXY,
        parameters=PROXY_PARAMS, responses=dict(page_only))}

    # -- webhooks
    paths["/webhooks"] = {"post": op(
        "Shopify's webhook deliveries", tags=["webhooks"], security=WEBHOOK,
        parameters=[h("X-Shopify-Topic", required=True, description=(
                        "orders/create, orders/paid, orders/cancelled, app/uninstalled, "
                        "customers/data_request, customers/redact, shop/redact; others "
                        "are acknowledged and ignored")),
                    h("X-Shopify-Shop-Domain", required=True),
                    h("X-Shopify-Webhook-Id", description="the delivery's id (deduplicated)"),
                    h("X-Shopify-Triggered-At")],
        body={"application/json": {"schema": {
            "description": "the topic's payload as Shopify sends it; a delivery with a "
                           "valid HMAC is never refused for what it contains"}}},
        responses={"200": ok("acknowledged (also when the booking cannot be honoured: a "
                             "refund-log entry is written)", {
                                 "type": "object", "required": ["status"],
                                 "properties": {"status": {"type": "string", "enum": [
                                     "processed", "duplicate", "ignored"]}}}),
                   "400": {"$ref": "#/components/responses/E400"},
                   "401": {"$ref": "#/components/responses/E401"},
                   **errors(413, 414, 503)})}

    # -- install and provider OAuth
    paths["/auth/install"] = {"get": op(
        "Begin Shopify OAuth", tags=["install"], security=OAUTH,
        parameters=[q("shop", {"type": "string"}, required=True),
                    q("timestamp", {"type": "string"}), q("host", {"type": "string"})],
        responses={"302": redirect, **errors(400, 401, 403, 414, 503)})}
    paths["/auth/callback"] = {"get": op(
        "Finish Shopify OAuth", tags=["install"], security=OAUTH,
        parameters=[q("shop", {"type": "string"}, required=True),
                    q("code", {"type": "string"}, required=True),
                    q("state", {"type": "string"}, required=True),
                    q("timestamp", {"type": "string"}), q("host", {"type": "string"})],
        responses={"302": redirect, **errors(400, 401, 403, 414, 502, 503)})}
    paths["/auth/token-exchange"] = {"post": op(
        "Exchange the admin's session token for the shop's Shopify access", tags=["install"],
        security=ADMIN,
        parameters=[q("force", {"type": "string", "enum": ["1", "true"]},
                      description="exchange again even when connected")],
        responses={"200": ok("the shop's Shopify connection", {
            "type": "object", "required": ["provider", "status", "connected"],
            "properties": {"provider": {"const": "shopify"},
                           "status": {"type": "string", "enum": [
                               "connected", "needs_reauth", "not_connected"]},
                           "connected": {"type": "boolean"}}}),
            **errors(400, 401, 403, 413, 414, 502, 503)})}
    provider = [p("item_id", "a provider name such as google")]
    paths["/auth/{item_id}/start"] = {"get": op(
        "Begin a provider's OAuth (top-level navigation)", tags=["connections"],
        security=[{"startTicket": []}], parameters=provider,
        responses={"302": redirect, **errors(400, 404, 414, 503)})}
    paths["/auth/{item_id}/callback"] = {
        "get": op("A provider's OAuth answer", tags=["connections"], security=PUBLIC,
                  parameters=[*provider, q("state", {"type": "string"}),
                              q("code", {"type": "string"})],
                  description="The state is checked: known, unexpired, single use, this "
                              "browser's cookie.",
                  responses={"302": redirect, **errors(400, 404, 414, 502, 503)}),
        "post": op("A provider's OAuth answer (response_mode=form_post)",
                   tags=["connections"], security=PUBLIC, parameters=provider,
                   body={"application/x-www-form-urlencoded": {"schema": {
                       "type": "object", "additionalProperties": {"type": "string"}}}},
                   body_required=False,
                   responses={"200": ok("a same-origin page that posts the form again, "
                                        "once", content={"text/html": {"schema": {
                                            "type": "string"}}}),
                              "302": redirect,
                              **errors(400, 404, 413, 414, 502, 503)})}

    # -- pages
    paths["/admin"] = {"get": op(
        "The embedded admin page", tags=["pages"], security=PUBLIC,
        parameters=[q("shop", {"type": "string"}), q("host", {"type": "string"})],
        responses={"200": ok("the page", content={"text/html": {"schema": {
            "type": "string"}}}), **errors(400, 414)})}

    # -- admin API
    def collection(name: str, item: str, one: str) -> None:
        create, patch = f"{item}Create", f"{item}Patch"
        paths[f"/admin/api/{name}"] = {
            "get": op(f"List {name}", tags=admin_tag, security=ADMIN,
                      responses={"200": ok(name, {
                          "type": "object", "required": [name], "additionalProperties": False,
                          "properties": {name: {"type": "array", "items": _ref(item)}}}),
                          **errors(*ADMIN_ERRORS)}),
            "post": op(f"Create {one}", tags=admin_tag, security=ADMIN,
                       body=_json(_ref(create)),
                       responses={"201": ok("created", _ref(item), headers={"Location": {
                           "schema": {"type": "string"}}}),
                           **errors(*ADMIN_BODY_ERRORS)})}
        paths[f"/admin/api/{name}/{{item_id}}"] = {
            "get": op(f"One {one}", tags=admin_tag, security=ADMIN, parameters=item_p,
                      responses={"200": ok(one, _ref(item)), **errors(*ADMIN_ERRORS)}),
            "patch": op(f"Change the given fields of {one}", tags=admin_tag, security=ADMIN,
                        parameters=item_p, body=_json(_ref(patch)),
                        responses={"200": ok(one, _ref(item)),
                                   **errors(*ADMIN_BODY_ERRORS)}),
            "put": op(f"Replace {one} (fields left out take their defaults)", tags=admin_tag,
                      security=ADMIN, parameters=item_p, body=_json(_ref(create)),
                      responses={"200": ok(one, _ref(item)), **errors(*ADMIN_BODY_ERRORS)}),
            "delete": op(f"Delete {one} (bookings keep pointing at it)", tags=admin_tag,
                         security=ADMIN, parameters=item_p,
                         responses={"204": ok("deleted"), **errors(*ADMIN_ERRORS)})}

    item_p = item
    collection("services", "Service", "a service")
    collection("experts", "Expert", "an expert")
    paths["/admin/api/experts/{item_id}/schedule"] = {
        "get": op("An expert's weekly hours and date overrides", tags=admin_tag,
                  security=ADMIN, parameters=item,
                  responses={"200": ok("the schedule", _ref("Schedule")),
                             **errors(*ADMIN_ERRORS)}),
        "put": op("Replace the schedule", tags=admin_tag, security=ADMIN, parameters=item,
                  body=_json(_ref("Schedule")),
                  responses={"200": ok("the schedule", _ref("Schedule")),
                             **errors(*ADMIN_BODY_ERRORS)})}
    paths["/admin/api/settings"] = {
        "get": op("The shop's settings, with the provider choices", tags=admin_tag,
                  security=ADMIN,
                  responses={"200": ok("settings", _ref("SettingsRead")),
                             **errors(*ADMIN_ERRORS)}),
        "put": op("Replace the settings (fields left out take their defaults)",
                  tags=admin_tag, security=ADMIN, body=_json(_ref("SettingsWrite")),
                  responses={"200": ok("settings", _ref("Settings")),
                             **errors(*ADMIN_BODY_ERRORS)}),
        "patch": op("Change the given settings", tags=admin_tag, security=ADMIN,
                    body=_json({**_ref("SettingsWrite")}),
                    responses={"200": ok("settings", _ref("Settings")),
                               **errors(*ADMIN_BODY_ERRORS)})}
    range_params = [q("from", {"type": "string", "format": "date-time"},
                      description="bookings starting at or after"),
                    q("to", {"type": "string", "format": "date-time"},
                      description="bookings starting before")]
    booking_filters = [
        q("expert", {"type": "string", "maxLength": 64}, description="only this expert's"),
        q("service", {"type": "string", "maxLength": 64}, description="only this service's"),
        q("status", {"type": "string",
                     "enum": ["", "pending", "confirmed", "cancelled", "no_show"]},
          description="only this status; no_show: confirmed bookings marked a no-show "
                      "(confirmed includes them)"),
        q("q", {"type": "string", "maxLength": 100},
          description="customer name or email contains this (case-insensitive)")]
    paths["/admin/api/bookings"] = {"get": op(
        "Bookings whose start lies in [from, to)", tags=admin_tag, security=ADMIN,
        parameters=range_params + booking_filters,
        responses={"200": ok("bookings", {"type": "object", "required": ["bookings"],
                                          "properties": {"bookings": {
                                              "type": "array", "items": _ref("Booking")}}}),
                   **errors(*ADMIN_ERRORS)})}
    paths["/admin/api/bookings/{item_id}"] = {"get": op(
        "One booking", tags=admin_tag, security=ADMIN, parameters=item,
        responses={"200": ok("the booking", _ref("Booking")), **errors(*ADMIN_ERRORS)})}
    paths["/admin/api/bookings/{item_id}/cancel"] = {"post": op(
        "Cancel a booking (the customer is mailed; a paid one gets a refund entry)",
        tags=admin_tag, security=ADMIN, parameters=item,
        responses={"200": ok("the cancelled booking with its refund",
                             _ref("CancelledBooking")), **errors(*ADMIN_BODY_ERRORS)})}
    paths["/admin/api/bookings/{item_id}/reschedule"] = {"post": op(
        "Move a booking (notice and horizon may be ignored, never an overlap)",
        tags=admin_tag, security=ADMIN, parameters=item,
        body=_json({"type": "object", "required": ["start"], "additionalProperties": False,
                    "properties": {"start": {"type": "string", "format": "date-time"},
                                   "expert": {"type": "string", "pattern": "\\S",
                                              "maxLength": 64,
                                              "description": "an expert id, or any"}}}),
        description="Still on the service's grid and the expert's hours (422 not_a_slot); "
                    "a taken time is 409 slot_unavailable / limit_reached; a cancelled "
                    "booking 409 booking_not_live.",
        responses={"200": ok("the booking at its new time", {
            "type": "object", "required": ["booking"],
            "properties": {"booking": _ref("Booking")}}),
            **errors(*ADMIN_BODY_ERRORS, 422)})}
    paths["/admin/api/bookings/{item_id}/no_show"] = {"post": op(
        "Mark a past confirmed booking a no-show, or unmark it", tags=admin_tag,
        security=ADMIN, parameters=item,
        body=_json({"type": "object", "required": ["no_show"], "additionalProperties": False,
                    "properties": {"no_show": {"type": "boolean"}}}),
        description="Marking needs a confirmed booking (409 not_confirmed) whose end has "
                    "passed (409 not_past); unmarking is always allowed.",
        responses={"200": ok("the booking", {
            "type": "object", "required": ["booking"],
            "properties": {"booking": _ref("Booking")}}),
            **errors(*ADMIN_BODY_ERRORS)})}
    paths["/admin/api/refunds"] = {"get": op(
        "The refund log: one entry per line item that could not be honoured",
        tags=admin_tag, security=ADMIN,
        responses={"200": ok("refunds", {"type": "object", "required": ["refunds"],
                                         "properties": {"refunds": {
                                             "type": "array", "items": _ref("Refund")}}}),
                   **errors(*ADMIN_ERRORS)})}
    paths["/admin/api/stats"] = {"get": op(
        "The home page's numbers: bookings, revenue and cancellations per week, fill "
        "rate per expert, refunds waiting, today's bookings", tags=admin_tag,
        security=ADMIN, operation_id="homeStats",
        parameters=[q("from", {"type": "string", "pattern": DATE},
                      description="first date (shop timezone), widened to its ISO "
                                  "week's Monday; default: seven weeks before this one"),
                    q("to", {"type": "string", "pattern": DATE},
                      description="last date, inclusive, widened to its week's Sunday; "
                                  "default: the end of next week; at most 53 weeks "
                                  "after from's week")],
        description="A booking counts in the ISO week (shop timezone) its start lies "
                    "in. bookings: pending and confirmed; revenue: confirmed only, line "
                    "price x units per currency; cancelled: cancelled ones. Fill rate: "
                    "booked meeting minutes (a seated session once) over the working "
                    "minutes of the expert's hours in the period; null when none. "
                    "refunds_waiting = refunds.queued (auto-refund not done yet) + "
                    "refunds.failed (auto-refund failed), whenever logged, + "
                    "refunds.by_hand (auto-refund off: logged in the period, for the "
                    "merchant to refund in Shopify; not those of an order cancelled "
                    "since). A pending booking whose slot lapsed counts nowhere. today: "
                    "live bookings starting on the shop's current date.",
        responses={"200": ok("the numbers", _stats_schema()), **errors(*ADMIN_ERRORS)})}
    paths["/admin/api/checklist"] = {"get": op(
        "The first-run checklist: service, expert, hours, product link, theme block",
        tags=admin_tag, security=ADMIN, operation_id="firstRunChecklist",
        description="Steps in this order: service (a service exists), expert (an expert "
                    "is assigned to a service), hours (an expert has weekly hours), "
                    "product (a service has its Shopify product or variant id), "
                    "theme_block (the live theme's product template has the booking "
                    "app block; read through the Admin API with the read_themes scope, "
                    "cached a minute per shop). done is null when a step could not be "
                    "checked (no token, scope not granted, Shopify not answering): never "
                    "an error status. url of theme_block: the theme editor deep link "
                    "that adds the block. done counts the steps that are true.",
        responses={"200": ok("the checklist", _checklist_schema()),
                   **errors(*ADMIN_ERRORS)})}
    paths["/admin/api/export"] = {"get": op(
        "Bookings as CSV or iCalendar", tags=admin_tag, security=ADMIN,
        parameters=[q("format", {"type": "string", "enum": ["csv", "ics"],
                                 "default": "csv"}), *range_params],
        responses={"200": ok("a download", content={
            "text/csv": {"schema": {"type": "string"}},
            "text/calendar": {"schema": {"type": "string"}}}),
            **errors(*ADMIN_ERRORS)})}
    paths["/admin/api/privacy-requests"] = {"get": op(
        "Customers' data requests received from Shopify", tags=admin_tag, security=ADMIN,
        responses={"200": ok("requests", {"type": "object", "required": ["requests"],
                                          "properties": {"requests": {
                                              "type": "array",
                                              "items": _ref("PrivacyRequest")}}}),
                   **errors(*ADMIN_ERRORS)})}
    paths["/admin/api/privacy-requests/{item_id}/export"] = {"get": op(
        "The customer's data for a data request", tags=admin_tag, security=ADMIN,
        parameters=item,
        responses={"200": ok("the request and every matching booking", {
            "type": "object", "required": ["request", "bookings"],
            "properties": {"request": _ref("PrivacyRequest"),
                           "bookings": {"type": "array", "items": _ref("Booking")}}}),
            **errors(*ADMIN_ERRORS)})}
    paths["/admin/api/connections"] = {"get": op(
        "Provider connections, choices, problems and hidden experts", tags=["connections"],
        security=ADMIN, responses={"200": ok("the overview", _ref("Connections")),
                                   **errors(*ADMIN_ERRORS)})}
    paths["/admin/api/connections/{item_id}"] = {
        "post": op("Connect a provider: a form connector's values, or an OAuth start URL",
                   tags=["connections"], security=ADMIN, parameters=provider,
                   body=_json(_ref("FormValues")), body_required=False,
                   responses={"200": ok("an OAuth connector's start URL", _ref("StartUrl")),
                              "201": ok("connected (form connector)", {
                                  "type": "object", "required": ["provider", "status"]}),
                              **errors(*ADMIN_BODY_ERRORS, 422, 502)}),
        "delete": op("Disconnect a provider", tags=["connections"], security=ADMIN,
                     parameters=provider,
                     responses={"204": ok("disconnected"), **errors(*ADMIN_ERRORS)})}
    paths["/admin/api/connections/{item_id}/start"] = {"post": op(
        "A one-time start URL for a provider's OAuth", tags=["connections"], security=ADMIN,
        parameters=provider,
        responses={"200": ok("the start URL (good for a minute)", _ref("StartUrl")),
                   **errors(*ADMIN_BODY_ERRORS)})}
    kind_name = [p("kind", "calendar, video or mail"), p("name", "a provider name")]
    paths["/admin/api/providers/{kind}/{name}/settings"] = {
        "get": op("The shop's values of a provider's declared settings",
                  tags=["connections"], security=ADMIN, parameters=kind_name,
                  responses={"200": ok("settings", _ref("ProviderSettings")),
                             **errors(*ADMIN_ERRORS)}),
        "put": op("Replace the shop's values of a provider's settings",
                  tags=["connections"], security=ADMIN, parameters=kind_name,
                  body=_json(_ref("FormValues")),
                  responses={"200": ok("settings", _ref("ProviderSettings")),
                             **errors(*ADMIN_BODY_ERRORS, 422)})}
    return add_links(paths)


# --------------------------------------------------------------------------- links


def operation_ref(path: str, method: str) -> str:
    """An ``operationRef`` to one of this document's operations: a JSON pointer, with
    ``~`` and ``/`` of the path escaped as RFC 6901 says (``~0``, ``~1``)."""
    return "#/paths/" + path.replace("~", "~0").replace("/", "~1") + "/" + method


def link(path: str, method: str, description: str, **parameters: str) -> dict[str, Any]:
    """An OpenAPI link to ``method path``, its parameters runtime expressions."""
    return {"operationRef": operation_ref(path, method), "description": description,
            "parameters": parameters}


def _links() -> dict[tuple[str, str, str], dict[str, dict[str, Any]]]:
    """(path, method, status) of a response -> the links its answer leads to: the ids a
    client reads off one answer and uses in its next request (a created service's id, a
    hold's id...). Schemathesis follows them in tests/test_schemathesis_stateful.py."""
    out: dict[tuple[str, str, str], dict[str, dict[str, Any]]] = {}
    for name in ("services", "experts"):
        one = f"/admin/api/{name}/{{item_id}}"
        created, read = "$response.body#/id", "$request.path.item_id"

        def item_links(value: str, name: str = name, one: str = one) -> dict[str, Any]:
            found = {"Get": link(one, "get", f"the {name[:-1]}", item_id=value),
                     "Change": link(one, "patch", f"change the {name[:-1]}", item_id=value),
                     "Replace": link(one, "put", f"replace the {name[:-1]}", item_id=value),
                     "Delete": link(one, "delete", f"delete the {name[:-1]}",
                                    item_id=value)}
            if name == "experts":
                schedule = f"{one}/schedule"
                found["GetSchedule"] = link(schedule, "get", "the expert's hours",
                                            item_id=value)
                found["ReplaceSchedule"] = link(schedule, "put", "set the expert's hours",
                                                item_id=value)
            return found

        out[(f"/admin/api/{name}", "post", "201")] = item_links(created)
        out[(f"/admin/api/{name}", "get", "200")] = {
            "GetFirst": link(one, "get", f"the first {name[:-1]} listed",
                             item_id=f"$response.body#/{name}/0/id")}
        out[(one, "get", "200")] = {k: v for k, v in item_links(read).items()
                                    if k != "Get"}
        out[(one, "patch", "200")] = {"Get": link(one, "get", "read it back", item_id=read)}
        out[(one, "put", "200")] = {"Get": link(one, "get", "read it back", item_id=read)}
        out[(one, "delete", "204")] = {
            "Get": link(one, "get", "gone: 404", item_id=read),
            "DeleteAgain": link(one, "delete", "gone: 404", item_id=read)}
    schedule = "/admin/api/experts/{item_id}/schedule"
    out[(schedule, "put", "200")] = {
        "Get": link(schedule, "get", "read the hours back", item_id="$request.path.item_id"),
        "Expert": link("/admin/api/experts/{item_id}", "get", "the expert",
                       item_id="$request.path.item_id")}
    booking = "/admin/api/bookings/{item_id}"

    def booking_links(value: str) -> dict[str, Any]:
        return {"Get": link(booking, "get", "the booking", item_id=value),
                "Cancel": link(f"{booking}/cancel", "post", "cancel it", item_id=value),
                "Reschedule": link(f"{booking}/reschedule", "post", "move it",
                                   item_id=value)}

    out[("/admin/api/bookings", "get", "200")] = booking_links("$response.body#/bookings/0/id")
    out[(booking, "get", "200")] = {k: v for k, v in booking_links(
        "$response.body#/id").items() if k != "Get"}
    out[(f"{booking}/cancel", "post", "200")] = booking_links("$response.body#/id")
    out[(f"{booking}/reschedule", "post", "200")] = booking_links(
        "$response.body#/booking/id")
    # An expert's answer names a (service, expert) pair a customer can hold.
    holdable = {"/admin/api/experts/{item_id}": "$response.body#/",
                "/admin/api/experts": "$response.body#/experts/0/"}
    for path, prefix in holdable.items():
        out[(path, "get", "200")]["Hold"] = {
            "operationRef": operation_ref("/proxy/holds", "post"),
            "description": "hold a slot of the expert's first service",
            "requestBody": {"service": f"{prefix}services/0", "expert": f"{prefix}id"}}
    hold = "/proxy/holds/{hold_id}"
    out[("/proxy/holds", "post", "201")] = {
        "Release": link(hold, "delete", "release the hold", hold_id="$response.body#/hold")}
    out[(hold, "delete", "204")] = {
        "ReleaseAgain": link(hold, "delete", "released again: still 204",
                             hold_id="$request.path.hold_id")}
    return out


def add_links(paths: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Put :func:`_links` on their responses. A link from or to an operation the
    document does not have stops the build (a renamed route must take its links along)."""
    for (path, method, status), links in _links().items():
        response = paths[path][method]["responses"][status]
        response["links"] = {**response.get("links", {}), **links}
        for target in links.values():
            where = target["operationRef"].removeprefix("#/paths/").rsplit("/", 1)
            target_path = where[0].replace("~1", "/").replace("~0", "~")
            if where[1] not in paths.get(target_path, {}):
                raise KeyError(f"link to an undocumented operation: {target}")
    return paths


# --------------------------------------------------------------------------- plugins

_RESPONDER = "on_"


def responder_methods(resource: object) -> list[str]:
    """The HTTP methods a Falcon resource answers (its ``on_<method>`` responders)."""
    return sorted(m for m in falcon.constants.COMBINED_METHODS
                  if callable(getattr(resource, f"{_RESPONDER}{m.lower()}", None)))


# The statuses the engine itself answers on a plugin's route, by its auth.
ENGINE_ERRORS: dict[str, tuple[int, ...]] = {
    "admin": (401, 403, 413, 414, 503), "proxy": (401, 413, 414, 503),
    "none": (413, 414, 503)}


def plugin_paths(app: falcon.App, ctx: Context) -> dict[str, dict[str, Any]]:
    """One generic operation per method of each route a plugin registered, under
    ``x-consultbook-plugin``, secured by the route's registered ``auth``."""
    routes = getattr(getattr(getattr(ctx, "plugins", None), "loaded", None), "routes", ())
    served = {r.path: r for r in falcon.inspect.inspect_routes(app)}
    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        info = served.get(route.path)
        if info is None:  # not mounted (yet): nothing to document
            continue
        security = {"admin": ADMIN, "proxy": PROXY}.get(route.auth, PUBLIC)
        params = [p(name) for name in _template_fields(route.path)]
        if route.auth == "proxy":
            params = [*PROXY_PARAMS, *params]
        item: dict[str, Any] = {}
        for method in sorted(m.method for m in info.methods if not m.internal):
            body = _json(_ref("PluginDocument")) if method in {"POST", "PUT", "PATCH"} \
                else None
            # A plugin answers what its caller expects (Graph's validation handshake is
            # text/plain, push endpoints answer 202 or 403): any status, any media type.
            generic = {"description": "the plugin's answer",
                       "content": {**_json(_ref("PluginDocument")), "*/*": {}}}
            operation = op(f"{method} {route.path} (plugin {route.plugin})",
                           tags=[f"plugin:{route.plugin}"], security=security,
                           parameters=params or None, body=body, body_required=False,
                           responses={"200": generic, "201": generic, "202": generic,
                                      "204": {"description": "done"},
                                      # What the engine answers before the plugin
                                      # runs (auth, body limits, the database) has the
                                      # error shape; the plugin's own answers vary.
                                      **errors(*ENGINE_ERRORS[route.auth]),
                                      "default": generic})
            operation[PLUGIN_EXTENSION] = route.plugin
            item[method.lower()] = operation
        paths[route.path] = item
    return paths


def _template_fields(path: str) -> list[str]:
    import re

    return re.findall(r"{([A-Za-z_][A-Za-z0-9_]*)}", path)


# --------------------------------------------------------------------------- document


def build_document(ctx: Context | None = None, app: falcon.App | None = None
                   ) -> dict[str, Any]:
    """The OpenAPI 3.1 document. With ``ctx``, the settings' provider choices are this
    process's registry; with ``app`` too, plugin routes mounted on it are listed."""
    paths = _core_paths()
    if ctx is not None and app is not None:
        for path, item in plugin_paths(app, ctx).items():
            paths.setdefault(path, {}).update(item)
    app_url = ctx.config.app_url if ctx is not None else "http://127.0.0.1:8000"
    return {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": "consultbook",
            "version": _version(),
            "description": "The HTTP surface of consultbook (docs/api.md). Errors are "
                           "{\"error\": {\"code\", \"message\"}}; instants are ISO-8601 UTC "
                           "with Z. Operations marked x-consultbook-plugin are served by a "
                           "plugin. Not listed: Falcon's OPTIONS responder and the demo's "
                           "routes.",
            "license": {"name": "MIT", "identifier": "MIT"},
        },
        "servers": [{"url": app_url}],
        "tags": [{"name": n} for n in ("storefront", "webhooks", "admin", "connections",
                                       "install", "pages", "operations")],
        "paths": dict(sorted(paths.items())),
        "components": {
            "schemas": _schemas(ctx),
            "responses": _responses(),
            "securitySchemes": SECURITY_SCHEMES,
        },
    }


SECURITY_SCHEMES: dict[str, Any] = {
    "appProxySignature": {
        "type": "apiKey", "in": "query", "name": "signature",
        "description": "Shopify's App Proxy signature: every other query parameter as "
                       "key=value (several values of one key joined by commas), the pairs "
                       "sorted and concatenated, HMAC-SHA256 with the API secret, hex. "
                       "The shop is the signed shop parameter; a request repeating shop or "
                       "logged_in_customer_id, or a timestamp older or newer than "
                       "CONSULTBOOK_PROXY_MAX_AGE_SECONDS, is 401 invalid_signature; a "
                       "shop that is not installed is 404 unknown_shop."},
    "sessionToken": {
        "type": "http", "scheme": "bearer", "bearerFormat": "JWT",
        "description": "An App Bridge session token: HS256 signed with the API secret, aud "
                       "the API key, dest the shop's origin, exp/nbf checked with a few "
                       "seconds' leeway. Missing or invalid: 401; shop not installed: 403."},
    "metricsToken": {
        "type": "http", "scheme": "bearer",
        "description": "CONSULTBOOK_METRICS_TOKEN; with it unset, /metrics answers 404 like "
                       "any unknown address."},
    "webhookHmac": {
        "type": "apiKey", "in": "header", "name": "X-Shopify-Hmac-Sha256",
        "description": "base64 HMAC-SHA256 of the raw body with the API secret; bad: 401, "
                       "nothing stored."},
    "oauthQueryHmac": {
        "type": "apiKey", "in": "query", "name": "hmac",
        "description": "Shopify's OAuth query HMAC: the other parameters sorted, joined "
                       "with &, HMAC-SHA256 with the API secret, hex."},
    "startTicket": {
        "type": "apiKey", "in": "query", "name": "ticket",
        "description": "the one-time ticket from POST /admin/api/connections/{item_id}/start"},
}


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("consultbook")
    except PackageNotFoundError:
        return "0"


class OpenApi:
    """``GET /openapi.json``. Built on the first request, when every route (plugins'
    too) is mounted, then served from memory."""

    auth = None

    def __init__(self, app: falcon.App, ctx: Context) -> None:
        self.app, self.ctx = app, ctx
        self._body: bytes | None = None

    def document(self) -> dict[str, Any]:
        return build_document(self.ctx, self.app)

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        if self._body is None:
            import json

            # json, not orjson: the largest Shopify id (20 digits) is beyond 64 bits.
            self._body = json.dumps(self.document(), ensure_ascii=False).encode()
        resp.content_type = falcon.MEDIA_JSON
        resp.data = self._body
        resp.cache_control = ["public", "max-age=300"]


def install(app: falcon.App, ctx: Context) -> OpenApi:
    """Serve ``GET /openapi.json`` on ``app`` (call after the other routes are added).
    Idempotent: an app that serves the document already keeps its resource."""
    found = app._router.find(PATH)
    if found is not None and isinstance(found[0], OpenApi):
        return found[0]
    resource = OpenApi(app, ctx)
    app.add_route(PATH, resource)
    return resource
