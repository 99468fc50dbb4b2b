"""Domain errors. Each carries a stable snake_case ``code``; ``web/`` maps classes to
statuses once."""

from __future__ import annotations


class ConsultbookError(Exception):
    """Base of every error the engine raises on purpose. ``str(exc)`` is a human sentence."""

    code = "error"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code


class ConfigError(ConsultbookError):
    """A setting is missing or malformed; the message names the variable."""

    code = "config_error"


class ValidationError(ConsultbookError):
    """Input that can never be right (a malformed field, a value out of range)."""

    code = "invalid_request"

    def __init__(self, message: str, *, field: str | None = None, code: str | None = None) -> None:
        super().__init__(message, code=code)
        self.field = field


class NotFound(ConsultbookError):
    """No such thing for this tenant (another shop's ids answer this too)."""

    code = "not_found"


class Unauthorized(ConsultbookError):
    code = "unauthorized"


class Forbidden(ConsultbookError):
    code = "forbidden"


class Conflict(ConsultbookError):
    code = "conflict"


class Unprocessable(ConsultbookError):
    """Well-formed input the engine will not act on (e.g. ``not_a_slot``)."""

    code = "unprocessable"


class TooManyRequests(ConsultbookError):
    code = "too_many_requests"


class SchemaOutOfDate(ConsultbookError):
    code = "schema_out_of_date"


class ServiceUnavailable(ConsultbookError):
    """A dependency (the database, the broker) cannot be reached right now; the caller
    should retry later (HTTP 503 with ``Retry-After``)."""

    code = "service_unavailable"

    def __init__(self, message: str, *, retry_after: int = 5, code: str | None = None) -> None:
        super().__init__(message, code=code)
        self.retry_after = retry_after
