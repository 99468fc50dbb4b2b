"""One mapping from engine errors to HTTP, and one JSON error shape for everything.

Every error leaves as ``{"error": {"code": "snake_case", "message": "human sentence"}}``.
Nothing, however malformed, becomes a stack trace: unexpected exceptions are logged and
answered with a generic 500 that says nothing about internals.
"""

from __future__ import annotations

import logging
from typing import Any

import falcon

from engine import errors

log = logging.getLogger("consultbook.web")

STATUS: list[tuple[type[errors.ConsultbookError], str]] = [
    (errors.ValidationError, falcon.HTTP_400),
    (errors.Unauthorized, falcon.HTTP_401),
    (errors.Forbidden, falcon.HTTP_403),
    (errors.NotFound, falcon.HTTP_404),
    (errors.Conflict, falcon.HTTP_409),
    (errors.Unprocessable, falcon.HTTP_422),
    (errors.TooManyRequests, falcon.HTTP_429),
    (errors.SchemaOutOfDate, falcon.HTTP_503),
]


def _provider_statuses() -> list[tuple[type[errors.ConsultbookError], str]]:
    # A provider failing is not the caller's fault: 503 when it may pass, 502 otherwise.
    from engine.providers.errors import ProviderError, ProviderUnavailable
    from engine.shopify.oauth import ShopifyUnavailable

    return [(ProviderUnavailable, falcon.HTTP_503), (ProviderError, falcon.HTTP_502),
            (ShopifyUnavailable, falcon.HTTP_502)]


DEFAULT_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    411: "length_required",
    413: "payload_too_large",
    414: "uri_too_long",
    415: "unsupported_media_type",
    429: "too_many_requests",
    431: "headers_too_large",
    500: "internal_error",
    503: "unavailable",
}


MESSAGES = {
    404: "there is nothing at this address",
    405: "this address does not accept that method",
}


class ApiError(falcon.HTTPError):
    """An HTTP error with our code and message."""

    def __init__(self, status: str, code: str, message: str,
                 headers: dict[str, str] | None = None) -> None:
        # Falcon types `code` as an int; any JSON value works and ours are snake_case.
        super().__init__(status, title=message, description=message,
                         code=code,  # type: ignore[arg-type]
                         headers=headers)


def _engine_error(req: falcon.Request, resp: falcon.Response, ex: errors.ConsultbookError,
                  params: dict[str, Any]) -> None:
    for cls, status in _provider_statuses() + STATUS:
        if isinstance(ex, cls):
            raise ApiError(status, ex.code, ex.message)
    log.error("unmapped engine error %s: %s", type(ex).__name__, ex)
    raise ApiError(falcon.HTTP_500, "internal_error", "something went wrong on our side")


def _unexpected(req: falcon.Request, resp: falcon.Response, ex: Exception,
                params: dict[str, Any]) -> None:
    if isinstance(ex, falcon.HTTPError):
        raise ex
    log.exception("unhandled error on %s %s", req.method, req.path)
    raise ApiError(falcon.HTTP_500, "internal_error", "something went wrong on our side")


def _serialize(req: falcon.Request, resp: falcon.Response, ex: falcon.HTTPError) -> None:
    status = ex.status_code
    code = ex.code if isinstance(ex.code, str) else DEFAULT_CODES.get(status, "error")
    if isinstance(ex, falcon.MediaMalformedError | falcon.MediaNotFoundError):
        code = "invalid_json"
    message = ex.description or MESSAGES.get(status) or ex.title or "the request failed"
    resp.content_type = falcon.MEDIA_JSON
    resp.media = {"error": {"code": code, "message": str(message)}}


def install(app: falcon.App) -> None:
    app.add_error_handler(Exception, _unexpected)
    app.add_error_handler(errors.ConsultbookError, _engine_error)
    app.set_error_serializer(_serialize)
