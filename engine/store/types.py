"""Column types that behave the same on SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

from sqlalchemy import BigInteger
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import FunctionElement

from engine.providers.sql import UTCDateTime

__all__ = ["UTCDateTime", "epoch"]


class epoch(FunctionElement[int]):
    """SQL: a UTCDateTime column as whole POSIX seconds, computed by the database (reading
    hundreds of busy intervals per request, skipping the datetime round trip matters)."""

    type = BigInteger()
    inherit_cache = True


@compiles(epoch, "postgresql")
def _epoch_pg(element: epoch, compiler: Any, **kw: Any) -> str:
    return f"CAST(EXTRACT(EPOCH FROM {compiler.process(element.clauses, **kw)}) AS BIGINT)"


@compiles(epoch)
def _epoch_sqlite(element: epoch, compiler: Any, **kw: Any) -> str:
    # UTCDateTime stores naive UTC text on SQLite; strftime('%s') reads it as UTC.
    return f"CAST(strftime('%s', {compiler.process(element.clauses, **kw)}) AS INTEGER)"
