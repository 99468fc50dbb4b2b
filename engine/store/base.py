"""The declarative base of the engine's tables (and their naming convention).

``engine.store.models`` and the other model modules build on it; plugins never do --
a plugin's tables live on the plugin's own ``MetaData`` (docs/plugins.md).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, MetaData, String
from sqlalchemy.orm import DeclarativeBase

from engine.providers.sql import NAMING as _NAMING
from engine.providers.sql import UTCDateTime

NAMING = _NAMING

ID = String(32)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {datetime: UTCDateTime(), dict[str, Any]: JSON, list[Any]: JSON}
