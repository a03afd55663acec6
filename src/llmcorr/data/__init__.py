"""Data in and out: tables from files or DataFrames (whole, or streamed row by row), outputs written as a run goes."""

from .io import SUFFIXES, Where, as_frame, check_output_path, read_table
from .output import RowWriter, write_table
from .stream import Table, open_table

__all__ = [
    "SUFFIXES",
    "RowWriter",
    "Table",
    "Where",
    "as_frame",
    "check_output_path",
    "open_table",
    "read_table",
    "write_table",
]
