"""Column types that behave the same on SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

from sqlalchemy import BigInteger
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import FunctionElement
from sqlalchemy.types import NullType

from engine.providers.sql import UTCDateTime

__all__ = ["UTCDateTime", "epoch", "overlaps"]


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


class overlaps(FunctionElement[Any]):
    """SQL: the half-open range ``[start, end)`` of a row overlaps ``[lo, hi)``:
    ``overlaps(Claim.claim_start, Claim.claim_end, lo, hi)``. On PostgreSQL the range
    operator ``&&`` over ``tstzrange(start, end, '[)')``, the expression of the claims'
    exclusion constraint, so the GiST index behind it finds the overlapping rows
    whatever the table's statistics say (the two comparisons leave the planner free to
    scan every earlier claim of the expert); elsewhere ``end > lo AND start < hi``.
    (Untyped: a Boolean function would be compared ``= 1`` on SQLite, which no index
    serves.)"""

    type = NullType()
    inherit_cache = True


@compiles(overlaps, "postgresql")
def _overlaps_pg(element: overlaps, compiler: Any, **kw: Any) -> str:
    start, end, lo, hi = (compiler.process(c, **kw) for c in element.clauses)
    return f"tstzrange({start}, {end}, '[)') && tstzrange({lo}, {hi}, '[)')"


@compiles(overlaps)
def _overlaps_other(element: overlaps, compiler: Any, **kw: Any) -> str:
    start, end, lo, hi = (compiler.process(c, **kw) for c in element.clauses)
    return f"({end} > {lo} AND {start} < {hi})"
