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
    (errors.ServiceUnavailable, falcon.HTTP_503),
]

# Seconds a client is told to wait while a dependency is unreachable. Short: the
# database usually comes back within seconds (a restart, a failover), and Shopify and
# browsers back off on their own.
RETRY_AFTER_SECONDS = 5


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
    503: "service_unavailable",
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


def unavailable(message: str = "the service is temporarily unavailable; try again shortly",
                retry_after: int = RETRY_AFTER_SECONDS) -> ApiError:
    """``503 service_unavailable`` with ``Retry-After``: a dependency is unreachable."""
    return ApiError(falcon.HTTP_503, "service_unavailable", message,
                    headers={"Retry-After": str(retry_after)})


def _engine_error(req: falcon.Request, resp: falcon.Response, ex: errors.ConsultbookError,
                  params: dict[str, Any]) -> None:
    from engine.crypto import CryptoError

    if isinstance(ex, errors.ServiceUnavailable):
        raise unavailable(ex.message, ex.retry_after)
    if isinstance(ex, errors.SchemaOutOfDate):
        raise ApiError(falcon.HTTP_503, ex.code, ex.message,
                       headers={"Retry-After": str(RETRY_AFTER_SECONDS)})
    if isinstance(ex, CryptoError):
        # A stored secret that no configured key decrypts (its key was dropped from
        # CONSULTBOOK_ENCRYPTION_KEYS, or the row was altered): not a crash, a state the
        # merchant ends by connecting the account again. The message names at most a
        # key id, never key material or plaintext.
        log.warning("stored secret cannot be decrypted on %s %s: %s", req.method,
                    req.path, ex.message)
        raise ApiError(falcon.HTTP_409, "reconnect_required",
                       "a stored credential can no longer be decrypted with the configured "
                       "keys; connect the account again")
    for cls, status in _provider_statuses() + STATUS:
        if isinstance(ex, cls):
            raise ApiError(status, ex.code, ex.message)
    log.error("unmapped engine error %s: %s", type(ex).__name__, ex)
    raise ApiError(falcon.HTTP_500, "internal_error", "something went wrong on our side")


def _database_error(req: falcon.Request, resp: falcon.Response, ex: Exception,
                    params: dict[str, Any]) -> None:
    """Every SQLAlchemy error, mapped once: the database unreachable (or refusing for
    the moment) is 503 with ``Retry-After``; a value the database refuses (SQLSTATE class
    22, data exception: out of range, too long, a NUL) is the caller's 400; anything
    else is a bug, logged, 500."""
    from sqlalchemy import exc as sa_exc

    from engine.store.db import database_unavailable

    if database_unavailable(ex):
        log.warning("database unavailable on %s %s: %s", req.method, req.path,
                    type(getattr(ex, "orig", None) or ex).__name__)
        raise unavailable("the database is unreachable; try again shortly")
    if isinstance(ex, sa_exc.DataError):
        raise ApiError(falcon.HTTP_400, "invalid_request",
                       "a value in the request is out of range or too long")
    _unexpected(req, resp, ex, params)


def _broker_unreachable(ex: Exception) -> bool:
    """A broker connection failure (redis, kombu), for the requests that need the broker."""
    module = type(ex).__module__
    if module.startswith("redis"):
        import redis.exceptions

        return isinstance(ex, redis.exceptions.ConnectionError | redis.exceptions.TimeoutError)
    if module.startswith("kombu"):
        import kombu.exceptions

        return isinstance(ex, kombu.exceptions.OperationalError)
    return False


def _unexpected(req: falcon.Request, resp: falcon.Response, ex: Exception,
                params: dict[str, Any]) -> None:
    if isinstance(ex, falcon.HTTPError):
        raise ex
    if _broker_unreachable(ex):
        log.warning("broker unavailable on %s %s: %s", req.method, req.path,
                    type(ex).__name__)
        raise unavailable("the task broker is unreachable; try again shortly")
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
    from sqlalchemy.exc import SQLAlchemyError

    app.add_error_handler(Exception, _unexpected)
    app.add_error_handler(SQLAlchemyError, _database_error)
    app.add_error_handler(errors.ConsultbookError, _engine_error)
    app.set_error_serializer(_serialize)
