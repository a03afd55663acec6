"""Data in and out: tables from files or DataFrames, outputs written as a run goes."""

from .io import SUFFIXES, RowWriter, Where, as_frame, check_output_path, read_table, write_table

__all__ = ["SUFFIXES", "RowWriter", "Where", "as_frame", "check_output_path", "read_table", "write_table"]
