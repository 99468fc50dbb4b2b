"""Small helpers shared by the resource modules."""

from __future__ import annotations

import json
from typing import Any

import falcon

from web.errors import ApiError

MAX_BODY = 1 << 20  # 1 MiB: far beyond any legitimate admin document


def read_json(req: falcon.Request) -> Any:
    """The request body as JSON, or a 400/413 with a clear message."""
    length = req.content_length
    if length is not None and length > MAX_BODY:
        raise ApiError(falcon.HTTP_413, "payload_too_large", "the request body is too large")
    raw = req.bounded_stream.read(MAX_BODY + 1)
    if len(raw) > MAX_BODY:
        raise ApiError(falcon.HTTP_413, "payload_too_large", "the request body is too large")
    if not raw.strip():
        raise ApiError(falcon.HTTP_400, "invalid_json", "the request body must be JSON")
    try:
        return json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise ApiError(falcon.HTTP_400, "invalid_json",
                       "the request body is not valid UTF-8 JSON") from None


def query_params(req: falcon.Request) -> dict[str, str]:
    """The query string as a flat dict (the last value of a repeated key wins)."""
    return {k: v if isinstance(v, str) else v[-1] for k, v in req.params.items()}
