"""A ``DataSet`` table as records, or as a pandas, polars or Arrow table: the library is
imported only when asked for, and a missing one is an ``ImportError`` naming the extra
that installs it. Every column is text (SmartConnect sends text), ``None`` a null."""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from types import ModuleType
from typing import Any

__all__ = ["table_rows", "to_arrow", "to_pandas", "to_polars"]

Row = dict[str, "str | None"]


def table_rows(tables: Mapping[str, list[Row]], table: str | None) -> list[Row]:
    """The rows of ``table`` (default: the first table); none for a table the answer
    does not hold (a table with no rows is absent from an answer)."""
    return next(iter(tables.values()), []) if table is None else tables.get(table, [])


def _columns(rows: list[Row]) -> list[str]:
    return list(rows[0]) if rows else []  # every row of a table holds every column


def _library(name: str, extra: str, method: str) -> ModuleType:
    try:
        return importlib.import_module(name)
    except ImportError as missing:
        raise ImportError(
            f"DataSet.{method} needs {name}: pip install 'smartconnect-async[{extra}]'"
        ) from missing


def to_pandas(rows: list[Row]) -> Any:
    """A ``pandas.DataFrame`` of ``rows``, its columns of dtype ``object``."""
    pandas = _library("pandas", "pandas", "to_pandas")
    return pandas.DataFrame(rows, columns=_columns(rows), dtype=object)  # None stays None


def to_polars(rows: list[Row]) -> Any:
    """A ``polars.DataFrame`` of ``rows``, every column a ``String``."""
    polars = _library("polars", "polars", "to_polars")
    schema = {name: polars.String for name in _columns(rows)}
    return polars.from_dicts(rows, schema=schema) if rows else polars.DataFrame(schema=schema)


def to_arrow(rows: list[Row]) -> Any:
    """A ``pyarrow.Table`` of ``rows``, every column a ``string``."""
    pyarrow = _library("pyarrow", "parquet", "to_arrow")
    schema = pyarrow.schema([(name, pyarrow.string()) for name in _columns(rows)])
    return pyarrow.Table.from_pylist(rows, schema=schema)
