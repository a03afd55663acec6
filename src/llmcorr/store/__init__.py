"""The run store (SQLite). A sink: everything may write to it; it calls nothing upward."""

from .db import connect
from .runs import RowRecord, RunRecord, Store

__all__ = ["RowRecord", "RunRecord", "Store", "connect"]
