"""The run store: a SQLite file, or a team's PostgreSQL database. A sink: it calls nothing upward."""

from .db import IntegrityError, StoreURL, connect
from .records import NOT_SENT, RowRecord, RunRecord
from .runs import Store

__all__ = ["NOT_SENT", "IntegrityError", "RowRecord", "RunRecord", "Store", "StoreURL", "connect"]
