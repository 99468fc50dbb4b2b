"""Small helpers shared by the resource modules."""

from __future__ import annotations

from typing import Any

import falcon

from web.guard import MAX_BODY, parse_json, read_body

__all__ = ["MAX_BODY", "query_params", "read_json"]


def read_json(req: falcon.Request) -> Any:
    """The request body as strict JSON (web.guard.parse_json): at most 1 MiB (413
    ``payload_too_large`` beyond, read no further, with or without a Content-Length),
    UTF-8, finite numbers, bounded nesting, no control character or lone surrogate in
    any string or key (400 naming where)."""
    return parse_json(read_body(req, MAX_BODY))


def query_params(req: falcon.Request) -> dict[str, str]:
    """The query string as a flat dict (the last value of a repeated key wins)."""
    return {k: v if isinstance(v, str) else v[-1] for k, v in req.params.items()}
